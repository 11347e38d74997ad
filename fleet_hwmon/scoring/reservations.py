"""Starvation guard: a task that no worker could take for a while reserves one worker (pure).

Without it, a task that needs a lot of one worker (a whole large GPU, say) can wait forever on a
busy fleet: each time part of a fitting worker frees up, smaller tasks queued behind it fit
there first and take it. This is the reservation of backfilling schedulers: once a waiting
task has waited ``after_s``, one of the workers that could run it (one excluded for its load,
not for lacking the hardware, and big enough once drained) is kept for it; one per task type,
so under a FIFO coordinator, which asks about the oldest task first, the oldest of the type;
and of those for memory or CPU room, ``depth`` at once (the scheduler's
``reservation_depth``, 1 by default: the oldest such waiting task, as EASY backfilling
reserves for the head of the queue alone).
Other tasks stop going there, so it drains until the waiting task fits; tasks keep using every
other worker. When the reservation is for a GPU (the worker lacked GPU room), only GPU tasks
are kept off it and its CPUs stay in use. A reserved worker backfills: it takes what fits beside
the waiting task's need, and a task predicted to end before that need fits there
(:func:`fits_at_s`, from the mean durations of the tasks' types), which delays no one.

A reservation ends when its task is placed anywhere, when the coordinator has not asked about
the task for ``expire_s`` (cancelled, or placed without this scheduler), or when the worker
leaves; when a decision shows the worker excluded for anything but room (stale, say), or it
could no longer hold the task once drained, another is reserved (a stale one is kept while
there is no other: a late heartbeat must not hand a drained worker to the next task in the
queue). When the task of a reservation for a GPU is placed, its wait passes to the next task
of its type first seen within ``after_s`` (:meth:`Reservations._since`).

A GPU task waiting for GPU room also *shields* the workers it could use (:class:`Shield`) from
GPU tasks that have others: a task whose compatible workers strictly include them goes there
only if it fits beside the waiting task's need (:meth:`Reservations.shielded`), as Slurm's node
weights and Kubernetes' GPU taints keep the big machines for the work only they can run, but
only while such work waits. Without it a fleet whose largest GPUs are the only home of one task
type fills them with tasks that fit anywhere, and that type's queue sets the makespan. A task
that has waited longer than the shielding one is not kept off (no starvation), and a shield ends
with its task's wait, or when the fleet changes (:meth:`Reservations.drop_shields`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Any, Callable, Iterable, NamedTuple

from fleet_hwmon.scoring.exclusions import Exclusion, ExclusionKind


_NONE: frozenset[str] = frozenset()


class Shield(NamedTuple):
    """What a GPU task waiting for GPU room keeps: the workers whose hardware fits it, and its
    predicted GPU memory need there (bytes, with headroom)."""

    workers: frozenset[str]
    gpu_memory_bytes: float


@dataclass
class _Waiting:
    task_type: str | None
    first_s: float
    last_s: float
    worker_id: str | None = None  # the reserved worker
    gpu_only: bool = False  # keep only GPU tasks off it
    for_room: bool = False  # for memory or CPU room (not GPU room, not isolation): counts towards depth
    shield: Shield | None = None


class Reservations:
    """Waiting tasks and the workers reserved for them. Times are the scheduler's clock (s)."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Waiting] = {}  # task id -> since when it waits
        self._holder: dict[str | None, str] = {}  # task type -> the task holding its reservation
        self._by_worker: dict[str, str] = {}  # reserved worker -> task id
        self._next_expiry_s = float("-inf")
        # task type -> (when its reservation's task was placed, since when that task waited)
        self._passed: dict[str | None, tuple[float, float]] = {}
        # the workers of a shield -> task id -> its wait, for the waiting tasks that keep one (a
        # decision reads each set of workers once, however many tasks wait for it)
        self._shields: dict[frozenset[str], dict[str, _Waiting]] = {}
        self._kept_off: set[frozenset[str]] = set()  # shields that kept some task off
        self._freed: set[str] = set()  # workers of shields that kept a task off and ended since last asked

    def blocked(self, task_id: str, needs_gpu: bool, now_s: float) -> dict[str, Exclusion]:
        """Worker id -> its exclusion, for the workers reserved for other tasks that ``task_id``
        must not take now."""
        if not self._by_worker:
            return {}
        out = {}
        for worker_id, owner in self._by_worker.items():
            waiting = self._waiting[owner]
            if owner != task_id and (needs_gpu or not waiting.gpu_only):
                out[worker_id] = Exclusion.reserved(worker_id, owner, waiting.task_type, now_s - waiting.first_s)
        return out

    def observe(self, task_id: str, task_type: str | None, chosen: str | None, exclusions: Iterable[Exclusion],
                now_s: float, *, after_s: float, expire_s: float,
                preference: Callable[[str], Any] | None = None,
                fits: Callable[[str], bool] | None = None, shield: Shield | None = None,
                depth: int | None = None) -> str | None:
        """Learn from a decision about ``task_id``: placed (``chosen``) or not; when not, its
        ``shield`` (``None``: it keeps none) replaces the one it had. Returns the worker
        newly reserved for it, if any: one excluded for lack of room, that ``fits`` (the task
        would fit there once it drains; default: any), the lowest by ``preference`` (default:
        the first), unless ``depth`` reservations for memory or CPU room are held already and
        this one would be one too (``None``: no limit; one for GPU room, which keeps only GPU
        tasks off, or for a quiet or exclusive task's isolation is not counted). A reservation
        follows what each decision says of its worker: for what the task lacks there now (GPU
        room: only GPU tasks kept off), and given up when the worker is excluded for anything
        but room, or no longer ``fits`` (its type's later runs need more than it could give), so
        that another can be reserved; a worker excluded as stale (a late heartbeat, say) stays
        reserved while no other worker lacks only room: its samples may come back, and
        meanwhile it is excluded for every task anyway."""
        if now_s >= self._next_expiry_s:
            self._expire(now_s, expire_s)
            self._next_expiry_s = now_s + expire_s / 2
        if chosen is not None:
            if self.holds(task_id) and self._waiting[task_id].gpu_only:
                self._passed[task_type] = (now_s, self._waiting[task_id].first_s)
            self._release(task_id)
            return None
        waiting = self._waiting.get(task_id)
        if waiting is None or waiting.task_type != task_type:  # new, or asked again as another type
            self._release(task_id)
            waiting = self._waiting[task_id] = _Waiting(task_type, self._since(task_type, now_s, after_s), now_s)
        waiting.last_s = now_s
        if shield != waiting.shield:
            self._unshield(task_id, waiting)
            if shield is not None:
                waiting.shield = shield
                self._shields.setdefault(shield.workers, {})[task_id] = waiting
        exclusions = list(exclusions)
        if waiting.worker_id is not None:
            seen = next((e for e in exclusions if e.worker_id == waiting.worker_id), None)
            if seen is None:  # busy elsewhere in the coordinator's eyes (not available): keep it
                return None
            if seen.is_room and (fits is None or fits(seen.worker_id)):
                waiting.gpu_only, waiting.for_room = seen.is_gpu_room, _for_room(seen)
                return None
            room = self._room(exclusions, fits)
            if seen.kind is ExclusionKind.STALE and not room:
                return None  # kept: no other worker to move to, and a stale worker is excluded for all
            self._unreserve(task_id)
        if now_s - waiting.first_s < after_s or self._holder.get(task_type, task_id) != task_id:
            return None  # not waiting long enough, or its type holds a reservation already
        room = self._room(exclusions, fits)
        if not room:
            return None
        pick = min(room, key=lambda e: preference(e.worker_id)) if preference is not None else room[0]
        if depth is not None and _for_room(pick) and self._for_room() >= depth:
            return None  # its turn comes when one of those ends
        waiting.worker_id = pick.worker_id
        waiting.gpu_only, waiting.for_room = pick.is_gpu_room, _for_room(pick)
        self._by_worker[pick.worker_id] = task_id
        self._holder[task_type] = task_id
        return pick.worker_id

    def _for_room(self) -> int:
        """Reservations held for memory or CPU room."""
        return sum(1 for task_id in self._by_worker.values() if self._waiting[task_id].for_room)

    def asked(self, task_id: str, now_s: float) -> None:
        """The coordinator asked about ``task_id`` again and got its held answer: it still waits."""
        waiting = self._waiting.get(task_id)
        if waiting is not None:
            waiting.last_s = now_s

    def _since(self, task_type: str | None, now_s: float, after_s: float) -> float:
        """Since when a task of ``task_type`` first seen waiting now counts as waiting: since
        its type's reservation for a GPU began when that reservation's task was placed less
        than ``after_s`` ago. A FIFO coordinator asks about the oldest waiting task of a type
        only, so the next one waited as long, unseen; without this it would start its wait
        afresh, and for ``after_s`` any GPU task could join the one just placed on the GPU
        drained for its type. Only for a GPU: such a reservation keeps GPU tasks alone off the
        worker, while one for memory passed on from task to task would keep every task off it
        for as long as its type has a queue."""
        passed = self._passed.pop(task_type, None)
        if passed is not None and now_s - passed[0] < after_s:
            return passed[1]
        return now_s

    def shielded(self, task_id: str, compatible: frozenset[str], since_s: float,
                 now_s: float) -> dict[str, tuple[float, Exclusion]]:
        """Worker id -> (the GPU memory kept there, bytes; the exclusion of a task that does not fit
        beside it) for a GPU task ``task_id`` waiting since ``since_s`` whose hardware fits the
        ``compatible`` workers: those shielded by tasks waiting since ``since_s`` or earlier (at
        the same time: the coordinator asked about the shielding one first) whose compatible
        workers are a strict subset of these, keeping the most any of them needs."""
        out: dict[str, tuple[float, Exclusion]] = {}
        for workers, owners in self._shields.items():
            if not workers < compatible:
                continue
            keeping = [(waiting.first_s, owner) for owner, waiting in owners.items()
                       if owner != task_id and waiting.first_s <= since_s]
            if not keeping:
                continue
            self._kept_off.add(workers)  # its end makes room for the task kept off
            need = max(owners[owner].shield.gpu_memory_bytes for _, owner in keeping)
            first_s, owner = min(keeping)  # the exclusion names the task waiting longest
            task_type = owners[owner].task_type
            for worker_id in workers:
                found = out.get(worker_id)
                if found is None or found[0] < need:
                    out[worker_id] = (need, Exclusion.shielded(worker_id, owner, task_type, now_s - first_s))
        return out

    def shield_of(self, task_id: str) -> frozenset[str]:
        """The workers ``task_id`` shields (none when it keeps no shield)."""
        waiting = self._waiting.get(task_id)
        return frozenset() if waiting is None or waiting.shield is None else waiting.shield.workers

    def take_freed(self) -> AbstractSet[str]:
        """The workers whose shield ended (no task waits for them any more) since the last call,
        of the shields that kept some task off: room for the tasks they kept off. Asked after
        every decision, so nothing is allocated when none ended."""
        if not self._freed:
            return _NONE
        freed, self._freed = self._freed, set()
        return freed

    def drop_shields(self) -> None:
        """Forget every shield: the fleet changed, so the workers a task could use may have
        too (a shield taken before a worker joined would keep tasks of the same requirements
        off); each waiting task shields again at its next decision."""
        for owners in self._shields.values():
            for waiting in owners.values():
                waiting.shield = None
        self._shields.clear()
        self._kept_off.clear()

    def _unshield(self, task_id: str, waiting: _Waiting) -> None:
        if waiting.shield is not None:
            workers = waiting.shield.workers
            owners = self._shields[workers]
            del owners[task_id]
            if not owners:
                del self._shields[workers]
                if workers in self._kept_off:
                    self._kept_off.discard(workers)
                    self._freed |= workers
            waiting.shield = None

    def _room(self, exclusions: list[Exclusion], fits: Callable[[str], bool] | None) -> list[Exclusion]:
        """The exclusions of workers that lack only room for the task, are not reserved, and
        would hold it once drained."""
        return [e for e in exclusions if e.is_room and e.worker_id not in self._by_worker
                and (fits is None or fits(e.worker_id))]

    def worker_left(self, worker_id: str) -> None:
        """The worker is gone: a task it was reserved for may reserve another."""
        task_id = self._by_worker.get(worker_id)
        if task_id is not None:
            self._unreserve(task_id)

    def holder(self, worker_id: str) -> str | None:
        """The task ``worker_id`` is reserved for, if any."""
        return self._by_worker.get(worker_id)

    def worker_of(self, task_id: str) -> str | None:
        """The worker reserved for ``task_id``, if any."""
        waiting = self._waiting.get(task_id)
        return None if waiting is None else waiting.worker_id

    def holds(self, task_id: str) -> bool:
        """Whether a worker is reserved for ``task_id``."""
        return task_id in self._by_worker.values()

    def reserved(self) -> dict[str, str]:
        """Reserved worker id -> the task id it is kept for."""
        return dict(self._by_worker)

    def _unreserve(self, task_id: str) -> None:
        waiting = self._waiting[task_id]
        if waiting.worker_id is not None:
            self._by_worker.pop(waiting.worker_id, None)
            self._holder.pop(waiting.task_type, None)
            waiting.worker_id = None

    def _release(self, task_id: str) -> None:
        if task_id in self._waiting:
            self._unreserve(task_id)
            self._unshield(task_id, self._waiting.pop(task_id))

    def _expire(self, now_s: float, expire_s: float) -> None:
        for task_id in [t for t, w in self._waiting.items() if now_s - w.last_s > expire_s]:
            self._release(task_id)


