"""Starvation guard: a task that no worker could take for a while reserves one worker (pure).

Without it, a task that needs a lot of one worker (a whole large GPU, say) can wait forever on a
busy fleet: each time part of a fitting worker frees up, smaller tasks queued behind it fit
there first and take it. This is the reservation of backfilling schedulers: once the oldest
waiting task of a type has waited ``after_s``, one of the workers that could run it (one excluded
for its load, not for lacking the hardware) is kept for it. Other tasks stop going there, so it
drains until the waiting task fits; tasks keep using every other worker. When the reservation
is for a GPU (the worker lacked GPU room), only GPU tasks are kept off it and its CPUs stay in use.

A reservation ends when its task is placed anywhere, when the coordinator has not asked about
the task for ``expire_s`` (cancelled, or placed without this scheduler), or when the worker
leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from fleet_hwmon.scoring.decide import Exclusion

# Exclusions that say the worker could run the task once it has room (its load, not its hardware).
_ROOM_REASONS = ("predicted ", "required GPU memory")


@dataclass
class _Waiting:
    task_type: str | None
    first_s: float
    last_s: float
    worker_id: str | None = None  # the reserved worker
    gpu_only: bool = False  # keep only GPU tasks off it


class Reservations:
    """Waiting tasks and the workers reserved for them. Times are the scheduler's clock (s)."""

    def __init__(self) -> None:
        # task type -> task id -> waiting, oldest first (inserted when first declined)
        self._by_type: dict[str | None, dict[str, _Waiting]] = {}
        self._type_of: dict[str, str | None] = {}
        self._by_worker: dict[str, str] = {}  # reserved worker -> task id
        self._next_expiry_s = float("-inf")

    def blocked(self, task_id: str, needs_gpu: bool, now_s: float) -> dict[str, str]:
        """Worker id -> reason, for the workers reserved for other tasks that ``task_id`` must
        not take now."""
        if not self._by_worker:
            return {}
        out = {}
        for worker_id, owner in self._by_worker.items():
            waiting = self._by_type[self._type_of[owner]][owner]
            if owner != task_id and (needs_gpu or not waiting.gpu_only):
                out[worker_id] = (f"reserved for {owner} ({waiting.task_type}), waiting "
                                  f"{now_s - waiting.first_s:.0f} s")
        return out

    def observe(self, task_id: str, task_type: str | None, chosen: str | None, exclusions: Iterable[Exclusion],
                now_s: float, *, after_s: float, expire_s: float,
                preference: Callable[[str], Any] | None = None) -> str | None:
        """Learn from a decision about ``task_id``: placed (``chosen``) or not. Returns the worker
        newly reserved for it, if any. ``preference`` orders the workers it could reserve (lowest
        first; default: their order in ``exclusions``)."""
        if now_s >= self._next_expiry_s:
            self._expire(now_s, expire_s)
            self._next_expiry_s = now_s + expire_s / 2
        if chosen is not None:
            self._release(task_id)
            return None
        previous = self._type_of.get(task_id, task_type)
        if previous != task_type:  # asked again under another type: start over
            self._release(task_id)
        tasks = self._by_type.setdefault(task_type, {})
        waiting = tasks.get(task_id)
        if waiting is None:
            waiting = tasks[task_id] = _Waiting(task_type, now_s, now_s)
            self._type_of[task_id] = task_type
        waiting.last_s = now_s
        if now_s - waiting.first_s < after_s or next(iter(tasks)) != task_id:
            return None  # not waiting long enough, or not the oldest of its type
        if any(w.worker_id is not None for w in tasks.values()):
            return None  # one reservation per task type
        room = [e for e in exclusions if (e.reason.startswith(_ROOM_REASONS) or "> critical" in e.reason)
                and e.worker_id not in self._by_worker]
        if not room:
            return None
        pick = min(room, key=lambda e: preference(e.worker_id)) if preference is not None else room[0]
        waiting.worker_id = pick.worker_id
        waiting.gpu_only = "gpu" in pick.reason.lower()
        self._by_worker[pick.worker_id] = task_id
        return pick.worker_id

    def worker_left(self, worker_id: str) -> None:
        """The worker is gone: a task it was reserved for may reserve another."""
        task_id = self._by_worker.pop(worker_id, None)
        if task_id is not None:
            self._by_type[self._type_of[task_id]][task_id].worker_id = None

    def reserved(self) -> dict[str, str]:
        """Reserved worker id -> the task id it is kept for."""
        return dict(self._by_worker)

    def _release(self, task_id: str) -> None:
        task_type = self._type_of.pop(task_id, None)
        tasks = self._by_type.get(task_type)
        waiting = tasks.pop(task_id, None) if tasks is not None else None
        if tasks is not None and not tasks:
            del self._by_type[task_type]
        if waiting is not None and waiting.worker_id is not None:
            self._by_worker.pop(waiting.worker_id, None)

    def _expire(self, now_s: float, expire_s: float) -> None:
        for task_id in [t for tasks in self._by_type.values() for t, w in tasks.items() if now_s - w.last_s > expire_s]:
            self._release(task_id)
