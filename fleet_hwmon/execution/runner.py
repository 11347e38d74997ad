"""Run one `TaskSpec` for real and measure what its process tree used.

`run_task` starts the task in its own session / process group (so the whole tree can be
signalled at once), samples the tree with `ProcessTreeSampler` every poll interval, enforces
the timeout and cancellation by terminating the tree (SIGTERM, then SIGKILL after a grace
period), and reaps the root with ``os.wait4`` so the kernel's own accounting of the root and its
waited-for descendants closes the gaps between samples. Output goes to temporary files, so a
chatty task can never block on a full pipe; only the last few KB are kept in the result.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import psutil

from fleet_hwmon.execution.spec import TaskSpec
from fleet_hwmon.execution.tree import (
    GpuProcessMemorySource,
    ProcessTreeSample,
    ProcessTreeSampler,
    ReapedUsage,
)

log = logging.getLogger(__name__)

TAIL_BYTES = 4096
TERMINATE_GRACE_S = 2.0
_ERROR_LINES = 5
_ERROR_CHARS = 600
_PYTEST_EXIT = {1: "tests failed", 2: "interrupted", 3: "internal error", 4: "usage error",
                5: "no tests collected"}
_POSIX = os.name == "posix"


@dataclass(frozen=True)
class TaskExecutionResult:
    """How one task ended and what its process tree used.

    - ``returncode``: the root's exit code (negative: killed by that signal); ``None`` when it
      never started or could not be reaped.
    - ``success``: exit code 0, not timed out, not cancelled. ``error``: ``None`` on success,
      else one paragraph (the reason plus the last lines of stderr, or of stdout for pytest).
    - ``duration_s``: wall-clock seconds from start to the root's exit (monotonic clock).
    - ``cpu_seconds``: user + system CPU of the whole tree, exited children included
      (``Process.cpu_times()`` per process, the root's reaped-children times and
      ``os.wait4`` rusage; the largest of these lower bounds).
    - ``peak_rss_bytes``: highest sum of ``memory_info().rss`` over the tree in one sample
      (memory held only between two samples is not seen).
    - ``mean_cpu_percent``: ``100 * cpu_seconds / duration_s`` (percent of one core);
      ``peak_cpu_percent``: the highest sampled interval value. ``None`` when unknown.
    - ``read_bytes`` / ``write_bytes``: storage bytes of the tree (``io_counters()``, and
      ``ru_inblock/ru_oublock * 512`` on Linux); ``None`` where the platform has no I/O counters.
    - ``gpu_memory_peak_bytes``: highest per-sample sum of NVML per-process GPU memory over the
      tree's pids; ``None`` without NVML.
    - ``gpu_utilization_percent``: the tree's mean GPU utilization over its samples (NVML
      per-process ``smUtil``), percent of one GPU; ``None`` without NVML.
    - ``timed_out`` / ``cancelled``: how a stopped task was stopped.
    - ``stdout_tail`` / ``stderr_tail``: the last ``TAIL_BYTES`` of each stream, decoded as UTF-8.
    - ``num_samples``: tree samples taken.
    """

    returncode: int | None
    success: bool
    error: str | None
    duration_s: float
    cpu_seconds: float | None
    peak_rss_bytes: int | None
    mean_cpu_percent: float | None
    peak_cpu_percent: float | None
    read_bytes: int | None
    write_bytes: int | None
    gpu_memory_peak_bytes: int | None
    timed_out: bool
    cancelled: bool
    stdout_tail: str
    stderr_tail: str
    num_samples: int
    gpu_utilization_percent: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of all fields."""
        return dataclasses.asdict(self)


