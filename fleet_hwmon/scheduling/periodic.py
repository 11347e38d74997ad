"""A daemon thread that calls a function every interval until stopped."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from fleet_hwmon.logutil import RateLimitedLogger

log = logging.getLogger(__name__)


class PeriodicThread:
    """Calls ``fn()`` every ``interval_s`` seconds (after the first interval) on a daemon thread.
    An exception in ``fn`` is logged (rate-limited) and the loop goes on. :meth:`stop` is
    idempotent and joins the thread."""

    def __init__(self, interval_s: float, fn: Callable[[], object], name: str) -> None:
        self._interval_s = interval_s
        self._fn = fn
        self._stop = threading.Event()
        self._log = RateLimitedLogger(log)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._fn()
            except Exception as err:  # one bad pass must not end the loop
                self._log.log(type(err).__name__, logging.ERROR, "%s failed: %s: %s",
                              self._thread.name, type(err).__name__, err)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
