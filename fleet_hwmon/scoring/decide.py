"""One scheduling decision, all on the original scheduler's scale, with its explanation (pure).

For each candidate worker: exclusions first (hardware mismatch, stale, critical load with
hysteresis, predicted memory that does not fit, a GPU task whose predicted or required GPU
memory no GPU has free, predicted CPU over the worker's cores or a GPU task's predicted GPU
over its least busy GPU (plus a margin) when the prediction comes from history), then the
adjusted score

    adjusted = original * max(FLOOR, 1 - penalties)      (original > 0)
    adjusted = original - penalties                       (original <= 0)

where penalties = CPU / memory / GPU-for-GPU-tasks above their thresholds, on the load AFTER
placing the task (smoothed view + the tasks assigned but not yet visible + this task's own
predicted demand, not capped at 100 %, with a steep extra penalty above 100 %; GPU on the
least busy GPU, where a new task runs), a small
load-balance term (unknown load counts as the median of the known candidates plus what is
added, never as idle), the failure rate of the task type on that worker, minus a bonus for
having run the type faster than the fleet. The best adjusted score wins; ties break by a hash
of (seed, task, worker), so a decision is reproducible.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import itertools
import statistics
import uuid
from operator import attrgetter, itemgetter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from fleet_hwmon.scoring.exclusions import Exclusion
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.history import NO_DEMAND, PerformanceHistory, TaskDemand, TypeStats, demand_of
from fleet_hwmon.scoring.requirements import TaskRequirements
from fleet_hwmon.scoring.views import WorkerView

GIB = 1024**3
_UNSEEN: Any = object()  # a worker whose hardware has not been checked yet
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
    isolation: str = "shared"
    unplaceable_reason: str | None = None  # no worker of the fleet could ever hold the task


_ID_PREFIX = uuid.uuid4().hex[:16]  # this process's; ids then count up (no system call per decision)
_id_numbers = itertools.count()


def new_decision_id() -> str:
    """A decision id unique across processes: 32 hex digits, like a UUID's."""
    return f"{_ID_PREFIX}{next(_id_numbers):016x}"


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
           extra_exclusions: Sequence[Exclusion] = (),
           original_choice: tuple[str | None, float | None] | None = None) -> SchedulingDecision:
    """Choose a worker among ``base_scores`` (worker id -> original score of each available worker).

    ``original_choice``, when given, is what the original scheduler itself chose among all the
    workers (recorded as the original choice); else that is the best original score.

    ``mismatches`` maps worker id -> hardware mismatch reason (``None`` or absent: the hardware
    fits); ``views`` holds the scheduler's view of each worker (a worker without a view has
    unknown load and is not excluded for it). ``extra_exclusions`` (workers excluded before
    scoring) come first among the exclusions. See :func:`decide_among`, which this calls.
    """
    misfits = {worker_id: Exclusion.hardware(worker_id, reason) for worker_id, reason in mismatches.items()
               if reason is not None} if mismatches else {}
    return decide_among(task, requirements, list(base_scores), base_scores, views, misfits, _no_mismatch,
                        factors=factors,
                        history=history, now_s=now_s, stale_after_s=stale_after_s, timestamp=timestamp, seed=seed,
                        max_recorded=max_recorded, extra_exclusions=extra_exclusions,
                        original_choice=original_choice)


def _no_mismatch(worker_id: str) -> None:
    """The hardware of a worker that ``decide``'s ``mismatches`` does not list fits."""
    return None


