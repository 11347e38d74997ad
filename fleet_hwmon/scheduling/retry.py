"""Where a failed task's retry must not go (pure): the workers it ran out of GPU memory on (or
memory, when the attempt reported no peak), while another worker could hold it.

A CUDA allocation that fails holds nothing, and what the task held before it is less than its
need, so the attempt's figure does not raise the retry's estimate enough (in the replay it
reports none): the scheduler, which saw room there, would send the retry straight back to the
same GPU, where it fails the same way (in the replay up to ten times in a row). So the retry
avoids that worker until a GPU task of ours ends there (until then nothing we know of has made
room). A host OOM kill reports the peak its victim reached: the retry's estimate rises by it
(``retry_growth``) and the fit check keeps the retry off workers without room, so the worker is
avoided only when no peak came back (avoiding it anyway only made tasks wait: on the replay's
``memory_bound`` workload failures stayed the same and makespan grew 3 %). When no other worker
of the fleet could hold the task once drained, it keeps avoiding those where a task of ours that
uses the resource still runs (its end may make room: two tasks each needing most of the only
large GPU take turns instead of failing ten times in a row beside each other), and the latest
while another could hold it; so a task is never held for good by what it avoids."""

from __future__ import annotations

import collections
import re
from typing import Callable, Iterable, Mapping

# Messages of the frameworks people run: PyTorch ("CUDA out of memory", "CUDA error: out of
# memory", torch.cuda.OutOfMemoryError), cuBLAS / cuDNN allocation failures, TensorFlow's "OOM
# when allocating tensor ... device:GPU:0"; the host's OOM killer and Python's MemoryError.
_GPU_MEMORY = re.compile(r"cuda (error: )?out of memory|cuda\.outofmemoryerror|cudaerrormemoryallocation"
                         r"|cublas_status_alloc_failed|cudnn_status_alloc_failed|\boom\b.*\bgpu\b", re.I)
_MEMORY = re.compile(r"out of memory|\boom\b|memoryerror|oom.?kill", re.I)

_LIMIT = 100_000  # tasks whose avoided workers are remembered at most (tasks never retried: start over)


def resource_failure(error: str | None) -> str | None:
    """The incompressible resource a failed attempt's ``error`` message says it lacked:
    ``"gpu_memory"``, ``"memory"``, or ``None`` (another failure, or no message)."""
    if not error:
        return None
    if _GPU_MEMORY.search(error):
        return "gpu_memory"
    if _MEMORY.search(error):
        return "memory"
    return None


class AvoidedWorkers:
    """Per task, the workers its attempts ran out of a resource on, oldest failure first, until
    a task ends there that frees that resource. Not thread-safe: the scheduler calls it under
    its lock."""

    def __init__(self) -> None:
        self._by_task: dict[str, dict[str, tuple[str, int]]] = {}  # task -> worker -> (resource, frees seen)
        self._frees: collections.Counter[tuple[str, str]] = collections.Counter()  # (worker, resource) -> ends

    def ended(self, worker_id: str, gpu_memory: bool) -> None:
        """A task ended on ``worker_id``: what it held there is free again (its memory; GPU
        memory when it held some)."""
        self._frees[worker_id, "memory"] += 1
        if gpu_memory:
            self._frees[worker_id, "gpu_memory"] += 1

    def failed(self, task_id: str, worker_id: str, error: str | None, peak_memory_bytes: float | None = None) -> None:
        """An attempt of ``task_id`` failed on ``worker_id`` with ``error`` (its end counted
        first by :meth:`ended`): the worker is avoided, as the latest, when the attempt ran out
        of GPU memory there, or of memory without a ``peak_memory_bytes`` figure (with one, the
        retry's estimate rises by it and the fit check keeps it off a worker without room)."""
        resource = resource_failure(error)
        if resource is None or (resource == "memory" and peak_memory_bytes is not None and peak_memory_bytes > 0):
            return
        if task_id not in self._by_task and len(self._by_task) >= _LIMIT:
            self._by_task.clear()
        avoided = self._by_task.setdefault(task_id, {})
        avoided.pop(worker_id, None)
        avoided[worker_id] = (resource, self._frees[worker_id, resource])

    def succeeded(self, task_id: str) -> None:
        self._by_task.pop(task_id, None)

    def of(self, task_id: str, fleet: Iterable[str], holds: Callable[[str], bool],
           occupied: Callable[[str, str], bool] | None = None) -> Mapping[str, str]:
        """The workers ``task_id``'s next decision avoids (worker id -> the resource it ran out
        of there): those it failed on where no task has freed that resource since, while
        another worker of the ``fleet`` could hold it once drained (``holds``: its hardware
        fits and its memory holds the task's need). Else those where a task of ours using that
        resource still runs (``occupied(worker_id, resource)``: its end, counted by
        :meth:`ended`, lifts the avoidance), plus the latest while another worker could hold
        it. So a retry is never held for good by the workers it avoids."""
        failed = self._by_task.get(task_id)
        if not failed:
            return {}
        frees = self._frees
        avoided = {w: resource for w, (resource, seen) in failed.items() if frees[w, resource] == seen}
        if not avoided or any(holds(w) for w in fleet if w not in avoided):
            return avoided
        kept = {w: r for w, r in avoided.items() if occupied is not None and occupied(w, r)}
        latest = next(reversed(avoided))
        if holds(latest) and any(holds(w) for w in avoided if w != latest and w not in kept):
            kept[latest] = avoided[latest]
        return kept

    def __len__(self) -> int:
        return len(self._by_task)
