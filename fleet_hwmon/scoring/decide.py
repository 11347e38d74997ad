"""One scheduling decision, all on the original scheduler's scale, with its explanation (pure).

For each candidate worker: exclusions first (hardware mismatch, stale, critical load with
hysteresis, predicted memory that does not fit), then the adjusted score

    adjusted = original * max(FLOOR, 1 - penalties)      (original > 0)
    adjusted = original - penalties                       (original <= 0)

where penalties = CPU / memory / GPU-for-GPU-tasks above their thresholds (smoothed view plus
the tasks assigned but not yet visible), a small load-balance term (unknown load counts as
the median of the known candidates, never as idle), the failure rate of the task type on that
worker, minus a bonus for having run the type faster than the fleet. The best adjusted score
wins; ties break by a hash of (seed, task, worker), so a decision is reproducible.
"""

from __future__ import annotations

import hashlib
import statistics
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.history import PerformanceHistory
from fleet_hwmon.scoring.requirements import TaskRequirements
from fleet_hwmon.scoring.views import WorkerView

FLOOR = 0.05  # a penalised worker keeps a sliver of its score, so it still ranks by the original


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """A worker that could take the task, with every term of its score. Percent 0-100; the
    load figures include in-flight tasks; ``None`` = unknown."""

    worker_id: str
    original_score: float
    adjusted_score: float
    cpu_percent: float | None
    memory_percent: float | None
    gpu_percent: float | None
    cpu_penalty: float
    memory_penalty: float
    gpu_penalty: float
    balance_penalty: float
    history_penalty: float
    inflight_tasks: int


@dataclass(frozen=True, slots=True)
class Exclusion:
    worker_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class SchedulingDecision:
    """A decision and why. ``candidates`` are the best ``max_recorded`` by adjusted score (all
    when fewer), ``exclusions`` every worker that could not take the task and the reason.
    ``original_worker_id`` is what the original scheduler alone would have chosen among the
    available workers."""

    decision_id: str
    timestamp: datetime
    task_id: str
    task_type: str | None
    chosen_worker_id: str | None
    chosen_score: float | None
    original_worker_id: str | None
    original_score: float | None
    candidate_count: int
    candidates: tuple[CandidateScore, ...]
    exclusions: tuple[Exclusion, ...]
    explanation: str


def _over(value: float | None, threshold: float, weight: float) -> float:
    if value is None or value <= threshold:
        return 0.0
    return weight * (value - threshold) / max(1e-9, 100.0 - threshold)


