"""Why a worker cannot take a task: a kind and the figures behind it (pure, typed).

Statistics count exclusions by :class:`ExclusionKind`, reservations read the kind and the
resource, reports show :attr:`Exclusion.reason` (a message made from the figures when the
exclusion is made) and group by kind. Nothing reads the message back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

GIB = 1024**3


class ExclusionKind(str, enum.Enum):
    """What kept a worker from a task. The values are the names statistics and exports use."""

    HARDWARE = "hardware"  # lacks what the task requires (or the original scheduler rejects it)
    STALE = "stale"  # its samples stopped
    CRITICAL = "critical"  # memory or GPU memory above the critical mark (with hysteresis)
    MEMORY_FIT = "memory_fit"  # the task's predicted memory does not fit what is free
    GPU_MEMORY_FIT = "gpu_memory_fit"  # no GPU has room for the task's GPU memory
    ISOLATION = "isolation"  # a quiet / exclusive task would share busy hardware
    RESERVED = "reserved"  # kept for a task that has waited long
    TASK_LIMIT = "task_limit"  # at the coordinator's limit of tasks per worker
    GPU_UNHEALTHY = "gpu_unhealthy"  # every GPU that could run the task is lost
    FAILED_HERE = "failed_here"  # the task's earlier attempt ran out of memory / GPU memory there

    def __str__(self) -> str:
        return self.value


# Kinds that say the worker could run the task once it has room (its load, not its hardware).
ROOM_KINDS = frozenset({ExclusionKind.CRITICAL, ExclusionKind.MEMORY_FIT, ExclusionKind.GPU_MEMORY_FIT,
                        ExclusionKind.ISOLATION})
GPU_RESOURCES = frozenset({"gpu", "gpu_memory"})


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A worker kept from a task. ``resource`` names what was short (``cpu``, ``memory``,
    ``gpu``, ``gpu_memory``; ``None`` when no resource is involved); ``value`` and ``limit`` are
    the figure that failed and what it was held against, in the resource's unit (percent 0-100,
    or bytes for ``*_fit`` kinds; seconds for ``stale``). ``reason`` is for people.

    Make one with the constructors below, so the message always matches the figures."""

    worker_id: str
    kind: ExclusionKind
    reason: str
    resource: str | None = None
    value: float | None = None
    limit: float | None = None

    @property
    def is_room(self) -> bool:
        """The worker could run the task once it has room (load, not hardware)."""
        return self.kind in ROOM_KINDS

    @property
    def is_gpu_room(self) -> bool:
        """The room lacking is a GPU's: only other GPU tasks need keeping off."""
        return self.resource in GPU_RESOURCES

    @classmethod
    def hardware(cls, worker_id: str, mismatch: str) -> Exclusion:
        """``mismatch``: what the requirement matcher says the worker lacks."""
        return cls(worker_id, ExclusionKind.HARDWARE, mismatch)

    @classmethod
    def rejected(cls, worker_id: str) -> Exclusion:
        """The original scheduler gave the worker no score."""
        return cls(worker_id, ExclusionKind.HARDWARE, "rejected by the original scheduler")

    @classmethod
    def task_limit(cls, worker_id: str, limit: float) -> Exclusion:
        return cls(worker_id, ExclusionKind.TASK_LIMIT, f"at task limit ({limit:g})", None, None, float(limit))

    @classmethod
    def stale(cls, worker_id: str, age_s: float, limit_s: float, never_sampled: bool) -> Exclusion:
        if never_sampled:
            reason = f"no sample since it registered {age_s:.0f} s ago"
        else:
            reason = f"stale: last sample {age_s:.0f} s ago (limit {limit_s:g} s)"
        return cls(worker_id, ExclusionKind.STALE, reason, None, age_s, limit_s)

    @classmethod
    def critical(cls, worker_id: str, resource: str, percent: float, limit_percent: float) -> Exclusion:
        return cls(worker_id, ExclusionKind.CRITICAL,
                   f"{resource} at {percent:.0f}% > critical {limit_percent:g}%", resource, percent, limit_percent)

    @classmethod
    def memory_fit(cls, worker_id: str, need_bytes: float, free_bytes: float, headroom_percent: float) -> Exclusion:
        return cls(worker_id, ExclusionKind.MEMORY_FIT,
                   f"predicted memory {need_bytes / GIB:.1f} GiB{_headroom(headroom_percent)} > "
                   f"free {max(0.0, free_bytes) / GIB:.1f} GiB", "memory", need_bytes, free_bytes)

    @classmethod
    def gpu_memory_fit(cls, worker_id: str, need_bytes: float, room_bytes: float, *, required: bool,
                       headroom_percent: float = 0.0) -> Exclusion:
        """``required``: the need is the task's stated minimum, else its prediction (with headroom)."""
        need = ("required GPU memory" if required
                else f"predicted GPU memory {need_bytes / GIB:.1f} GiB{_headroom(headroom_percent)}")
        if required:
            need += f" {need_bytes / GIB:.1f} GiB"
        return cls(worker_id, ExclusionKind.GPU_MEMORY_FIT,
                   f"{need} > free {max(0.0, room_bytes) / GIB:.1f} GiB on any GPU", "gpu_memory", need_bytes,
                   room_bytes)

    @classmethod
    def not_quiet(cls, worker_id: str, resource: str, percent: float, limit_percent: float) -> Exclusion:
        """A quiet task: the predicted ``resource`` utilization after placement over the limit."""
        return cls(worker_id, ExclusionKind.ISOLATION,
                   f"quiet: predicted {resource} {percent:.0f}% > {limit_percent:g}%", resource, percent, limit_percent)

    @classmethod
    def not_exclusive(cls, worker_id: str, tasks: int, resource: str | None = None, percent: float | None = None,
                      limit_percent: float | None = None) -> Exclusion:
        """An exclusive task: ``tasks`` of ours on the worker, or its background ``resource`` load."""
        if resource is None:
            return cls(worker_id, ExclusionKind.ISOLATION, f"exclusive: {tasks} task(s) of ours there", None,
                       float(tasks), 0.0)
        return cls(worker_id, ExclusionKind.ISOLATION,
                   f"exclusive: background {resource} {percent:.0f}% > {limit_percent:g}%", resource, percent,
                   limit_percent)

    @classmethod
    def held_exclusive(cls, worker_id: str, owner_task_id: str) -> Exclusion:
        """The worker runs an exclusive task: nothing else of ours goes there."""
        return cls(worker_id, ExclusionKind.ISOLATION, f"running exclusive task {owner_task_id}")

    @classmethod
    def reserved(cls, worker_id: str, owner_task_id: str, owner_type: str | None, waited_s: float) -> Exclusion:
        """Kept for a waiting task, and this one does not fit beside it."""
        return cls(worker_id, ExclusionKind.RESERVED,
                   f"reserved for {owner_task_id} ({owner_type}), waiting {waited_s:.0f} s", None, waited_s)

    @classmethod
    def shielded(cls, worker_id: str, owner_task_id: str, owner_type: str | None, waited_s: float) -> Exclusion:
        """One of the only GPUs a waiting task can use, and this task, which has others, does
        not fit beside its need."""
        return cls(worker_id, ExclusionKind.RESERVED,
                   f"kept for {owner_task_id} ({owner_type}), which only such GPUs can run, waiting {waited_s:.0f} s",
                   None, waited_s)

    @classmethod
    def failed_here(cls, worker_id: str, resource: str) -> Exclusion:
        """An earlier attempt of the task ran out of ``resource`` (``memory``, ``gpu_memory``)
        on the worker: its retry goes to another compatible worker."""
        what = "GPU memory" if resource == "gpu_memory" else resource
        return cls(worker_id, ExclusionKind.FAILED_HERE, f"an earlier attempt ran out of {what} here", resource)

    @classmethod
    def gpu_unhealthy(cls, worker_id: str, lost: int, total: int) -> Exclusion:
        return cls(worker_id, ExclusionKind.GPU_UNHEALTHY,
                   f"no healthy GPU ({lost} of {total} lost)", "gpu", float(lost), float(total))


def _headroom(percent: float) -> str:
    return f" (+{percent:g}% headroom)" if percent else ""