def decide_among(task: Mapping[str, Any], requirements: TaskRequirements, worker_ids: Sequence[str],
                 scores: Mapping[str, float | None], views: Mapping[str, WorkerView],
                 misfits: Mapping[str, Exclusion | None], check_hardware: Callable[[str], Exclusion | None], *,
                 factors: ScoringFactors, history: PerformanceHistory | None, now_s: float,
                 stale_after_s: float, timestamp: datetime, seed: int = 0, max_recorded: int = 20,
                 task_counts: Mapping[str, int] | None = None, task_limit: Any = None,
                 extra_exclusions: Sequence[Exclusion] = (),
                 original_choice: tuple[str | None, float | None] | None = None,
                 floor: TaskDemand | None = None, cap: tuple[float | None, float | None] = (None, None),
                 reserved: Mapping[str, tuple[float, float, Exclusion]] | None = None,
                 unknown: list[str] | None = None) -> SchedulingDecision:
    """Choose a worker among ``worker_ids`` (the available workers, in order), in one pass over them.

    The task's predicted demand is shaped by ``floor`` (a retried task's own raised figures) and
    ``cap`` (memory and GPU memory of the largest compatible worker), see ``_Terms.shape``.
    ``reserved`` maps a worker kept for a waiting task to (memory, GPU memory) that task needs
    and its exclusion: this task may backfill it when it fits beside that need. Never-sampled
    workers that were scored (at the candidates' median) are appended to ``unknown``.

    A worker is excluded before scoring when ``task_limit`` is given and its count in
    ``task_counts`` (absent: 0) is at least the limit (reason ``at task limit (N)``), or when
    ``scores`` (worker id -> original score) has no score for it: the reason is then its hardware
    mismatch, else ``rejected by the original scheduler``. These exclusions come first, after
    ``extra_exclusions``, in worker order; the others (hardware mismatch of a scored worker,
    stale, overloaded, the task does not fit) follow in worker order. A worker listed twice is
    scored once.

    ``misfits`` maps worker id -> its hardware mismatch (``None``: the hardware fits);
    ``check_hardware(worker_id)`` gives it for a worker that ``misfits`` lacks (a caller that
    remembers the checks stores it there). ``views`` holds the scheduler's view of each worker
    (a worker without a view has unknown load and is not excluded for it).

    ``original_choice``, when given, is what the original scheduler itself chose among all the
    workers (recorded as the original choice); else that is the best original score among the
    scored workers, ties broken like the adjusted ones.

    This runs once per task over every available worker, so the per-worker work is kept to a
    few lookups: the views keep their in-flight totals and free memory up to date as samples
    arrive, and remember the load and penalties worked out for a worker without history of its
    own until their state changes (see ``WorkerView.scoring_memo``); history is consulted only
    when the fleet has run the task type; the tie-break hash is computed only among exact ties
    and the candidate records only for the best ``max_recorded``.
    """
    task_id = str(task.get("task_id", ""))
    task_type = task.get("type")
    needs_gpu = requirements.needs_gpu
    exclusions: list[Exclusion] = []  # the exclusions while scoring
    exclude = exclusions.append
    # No fleet statistics of the type means no worker has any: history changes nothing.
    fleet_stats = history.fleet_stats(task_type) if history is not None and task_type is not None else None
    learnt = fleet_stats is not None
    per_worker = history.workers_of_type(task_type) if learnt else {}
    terms = _Terms(factors, requirements, fleet_stats.duration_s if learnt else None, floor, cap)
    of, shape = terms.of, terms.shape
    fleet_demand = shape(demand_of(None, fleet_stats))
    exclusive = requirements.isolation == "exclusive"
    background_limit = factors.exclusive_background_percent
    counts_get = task_counts.get if task_counts else {}.get
    reserved = reserved or {}
    # What the load and penalties of a worker without history of its own depend on, besides its view.
    memo_key = _context_id((fleet_demand, needs_gpu, requirements.isolation, factors))
    known_any = False  # some candidate's load is known from its samples
    # scored: (adjusted, worker id, original score, view, details) where details are the
    # post-placement cpu / memory / gpu percent, the cpu / memory / gpu / balance / history
    # penalties and the task's predicted demand there. A worker whose load is not (fully) known
    # is scored after the pass, against medians over all the candidates; until then its entry
    # has ``None`` for the adjusted score and (cpu, memory, gpu, history statistics, demand)
    # for details, so every candidate keeps its place.
    scored: list[tuple] = []
    add = scored.append
    deferred: list[int] = []  # indices in scored of the entries still to score
    # Excluded before scoring (task limit, no original score), listed before the others.
    early = list(extra_exclusions)
    early_exclude = early.append
    limited = task_limit is not None
    count_of = task_counts.get if limited and task_counts is not None else {}.get
    known, score_of, views_get = misfits.get, scores.get, views.get
    repeats = len(set(worker_ids)) < len(worker_ids)
    taken: set[str] = set()  # the workers scored so far, when one may be listed twice
    best_original: Any = float("-inf")  # the best original score so far and the workers that have it
    best_ids: list[str] = []
    for worker_id in worker_ids:
        if limited and count_of(worker_id, 0) >= task_limit:
            early_exclude(Exclusion.task_limit(worker_id, task_limit))
            continue
        mismatch = known(worker_id, _UNSEEN)
        if mismatch is _UNSEEN:
            mismatch = check_hardware(worker_id)
        base = score_of(worker_id)
        if base is None:  # say why when it is the hardware, as for any other exclusion
            early_exclude(mismatch or Exclusion.rejected(worker_id))
            continue
        if repeats:
            if worker_id in taken:
                continue
            taken.add(worker_id)
        if base >= best_original:
            if base > best_original:
                best_original, best_ids = base, [worker_id]
            else:
                best_ids.append(worker_id)
        if mismatch is not None:
            exclude(mismatch)
            continue
        view = views_get(worker_id)
        if view is None:
            deferred.append(len(scored))
            add((None, worker_id, base, None, (None, None, None, None, fleet_demand)))
            continue
        last_s = view.last_sample_s
        samples_stale = last_s is not None and now_s - last_s > stale_after_s  # view.samples_stale(), inline
        excluded = view.stale_exclusion(now_s, stale_after_s) if samples_stale else view.excluded
        if excluded is not None and (excluded.resource != "gpu_memory" or needs_gpu):
            exclude(excluded)  # stale, or critical memory (GPU memory: only for GPU tasks)
            continue
        if view.exclusive_task is not None and view.exclusive_task != task_id:
            exclude(Exclusion.held_exclusive(worker_id, view.exclusive_task))
            continue
        if needs_gpu and view.gpus_lost and not view.has_gpus:
            exclude(Exclusion.gpu_unhealthy(worker_id, view.gpus_lost, view.gpus_lost))
            continue
        if exclusive:
            excluded = _not_exclusive(view, counts_get(worker_id, 0), needs_gpu, background_limit)
            if excluded is not None:
                exclude(excluded)
                continue
        stats = per_worker.get(worker_id) if learnt else None
        if last_s is None or samples_stale:  # nothing sampled, or its samples stopped: load unknown
            if last_s is None and unknown is not None:
                unknown.append(worker_id)
            deferred.append(len(scored))
            demand = fleet_demand if stats is None else shape(demand_of(stats, fleet_stats))
            add((None, worker_id, base, view, (None, None, None, stats, demand)))
            continue
        known_any = True
        drained = (not counts_get(worker_id, 0) and not view.inflight_memory_bytes
                   and not view.inflight_gpu_tasks)
        hold = reserved.get(worker_id)
        if hold is not None:  # backfill: only what fits beside the reserved task's need
            found = of(view, fleet_demand if stats is None else shape(demand_of(stats, fleet_stats)), stats,
                       hold[:2])
            if found[1] is None and found[0] is not None:
                exclude(hold[2])
                continue
        elif stats is None:
            memo = view.scoring_memo
            key = (memo_key, drained)
            found = memo.get(key)
            if found is None:
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                found = memo[key] = of(view, fleet_demand, None, drained=drained)
        else:
            found = of(view, shape(demand_of(stats, fleet_stats)), stats, drained=drained)
        total, factor, details = found
        if factor is not None:  # max(FLOOR, 1 - total), worked out once
            add((base * factor if base > 0 else base - total, worker_id, base, view, details))
        elif total is not None:  # the exclusion: the task does not fit there
            exclude(total)
        else:
            deferred.append(len(scored))
            add((None, worker_id, base, view, details))

    if deferred and not known_any:
        # Nothing is known of any candidate's load: the original scheduler's choice stands.
        for index in deferred:
            _, worker_id, base, view, (cpu, memory, gpu, stats, demand) = scored[index]
            scored[index] = (base, worker_id, base, view, (cpu, memory, gpu, 0.0, 0.0, 0.0, 0.0, 0.0, demand))
        deferred = []
    if deferred:
        neutral: dict[str, Any] = {}  # per resource, the candidates' sampled median, when needed
        neutral_load: list[float] = []  # the candidates' median busiest load, once needed

        def busiest_median() -> float:
            if not neutral_load:
                neutral_load.append(_neutral_load(scored))
            return neutral_load[0]

        # Without history of its own, a worker's outcome rests on its view, the context and the
        # candidates' medians: remembered in its view's memo like the others' (until they change).
        with_medians: int | None = None  # memo key of this context with these candidates' medians
        for index in deferred:
            _, worker_id, base, view, (cpu, memory, gpu, stats, demand) = scored[index]
            memo = found = None
            if view is not None and stats is None and (view.last_sample_s is None
                                                       or now_s - view.last_sample_s <= stale_after_s):
                if with_medians is None:
                    with_medians = _context_id((memo_key, _medians_of(neutral, scored)[0]))
                memo = view.scoring_memo
                found = memo.get(with_medians)
            if found is None:
                cpu_eff, mem_eff, gpu_eff = cpu, memory, gpu
                if view is not None:
                    cpu_eff, mem_eff, gpu_eff = _unknown_as_neutral(
                        view, cpu, memory, gpu, demand, factors, scored, neutral,
                        terms.own_gpu(demand) if terms.needs_gpu else None)
                *penalties, total = terms.penalties(cpu_eff, mem_eff, gpu_eff, stats, busiest_median)
                found = (total, max(FLOOR, 1.0 - total), (cpu, memory, gpu, *penalties, demand))
                if memo is not None and (cpu_eff is not None or mem_eff is not None):  # not busiest_median()'s
                    if len(memo) >= _MEMO_SIZE:
                        memo.clear()
                    memo[with_medians] = found
            total, factor, details = found
            scored[index] = (base * factor if base > 0 else base - total, worker_id, base, view, details)

    ranked = _best(scored, max(1, max_recorded), seed, task_id)
    candidates = tuple(
        CandidateScore(worker_id, float(base), adjusted, *details[:-1], len(view.inflight) if view else 0)
        for adjusted, worker_id, base, view, details in ranked)
    chosen = candidates[0] if candidates else None
    original_id, original_score = (original_choice if original_choice is not None
                                   else _original_choice(best_ids, scores, seed, task_id))
    available = len(early) + len(exclusions) + len(scored)
    exclusions[:0] = early
    explanation = _explain(chosen, original_id, exclusions, available)
    if chosen is not None and ranked[0][-1][-1].source is not None:
        explanation += "; " + _describe_demand(ranked[0][-1][-1], factors)
    return SchedulingDecision(
        decision_id=new_decision_id(), timestamp=timestamp, task_id=task_id,
        task_type=None if task_type is None else str(task_type),
        chosen_worker_id=chosen.worker_id if chosen else None,
        chosen_score=chosen.adjusted_score if chosen else None,
        original_worker_id=original_id, original_score=original_score, candidate_count=len(scored),
        candidates=candidates[:max_recorded], exclusions=tuple(exclusions), explanation=explanation,
        isolation=requirements.isolation,
    )


