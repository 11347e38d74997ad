"""The weights and thresholds of hardware-aware scoring (``hardware_scoring_factors``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class ScoringFactors:
    """Every number the scorer uses. Percent values are 0-100 of the worker.

    Penalties are fractions taken off a candidate's original score: a resource above its
    threshold costs ``weight * (value - threshold) / (100 - threshold)``, so a weight is the
    penalty at 100 %. GPU penalties only apply to GPU tasks and are steeper. See docs/scheduling.md
    for how the defaults were chosen on the scheduling replay.
    """

    cpu_threshold_percent: float = 70.0
    cpu_penalty_weight: float = 0.6
    memory_threshold_percent: float = 70.0
    memory_penalty_weight: float = 0.6
    gpu_threshold_percent: float = 60.0
    gpu_penalty_weight: float = 0.9
    # Preference for the less loaded of otherwise equal workers (fraction at 100 % load).
    load_balance_weight: float = 0.25
    # Exclusion with hysteresis: above critical in the latest raw sample -> excluded at once;
    # readmitted after every resource stayed below the recovery mark for recovery_s.
    critical_percent: float = 95.0
    recovery_percent: float = 85.0
    recovery_s: float = 10.0
    # ... or after this many samples in a row below the recovery mark, whichever comes first
    # (0: recovery_s only).
    recovery_samples: float = 1.0
    # A worker whose last sample is older than stale_after_intervals update intervals is excluded.
    stale_after_intervals: float = 3.0
    # Smoothing of the latest view used for penalties (EWMA weight of the newest sample).
    ewma_alpha: float = 0.5
    # History: failure rate costs up to failure_penalty_weight; a worker that ran this task
    # type faster (slower) than the fleet gains (loses) up to duration_weight.
    failure_penalty_weight: float = 0.5
    duration_weight: float = 0.3
    history_ewma_alpha: float = 0.3
    # Load a task adds before the samples show it, when history has no better prediction:
    # one busy core, and this much memory.
    default_task_cores: float = 1.0
    default_task_memory_bytes: float = 256 * 1024**2
    # ... and, for a GPU task, this much of one GPU's utilization.
    default_task_gpu_percent: float = 50.0
    # Scores use the load AFTER placing the task (smoothed view + tasks in flight + the task's
    # own predicted demand), not capped at 100 %. Predicted CPU or memory above 100 % of the
    # worker's capacity costs a further overcommit_penalty_weight * (load - 100) / 100 (the
    # default: the whole score, down to the floor, at 110 %).
    overcommit_penalty_weight: float = 10.0
    # Exclude a worker whose predicted CPU (GPU) after placement exceeds 100 % + this margin of
    # its cores (of a GPU), when the task's CPU (GPU) demand comes from history (never on the
    # default guess).
    capacity_margin_percent: float = 0.0
    # The same for a GPU task's predicted GPU utilization on the least busy GPU. GPUs shared by
    # time-slicing slow every task on them in proportion and fail none (GPU memory, which does
    # fail, is checked without margin), so a little over-subscription is traded for throughput:
    # a third 35 % task may join two on a GPU.
    gpu_capacity_margin_percent: float = 10.0
    exclude_over_capacity: bool = True
    # An in-flight task stays counted until a sample TAKEN more than this after its assignment
    # arrives (CPU is averaged over the sampling interval: a sample taken just after the start
    # shows little of the task). One interval of the default 5 s.
    inflight_hold_s: float = 5.0
    # Starvation guard: once a task has found no worker for this long, one worker that lacked
    # only room for it is reserved (others stop taking it, for GPU room: other GPU tasks) until
    # the task is placed; one per task type. See fleet_hwmon.scoring.reservations.
    reserve_for_waiting_tasks: bool = True
    reserve_after_s: float = 30.0
    # Room kept above a history-predicted memory or GPU memory figure (a mean of past peaks)
    # when checking that it fits in what the worker has free, in percent of the prediction.
    memory_headroom_percent: float = 25.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"hardware scoring factor {f.name} must be a non-negative number, got {value!r}")
        if not self.recovery_percent <= self.critical_percent <= 100:
            raise ValueError("need recovery_percent <= critical_percent <= 100")
        if not 0 < self.ewma_alpha <= 1 or not 0 < self.history_ewma_alpha <= 1:
            raise ValueError("EWMA weights must be in (0, 1]")

    def replace(self, **changes: Any) -> ScoringFactors:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> ScoringFactors:
        """Defaults overridden by ``values``; ``ValueError`` names an unknown key."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown hardware scoring factor(s): {', '.join(unknown)}")
        return cls(**values)
