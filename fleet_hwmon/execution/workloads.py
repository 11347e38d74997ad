"""Real, short workloads for demos and tests, as `TaskSpec` builders.

Each builder returns a spec that runs ``sys.executable -c <snippet> <args...>``: the code is
self-contained and its parameters travel in argv, so the tasks run the same from a source
checkout or an installed package, whatever the working directory.

Example::

    from fleet_hwmon.execution import run_task
    from fleet_hwmon.execution.workloads import cpu_burn

    result = run_task(cpu_burn(1.0, processes=2))   # result.cpu_seconds is about 2.0
"""

from __future__ import annotations

import math
import sys

from fleet_hwmon.execution.spec import TaskSpec

# Burns CPU *time* rather than wall time, so a busy machine makes the task slower but its CPU
# use stays what was asked for. Extra processes run this same code with processes=1.
_CPU_BURN = """\
import subprocess, sys, time
seconds, processes, code = sys.argv[1], int(sys.argv[2]), sys.argv[3]
children = [subprocess.Popen([sys.executable, "-c", code, seconds, "1", code]) for _ in range(processes - 1)]
end = time.process_time() + float(seconds)
x = 0
while time.process_time() < end:
    for _ in range(10000):
        x += 1
sys.exit(max([child.wait() for child in children], default=0))
"""

_MEMORY_HOG = """\
import sys, time
size = int(float(sys.argv[1]) * 1048576)
block = bytearray(size)
for i in range(0, size, 4096):
    block[i] = 1  # touch every page: a fresh allocation is only reserved, not resident
time.sleep(float(sys.argv[2]))
"""

_IO_WRITE = """\
import os, sys, tempfile
size = int(float(sys.argv[1]) * 1048576)
chunk = memoryview(os.urandom(1048576))
fd, path = tempfile.mkstemp(prefix="fleet-hwmon-io-", dir=sys.argv[2] or None)
try:
    written = 0
    while written < size:
        written += os.write(fd, chunk[: min(len(chunk), size - written)])
    os.fsync(fd)  # force the bytes to storage so the write is counted, not just cached
finally:
    os.close(fd)
    os.remove(path)
"""

_SLEEP = "import sys, time\ntime.sleep(float(sys.argv[1]))\n"

_FAIL = "import sys\nsys.stderr.write(sys.argv[1] + '\\n')\nsys.exit(int(sys.argv[2]))\n"


def _python(code: str, *args: object, timeout_s: float | None) -> TaskSpec:
    return TaskSpec(command=[sys.executable, "-c", code, *(str(a) for a in args)], timeout_s=timeout_s)


def _check(name: str, value: float, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a {'positive' if positive else 'non-negative'} number, not {value!r}")


def cpu_burn(seconds: float, processes: int = 1, *, timeout_s: float | None = None) -> TaskSpec:
    """Busy loops in ``processes`` processes (the root plus ``processes - 1`` children), each
    using ``seconds`` of CPU time; total CPU is about ``seconds * processes``. Raises
    ``ValueError`` for a negative ``seconds`` or ``processes < 1``."""
    _check("seconds", seconds, positive=False)
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be an integer >= 1, not {processes!r}")
    return _python(_CPU_BURN, float(seconds), processes, _CPU_BURN, timeout_s=timeout_s)


def memory_hog(megabytes: float, seconds: float, *, timeout_s: float | None = None) -> TaskSpec:
    """Allocates ``megabytes`` MiB, touches every page so it is resident, and holds it for
    ``seconds``. Raises ``ValueError`` for non-positive ``megabytes`` or negative ``seconds``."""
    _check("megabytes", megabytes, positive=True)
    _check("seconds", seconds, positive=False)
    return _python(_MEMORY_HOG, float(megabytes), float(seconds), timeout_s=timeout_s)


def io_write(megabytes: float, directory: str | None = None, *, timeout_s: float | None = None) -> TaskSpec:
    """Writes ``megabytes`` MiB of random bytes to a temporary file in ``directory`` (default:
    the system temp folder), fsyncs it, then deletes it. On a RAM-backed folder (tmpfs) nothing
    reaches storage, so the task's ``write_bytes`` stays near 0 there. Raises ``ValueError`` for
    non-positive ``megabytes``."""
    _check("megabytes", megabytes, positive=True)
    return _python(_IO_WRITE, float(megabytes), directory or "", timeout_s=timeout_s)


def sleep_task(seconds: float, *, timeout_s: float | None = None) -> TaskSpec:
    """Sleeps ``seconds`` and exits 0 (near-zero CPU). Raises ``ValueError`` for negative ``seconds``."""
    _check("seconds", seconds, positive=False)
    return _python(_SLEEP, float(seconds), timeout_s=timeout_s)


def failing_task(message: str, exit_code: int = 1, *, timeout_s: float | None = None) -> TaskSpec:
    """Writes ``message`` to stderr and exits with ``exit_code`` (1-255). Raises ``ValueError``
    for an exit code outside that range."""
    if isinstance(exit_code, bool) or not isinstance(exit_code, int) or not 1 <= exit_code <= 255:
        raise ValueError(f"exit_code must be an integer from 1 to 255, not {exit_code!r}")
    return _python(_FAIL, str(message), exit_code, timeout_s=timeout_s)