_MEMO_SIZE = 16  # scoring contexts a view remembers at most (its memo starts over beyond)
_CONTEXT_LIMIT = 256
_contexts: dict[tuple, int] = {}
_context_ids = itertools.count()


def _context_id(context: tuple) -> int:
    """A number for ``context`` (equal contexts, equal numbers), a cheap key for the views'
    memos. A number is never given to another context, even after the table starts over."""
    number = _contexts.get(context)
    if number is None:
        if len(_contexts) >= _CONTEXT_LIMIT:
            _contexts.clear()
        number = _contexts[context] = next(_context_ids)
    return number


class _Terms:
    """The per-worker arithmetic of one decision, its constants worked out once."""

    def __init__(self, factors: ScoringFactors, requirements: TaskRequirements, fleet_duration: float | None,
                 floor: TaskDemand | None = None, cap: tuple[float | None, float | None] = (None, None)) -> None:
        self.factors = factors
        self.needs_gpu = needs_gpu = requirements.needs_gpu
        self.required_gpu_memory = (requirements.min_gpu_memory_gb * GIB
                                    if needs_gpu and requirements.min_gpu_memory_gb is not None else None)
        self.fleet_duration = fleet_duration
        self.floor = floor
        self.cap = cap
        self.quiet = requirements.isolation == "quiet"
        self.quiet_limit = factors.quiet_threshold_percent
        self.headroom = 1.0 + factors.memory_headroom_percent / 100.0
        self.cpu_t, self.mem_t, self.gpu_t = (factors.cpu_threshold_percent, factors.memory_threshold_percent,
                                              factors.gpu_threshold_percent)
        self.cpu_d, self.mem_d, self.gpu_d = (max(1e-9, 100.0 - t) for t in (self.cpu_t, self.mem_t, self.gpu_t))
        self.over_w = factors.overcommit_penalty_weight / 100.0
        self.default_gpu = factors.default_task_gpu_percent

    def misfit(self, view: WorkerView, demand: TaskDemand, reserve: tuple[float, float] = (0.0, 0.0),
               drained: bool = False) -> Exclusion | None:
        """The incompressible check: the task's predicted memory (and GPU memory on one GPU), with
        headroom, against what the worker has free after its tasks in flight and ``reserve``
        (memory, GPU memory kept for a reserved task). ``None``: it fits, or nothing is known.
        On a ``drained`` worker (nothing of ours running or in flight) the headroom is waived:
        it guards against neighbours of ours growing, and without it a prediction raised by the
        type's largest runs could hold a task forever beside an idle worker that holds it."""
        headroom, percent = (1.0, 0.0) if drained else (self.headroom, self.factors.memory_headroom_percent)
        if demand.memory_bytes is not None and view.memory_free_bytes is not None:
            free = view.memory_free_bytes - view.inflight_memory_bytes - reserve[0]
            if demand.memory_bytes * headroom > free:  # it would fail there (out of memory)
                return Exclusion.memory_fit(view.worker_id, demand.memory_bytes, free, percent)
        if self.needs_gpu and demand.gpu_memory_bytes is not None:
            room = view.gpu_memory_room()
            if room is not None and demand.gpu_memory_bytes * headroom > room - reserve[1]:
                return Exclusion.gpu_memory_fit(view.worker_id, demand.gpu_memory_bytes, room - reserve[1],
                                                required=False, headroom_percent=percent)
        return None

    def shape(self, demand: TaskDemand) -> TaskDemand:
        """The demand the decision uses: a GPU task's stated minimum GPU memory stands in for its
        GPU memory until history knows it; a retried task's own raised figures (``floor``) win
        when larger; memory and GPU memory are capped so that, with headroom, they fit within the
        recovery mark (85 %) of the largest compatible worker (GPU), so a task that fits a
        drained worker is placed eventually."""
        floor, (cap_memory, cap_gpu) = self.floor, self.cap
        memory, gpu_memory = demand.memory_bytes, demand.gpu_memory_bytes
        if not self.needs_gpu:
            gpu_memory = None
        elif gpu_memory is None:
            gpu_memory = self.required_gpu_memory
        if floor is not None:
            memory = _larger(memory, floor.memory_bytes)
            gpu_memory = _larger(gpu_memory, floor.gpu_memory_bytes) if self.needs_gpu else None
        drained = self.factors.recovery_percent / 100.0 / self.headroom
        if memory is not None and cap_memory is not None:
            memory = min(memory, cap_memory * drained)
        if gpu_memory is not None and cap_gpu is not None:
            gpu_memory = min(gpu_memory, cap_gpu * drained)
        if memory == demand.memory_bytes and gpu_memory == demand.gpu_memory_bytes:
            return demand
        return demand._replace(memory_bytes=memory, gpu_memory_bytes=gpu_memory,
                               source=demand.source or "requirements")

    def of(self, view: WorkerView, demand: TaskDemand, stats: TypeStats | None,
           reserve: tuple[float, float] = (0.0, 0.0), drained: bool = False) -> tuple:
        """``(total penalty, max(FLOOR, 1 - total), details)`` of a worker that is neither stale
        nor overloaded: the load after placing the task (smoothed view + in flight + the task's
        predicted ``demand``) and its penalties, details as in :func:`decide`'s ``scored``.
        ``(exclusion, None, None)`` when the task would not fit there; ``(None, None, (cpu,
        memory, gpu, stats, demand))`` when the load is not fully known (the penalties need the
        other candidates' loads then)."""
        factors = self.factors
        cores = factors.default_task_cores if demand.cores is None else demand.cores
        memory_bytes = factors.default_task_memory_bytes if demand.memory_bytes is None else demand.memory_bytes
        cpu, memory = view.cpu_percent, view.memory_percent
        gpu = view.gpu_least_percent  # None: no GPU reports utilization
        count, total = view.cpu_count, view.memory_total_bytes
        if cpu is not None and count:
            cpu += 100.0 * (view.inflight_cores + cores) / count
        if memory is not None and total:
            memory += 100.0 * (view.inflight_memory_bytes + memory_bytes) / total
        if gpu is not None and (self.needs_gpu or view.inflight_gpu_tasks):
            own = self.own_gpu(demand)
            if len(view.gpu_levels) == 1:  # everything lands on the one GPU
                gpu += view.inflight_gpu_percent + own
            else:
                gpu = gpu_after_placement(view.gpu_levels, view.inflight_gpu_shares, own)
        reason = self.misfit(view, demand, reserve, drained)
        # CPU and GPU time are compressible: only quiet tasks refuse load, and a worker running a
        # quiet task takes nothing that would push it over the quiet threshold.
        if reason is None and (self.quiet or view.quiet_tasks):
            if cpu is not None and cpu > self.quiet_limit:
                reason = Exclusion.not_quiet(view.worker_id, "cpu", cpu, self.quiet_limit)
            elif self.needs_gpu and gpu is not None and gpu > self.quiet_limit:
                reason = Exclusion.not_quiet(view.worker_id, "gpu", gpu, self.quiet_limit)
        if reason is not None:
            return reason, None, None
        if cpu is None or memory is None or (gpu is None and (view.inflight_gpu_tasks or
                                                              (self.needs_gpu and view.has_gpus))):
            return None, None, (cpu, memory, gpu, stats, demand)
        *penalties, total = self.penalties(cpu, memory, gpu, stats, None)
        return total, max(FLOOR, 1.0 - total), (cpu, memory, gpu, *penalties, demand)

    def own_gpu(self, demand: TaskDemand) -> float:
        """The GPU utilization (percent of one GPU) the task itself is predicted to add."""
        if not self.needs_gpu:
            return 0.0
        return self.default_gpu if demand.gpu_percent is None else demand.gpu_percent

    def penalties(self, cpu: float | None, memory: float | None, gpu: float | None, stats: TypeStats | None,
                  neutral_load: Callable[[], float] | None) -> tuple[float, float, float, float, float, float]:
        """(cpu, memory, gpu, balance, history penalty, their total) for the given load (an unknown
        figure costs nothing; the balance term takes ``neutral_load()`` when no figure is known)."""
        factors = self.factors
        if cpu is None or cpu <= self.cpu_t:
            cpu_pen = 0.0
        else:
            cpu_pen = factors.cpu_penalty_weight * (cpu - self.cpu_t) / self.cpu_d
            if cpu > 100.0:
                cpu_pen += self.over_w * (cpu - 100.0)
        if memory is None or memory <= self.mem_t:
            mem_pen = 0.0
        else:
            mem_pen = factors.memory_penalty_weight * (memory - self.mem_t) / self.mem_d
            if memory > 100.0:
                mem_pen += self.over_w * (memory - 100.0)
        busiest = cpu
        if memory is not None and (busiest is None or memory > busiest):
            busiest = memory
        if self.needs_gpu and gpu is not None:
            gpu_pen = 0.0 if gpu <= self.gpu_t else factors.gpu_penalty_weight * (gpu - self.gpu_t) / self.gpu_d
            if busiest is None or gpu > busiest:
                busiest = gpu
        else:
            gpu_pen = 0.0
        if busiest is None:
            busiest = neutral_load()
        balance = factors.load_balance_weight * busiest / 100.0
        hist_pen = 0.0 if stats is None else _history_penalty(stats, self.fleet_duration, factors)
        return cpu_pen, mem_pen, gpu_pen, balance, hist_pen, cpu_pen + mem_pen + gpu_pen + balance + hist_pen


