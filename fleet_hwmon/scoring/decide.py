"""One scheduling decision, all on the original scheduler's scale, with its explanation (pure).

For each candidate worker: exclusions first (hardware mismatch, stale, critical load with
hysteresis, predicted memory that does not fit), then the adjusted score

    adjusted = original * max(FLOOR, 1 - penalties)      (original > 0)
    adjusted = original - penalties                       (original <= 0)

where penalties = CPU / memory / GPU-for-GPU-tasks above their thresholds (smoothed view plus
the tasks assigned but not yet visible), a small load-balance term (unknown load counts as
the median of the known candidates, never as idle; a resource the samples do not show yet
counts as the candidates' sampled median plus what the worker's tasks in flight add), the
failure rate of the task type on that worker, minus a bonus for having run the type faster
than the fleet. The best adjusted score wins; ties break by a hash of (seed, task, worker),
so a decision is reproducible.
"""

from __future__ import annotations

import hashlib
import heapq
import statistics
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

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


def tie_breaker(seed: int, task_id: str) -> Callable[[str], int]:
    """``tie_break(seed, task_id, worker_id)`` as a function of the worker id, for many workers
    of one task: the hash of the common prefix is computed once."""
    prefix = hashlib.blake2b(f"{seed}\x00{task_id}\x00".encode(), digest_size=8)

    def key(worker_id: str) -> int:
        digest = prefix.copy()
        digest.update(worker_id.encode())
        return int.from_bytes(digest.digest(), "big")
    return key


def decide(task: Mapping[str, Any], requirements: TaskRequirements, base_scores: Mapping[str, float],
           views: Mapping[str, WorkerView], mismatches: Mapping[str, str | None], *,
           factors: ScoringFactors, history: PerformanceHistory | None, now_s: float,
           stale_after_s: float, timestamp: datetime, seed: int = 0, max_recorded: int = 20,
           extra_exclusions: Sequence[Exclusion] = ()) -> SchedulingDecision:
    """Choose a worker among ``base_scores`` (worker id -> original score of each available worker).

    ``mismatches`` maps worker id -> hardware mismatch reason (``None`` or absent: the hardware
    fits); ``views`` holds the scheduler's view of each worker (a worker without a view has
    unknown load and is not excluded for it).

    This runs once per task over every available worker, so the per-worker work is kept to a
    few lookups and sums: history is consulted only when the fleet has run the task type, the
    tie-break hash and the candidate records are made only for the best ``max_recorded``.
    """
    task_id = str(task.get("task_id", ""))
    task_type = task.get("type")
    needs_gpu = requirements.needs_gpu
    exclusions = list(extra_exclusions)
    # No fleet statistics of the type means no worker has any: history changes nothing.
    learnt = history is not None and task_type is not None and history.fleet_stats(task_type) is not None
    eligible: list[tuple[str, float, WorkerView | None, tuple]] = []
    for worker_id, base in base_scores.items():
        reason = mismatches.get(worker_id)
        view = views.get(worker_id)
        if reason is None and view is not None:
            last_s = view.last_sample_s
            if now_s - (view.registered_s if last_s is None else last_s) > stale_after_s:  # stale_reason(), inline
                reason = view.stale_reason(now_s, stale_after_s)
            else:
                reason = view.excluded_reason
            if reason is None and learnt:
                reason = _memory_misfit(view, history, worker_id, task_type)
        if reason is not None:
            exclusions.append(Exclusion(worker_id, reason))
            continue
        if view is None:
            load = (None, None, None)
        elif view.inflight:
            load = view.effective_load()
        else:
            load = (view.cpu_percent, view.memory_percent, view.gpu_percent)
        eligible.append((worker_id, base, view, load))

    cpu_t, cpu_w = factors.cpu_threshold_percent, factors.cpu_penalty_weight
    mem_t, mem_w = factors.memory_threshold_percent, factors.memory_penalty_weight
    gpu_t, gpu_w = factors.gpu_threshold_percent, factors.gpu_penalty_weight
    cpu_d, mem_d, gpu_d = (max(1e-9, 100.0 - t) for t in (cpu_t, mem_t, gpu_t))
    balance_w = factors.load_balance_weight
    neutral_load: float | None = None  # computed when a worker without known load needs it
    neutral: dict[int, float] = {}  # per resource, likewise
    scored: list[tuple] = []
    for worker_id, base, view, load in eligible:
        cpu, memory, gpu = load
        if view is not None and view.inflight and None in load:
            cpu, memory, gpu = _with_inflight(load, view, eligible, neutral)
        # _over() and the busiest known resource, inline: this loop is the hot path
        cpu_pen = 0.0 if cpu is None or cpu <= cpu_t else cpu_w * (cpu - cpu_t) / cpu_d
        mem_pen = 0.0 if memory is None or memory <= mem_t else mem_w * (memory - mem_t) / mem_d
        busiest = cpu
        if memory is not None and (busiest is None or memory > busiest):
            busiest = memory
        if needs_gpu and gpu is not None:
            gpu_pen = 0.0 if gpu <= gpu_t else gpu_w * (gpu - gpu_t) / gpu_d
            if busiest is None or gpu > busiest:
                busiest = gpu
        else:
            gpu_pen = 0.0
        if busiest is None:
            if neutral_load is None:
                neutral_load = _neutral_load(eligible)
            busiest = neutral_load
        balance = balance_w * busiest / 100.0
        hist_pen = _history_penalty(history, worker_id, task_type, factors) if learnt else 0.0
        total = cpu_pen + mem_pen + gpu_pen + balance + hist_pen
        adjusted = base * max(FLOOR, 1.0 - total) if base > 0 else base - total
        scored.append((adjusted, worker_id, base, view, load, cpu_pen, mem_pen, gpu_pen, balance, hist_pen))

    ranked = _best(scored, max(1, max_recorded), seed, task_id)
    candidates = tuple(
        CandidateScore(worker_id, float(base), adjusted, *load, cpu_pen, mem_pen, gpu_pen, balance, hist_pen,
                       len(view.inflight) if view else 0)
        for adjusted, worker_id, base, view, load, cpu_pen, mem_pen, gpu_pen, balance, hist_pen in ranked)
    chosen = candidates[0] if candidates else None
    original_id, original_score = _original_choice(base_scores, seed, task_id)
    return SchedulingDecision(
        decision_id=uuid.uuid4().hex, timestamp=timestamp, task_id=task_id,
        task_type=None if task_type is None else str(task_type),
        chosen_worker_id=chosen.worker_id if chosen else None,
        chosen_score=chosen.adjusted_score if chosen else None,
        original_worker_id=original_id, original_score=original_score, candidate_count=len(scored),
        candidates=candidates[:max_recorded], exclusions=tuple(exclusions),
        explanation=_explain(chosen, original_id, exclusions, len(base_scores) + len(extra_exclusions)),
    )


