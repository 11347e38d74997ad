"""Performance history per worker and task type: how long, how heavy, how often failed (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, NamedTuple


@dataclass
class TypeStats:
    """EWMA statistics of one task type on one worker. ``None`` = never measured."""

    runs: int = 0
    failures: int = 0
    duration_s: float | None = None
    cores: float | None = None  # CPU seconds / wall seconds of the task's process tree
    memory_bytes: float | None = None  # peak RSS of the task's process tree
    gpu_memory_bytes: float | None = None
    gpu_percent: float | None = None  # mean GPU utilization of the task's processes, percent of one GPU
    # How far one run's figure strays from the mean (EWMA of the absolute deviation, same units):
    # tasks of a type vary, and a quiet promise must hold for the one placed, not the mean.
    cores_spread: float | None = None
    gpu_percent_spread: float | None = None

    @property
    def failure_rate(self) -> float:
        """Failures / runs, shrunk towards 0 for few runs (one failure in one run is not 100 %)."""
        return self.failures / (self.runs + 2)


class TaskDemand(NamedTuple):
    """A task's predicted demand and where it comes from (``source``: ``"worker"`` history of the
    type on that worker, ``"fleet"`` history of the type anywhere, ``None``: nothing known), and
    how far one task's cores and GPU share stray from those means (``*_spread``, same units)."""

    cores: float | None
    memory_bytes: float | None
    gpu_memory_bytes: float | None
    gpu_percent: float | None
    source: str | None
    cores_spread: float | None = None
    gpu_percent_spread: float | None = None


NO_DEMAND = TaskDemand(None, None, None, None, None)
_EMPTY: Mapping[str, TypeStats] = {}


def demand_of(mine: TypeStats | None, fleet: TypeStats | None) -> TaskDemand:
    """Each figure from ``mine`` when it has it, else from ``fleet``; ``source`` names where the
    CPU figure came from (else the memory figure); the spreads are always the fleet's."""
    if fleet is None:
        return NO_DEMAND
    if mine is None:
        if (fleet.cores is None and fleet.memory_bytes is None and fleet.gpu_memory_bytes is None
                and fleet.gpu_percent is None):
            return NO_DEMAND
        return TaskDemand(fleet.cores, fleet.memory_bytes, fleet.gpu_memory_bytes, fleet.gpu_percent, "fleet",
                          fleet.cores_spread, fleet.gpu_percent_spread)
    cores = mine.cores if mine.cores is not None else fleet.cores
    memory = mine.memory_bytes if mine.memory_bytes is not None else fleet.memory_bytes
    gpu_memory = mine.gpu_memory_bytes if mine.gpu_memory_bytes is not None else fleet.gpu_memory_bytes
    gpu_percent = mine.gpu_percent if mine.gpu_percent is not None else fleet.gpu_percent
    if mine.cores is not None or (fleet.cores is None and mine.memory_bytes is not None):
        source = "worker"
    elif cores is not None or memory is not None or gpu_memory is not None or gpu_percent is not None:
        source = "fleet"
    else:
        source = None
    # How much tasks of the type vary is the type's: the fleet's runs tell it best.
    return TaskDemand(cores, memory, gpu_memory, gpu_percent, source, fleet.cores_spread, fleet.gpu_percent_spread)


def _deviation(mean: float | None, value: float | None) -> float | None:
    """How far ``value`` is from the ``mean`` so far (``None`` when either is unknown)."""
    if mean is None or value is None or not math.isfinite(value):
        return None
    return abs(value - mean)


def _ewma(previous: float | None, value: float | None, alpha: float) -> float | None:
    if value is None or not math.isfinite(value):  # NaN would stay in the average for good
        return previous
    return value if previous is None else previous + alpha * (value - previous)