def task_demand_for(view: WorkerView | None, history: PerformanceHistory | None, worker_id: str,
                    task_type: str | None, requirements: TaskRequirements, factors: ScoringFactors,
                    floor: TaskDemand | None = None,
                    cap: tuple[float | None, float | None] = (None, None)) -> tuple[float, float, float, float]:
    """(cores, memory bytes, GPU memory bytes, GPU percent of one GPU) a task is expected to take
    on ``worker_id``, as :func:`decide_among` predicts it: history (the worker's, else the
    fleet's), else the defaults; GPU memory the stated minimum while history does not know it
    (GPU figures 0 for a task without a GPU); ``floor`` and ``cap`` as for :func:`decide_among`."""
    demand = history.task_demand(worker_id, task_type) if history is not None and task_type else NO_DEMAND
    demand = _Terms(factors, requirements, None, floor, cap).shape(demand)
    gpu_memory = gpu_percent = 0.0
    if requirements.needs_gpu:
        gpu_memory = demand.gpu_memory_bytes or 0.0
        gpu_percent = factors.default_task_gpu_percent if demand.gpu_percent is None else demand.gpu_percent
    return (factors.default_task_cores if demand.cores is None else demand.cores,
            factors.default_task_memory_bytes if demand.memory_bytes is None else demand.memory_bytes,
            gpu_memory, gpu_percent)