def run_task(spec: TaskSpec, *, poll_interval_s: float = 0.2, nvml: GpuProcessMemorySource | None = None,
             on_sample: Callable[[ProcessTreeSample], None] | None = None,
             stop_event: threading.Event | None = None,
             terminate_grace_s: float = TERMINATE_GRACE_S) -> TaskExecutionResult:
    """Run ``spec`` to completion, timeout or cancellation and return what it used.

    The tree is sampled right after start and then every ``poll_interval_s`` seconds; each
    sample goes to ``on_sample`` on this thread (keep it fast; its exceptions are logged and
    ignored). Setting ``stop_event`` cancels the task within one poll interval. Timeout and
    cancellation send SIGTERM to the task's process group and to any tracked descendant that
    left it, then SIGKILL after ``terminate_grace_s``; processes a finished task left running
    are stopped the same way, so a task never leaks processes.

    A task that cannot start (missing executable, bad ``cwd``) gives ``success=False`` and an
    ``error`` saying why; nothing is raised for the task's own failures. Raises ``TypeError``
    when ``spec`` is not a `TaskSpec` and ``ValueError`` for a non-positive ``poll_interval_s``.
    """
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"spec must be a TaskSpec, not {type(spec).__name__}")
    if not poll_interval_s > 0:
        raise ValueError(f"poll_interval_s must be positive, not {poll_interval_s!r}")
    if stop_event is not None and stop_event.is_set():
        return _unstarted(f"{spec.description} was cancelled before it started", cancelled=True)
    args, shell, env = spec.launch_args()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started_s = time.monotonic()
        try:
            proc = subprocess.Popen(args, shell=shell, env=env, cwd=spec.cwd, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, **_new_group_kwargs())
        except OSError as error:
            return _unstarted(_start_error(spec, args, error))
        # The sampler binds to the root before the watcher can reap it, so even a task that
        # exits at once is read at least once.
        sampler = ProcessTreeSampler(proc.pid, nvml=nvml)
        watcher = _ExitWatcher(proc)
        stopped_by = _supervise(spec, proc, watcher, sampler, started_s, poll_interval_s,
                                on_sample, stop_event)
        if stopped_by is not None:
            how = _stop_tree(proc.pid, sampler, watcher, terminate_grace_s)
        else:
            how = None
            leftovers = _live_members(proc.pid, sampler)
            if leftovers:
                log.warning("%s exited but left %d process(es) running (pids %s); stopping them",
                            spec.description, len(leftovers), sorted(p.pid for p in leftovers))
                _stop_tree(proc.pid, sampler, watcher, terminate_grace_s)
        watcher.done.wait(10.0)  # after SIGKILL only an uninterruptible sleep can delay this
        ended_s = watcher.ended_s if watcher.ended_s is not None else time.monotonic()
        stdout_tail, stderr_tail = _tail(out), _tail(err)

    duration_s = ended_s - started_s
    totals = sampler.totals(watcher.reaped)
    returncode = watcher.returncode
    timed_out, cancelled = stopped_by == "timeout", stopped_by == "cancelled"
    if timed_out:
        error = f"timed out after {spec.timeout_s} s; process tree {how}"
    elif cancelled:
        error = f"cancelled after {duration_s:.1f} s; process tree {how}"
    elif returncode != 0:
        error = _exit_error(spec, returncode, stdout_tail, stderr_tail)
    else:
        error = None
    cpu = totals.cpu_seconds
    return TaskExecutionResult(
        returncode=returncode, success=error is None, error=error, duration_s=duration_s,
        cpu_seconds=cpu, peak_rss_bytes=totals.peak_rss_bytes,
        mean_cpu_percent=100.0 * cpu / duration_s if cpu is not None and duration_s > 0 else None,
        peak_cpu_percent=totals.peak_cpu_percent, read_bytes=totals.read_bytes,
        write_bytes=totals.write_bytes, gpu_memory_peak_bytes=totals.gpu_memory_peak_bytes,
        timed_out=timed_out, cancelled=cancelled, stdout_tail=stdout_tail, stderr_tail=stderr_tail,
        num_samples=totals.num_samples, gpu_utilization_percent=totals.gpu_utilization_mean_percent,
    )


def _supervise(spec: TaskSpec, proc: subprocess.Popen, watcher: _ExitWatcher, sampler: ProcessTreeSampler,
               started_s: float, poll_interval_s: float,
               on_sample: Callable[[ProcessTreeSample], None] | None,
               stop_event: threading.Event | None) -> str | None:
    """Sample until the root exits; returns ``"timeout"`` or ``"cancelled"`` when it must be stopped."""
    deadline = None if spec.timeout_s is None else started_s + spec.timeout_s
    callback_failures = 0
    try:
        while True:
            sample = sampler.sample()
            if sample is not None and on_sample is not None:
                try:
                    on_sample(sample)
                except Exception:
                    callback_failures += 1
                    if callback_failures == 1:
                        log.exception("on_sample callback failed for %s; ignoring it", spec.description)
            wait_s = poll_interval_s if deadline is None else min(poll_interval_s, deadline - time.monotonic())
            if watcher.done.wait(max(0.0, wait_s)):
                return None
            stop = None
            if stop_event is not None and stop_event.is_set():
                stop = "cancelled"
            elif deadline is not None and time.monotonic() >= deadline:
                stop = "timeout"
            if stop is not None:
                sampler.sample()  # one last reading, so the totals include the final interval
                return stop
    finally:
        if callback_failures > 1:
            log.warning("on_sample callback failed %d times for %s", callback_failures, spec.description)


