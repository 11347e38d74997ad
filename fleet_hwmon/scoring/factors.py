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
    penalty at 100 %. GPU penalties only apply to GPU tasks and are steeper. See the README
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