class PerformanceHistory:
    """Learns from finished tasks. ``record`` after each task; the scorer asks ``stats``,
    ``speed_ratio`` and ``predicted_demand``."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self._stats: dict[tuple[str, str], TypeStats] = {}
        self._fleet: dict[str, TypeStats] = {}
        self._by_type: dict[str, dict[str, TypeStats]] = {}  # task type -> worker id -> the same stats
        self._heaviest: tuple[float | None, float | None] | None = None  # heaviest() until the next record

    def record(self, worker_id: str, task_type: str, *, success: bool, duration_s: float | None = None,
               cpu_seconds: float | None = None, peak_rss_bytes: float | None = None,
               gpu_memory_bytes: float | None = None, gpu_percent: float | None = None) -> None:
        """Learn from one finished run. ``cpu_seconds`` / ``duration_s`` gives the cores it kept
        busy; ``peak_rss_bytes`` and ``gpu_memory_bytes`` are its peaks; ``gpu_percent`` its mean
        GPU utilization (percent of one GPU). A failed run's memory peaks are not learnt: a run
        killed (out of memory, say) peaked at a lower bound of its own need, which says nothing of
        its type's (the scheduler raises that task's own estimate for its retry)."""
        cores = cpu_seconds / duration_s if cpu_seconds is not None and duration_s else None
        mine = self._stats.get((worker_id, task_type))
        if mine is None:
            mine = self._stats[(worker_id, task_type)] = TypeStats()
            self._by_type.setdefault(task_type, {})[worker_id] = mine
        for stats in (mine, self._fleet.setdefault(task_type, TypeStats())):
            stats.runs += 1
            stats.failures += 0 if success else 1
            if success:  # a failed run's duration says little about the worker's speed
                stats.duration_s = _ewma(stats.duration_s, duration_s, self.alpha)
            stats.cores_spread = _ewma(stats.cores_spread, _deviation(stats.cores, cores), self.alpha)
            stats.cores = _ewma(stats.cores, cores, self.alpha)
            stats.gpu_percent_spread = _ewma(stats.gpu_percent_spread, _deviation(stats.gpu_percent, gpu_percent),
                                             self.alpha)
            stats.gpu_percent = _ewma(stats.gpu_percent, gpu_percent, self.alpha)
            if success:
                stats.memory_bytes = _ewma(stats.memory_bytes, peak_rss_bytes, self.alpha)
                stats.gpu_memory_bytes = _ewma(stats.gpu_memory_bytes, gpu_memory_bytes, self.alpha)
        self._heaviest = None  # (after the figures moved)

    def heaviest(self) -> tuple[float | None, float | None]:
        """(cores, GPU percent of one GPU) of the heaviest task types the fleet has measured:
        the largest mean of each over the types (``None``: none measured). Asked at every
        decision of a type not fully measured: worked out again only after a :meth:`record`."""
        found = self._heaviest
        if found is None:
            fleet = self._fleet.values()
            found = self._heaviest = (max((s.cores for s in fleet if s.cores is not None), default=None),
                                      max((s.gpu_percent for s in fleet if s.gpu_percent is not None), default=None))
        return found

    def stats(self, worker_id: str, task_type: str) -> TypeStats | None:
        return self._stats.get((worker_id, task_type))

    def fleet_stats(self, task_type: str) -> TypeStats | None:
        return self._fleet.get(task_type)

    def speed_ratio(self, worker_id: str, task_type: str) -> float | None:
        """Fleet mean duration / this worker's (> 1: faster than the fleet); ``None`` if unknown."""
        mine, fleet = self.stats(worker_id, task_type), self.fleet_stats(task_type)
        if mine is None or fleet is None or not mine.duration_s or not fleet.duration_s:
            return None
        return fleet.duration_s / mine.duration_s

    def predicted_demand(self, worker_id: str, task_type: str) -> tuple[float | None, float | None]:
        """(cores, memory bytes) the task is expected to use: this worker's history of the type,
        else the fleet's, else ``(None, None)``."""
        for stats in (self.stats(worker_id, task_type), self.fleet_stats(task_type)):
            if stats is not None and (stats.cores is not None or stats.memory_bytes is not None):
                return stats.cores, stats.memory_bytes
        return None, None

    def predicted_duration_s(self, worker_id: str, task_type: str | None) -> float | None:
        """Seconds a task of ``task_type`` is expected to run on ``worker_id``: the EWMA of its
        successful runs' durations there, else over the fleet; ``None`` when none has ended."""
        if task_type is None:
            return None
        for stats in (self.stats(worker_id, task_type), self.fleet_stats(task_type)):
            if stats is not None and stats.duration_s is not None:
                return stats.duration_s
        return None

    def workers_of_type(self, task_type: str) -> Mapping[str, TypeStats]:
        """Worker id -> statistics of ``task_type`` there (one lookup per type for a whole fleet)."""
        return self._by_type.get(task_type, _EMPTY)

    def task_demand(self, worker_id: str, task_type: str) -> TaskDemand:
        """What a task of ``task_type`` is expected to use on ``worker_id``: each figure from this
        worker's history of the type, else the fleet's, else ``None``."""
        return demand_of(self._by_type.get(task_type, _EMPTY).get(worker_id), self._fleet.get(task_type))

    def snapshot(self) -> list[dict]:
        """Rows for reports: one per (worker, task type)."""
        return [{"worker_id": w, "task_type": t, "runs": s.runs, "failures": s.failures,
                 "duration_s": s.duration_s, "cores": s.cores, "memory_bytes": s.memory_bytes,
                 "gpu_memory_bytes": s.gpu_memory_bytes, "gpu_percent": s.gpu_percent}
                for (w, t), s in sorted(self._stats.items())]