def fits_at_s(now_s: float, free_memory_bytes: float | None, gpu_room_bytes: float | None,
              ours: Iterable[tuple[float, float, float]], need_memory_bytes: float,
              need_gpu_memory_bytes: float) -> float:
    """When a reserved task's need (bytes, with headroom) is predicted to fit on its worker,
    scheduler clock (s): ``now_s`` while it fits, else the predicted end of the task of ours
    whose end makes room, the tasks of ours there (``ours``: each one's predicted end, ``inf``
    unknown, and the memory and GPU memory it holds, bytes) ending in that order; a task past
    its predicted end may end any moment (now). ``now_s`` too when that moment is not known:
    the worker's free memory (or, for a need of GPU memory, the GPU room of its one GPU) is
    unknown, or it would not fit with every task of ours ended (the background holds it).
    A task predicted to end by then may go there: it delays no one (EASY backfilling)."""
    if free_memory_bytes is None or (need_gpu_memory_bytes > 0 and gpu_room_bytes is None):
        return now_s
    memory, gpu = free_memory_bytes, gpu_room_bytes or 0.0
    if memory >= need_memory_bytes and gpu >= need_gpu_memory_bytes:
        return now_s
    for end_s, held, gpu_held in sorted(ours):
        if end_s == float("inf"):
            break
        memory, gpu = memory + held, gpu + gpu_held
        if memory >= need_memory_bytes and gpu >= need_gpu_memory_bytes:
            return max(now_s, end_s)
    return now_s


def _for_room(exclusion: Exclusion) -> bool:
    """Whether a reservation where the task met ``exclusion`` is for memory or CPU room."""
    return not exclusion.is_gpu_room and exclusion.kind is not ExclusionKind.ISOLATION