def fits_when_idle(view: WorkerView | None, demand: TaskDemand, requirements: TaskRequirements,
                   factors: ScoringFactors) -> bool:
    """Could the task run on the worker once the worker has drained? Its memory (plus headroom)
    within the worker's memory, its GPU memory (plus headroom, else its stated minimum) within
    its largest usable GPU. CPU and GPU time are compressible: they rule nothing out; nor does
    a figure that is unknown."""
    if view is None:
        return True
    demand = _Terms(factors, requirements, None).shape(demand)
    headroom = 1.0 + factors.memory_headroom_percent / 100.0
    if (demand.memory_bytes is not None and view.memory_total_bytes
            and demand.memory_bytes * headroom > view.memory_total_bytes):
        return False
    if not requirements.needs_gpu:
        return True
    if view.gpus_lost and not view.has_gpus:
        return False
    need = (demand.gpu_memory_bytes or 0.0) * headroom
    return not view.gpu_totals or need <= max(view.gpu_totals)


def gpu_after_placement(levels: Sequence[float], inflight_percents: Sequence[float], own_percent: float) -> float:
    """The utilization (percent of one GPU) of the GPU a new task runs on, once placed.
    ``levels``: each GPU's utilization now; ``inflight_percents``: the share of each GPU task in
    flight. As launchers pick the least loaded GPU, each task in flight (largest first) goes to
    the least busy GPU, then this one adds its ``own_percent`` there. A task of more than one
    GPU spreads over the least busy ones instead (water filling), and the busiest GPU after it
    is returned."""
    gpus = list(levels)
    heapq.heapify(gpus)
    for share in sorted(inflight_percents, reverse=True):
        if share <= 100.0:
            heapq.heapreplace(gpus, gpus[0] + share)
        else:
            gpus = _spread(sorted(gpus), share)  # ascending: a heap already
    if own_percent <= 100.0:
        return gpus[0] + own_percent
    return max(_spread(sorted(gpus), own_percent))


