"""One scheduling decision, all on the original scheduler's scale, with its explanation (pure).

For each candidate worker: exclusions first (hardware mismatch, stale, critical load with
hysteresis, predicted memory that does not fit, a GPU task whose predicted or required GPU
memory no GPU has free, predicted CPU over the worker's cores when the prediction comes from
history), then the adjusted score

    adjusted = original * max(FLOOR, 1 - penalties)      (original > 0)
    adjusted = original - penalties                       (original <= 0)

where penalties = CPU / memory / GPU-for-GPU-tasks above their thresholds, on the load AFTER
placing the task (smoothed view + the tasks assigned but not yet visible + this task's own
predicted demand, not capped at 100 %, with a steep extra penalty above 100 %), a small
load-balance term (unknown load counts as the median of the known candidates plus what is
added, never as idle), the failure rate of the task type on that worker, minus a bonus for
having run the type faster than the fleet. The best adjusted score wins; ties break by a hash
of (seed, task, worker), so a decision is reproducible.
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
from fleet_hwmon.scoring.history import NO_DEMAND, PerformanceHistory, TaskDemand, demand_of
from fleet_hwmon.scoring.requirements import TaskRequirements
from fleet_hwmon.scoring.views import WorkerView

GIB = 1024**3
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
    few lookups and sums: the views keep their in-flight totals and free memory up to date as
    samples arrive, history is consulted only when the fleet has run the task type, the
    tie-break hash and the candidate records are made only for the best ``max_recorded``.
    """
    task_id = str(task.get("task_id", ""))
    task_type = task.get("type")
    needs_gpu = requirements.needs_gpu
    exclusions = list(extra_exclusions)
    # No fleet statistics of the type means no worker has any: history changes nothing.
    fleet_stats = history.fleet_stats(task_type) if history is not None and task_type is not None else None
    learnt = fleet_stats is not None
    per_worker = history.workers_of_type(task_type) if learnt else {}
    fleet_demand = demand_of(None, fleet_stats)
    default_cores, default_memory = factors.default_task_cores, factors.default_task_memory_bytes
    required_gpu_memory = (requirements.min_gpu_memory_gb * GIB
                           if needs_gpu and requirements.min_gpu_memory_gb is not None else None)
    capacity_limit = 100.0 + factors.capacity_margin_percent
    headroom = 1.0 + factors.memory_headroom_percent / 100.0
    exclude_over = bool(factors.exclude_over_capacity)
    # worker id, original score, view, post-placement (cpu, memory, gpu) percent, the task's
    # predicted demand there, its history statistics there
    eligible: list[tuple] = []
    unknown = False  # some candidate's load is not (fully) shown by its samples
    mismatched = mismatches.get if mismatches else None
    for worker_id, base in base_scores.items():
        reason = mismatched(worker_id) if mismatched is not None else None
        view = views.get(worker_id)
        if view is None:
            if reason is not None:
                exclusions.append(Exclusion(worker_id, reason))
                continue
            eligible.append((worker_id, base, None, None, None, None, fleet_demand, None))
            unknown = True
            continue
        if reason is None:
            last_s = view.last_sample_s
            if now_s - (view.registered_s if last_s is None else last_s) > stale_after_s:  # stale_reason(), inline
                reason = view.stale_reason(now_s, stale_after_s)
            else:
                reason = view.excluded_reason
        if reason is not None:
            exclusions.append(Exclusion(worker_id, reason))
            continue
        stats = per_worker.get(worker_id) if learnt else None
        demand = fleet_demand if stats is None else demand_of(stats, fleet_stats)
        cores = default_cores if demand.cores is None else demand.cores
        memory_bytes = default_memory if demand.memory_bytes is None else demand.memory_bytes
        # The load after placing the task: smoothed samples + in flight + the task itself.
        cpu, memory, gpu = view.cpu_percent, view.memory_percent, view.gpu_percent
        count, total = view.cpu_count, view.memory_total_bytes
        if cpu is not None and count:
            cpu += 100.0 * (view.inflight_cores + cores) / count
        if memory is not None and total:
            memory += 100.0 * (view.inflight_memory_bytes + memory_bytes) / total
        if gpu is not None and view.inflight_gpu_tasks:
            gpu += 50.0 * view.inflight_gpu_tasks
        if demand.memory_bytes is not None and view.memory_free_bytes is not None:
            free = view.memory_free_bytes - view.inflight_memory_bytes
            if demand.memory_bytes * headroom > free:  # it would fail there (out of memory)
                reason = (f"predicted memory {demand.memory_bytes / GIB:.1f} GiB{_headroom(factors)} > "
                          f"free {max(0.0, free) / GIB:.1f} GiB")
        if reason is None and needs_gpu:
            reason = _gpu_memory_misfit(view, demand.gpu_memory_bytes, required_gpu_memory, headroom,
                                        _headroom(factors))
        if (reason is None and exclude_over and demand.cores is not None and cpu is not None
                and cpu > capacity_limit):
            reason = f"predicted cpu {cpu:.0f}% of {count:g} cores > {capacity_limit:g}%"
        if reason is not None:
            exclusions.append(Exclusion(worker_id, reason))
            continue
        if cpu is None or memory is None or (gpu is None and view.inflight_gpu_tasks):
            unknown = True
        eligible.append((worker_id, base, view, cpu, memory, gpu, demand, stats))

    cpu_t, cpu_w = factors.cpu_threshold_percent, factors.cpu_penalty_weight
    mem_t, mem_w = factors.memory_threshold_percent, factors.memory_penalty_weight
    gpu_t, gpu_w = factors.gpu_threshold_percent, factors.gpu_penalty_weight
    cpu_d, mem_d, gpu_d = (max(1e-9, 100.0 - t) for t in (cpu_t, mem_t, gpu_t))
    over_w = factors.overcommit_penalty_weight / 100.0
    balance_w = factors.load_balance_weight
    failure_w, duration_w = factors.failure_penalty_weight, factors.duration_weight
    fleet_duration = fleet_stats.duration_s if learnt else None
    neutral: dict[str, float] = {}  # per resource, the candidates' sampled median, when needed
    neutral_load: float | None = None
    scored: list[tuple] = []
    for worker_id, base, view, cpu, memory, gpu, demand, stats in eligible:
        cpu_eff, mem_eff, gpu_eff = cpu, memory, gpu
        if unknown and view is not None and (cpu is None or memory is None
                                             or (gpu is None and view.inflight_gpu_tasks)):
            cpu_eff, mem_eff, gpu_eff = _unknown_as_neutral(view, cpu, memory, gpu, demand, factors, eligible,
                                                            neutral)
        # _over() and the busiest known resource, inline: this loop is the hot path
        if cpu_eff is None or cpu_eff <= cpu_t:
            cpu_pen = 0.0
        else:
            cpu_pen = cpu_w * (cpu_eff - cpu_t) / cpu_d
            if cpu_eff > 100.0:
                cpu_pen += over_w * (cpu_eff - 100.0)
        if mem_eff is None or mem_eff <= mem_t:
            mem_pen = 0.0
        else:
            mem_pen = mem_w * (mem_eff - mem_t) / mem_d
            if mem_eff > 100.0:
                mem_pen += over_w * (mem_eff - 100.0)
        busiest = cpu_eff
        if mem_eff is not None and (busiest is None or mem_eff > busiest):
            busiest = mem_eff
        if needs_gpu and gpu_eff is not None:
            gpu_pen = 0.0 if gpu_eff <= gpu_t else gpu_w * (gpu_eff - gpu_t) / gpu_d
            if busiest is None or gpu_eff > busiest:
                busiest = gpu_eff
        else:
            gpu_pen = 0.0
        if busiest is None:
            if neutral_load is None:
                neutral_load = _neutral_load(eligible)
            busiest = neutral_load
        balance = balance_w * busiest / 100.0
        if stats is None:
            hist_pen = 0.0
        else:  # _history_penalty(), inline
            hist_pen = failure_w * stats.failures / (stats.runs + 2)
            if fleet_duration and stats.duration_s:
                hist_pen -= duration_w * max(-1.0, min(1.0, fleet_duration / stats.duration_s - 1.0))
        total = cpu_pen + mem_pen + gpu_pen + balance + hist_pen
        adjusted = base * max(FLOOR, 1.0 - total) if base > 0 else base - total
        scored.append((adjusted, worker_id, base, view, cpu, memory, gpu, cpu_pen, mem_pen, gpu_pen, balance,
                       hist_pen, demand))

    ranked = _best(scored, max(1, max_recorded), seed, task_id)
    candidates = tuple(
        CandidateScore(worker_id, float(base), adjusted, cpu, memory, gpu, cpu_pen, mem_pen, gpu_pen, balance,
                       hist_pen, len(view.inflight) if view else 0)
        for adjusted, worker_id, base, view, cpu, memory, gpu, cpu_pen, mem_pen, gpu_pen, balance, hist_pen, _
        in ranked)
    chosen = candidates[0] if candidates else None
    original_id, original_score = _original_choice(base_scores, seed, task_id)
    explanation = _explain(chosen, original_id, exclusions, len(base_scores) + len(extra_exclusions))
    if chosen is not None and ranked[0][-1].source is not None:
        explanation += "; " + _describe_demand(ranked[0][-1], factors)
    return SchedulingDecision(
        decision_id=uuid.uuid4().hex, timestamp=timestamp, task_id=task_id,
        task_type=None if task_type is None else str(task_type),
        chosen_worker_id=chosen.worker_id if chosen else None,
        chosen_score=chosen.adjusted_score if chosen else None,
        original_worker_id=original_id, original_score=original_score, candidate_count=len(scored),
        candidates=candidates[:max_recorded], exclusions=tuple(exclusions), explanation=explanation,
    )


