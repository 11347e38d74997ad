"""Running a test task for real and measuring what its process tree used.

- `TaskSpec` (``spec``): what to run, a command, a Python callable or a pytest node id.
- `ProcessTreeSampler` (``tree``): CPU, RSS, I/O and GPU memory of a root process and its
  descendants, with totals that keep the usage of children that already exited.
- `run_task` (``runner``): start, sample, time out or cancel, reap, and report a
  `TaskExecutionResult`.
- ``workloads``: builders for real short demo/test tasks (CPU burn, memory hog, I/O, ...).
"""

from fleet_hwmon.execution.runner import TaskExecutionResult, run_task
from fleet_hwmon.execution.spec import TaskSpec
from fleet_hwmon.execution.tree import (
    GpuProcessMemorySource,
    ProcessTreeSample,
    ProcessTreeSampler,
    ProcessTreeTotals,
    ReapedUsage,
)

__all__ = [
    "GpuProcessMemorySource",
    "ProcessTreeSample",
    "ProcessTreeSampler",
    "ProcessTreeTotals",
    "ReapedUsage",
    "TaskExecutionResult",
    "TaskSpec",
    "run_task",
]
