"""Interpreter exit in dependency order, whatever order things were started in.

``atexit`` runs hooks last-in first-out, so a hook registered lazily (NVML initialises on the
first GPU read, after the monitors exist) would run before the monitors stop, and a sampler in
the middle of an NVML call would then call an uninitialised NVML. One ``atexit`` hook runs the
phases in order instead: ``monitors`` (sampling threads joined, last samples queued), then
``stores`` (final flush, files closed on their writer threads), then ``nvml`` (shut down once,
and only if this process initialised it, so a host application's own init/shutdown stay balanced).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import threading
from typing import Callable, Iterator

log = logging.getLogger(__name__)

PHASES = ("monitors", "stores", "nvml")
_hooks: dict[str, list[Callable[[], None]]] = {phase: [] for phase in PHASES}
_lock = threading.Lock()



def at_exit(phase: str, hook: Callable[[], None]) -> None:
    """Run ``hook()`` at interpreter exit in ``phase`` (one of :data:`PHASES`); within a phase,
    the latest registered runs first. Raises ``ValueError`` for an unknown phase.

    The one ``atexit`` hook is registered again at every call, after the libraries the caller
    uses are imported, so it runs before theirs (DuckDB refuses to scan Python data once its own
    exit hook has run, which would keep the final flush from landing; DuckDB is only imported
    when a store is first opened, after the monitors registered their phase)."""
    if phase not in _hooks:
        raise ValueError(f"unknown exit phase {phase!r}; one of {PHASES}")
    with _lock:
        _hooks[phase].append(hook)
        atexit.unregister(run_exit_hooks)  # atexit runs last-registered first
        atexit.register(run_exit_hooks)


def forget(phase: str, hook: Callable[[], None]) -> None:
    """Remove ``hook`` from ``phase`` (no error when it is not there)."""
    with _lock:
        if hook in _hooks[phase]:
            _hooks[phase].remove(hook)


def run_exit_hooks() -> None:
    for phase in PHASES:
        with _lock:
            hooks = list(reversed(_hooks[phase]))
            _hooks[phase].clear()
        for hook in hooks:
            try:
                hook()
            except Exception:  # one failing hook must not keep the later phases from running
                log.exception("exit hook %r failed", hook)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where a Ctrl-C raises KeyboardInterrupt (see :func:`sigterm_interrupts`)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main
    thread: a service manager's or a job runner's stop then ends a command as Ctrl-C does, with
    its last samples flushed and its results written, instead of killing it where it stands (the
    exit hooks above do not run on an unhandled SIGTERM). Nothing changes outside the main thread
    or when SIGTERM is ignored (the parent's choice)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