def tie_break(seed: int, task_id: str, worker_id: str) -> int:
    digest = hashlib.blake2b(f"{seed}\x00{task_id}\x00{worker_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def decide(task: Mapping[str, Any], requirements: TaskRequirements, base_scores: Mapping[str, float],
           views: Mapping[str, WorkerView], mismatches: Mapping[str, str | None], *,
           factors: ScoringFactors, history: PerformanceHistory | None, now_s: float,
           stale_after_s: float, timestamp: datetime, seed: int = 0, max_recorded: int = 20,
           extra_exclusions: Sequence[Exclusion] = ()) -> SchedulingDecision:
    """Choose a worker among ``base_scores`` (worker id -> original score of each available worker).

    ``mismatches`` maps worker id -> hardware mismatch reason (``None``: the hardware fits);
    ``views`` holds the scheduler's view of each worker (a worker without a view has unknown
    load and is not excluded for it).
    """
    task_id = str(task.get("task_id", ""))
    task_type = task.get("type")
    needs_gpu = requirements.needs_gpu
    exclusions = list(extra_exclusions)
    eligible: list[tuple[str, float, WorkerView | None, tuple]] = []
    for worker_id, base in base_scores.items():
        reason = mismatches.get(worker_id)
        view = views.get(worker_id)
        if reason is None and view is not None:
            reason = view.stale_reason(now_s, stale_after_s) or view.excluded_reason
            if reason is None and history is not None and task_type is not None:
                reason = _memory_misfit(view, history, worker_id, task_type)
        if reason is not None:
            exclusions.append(Exclusion(worker_id, reason))
            continue
        load = view.effective_load() if view is not None else (None, None, None)
        eligible.append((worker_id, base, view, load))

    known_loads = [max(v for v in (cpu, mem) if v is not None) for _, _, _, (cpu, mem, _) in eligible
                   if cpu is not None or mem is not None]
    neutral_load = statistics.median(known_loads) if known_loads else 0.0

    scored: list[tuple[float, int, CandidateScore]] = []
    for worker_id, base, view, (cpu, memory, gpu) in eligible:
        cpu_pen = _over(cpu, factors.cpu_threshold_percent, factors.cpu_penalty_weight)
        mem_pen = _over(memory, factors.memory_threshold_percent, factors.memory_penalty_weight)
        gpu_pen = _over(gpu, factors.gpu_threshold_percent, factors.gpu_penalty_weight) if needs_gpu else 0.0
        known = [v for v in (cpu, memory, gpu if needs_gpu else None) if v is not None]
        balance = factors.load_balance_weight * (max(known) if known else neutral_load) / 100.0
        hist_pen = 0.0
        if history is not None and task_type is not None:
            stats = history.stats(worker_id, task_type)
            if stats is not None:
                hist_pen += factors.failure_penalty_weight * stats.failure_rate
            ratio = history.speed_ratio(worker_id, task_type)
            if ratio is not None:
                hist_pen -= factors.duration_weight * max(-1.0, min(1.0, ratio - 1.0))
        total = cpu_pen + mem_pen + gpu_pen + balance + hist_pen
        adjusted = base * max(FLOOR, 1.0 - total) if base > 0 else base - total
        candidate = CandidateScore(worker_id, float(base), adjusted, cpu, memory, gpu, cpu_pen, mem_pen,
                                   gpu_pen, balance, hist_pen, len(view.inflight) if view else 0)
        scored.append((adjusted, tie_break(seed, task_id, worker_id), candidate))

    scored.sort(key=lambda item: (-item[0], item[1]))
    original = max(base_scores.items(), key=lambda kv: (kv[1], -tie_break(seed, task_id, kv[0])),
                   default=(None, None))
    chosen = scored[0][2] if scored else None
    return SchedulingDecision(
        decision_id=uuid.uuid4().hex, timestamp=timestamp, task_id=task_id,
        task_type=None if task_type is None else str(task_type),
        chosen_worker_id=chosen.worker_id if chosen else None,
        chosen_score=chosen.adjusted_score if chosen else None,
        original_worker_id=original[0], original_score=original[1], candidate_count=len(scored),
        candidates=tuple(c for _, _, c in scored[:max_recorded]), exclusions=tuple(exclusions),
        explanation=_explain(chosen, original[0], exclusions, len(base_scores)),
    )


def _memory_misfit(view: WorkerView, history: PerformanceHistory, worker_id: str, task_type: str) -> str | None:
    """A task whose predicted peak memory exceeds what the worker has free would fail there."""
    _, memory_bytes = history.predicted_demand(worker_id, task_type)
    latest = view.latest
    if memory_bytes is None or latest is None or latest.memory_available_bytes is None:
        return None
    free = latest.memory_available_bytes - sum(i.memory_bytes for i in view.inflight.values())
    if memory_bytes > free:
        return (f"predicted memory {memory_bytes / 2**30:.1f} GiB > free {max(0, free) / 2**30:.1f} GiB")
    return None


def _explain(chosen: CandidateScore | None, original_id: str | None, exclusions: list[Exclusion],
             available: int) -> str:
    if chosen is None:
        if not available:
            return "no worker available"
        reasons = sorted({e.reason.split(":")[0] for e in exclusions})
        return f"no worker can take the task ({len(exclusions)} excluded: {'; '.join(reasons[:5])})"
    parts = [f"chose {chosen.worker_id} (score {chosen.adjusted_score:.3f} of original {chosen.original_score:.3f})"]
    if original_id is not None and original_id != chosen.worker_id:
        why = next((e.reason for e in exclusions if e.worker_id == original_id), None)
        outcome = f"excluded: {why}" if why else "scored lower after penalties"
        parts.append(f"original choice {original_id} {outcome}")
    if exclusions:
        parts.append(f"{len(exclusions)} worker(s) excluded")
    return "; ".join(parts)