def _spread(levels: list[float], share: float) -> list[float]:
    """``levels`` (ascending) after pouring a task of ``share`` percent into the lowest GPUs
    first (water filling); ascending again."""
    for count in range(1, len(levels) + 1):
        # raise the lowest ``count`` GPUs to a common level, if that stays under the next one
        level = (sum(levels[:count]) + share) / count
        if count == len(levels) or level <= levels[count]:
            return [level] * count + levels[count:]
    return levels


def _not_exclusive(view: WorkerView, count: int, needs_gpu: bool, limit_percent: float) -> Exclusion | None:
    """Why an exclusive task cannot have ``view``'s worker: a task of ours there (``count`` by
    the coordinator, or in flight), or its measured background CPU (GPU, for a GPU task) load
    above ``limit_percent``. Unknown load does not refuse it."""
    tasks = max(count, len(view.inflight))
    if tasks:
        return Exclusion.not_exclusive(view.worker_id, tasks)
    if view.cpu_percent is not None and view.cpu_percent > limit_percent:
        return Exclusion.not_exclusive(view.worker_id, 0, "cpu", view.cpu_percent, limit_percent)
    if needs_gpu and view.gpu_least_percent is not None and view.gpu_least_percent > limit_percent:
        return Exclusion.not_exclusive(view.worker_id, 0, "gpu", view.gpu_least_percent, limit_percent)
    return None