class _ExitWatcher:
    """Blocks in ``os.wait4`` on a thread, so the exit time is exact and the rusage is kept."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        self.done = threading.Event()
        self.returncode: int | None = None
        self.reaped: ReapedUsage | None = None
        self.ended_s: float | None = None
        threading.Thread(target=self._wait, name=f"task-exit-{proc.pid}", daemon=True).start()

    def _wait(self) -> None:
        try:
            if hasattr(os, "wait4"):
                _, status, rusage = os.wait4(self._proc.pid, 0)
                self.ended_s = time.monotonic()
                self.returncode = os.waitstatus_to_exitcode(status)
                self.reaped = _reaped_usage(rusage)
                self._proc.returncode = self.returncode  # tell Popen the child is reaped
            else:
                self.returncode = self._proc.wait()
                self.ended_s = time.monotonic()
        except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): exit code unknown
            self.ended_s = time.monotonic()
            log.warning("pid %d was reaped elsewhere; its exit code is unknown", self._proc.pid)
        finally:
            self.done.set()


def _reaped_usage(rusage: Any) -> ReapedUsage:
    linux = sys.platform.startswith("linux")
    # ru_maxrss is left out on purpose: a vfork()ed child reports the *parent's* peak RSS from
    # before exec, so it is no floor for the task's own memory. Linux fills ru_inblock/ru_oublock
    # from the same storage-byte counters as /proc/<pid>/io.
    return ReapedUsage(
        cpu_seconds=float(rusage.ru_utime) + float(rusage.ru_stime),
        read_bytes=int(rusage.ru_inblock) * 512 if linux else None,
        write_bytes=int(rusage.ru_oublock) * 512 if linux else None,
    )


def _new_group_kwargs() -> dict[str, Any]:
    if _POSIX:
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def _live_members(pgid: int, sampler: ProcessTreeSampler) -> list[Any]:
    """Non-zombie processes of the task: its process group plus tracked descendants."""
    found: dict[int, Any] = {}
    candidates = list(sampler.tracked_processes())
    if _POSIX:
        for pid in psutil.pids():
            try:
                if pid != os.getpid() and os.getpgid(pid) == pgid:
                    candidates.append(psutil.Process(pid))
            except (OSError, psutil.Error):
                continue
    for proc in candidates:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = proc
        except psutil.Error:
            continue
    return list(found.values())


def _signal_all(pgid: int, sampler: ProcessTreeSampler, sig: int) -> None:
    if _POSIX:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in _live_members(pgid, sampler):  # descendants that started their own group
        try:
            proc.send_signal(sig)
        except psutil.Error:
            continue


def _stop_tree(pgid: int, sampler: ProcessTreeSampler, watcher: _ExitWatcher, grace_s: float) -> str:
    """SIGTERM the tree, SIGKILL what is left after ``grace_s``; says which it took."""
    _signal_all(pgid, sampler, signal.SIGTERM)
    if _wait_gone(pgid, sampler, watcher, grace_s):
        return "terminated (SIGTERM)"
    _signal_all(pgid, sampler, getattr(signal, "SIGKILL", signal.SIGTERM))
    _wait_gone(pgid, sampler, watcher, 5.0)
    return f"killed (SIGKILL) after {grace_s} s grace"


def _wait_gone(pgid: int, sampler: ProcessTreeSampler, watcher: _ExitWatcher, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if watcher.done.is_set() and not _live_members(pgid, sampler):
            return True
        if time.monotonic() >= deadline:
            return False
        if watcher.done.is_set():
            time.sleep(0.05)
        else:
            watcher.done.wait(0.05)  # wakes early when the root exits


def _tail(stream: IO[bytes]) -> str:
    stream.flush()
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - TAIL_BYTES))
    text = stream.read().decode("utf-8", errors="replace")
    return text.lstrip("\ufffd") if size > TAIL_BYTES else text  # drop a character cut in half


def _last_lines(text: str) -> str:
    # Skip the ^^^/~~~ marker lines that Python 3.11+ tracebacks put under the failing code.
    lines = [line.strip() for line in text.splitlines() if line.strip(" \t^~")]
    joined = " | ".join(lines[-_ERROR_LINES:])
    return joined if len(joined) <= _ERROR_CHARS else "..." + joined[-_ERROR_CHARS:]


def _exit_error(spec: TaskSpec, returncode: int | None, stdout_tail: str, stderr_tail: str) -> str:
    if returncode is None:
        reason = f"{spec.description} ended with an unknown exit code"
    elif returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "signal"
        reason = f"{spec.description} was killed by {name} ({-returncode})"
    elif spec.pytest_node_id is not None:
        reason = f"{spec.description} exited with code {returncode} ({_PYTEST_EXIT.get(returncode, 'failed')})"
    else:
        reason = f"{spec.description} exited with code {returncode}"
    # pytest reports failures on stdout; other programs on stderr.
    detail = _last_lines(stdout_tail if spec.pytest_node_id is not None else stderr_tail or stdout_tail)
    return f"{reason}: {detail}" if detail else reason


def _start_error(spec: TaskSpec, args: list[str] | str, error: OSError) -> str:
    program = args if isinstance(args, str) else args[0]
    if isinstance(error, FileNotFoundError):
        if spec.cwd is not None and error.filename == spec.cwd:
            why = f"working directory {spec.cwd!r} does not exist"
        else:
            why = f"executable {program!r} not found"
    elif isinstance(error, PermissionError):
        why = f"permission denied for {error.filename or program!r}"
    else:
        why = f"{type(error).__name__}: {error}"
    return f"could not start {spec.description}: {why}"


def _unstarted(error: str, *, cancelled: bool = False) -> TaskExecutionResult:
    return TaskExecutionResult(
        returncode=None, success=False, error=error, duration_s=0.0, cpu_seconds=None,
        peak_rss_bytes=None, mean_cpu_percent=None, peak_cpu_percent=None, read_bytes=None,
        write_bytes=None, gpu_memory_peak_bytes=None, timed_out=False, cancelled=cancelled,
        stdout_tail="", stderr_tail="", num_samples=0,
    )
