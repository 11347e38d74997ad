"""Performance history per worker and task type: how long, how heavy, how often failed (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TypeStats:
    """EWMA statistics of one task type on one worker. ``None`` = never measured."""

    runs: int = 0
    failures: int = 0
    duration_s: float | None = None
    cores: float | None = None  # CPU seconds / wall seconds of the task's process tree
    memory_bytes: float | None = None  # peak RSS of the task's process tree
    gpu_memory_bytes: float | None = None

    @property
    def failure_rate(self) -> float:
        """Failures / runs, shrunk towards 0 for few runs (one failure in one run is not 100 %)."""
        return self.failures / (self.runs + 2)


def _ewma(previous: float | None, value: float | None, alpha: float) -> float | None:
    if value is None:
        return previous
    return value if previous is None else previous + alpha * (value - previous)


class PerformanceHistory:
    """Learns from finished tasks. ``record`` after each task; the scorer asks ``stats``,
    ``speed_ratio`` and ``predicted_demand``."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self._stats: dict[tuple[str, str], TypeStats] = {}
        self._fleet: dict[str, TypeStats] = {}

    def record(self, worker_id: str, task_type: str, *, success: bool, duration_s: float | None = None,
               cpu_seconds: float | None = None, peak_rss_bytes: float | None = None,
               gpu_memory_bytes: float | None = None) -> None:
        cores = cpu_seconds / duration_s if cpu_seconds is not None and duration_s else None
        for stats in (self._stats.setdefault((worker_id, task_type), TypeStats()),
                      self._fleet.setdefault(task_type, TypeStats())):
            stats.runs += 1
            stats.failures += 0 if success else 1
            if success:  # a failed run's duration says little about the worker's speed
                stats.duration_s = _ewma(stats.duration_s, duration_s, self.alpha)
            stats.cores = _ewma(stats.cores, cores, self.alpha)
            stats.memory_bytes = _ewma(stats.memory_bytes, peak_rss_bytes, self.alpha)
            stats.gpu_memory_bytes = _ewma(stats.gpu_memory_bytes, gpu_memory_bytes, self.alpha)

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

    def snapshot(self) -> list[dict]:
        """Rows for reports: one per (worker, task type)."""
        return [{"worker_id": w, "task_type": t, "runs": s.runs, "failures": s.failures,
                 "duration_s": s.duration_s, "cores": s.cores, "memory_bytes": s.memory_bytes}
                for (w, t), s in sorted(self._stats.items())]
