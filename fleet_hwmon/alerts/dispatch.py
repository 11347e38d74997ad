"""Runs alert callbacks on a thread of their own, so a slow or failing callback never delays
a sample: the sampler only puts the alert in a bounded queue (a full queue drops and counts)."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

from fleet_hwmon.logutil import RateLimitedLogger

log = logging.getLogger(__name__)

_STOP = object()


class CallbackDispatcher:
    """Calls every registered callback with each submitted item, in order, off the caller's thread.

    A callback that raises is logged (rate-limited, per callback) and counted in ``failures``;
    the other callbacks still run. ``dropped`` counts items refused because the queue was full.
    """

    def __init__(self, name: str, max_queue: int = 10_000) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._callbacks: list[Callable[[Any], Any]] = []
        self._lock = threading.Lock()
        self._log = RateLimitedLogger(log)
        self.dropped = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name=f"callbacks:{name}", daemon=True)
        self._thread.start()

    def register(self, callback: Callable[[Any], Any]) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        with self._lock:
            if callback not in self._callbacks:
                self._callbacks.append(callback)

    def unregister(self, callback: Callable[[Any], Any]) -> bool:
        """Returns False when the callback was not registered."""
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
                return True
            return False

    def submit(self, item: Any) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def join_pending(self, timeout_s: float = 10.0) -> None:
        """Wait until everything submitted so far has been delivered (for tests and shutdown)."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout_s)
        except queue.Full:
            return
        done.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            with self._lock:
                callbacks = list(self._callbacks)
            for callback in callbacks:
                try:
                    callback(item)
                except Exception as err:
                    self.failures += 1
                    name = getattr(callback, "__qualname__", repr(callback))
                    self._log.log(name, logging.ERROR, "alert callback %s failed: %s: %s",
                                  name, type(err).__name__, err)