def task_demand_for(view: WorkerView | None, history: PerformanceHistory | None, worker_id: str,
                    task_type: str | None, requirements: TaskRequirements,
                    factors: ScoringFactors) -> tuple[float, float, float]:
    """(cores, memory bytes, GPU memory bytes) a task is expected to take on ``worker_id``, as
    :func:`decide` predicts it: history (the worker's, else the fleet's), else the defaults; GPU
    memory the stated minimum when that is stricter (0 for a task without a GPU)."""
    demand = history.task_demand(worker_id, task_type) if history is not None and task_type else NO_DEMAND
    gpu_memory = 0.0
    if requirements.needs_gpu:
        gpu_memory = max(demand.gpu_memory_bytes or 0.0, (requirements.min_gpu_memory_gb or 0.0) * GIB)
    return (factors.default_task_cores if demand.cores is None else demand.cores,
            factors.default_task_memory_bytes if demand.memory_bytes is None else demand.memory_bytes,
            gpu_memory)


def _headroom(factors: ScoringFactors) -> str:
    return f" (+{factors.memory_headroom_percent:g}% headroom)" if factors.memory_headroom_percent else ""


def _gpu_memory_misfit(view: WorkerView, predicted: float | None, required: float | None,
                       headroom: float = 1.0, headroom_text: str = "") -> str | None:
    """A GPU task that no GPU of the worker has room for would fail there (CUDA out of memory):
    the predicted GPU memory (history) or the stated minimum, whichever is larger, against the
    most any one GPU has free (latest sample, less the GPU tasks in flight). Unknown GPU memory
    excludes nothing."""
    if predicted is None and required is None:
        return None
    room = view.gpu_memory_room()
    if room is None:
        return None
    if required is not None and (predicted is None or required >= predicted * headroom):
        if required > room:
            return f"required GPU memory {required / GIB:.1f} GiB > free {max(0.0, room) / GIB:.1f} GiB on any GPU"
    elif predicted * headroom > room:
        return (f"predicted GPU memory {predicted / GIB:.1f} GiB{headroom_text} > "
                f"free {max(0.0, room) / GIB:.1f} GiB on any GPU")
    return None