def _neutral_load(eligible: list[tuple[str, float, WorkerView | None, tuple]]) -> float:
    """The median of the candidates' busiest known CPU / memory load (0 when none is known)."""
    known = [max(v for v in (cpu, mem) if v is not None) for _, _, _, (cpu, mem, _) in eligible
             if cpu is not None or mem is not None]
    return statistics.median(known) if known else 0.0


def _history_penalty(history: PerformanceHistory, worker_id: str, task_type: str, factors: ScoringFactors) -> float:
    penalty = 0.0
    stats = history.stats(worker_id, task_type)
    if stats is not None:
        penalty += factors.failure_penalty_weight * stats.failure_rate
    ratio = history.speed_ratio(worker_id, task_type)
    if ratio is not None:
        penalty -= factors.duration_weight * max(-1.0, min(1.0, ratio - 1.0))
    return penalty


def _best(scored: list[tuple], count: int, seed: int, task_id: str) -> list[tuple]:
    """The ``count`` best of ``scored`` (adjusted score first), ordered by score, then by the
    seeded tie-break. Only the entries that can make the cut (every one tied with the last
    place included) are hashed and sorted."""
    if len(scored) > count:
        cut = heapq.nlargest(count, [item[0] for item in scored])[-1]
        scored = [item for item in scored if item[0] >= cut]
    key = tie_breaker(seed, task_id)
    return sorted(scored, key=lambda item: (-item[0], key(item[1])))[:count]


def _original_choice(base_scores: Mapping[str, float], seed: int, task_id: str) -> tuple[str | None, float | None]:
    """What the original scores alone choose: the best, ties broken like the adjusted ones."""
    if not base_scores:
        return None, None
    best = max(base_scores.values())
    tied = [w for w, score in base_scores.items() if score == best]
    worker_id = tied[0] if len(tied) == 1 else min(tied, key=tie_breaker(seed, task_id))
    return worker_id, base_scores[worker_id]


def _median_sampled(eligible: list[tuple[str, float, WorkerView | None, tuple]], resource: str) -> float:
    """The candidates' median of one resource as their samples show it (0 when none does)."""
    known = [getattr(view, resource) for _, _, view, _ in eligible
             if view is not None and getattr(view, resource) is not None]
    return statistics.median(known) if known else 0.0


_SAMPLED = ("cpu_percent", "memory_percent", "gpu_percent")


def _with_inflight(load: tuple, view: WorkerView, eligible: list[tuple[str, float, WorkerView | None, tuple]],
                   neutral: dict[int, float]) -> tuple:
    """A worker's load where its samples do not show a resource yet but tasks assigned to it
    use that resource: the candidates' sampled median of it (kept in ``neutral``) plus what
    those tasks add, so a new worker (or one with MIG GPUs) does not draw a whole burst before
    its metrics arrive."""
    out = list(load)
    for resource, add in enumerate(view.inflight_percent()):
        if out[resource] is None and add:
            if resource not in neutral:
                neutral[resource] = _median_sampled(eligible, _SAMPLED[resource])
            out[resource] = min(100.0, neutral[resource] + add)
    return tuple(out)


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