def _larger(value: float | None, other: float | None) -> float | None:
    if other is None:
        return value
    return other if value is None or other > value else value


def _unknown_as_neutral(view: WorkerView, cpu: float | None, memory: float | None, gpu: float | None,
                        demand: TaskDemand, factors: ScoringFactors, eligible: list[tuple],
                        neutral: dict[str, Any], own_gpu: float | None) -> tuple:
    """A worker's load where its samples do not show a resource yet: the candidates' sampled
    median of it (kept in ``neutral``) plus what the tasks in flight and this task add, so a new
    worker (or one with MIG GPUs) is neither idle nor drawing a whole burst before its metrics
    arrive. A resource whose capacity is unknown too stays unknown. ``eligible``: every
    candidate's entry in :func:`decide`'s ``scored`` list (its view at index 3)."""
    if cpu is None and view.cpu_count:
        cores = factors.default_task_cores if demand.cores is None else demand.cores
        cpu = _neutral(neutral, eligible, "cpu_percent") + 100.0 * (view.inflight_cores + cores) / view.cpu_count
    if memory is None and view.memory_total_bytes:
        memory_bytes = factors.default_task_memory_bytes if demand.memory_bytes is None else demand.memory_bytes
        memory = (_neutral(neutral, eligible, "memory_percent")
                  + 100.0 * (view.inflight_memory_bytes + memory_bytes) / view.memory_total_bytes)
    if gpu is None and (view.inflight_gpu_tasks or (own_gpu is not None and view.has_gpus)):
        gpu = _neutral(neutral, eligible, "gpu_least_percent") + view.inflight_gpu_percent + (own_gpu or 0.0)
    return cpu, memory, gpu


def _neutral(neutral: dict[str, Any], eligible: list[tuple], resource: str) -> float:
    """The candidates' median of ``resource`` as their samples show it (0 when none does),
    computed the first time it is needed and kept in ``neutral`` (with the candidates' views)."""
    value = neutral.get(resource)
    if value is None:
        medians = _medians_of(neutral, eligible)[1]
        value = medians.get(resource)
        if value is None:
            known = [value for value in map(attrgetter(resource), neutral["views"]) if value is not None]
            value = medians[resource] = statistics.median(known) if known else 0.0
        neutral[resource] = value
    return value


def _medians_of(neutral: dict[str, Any], eligible: list[tuple]) -> tuple[int, dict[str, float]]:
    """``(number, resource -> median)`` of the candidates (``eligible``, as for
    :func:`_unknown_as_neutral`), kept in ``neutral`` with their views. Candidates in the same
    state share them (e.g. the next task between two rounds of samples); a number is never
    given to other medians."""
    found = neutral.get("medians")
    if found is None:
        views = neutral["views"] = list(filter(None, map(itemgetter(3), eligible)))  # those not None
        # The views' sample serials stand for their percents.
        key = tuple(map(_serial_of, views))
        found = _medians.get(key)
        if found is None:
            if len(_medians) >= _MEDIANS_LIMIT:
                _medians.clear()
            found = _medians[key] = (next(_medians_numbers), {})
        neutral["medians"] = found
    return found


_serial_of = attrgetter("sample_serial")
_MEDIANS_LIMIT = 64
# candidates' sample serials -> (a number for them, resource -> their median)
_medians: dict[tuple, tuple[int, dict[str, float]]] = {}
_medians_numbers = itertools.count()