def _unknown_as_neutral(view: WorkerView, cpu: float | None, memory: float | None, gpu: float | None,
                        demand: TaskDemand, factors: ScoringFactors, eligible: list[tuple],
                        neutral: dict[str, float]) -> tuple:
    """A worker's load where its samples do not show a resource yet: the candidates' sampled
    median of it (kept in ``neutral``) plus what the tasks in flight and this task add, so a new
    worker (or one with MIG GPUs) is neither idle nor drawing a whole burst before its metrics
    arrive. A resource whose capacity is unknown too stays unknown."""
    if cpu is None and view.cpu_count:
        cores = factors.default_task_cores if demand.cores is None else demand.cores
        cpu = _neutral(neutral, eligible, "cpu_percent") + 100.0 * (view.inflight_cores + cores) / view.cpu_count
    if memory is None and view.memory_total_bytes:
        memory_bytes = factors.default_task_memory_bytes if demand.memory_bytes is None else demand.memory_bytes
        memory = (_neutral(neutral, eligible, "memory_percent")
                  + 100.0 * (view.inflight_memory_bytes + memory_bytes) / view.memory_total_bytes)
    if gpu is None and view.inflight_gpu_tasks:
        gpu = _neutral(neutral, eligible, "gpu_percent") + 50.0 * view.inflight_gpu_tasks
    return cpu, memory, gpu


def _neutral(neutral: dict[str, float], eligible: list[tuple], resource: str) -> float:
    """The candidates' sampled median of ``resource``; all three are computed in one pass the
    first time one is needed."""
    if not neutral:
        cpus, memories, gpus = [], [], []
        for item in eligible:
            view = item[2]
            if view is not None:
                if view.cpu_percent is not None:
                    cpus.append(view.cpu_percent)
                if view.memory_percent is not None:
                    memories.append(view.memory_percent)
                if view.gpu_percent is not None:
                    gpus.append(view.gpu_percent)
        for name, values in (("cpu_percent", cpus), ("memory_percent", memories), ("gpu_percent", gpus)):
            neutral[name] = statistics.median(values) if values else 0.0
    return neutral[resource]


def _describe_demand(demand: TaskDemand, factors: ScoringFactors) -> str:
    cores = "default" if demand.cores is None else f"{demand.cores:.1f}"
    memory = ("default" if demand.memory_bytes is None else f"{demand.memory_bytes / GIB:.1f} GiB")
    text = f"task predicted from {demand.source} history: {cores} cores, memory {memory}"
    if demand.gpu_memory_bytes is not None:
        text += f", GPU memory {demand.gpu_memory_bytes / GIB:.1f} GiB"
    return text


def _neutral_load(eligible: list[tuple]) -> float:
    """The median of the candidates' busiest known CPU / memory load (0 when none is known)."""
    known = [max(v for v in (cpu, mem) if v is not None) for _, _, _, cpu, mem, *_ in eligible
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


def _median_sampled(eligible: list[tuple], resource: str) -> float:
    """The candidates' median of one resource as their samples show it (0 when none does)."""
    known = [getattr(view, resource) for _, _, view, *_ in eligible
             if view is not None and getattr(view, resource) is not None]
    return statistics.median(known) if known else 0.0


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
