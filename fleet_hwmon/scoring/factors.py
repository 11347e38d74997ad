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
    # Exclusion with hysteresis, for the incompressible resources only (memory; GPU memory for GPU
    # tasks): above critical in the latest raw sample -> excluded at once; readmitted after it
    # stayed below the recovery mark for recovery_s. CPU or GPU utilization above critical is
    # only penalised (the load after placement is steeply penalised above 100 %).
    critical_percent: float = 95.0
    recovery_percent: float = 85.0
    recovery_s: float = 10.0
    # ... or after this many samples in a row below the recovery mark, whichever comes first
    # (0: recovery_s only).
    recovery_samples: float = 1.0
    # A worker whose last sample is older than stale_after_intervals update intervals is excluded,
    # unless the coordinator showed it alive within that time (a task started or ended there): its
    # load then counts as unknown. A worker that never sent a sample is unknown, never stale.
    stale_after_intervals: float = 3.0
    # Smoothing of the latest view used for penalties: ewma_alpha is the EWMA weight of a new
    # sample taken up to ewma_interval_s after the one before; one taken longer after weighs as
    # that many intervals would, 1 - (1 - ewma_alpha) ** (gap / ewma_interval_s): a monitor that
    # samples every minute averages its CPU over the minute already, and a smoothed figure that
    # lagged it by minutes kept a worker busy long after its load fell (0: per sample, any gap).
    # A task of ours that ends also leaves the smoothed CPU figure at once, not samples later.
    ewma_alpha: float = 0.5
    ewma_interval_s: float = 5.0
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
    # Tasks that ask for quiet hardware (requirements.isolation "quiet") go only where the
    # predicted CPU (and, for GPU tasks, GPU) after placement stays at or under this percent;
    # "exclusive" tasks only to a worker with no task of ours whose measured CPU (and GPU) is
    # at or under exclusive_background_percent.
    quiet_threshold_percent: float = 80.0
    exclusive_background_percent: float = 25.0
    # In those checks a task counts at its predicted cores (GPU share) plus this many times how
    # far one run of its type strays from the mean (its mean absolute deviation): one covers
    # about four tasks in five of a type that varies like a normal one, two about 19 in 20.
    quiet_spread_factor: float = 2.0
    # When no compatible worker's background (its load less our tasks there) came under
    # exclusive_background_percent for this long, a quiet or exclusive task found no worker is
    # decided as if those two limits were 100 % (an exclusive one still alone): a fleet of noisy
    # neighbours would hold it for ever. The decision says so (0: never).
    isolation_patience_s: float = 600.0
    # An in-flight task stays counted until a sample TAKEN more than this after its assignment
    # arrives (CPU is averaged over the sampling interval: a sample taken just after the start
    # shows little of the task). One interval of the default 5 s.
    inflight_hold_s: float = 5.0
    # Starvation guard: once a task has found no worker for this long, one worker that lacked
    # only room for it is reserved (others stop taking it, for GPU room: other GPU tasks) until
    # the task is placed; one per task type (a task predicted to end before the waiting one fits
    # there may still go: backfill). With it, a GPU task waiting for GPU room keeps the
    # GPUs only tasks like it can use from GPU tasks that have others, at once (its shield).
    # See fleet_hwmon.scoring.reservations.
    reserve_for_waiting_tasks: bool = True
    reserve_after_s: float = 30.0
    # Reservations for memory or CPU room held at once: the first waiting tasks the coordinator
    # asks about get them, the others wait their turn. 1 is Maui's default (RESERVATIONDEPTH,
    # "liberal" backfill): each such reservation keeps every task off a whole worker while it
    # drains, and with one per waiting type a fleet short of memory drained several at once.
    # Not counted: reservations for GPU room (they keep only GPU tasks off) and for a quiet or
    # exclusive task's isolation.
    reservation_depth: int = 1
    # A task held for lack of room is decided again when something that could make room happens
    # (a task ends, a worker joins, a sample shows more free memory or less load), or after
    # recheck_s; the coordinator's asks in between get the same answer without a new decision.
    recheck_s: float = 10.0
    # Room kept above a history-predicted memory or GPU memory figure (a mean of past peaks)
    # when checking that it fits in what the worker has free, in percent of the prediction.
    memory_headroom_percent: float = 25.0
    # A task whose attempt failed is retried with its own estimate raised to this multiple of the
    # failed attempt's peak (memory, GPU memory); its type's estimate is left alone. The margin
    # is this multiple: the fit check adds no headroom on top of it.
    retry_growth: float = 1.5

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"hardware scoring factor {f.name} must be a non-negative number, got {value!r}")
        if not self.recovery_percent <= self.critical_percent <= 100:
            raise ValueError("need recovery_percent <= critical_percent <= 100")
        if not 0 < self.ewma_alpha <= 1 or not 0 < self.history_ewma_alpha <= 1:
            raise ValueError("EWMA weights must be in (0, 1]")
        if self.reservation_depth < 1:  # (none at all: reserve_for_waiting_tasks off)
            raise ValueError("reservation_depth must be at least 1")

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
