"""Held tasks and what makes room for them (pure): a task no worker took is decided again only
after a change that could place it, not after every sample or every task start.

:class:`Held` is a held task's answer and what it lacked; :class:`Room` what one change made
room of (memory freed on a worker, less CPU load, GPU room, a slot, a reservation ended);
:func:`room_made` reads it off a worker's state before and after a sample (:func:`room_of`).
The scheduler keeps a log of recent changes and answers a held task again without a new
decision while none of them :meth:`Room.serves` it (and ``recheck_s`` has not passed).
"""

from __future__ import annotations

import dataclasses

from fleet_hwmon.scoring.decision import SchedulingDecision
from fleet_hwmon.scoring.exclusions import GPU_RESOURCES, ExclusionKind
from fleet_hwmon.scoring.requirements import TaskRequirements
from fleet_hwmon.scoring.views import WorkerView


@dataclasses.dataclass(slots=True)
class Held:
    """A task no worker took: the answer, its requirements, when, at which room version, and
    what could change it: memory freed to ``memory_bytes`` (the least predicted memory, before
    headroom, where it lacked memory; infinite where it lacked none) or to ``memory_busy_bytes``
    (with headroom) on a worker that runs tasks of ours; less CPU (``busy``: a worker too busy
    for its isolation); GPU room (``gpu_room``: a GPU task some worker held back for its GPU
    memory, GPU load or GPU health; a GPU task held for host memory alone is not helped by GPU
    room, and on a fleet of GPU workers it was decided again at every such change); a task's
    end on a worker at its task limit or kept by isolation (``slots``), or, for a task that
    lacked no memory, on a worker the decision did not see (``excluded`` lists those it saw:
    one it did not see had no free slot, and a slot there makes it a new candidate; a task
    that lacked memory is served by the memory the end frees there); a reservation ended on a
    worker that was kept from it (``reserved_at``) with room there for ``predicted_bytes`` (the
    least of ``memory_bytes`` and the fleet's prediction; ``predicted_busy_bytes`` with
    headroom). A change on a worker whose hardware the task lacks serves it not at all, nor
    room that a task placed there since has taken (the scheduler checks both). A worker above a
    critical mark is judged by the least need seen on the others and the fleet's prediction (a
    worker's own history of the type may predict less: the recheck after ``recheck_s`` covers
    that)."""

    decision: SchedulingDecision
    requirements: TaskRequirements
    decided_s: float
    room_version: int
    memory_bytes: float
    memory_busy_bytes: float
    busy: bool
    gpu_room: bool
    slots: bool
    reserved_at: frozenset[str]
    predicted_bytes: float
    predicted_busy_bytes: float
    excluded: frozenset[str] = frozenset()
    recheck_s: float = 0.0  # decided again after this long even without a change that could place it
    since_s: float = 0.0  # held since (its first answer of these)

    @classmethod
    def of(cls, decision: SchedulingDecision, requirements: TaskRequirements, now_s: float, room_version: int,
           headroom: float, predicted_bytes: float, recheck_s: float = 0.0, since_s: float | None = None) -> Held:
        kinds = {e.kind for e in decision.exclusions}
        memory = min((e.value for e in decision.exclusions if e.kind is ExclusionKind.MEMORY_FIT
                      and e.value is not None), default=float("inf"))
        if ExclusionKind.CRITICAL in kinds:
            memory = min(memory, predicted_bytes)
        busy = ExclusionKind.ISOLATION in kinds
        gpu_room = requirements.needs_gpu and any(e.resource in GPU_RESOURCES for e in decision.exclusions)
        reserved_at = frozenset(e.worker_id for e in decision.exclusions if e.kind is ExclusionKind.RESERVED)
        least = min(memory, predicted_bytes)  # where a reservation kept it off, nothing judged its need
        return cls(decision, requirements, now_s, room_version, memory, memory * headroom, busy,
                   gpu_room, busy or ExclusionKind.TASK_LIMIT in kinds, reserved_at, least, least * headroom,
                   frozenset(e.worker_id for e in decision.exclusions), recheck_s,
                   now_s if since_s is None else since_s)


@dataclasses.dataclass(frozen=True, slots=True)
class Room:
    """What a change made room of: ``memory_bytes`` free on one worker less its tasks in flight
    (``-inf``: no memory freed; for tasks other than the one the worker is reserved for, less
    what is kept for that one; a task needs its headroom too unless the worker has ``drained``),
    less CPU load, GPU room, a slot (a task ended), a reserved worker freed (``reserved``: with
    ``memory_bytes`` free there). It serves a held task that lacked that."""

    memory_bytes: float = float("-inf")
    cpu: bool = False
    gpu: bool = False
    slot: bool = False
    reserved: bool = False
    drained: bool = True  # nothing of ours runs there: no headroom needed
    kept_for: str | None = None  # the task the worker is reserved for, and the memory kept for it
    kept_bytes: float = 0.0
    worker_id: str | None = None  # where (None: anywhere); a worker whose hardware a task lacks makes it no room

    def serves(self, held: Held) -> bool:
        memory = self.memory_bytes
        if self.kept_for is not None and self.kept_for != held.decision.task_id:
            memory -= self.kept_bytes
        need = held.memory_bytes if self.drained else held.memory_busy_bytes
        return (memory >= need or (self.cpu and held.busy) or (self.gpu and held.gpu_room)
                or (self.slot and (held.slots or (held.memory_bytes == _ANY and self.worker_id not in held.excluded)))
                or (self.reserved and (self.worker_id is None or (self.worker_id in held.reserved_at and memory >= (
                    held.predicted_bytes if self.drained else held.predicted_busy_bytes)))))


ANY_ROOM = Room(float("inf"), True, True, True, True)
_ANY = float("inf")  # a held task that lacked no memory


def room_of(view: WorkerView, now_s: float, stale_after_s: float) -> tuple:
    """What could make room for a held task, as one comparable record (samples stale: ``None``
    before the first sample)."""
    free = None if view.memory_free_bytes is None else view.memory_free_bytes - view.inflight_memory_bytes
    stale = None if view.last_sample_s is None else view.samples_stale(now_s, stale_after_s)
    return stale, view.excluded is None, free, view.gpu_memory_room(), view.cpu_percent


def room_made(before: tuple, after: tuple, memory_total: float | None) -> Room | None:
    """What room a sample made (``None``: none): the first sample (anything), the first fresh
    one after its samples stopped, more free memory (1 % of the worker's) or a critical mark
    cleared (what is free now less the tasks in flight; a fresh sample or a GPU memory mark: GPU
    room too; a fresh sample: CPU too), more GPU memory, CPU 10 points lower (quiet tasks)."""
    (was_unknown, was_clear, free, gpu_room, cpu), (_, clear, free_now, gpu_room_now, cpu_now) = before, after
    if was_unknown is None:
        return ANY_ROOM
    cleared = (clear and not was_clear) or was_unknown
    memory = free_now is not None and (cleared or free is None or free_now - free > 0.01 * (memory_total or 0.0))
    gpu = cleared or (gpu_room_now is not None and (gpu_room is None or gpu_room_now > gpu_room))
    cpu_lower = was_unknown or (cpu_now is not None and cpu is not None and cpu - cpu_now >= 10.0)
    if cleared and free_now is None:
        return ANY_ROOM
    if not (memory or gpu or cpu_lower):
        return None
    return Room(free_now if memory else float("-inf"), cpu=cpu_lower, gpu=gpu)