def _describe_demand(demand: TaskDemand, factors: ScoringFactors) -> str:
    cores = "default" if demand.cores is None else f"{demand.cores:.1f}"
    memory = ("default" if demand.memory_bytes is None else f"{demand.memory_bytes / GIB:.1f} GiB")
    text = f"task predicted from {demand.source} history: {cores} cores, memory {memory}"
    if demand.gpu_memory_bytes is not None:
        text += f", GPU memory {demand.gpu_memory_bytes / GIB:.1f} GiB"
    if demand.gpu_percent is not None:
        text += f", GPU {demand.gpu_percent:.0f}%"
    return text


def _neutral_load(eligible: list[tuple]) -> float:
    """The median of the candidates' busiest known CPU / memory load (0 when none is known);
    ``eligible`` as for :func:`_unknown_as_neutral` (its details start with cpu and memory)."""
    known = []
    for item in eligible:
        cpu, memory = item[4][0], item[4][1]
        if cpu is None:
            if memory is not None:
                known.append(memory)
        else:  # max(cpu, memory) of the known ones: the first unless the second is larger
            known.append(memory if memory is not None and memory > cpu else cpu)
    return statistics.median(known) if known else 0.0


def _history_penalty(stats: TypeStats, fleet_duration: float | None, factors: ScoringFactors) -> float:
    """The failure rate of the task type on the worker, less a bonus (or plus a malus) for
    having run it faster (slower) than the fleet."""
    penalty = factors.failure_penalty_weight * stats.failures / (stats.runs + 2)
    if fleet_duration and stats.duration_s:
        penalty -= factors.duration_weight * max(-1.0, min(1.0, fleet_duration / stats.duration_s - 1.0))
    return penalty


def _tie_digests(seed: int, task_id: str, worker_ids: Sequence[str]) -> list[bytes]:
    """The :func:`tie_break` hash of each worker as 8 bytes (compared as bytes, they order as
    the integers do), the common prefix hashed once."""
    prefix = hashlib.blake2b(f"{seed}\x00{task_id}\x00".encode(), digest_size=8)
    digests = []
    for worker_id in worker_ids:
        digest = prefix.copy()
        digest.update(worker_id.encode())
        digests.append(digest.digest())
    return digests


def _best(scored: list[tuple], count: int, seed: int, task_id: str) -> list[tuple]:
    """The ``count`` best of ``scored`` (adjusted score first), ordered by score, then by the
    seeded tie-break. Only the entries that can make the cut (every one tied with the last
    place included) are sorted, and only those in an exact tie among them are hashed."""
    if len(scored) > count:
        cut = heapq.nlargest(count, map(itemgetter(0), scored))[-1]
        scored = [item for item in scored if item[0] >= cut]
    ranked = sorted(scored, key=itemgetter(0), reverse=True)  # stable: a tie keeps its order
    start, size = 0, len(ranked)
    while start < count and start < size:
        score, end = ranked[start][0], start + 1
        while end < size and ranked[end][0] == score:
            end += 1
        if end - start > 1:
            tied = ranked[start:end]
            digests = _tie_digests(seed, task_id, [item[1] for item in tied])
            ranked[start:end] = [tied[i] for i in sorted(range(len(tied)), key=digests.__getitem__)]
        start = end
    return ranked[:count]


def _original_choice(tied: list[str], scores: Mapping[str, float | None], seed: int,
                     task_id: str) -> tuple[str | None, float | None]:
    """What the original scores alone choose among the workers ``tied`` at the best original
    score (none: no worker was scored), ties broken like the adjusted ones."""
    if not tied:
        return None, None
    worker_id = tied[0]
    if len(tied) > 1:
        digests = _tie_digests(seed, task_id, tied)
        worker_id = tied[digests.index(min(digests))]  # the first of the lowest, as min() picks
    return worker_id, scores[worker_id]


def _explain(chosen: CandidateScore | None, original_id: str | None, exclusions: list[Exclusion],
             available: int) -> str:
    if chosen is None:
        if not available:
            return "no worker available"
        kinds = collections.Counter(e.kind.value for e in exclusions)
        return f"no worker can take the task ({len(exclusions)} excluded: {_counts(kinds)})"
    parts = [f"chose {chosen.worker_id} (score {chosen.adjusted_score:.3f} of original {chosen.original_score:.3f})"]
    if original_id is not None and original_id != chosen.worker_id:
        excluded = list(map(attrgetter("worker_id"), exclusions))  # thousands in a large fleet
        why = exclusions[excluded.index(original_id)].reason if original_id in excluded else None
        outcome = f"excluded: {why}" if why else "scored lower after penalties"
        parts.append(f"original choice {original_id} {outcome}")
    if exclusions:
        parts.append(f"{len(exclusions)} worker(s) excluded")
    return "; ".join(parts)


def _counts(counts: collections.Counter) -> str:
    """``"kind N, kind N"``, the largest first, for an explanation."""
    return ", ".join(f"{kind} {count}" for kind, count in counts.most_common())
