"""One scheduling decision, all on the original scheduler's scale, with its explanation (pure).

For each candidate worker: exclusions first (hardware mismatch, stale, critical load with
hysteresis, isolation, predicted memory that does not fit, a GPU task whose predicted or
required GPU memory no GPU has free), then the adjusted score

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

:func:`decide_among` runs the steps in order over :class:`Candidate` records: admit (hard
constraints, :func:`_admit` / :func:`_state_exclusion`), place (shape the demand, the load after
placement, what fits: :func:`_place`), score the rest against the candidates' medians
(:func:`_score_deferred`), choose (:mod:`fleet_hwmon.scoring.ranking`), explain and record
(:func:`~fleet_hwmon.scoring.decision.make_decision`). The arithmetic lives in
:mod:`fleet_hwmon.scoring.terms`, the typed inputs and the record in
:mod:`fleet_hwmon.scoring.decision` (also importable from here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Mapping, Sequence

from fleet_hwmon.scoring import ranking
from fleet_hwmon.scoring.decision import (ALL_FIT, CandidateScore, DecisionContext, HardwareChecks,  # noqa: F401
                                          OriginalChoice, Reservation, SchedulingDecision, Unranked, make_decision)
from fleet_hwmon.scoring.exclusions import Exclusion
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.history import TaskDemand, TypeStats, demand_of
from fleet_hwmon.scoring.neutral import Neutral, Numbering
from fleet_hwmon.scoring.ranking import tie_break, tie_breaker  # noqa: F401  (part of this module's API)
from fleet_hwmon.scoring.requirements import TaskRequirements
from fleet_hwmon.scoring.terms import (FLOOR, GIB, NO_CAP, NO_PENALTIES, UNKNOWN_LOAD, Assessment,  # noqa: F401
                                       DecisionTerms, DemandCap, Load, Penalties, adjusted_score, fits_when_idle,
                                       gpu_after_placement, task_demand_for, unmeasured_spread)
from fleet_hwmon.scoring.views import WorkerView


_UNSEEN: Any = object()  # a worker whose hardware has not been checked yet


@dataclass(slots=True, eq=False)
class Candidate:
    """A worker the task could go to, filled in by the steps of a decision: its history of the
    task type (``stats``), the task's predicted ``demand`` there, the ``load`` after placing it,
    its ``penalties`` and ``adjusted_score`` (``None`` until scored). Once scored it is not
    changed again, so a worker's scored candidate (and its record) serves the next decisions
    too while its view and original score stay the same (see :func:`_place`)."""

    worker_id: str
    original_score: float
    view: WorkerView | None
    stats: TypeStats | None
    demand: TaskDemand
    load: Load = UNKNOWN_LOAD
    penalties: Penalties | None = None
    adjusted_score: float | None = None
    recorded: CandidateScore | None = field(default=None, init=False)

    def scored(self, penalties: Penalties) -> None:
        self.penalties = penalties
        self.adjusted_score = adjusted_score(self.original_score, penalties)

    def record(self) -> CandidateScore:
        """Its record (made once: a scored candidate is not changed again)."""
        found = self.recorded
        if found is None:
            p = self.penalties
            found = self.recorded = CandidateScore(
                self.worker_id, float(self.original_score), self.adjusted_score, *self.load, p.cpu, p.memory, p.gpu,
                p.balance, p.history, len(self.view.inflight) if self.view is not None else 0)
        return found


def decide(task: Mapping[str, Any], requirements: TaskRequirements, base_scores: Mapping[str, float],
           views: Mapping[str, WorkerView], mismatches: Mapping[str, str | None], context: DecisionContext
           ) -> SchedulingDecision:
    """Choose a worker among ``base_scores`` (worker id -> original score of each available
    worker). ``mismatches`` maps worker id -> hardware mismatch reason (``None`` or absent: the
    hardware fits). See :func:`decide_among`, which this calls."""
    misfits = {worker_id: Exclusion.hardware(worker_id, reason) for worker_id, reason in mismatches.items()
               if reason is not None} if mismatches else {}
    return decide_among(task, requirements, list(base_scores), base_scores, views, ALL_FIT._replace(known=misfits),
                        context)


class _Setting:
    """What one decision works out once: the task, its history, its predicted demand over the
    fleet and the constants of its arithmetic."""

    __slots__ = ("task_id", "task_type", "requirements", "context", "needs_gpu", "exclusive", "fleet_stats",
                 "per_worker", "terms", "fleet_demand", "memo_key", "count_of", "reserved",
                 "state_matters")

    def __init__(self, task: Mapping[str, Any], requirements: TaskRequirements, context: DecisionContext) -> None:
        self.task_id = str(task.get("task_id", ""))
        self.task_type = task_type = task.get("type")
        self.requirements, self.context = requirements, context
        self.needs_gpu = requirements.needs_gpu
        self.exclusive = requirements.isolation == "exclusive"
        history = context.history
        # No fleet statistics of the type means no worker has any: history changes nothing.
        self.fleet_stats = stats = (history.fleet_stats(task_type)
                                    if history is not None and task_type is not None else None)
        self.per_worker = history.workers_of_type(task_type) if stats is not None else {}
        self.terms = terms = terms_for(context, requirements, stats.duration_s if stats is not None else None)
        # Without history of the type the fleet's demand and the memo key rest on the terms alone
        # (the same object while its inputs stay the same): worked out once for them.
        found = _no_history.get(id(terms)) if stats is None else None
        if found is None or found[0] is not terms:
            fleet_demand = terms.shape(demand_of(None, stats))
            # What the load and penalties of a worker without history of its own depend on, besides its view
            # (the cap too: a quiet task's own cores count at most a share of the largest worker's).
            found = (terms, fleet_demand, _contexts.of((fleet_demand, self.needs_gpu, requirements.isolation,
                                                        _factors_number(context.factors), context.probe,
                                                        context.cap))[0])
            if stats is None:
                if len(_no_history) >= 256:
                    _no_history.clear()
                _no_history[id(terms)] = found
        _, self.fleet_demand, self.memo_key = found
        # A figure never measured: its spread reaches the heaviest type measured, which moves as
        # the fleet learns, so it is not part of what is kept above.
        demand = unmeasured_spread(self.fleet_demand, history, context.factors, self.needs_gpu)
        if demand is not self.fleet_demand:
            self.fleet_demand = demand
            self.memo_key = _contexts.of((demand, self.needs_gpu, requirements.isolation,
                                          _factors_number(context.factors), context.probe, context.cap))[0]
        self.count_of = context.task_counts.get if context.task_counts else {}.get
        self.reserved = context.reserved
        self.state_matters = self.needs_gpu or self.exclusive  # lost GPUs, tasks of ours: checked on every worker

    def demand(self, stats: TypeStats | None) -> TaskDemand:
        """The task's predicted demand on a worker with ``stats`` of the type (else the fleet's)."""
        if stats is None:
            return self.fleet_demand
        return unmeasured_spread(self.terms.shape(demand_of(stats, self.fleet_stats)), self.context.history,
                                 self.context.factors, self.needs_gpu)


class _Pool:
    """The workers of a decision sorted by the first steps: excluded (``early``: before
    scoring, listed first), candidates (``deferred``: still to score against the candidates'
    medians), and the workers with the best original score."""

    __slots__ = ("early", "exclusions", "candidates", "deferred", "best_ids", "known_any")

    def __init__(self, early: list[Exclusion]) -> None:
        self.early = early
        self.exclusions: list[Exclusion] = []
        self.candidates: list[Candidate] = []
        self.deferred: list[Candidate] = []
        self.best_ids: list[str] = []
        self.known_any = False  # some candidate's load is known from its samples


def decide_among(task: Mapping[str, Any], requirements: TaskRequirements, worker_ids: Sequence[str],
                 scores: Mapping[str, float | None], views: Mapping[str, WorkerView], hardware: HardwareChecks,
                 context: DecisionContext, unknown: list[str] | None = None) -> SchedulingDecision:
    """Choose a worker among ``worker_ids`` (the available workers, in order), in one pass over them.

    ``scores`` maps worker id -> original score (absent or ``None``: the original scheduler
    would not pick it); ``views`` holds the scheduler's view of each worker (a worker without a
    view has unknown load and is not excluded for it); ``hardware`` gives each worker's
    hardware mismatch. Never-sampled workers that were scored (at the candidates' median) are
    appended to ``unknown``.

    A worker is excluded before scoring when ``context.task_limit`` is given and its count is
    at least the limit, or when it has no original score: the reason is then its hardware
    mismatch, else ``rejected by the original scheduler``. These exclusions come first, after
    ``context.extra_exclusions``, in worker order; the others (hardware mismatch of a scored
    worker, a retried task's ``context.avoid``, stale, critical, isolation, reserved, the task
    does not fit) follow in worker order.
    A worker listed twice is scored once.

    This runs once per task over every available worker, so the per-worker work is kept to a
    few lookups: the views keep their in-flight totals and free memory up to date as samples
    arrive, and remember each worker's assessment until their state changes or a run of the
    type is recorded there (``WorkerView.scoring_memo``); history is consulted only when the
    fleet has run the task type; the tie-break hash is computed only among exact ties at the
    best score (the others' when the decision's candidates are first read: :class:`Unranked`)
    and the candidate records only for the best ``max_recorded``.
    """
    setting = _Setting(task, requirements, context)
    pool = _admit(setting, worker_ids, scores, views, hardware, unknown)
    _score_deferred(setting, pool)
    original = context.original_choice
    if original is None:
        original = ranking.original_choice(pool.best_ids, scores, context.seed, setting.task_id)
    exclusions = pool.early + pool.exclusions
    count, seed, task_id = max(1, context.max_recorded), context.seed, setting.task_id
    contenders = ranking.contenders(pool.candidates, count, _adjusted_of)
    ordered = len(contenders) > count  # ties at the cut: ordered now, so that only the best are recorded
    if ordered:
        contenders = ranking.best(contenders, count, seed, task_id, _adjusted_of, _worker_of)
        chosen = contenders[0]
    else:  # the best now; the others' order (their tie-breaks) when the decision's candidates are read
        chosen = ranking.top(contenders, seed, task_id, _adjusted_of, _worker_of)
    if chosen is None:
        return make_decision(task_id, setting.task_type, requirements, context, None, None, original, exclusions,
                             len(pool.candidates))
    records = [candidate.record() if candidate.recorded is None else candidate.recorded for candidate in contenders]
    ranked = records if ordered else Unranked(chosen.recorded, records, context.max_recorded, seed, task_id)
    return make_decision(task_id, setting.task_type, requirements, context, ranked, chosen.demand, original,
                         exclusions, len(pool.candidates))


_adjusted_of = attrgetter("adjusted_score")
_worker_of = attrgetter("worker_id")


def _admit(s: _Setting, worker_ids: Sequence[str], scores: Mapping[str, float | None],
           views: Mapping[str, WorkerView], hardware: HardwareChecks, unknown: list[str] | None) -> _Pool:
    """The pass over the workers: the hard constraints (task limit, original score, hardware,
    the worker's state), then each remaining worker placed (:func:`_place`), or deferred when
    its load is not known (never sampled, samples stopped, no view)."""
    context = s.context
    pool = _Pool(list(context.extra_exclusions))
    early_exclude, exclude = pool.early.append, pool.exclusions.append
    add, defer = pool.candidates.append, pool.deferred.append
    limit, avoid = context.task_limit, context.avoid
    count_of, known, check = s.count_of, hardware.known.get, hardware.check
    score_of, views_get, per_worker = scores.get, views.get, s.per_worker
    now_s, stale_after_s, fleet_demand = context.now_s, context.stale_after_s, s.fleet_demand
    memo_key, reserved, state_matters = s.memo_key, s.reserved, s.state_matters
    terms_number = s.terms.number
    known_any = False  # some candidate's load is known from its samples
    repeats = len(set(worker_ids)) < len(worker_ids)
    taken: set[str] = set()  # the workers scored so far, when one may be listed twice
    best_original: Any = float("-inf")  # the best original score so far and the workers that have it
    best_ids = pool.best_ids
    for worker_id in worker_ids:
        if limit is not None and count_of(worker_id, 0) >= limit:
            early_exclude(Exclusion.task_limit(worker_id, limit))
            continue
        mismatch = known(worker_id, _UNSEEN)
        if mismatch is _UNSEEN:
            mismatch = check(worker_id)
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
                best_original, best_ids[:] = base, [worker_id]
            else:
                best_ids.append(worker_id)
        if mismatch is not None:
            exclude(mismatch)
            continue
        if avoid and worker_id in avoid:  # its earlier attempt ran out of a resource there
            exclude(Exclusion.failed_here(worker_id, avoid[worker_id]))
            continue
        view = views_get(worker_id)
        if view is None:
            candidate = Candidate(worker_id, base, None, None, fleet_demand)
            add(candidate)
            defer(candidate)
            continue
        last_s = view.last_sample_s
        samples_stale = last_s is not None and now_s - last_s > stale_after_s  # view.samples_stale(), inline
        # (the worker's state can rule it out only when one of these holds: see _state_exclusion)
        if samples_stale or view.excluded is not None or view.exclusive_task is not None or state_matters:
            excluded = _state_exclusion(s, worker_id, view, samples_stale)
            if excluded is not None:
                exclude(excluded)
                continue
        stats = per_worker.get(worker_id) if per_worker else None
        if last_s is None or samples_stale:  # nothing sampled, or its samples stopped: load unknown
            if last_s is None and unknown is not None:
                unknown.append(worker_id)
            candidate = Candidate(worker_id, base, view, stats, fleet_demand if stats is None else s.demand(stats))
            if samples_stale:  # the room and load it last showed, with what went there since, still bind
                excluded = _stale_misfit(s, candidate)
                if excluded is not None:
                    exclude(excluded)
                    continue
            add(candidate)
            defer(candidate)
            continue
        known_any = True
        drained = not count_of(worker_id, 0) and not view.inflight_memory_bytes and not view.inflight_gpu_tasks
        found = None
        if not reserved or worker_id not in reserved:  # most often its memo has the answer
            if stats is None:
                found = view.scoring_memo.get((memo_key, drained, base))
            else:
                kept = view.scoring_memo.get((memo_key, terms_number, drained, base, id(stats)))
                if kept is not None and kept[0] is stats and kept[1] == stats.runs:
                    found = kept[2]
        if found is None or (type(found) is Candidate and found.penalties is None):
            found = _place(s, worker_id, base, view, stats, fleet_demand if stats is None else s.demand(stats),
                           drained)
        if type(found) is not Candidate:
            exclude(found)
            continue
        if found.penalties is None:
            defer(found)
        add(found)
    pool.known_any = known_any
    return pool


def _state_exclusion(s: _Setting, worker_id: str, view: WorkerView, samples_stale: bool) -> Exclusion | None:
    """What the worker's state rules out: stale samples (and no life shown), critical memory
    (GPU memory: only for GPU tasks), an exclusive task of ours there, no usable GPU left for
    a GPU task, and for an exclusive task any task of ours or background load there."""
    context = s.context
    excluded = view.stale_exclusion(context.now_s, context.stale_after_s) if samples_stale else view.excluded
    if excluded is not None and (excluded.resource != "gpu_memory" or s.needs_gpu):
        return excluded
    if view.exclusive_task is not None and view.exclusive_task != s.task_id:
        return Exclusion.held_exclusive(worker_id, view.exclusive_task)
    if s.needs_gpu and view.gpus_lost and not view.has_gpus:
        return Exclusion.gpu_unhealthy(worker_id, view.gpus_lost, view.gpus_lost)
    if s.exclusive:
        return _not_exclusive(view, s.count_of(worker_id, 0), s.needs_gpu,
                              context.factors.exclusive_background_percent)
    return None


def _place(s: _Setting, worker_id: str, base: float, view: WorkerView, stats: TypeStats | None,
           demand: TaskDemand, drained: bool) -> Candidate | Exclusion:
    """Place the task (its predicted ``demand``) on a sampled worker whose original score is
    ``base`` (``drained``: nothing of ours runs or waits there): a candidate with its load
    after placement and, when every figure is known, its penalties and score; or why the task
    does not fit there (a reserved worker: when it does not fit beside the reserved task's
    need). A worker is placed once per state of its view and original score (its memo, keyed
    by the scoring context, ``drained`` and ``base``; with history of its own, also by the
    terms and its statistics of the type, kept with their count of runs, which any run
    recorded there moves), and a scored candidate of it serves every decision until then
    (:func:`_admit` reads the memo first)."""
    hold = s.reserved.get(worker_id) if s.reserved else None
    if hold is not None:  # backfill: only what fits beside the reserved task's need
        found = s.terms.assess(view, demand, stats, (hold.memory_bytes, hold.gpu_memory_bytes))
        return hold.exclusion if found.exclusion is not None else _candidate(worker_id, base, view, stats, demand,
                                                                             found)
    memo = view.scoring_memo
    if stats is not None:  # remembered with the runs it rests on (a run recorded since changes the answer)
        found = _candidate(worker_id, base, view, stats, demand, s.terms.assess(view, demand, stats, drained=drained))
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[(s.memo_key, s.terms.number, drained, base, id(stats))] = (stats, stats.runs, found)
        if type(found) is Candidate and found.penalties is None:
            return Candidate(worker_id, base, view, stats, demand, found.load)
        return found
    key = (s.memo_key, drained, base)
    found = memo.get(key)
    if found is None:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        found = memo[key] = _candidate(worker_id, base, view, None, demand,
                                       s.terms.assess(view, demand, None, drained=drained))
    if type(found) is Candidate and found.penalties is None:  # scored in each decision: a fresh one
        return Candidate(worker_id, base, view, None, demand, found.load)
    return found


def _candidate(worker_id: str, base: float, view: WorkerView, stats: TypeStats | None, demand: TaskDemand,
               found: Assessment) -> Candidate | Exclusion:
    """The candidate (scored when its penalties are known) or the exclusion ``found`` says."""
    if found.exclusion is not None:
        return found.exclusion
    penalties = found.penalties
    if penalties is None:
        return Candidate(worker_id, base, view, stats, demand, found.load)
    return Candidate(worker_id, base, view, stats, demand, found.load, penalties, adjusted_score(base, penalties))


def _score_deferred(s: _Setting, pool: _Pool) -> None:
    """Score the candidates whose load is not (fully) known, against the candidates' medians
    (:class:`Neutral`); when no candidate's load is known, the original scores stand."""
    if not pool.deferred:
        return
    if not pool.known_any:  # nothing is known of any candidate's load: the original scheduler's choice stands
        for candidate in pool.deferred:
            candidate.scored(NO_PENALTIES)
        return
    context, terms = s.context, s.terms
    neutral = Neutral(pool.candidates)
    # Without history of its own, a worker's outcome rests on its view, the context and the
    # candidates' medians: remembered in its view's memo like the others' (until they change).
    with_medians: int | None = None  # memo key of this context with these candidates' medians
    for candidate in pool.deferred:
        view = candidate.view
        memo = found = None
        if view is not None and candidate.stats is None and (
                view.last_sample_s is None or context.now_s - view.last_sample_s <= context.stale_after_s):
            if with_medians is None:
                with_medians = _contexts.of((s.memo_key, neutral.number()))[0]
            memo = view.scoring_memo
            found = memo.get(with_medians)
        if found is None:
            load = candidate.load
            if view is not None:
                load = neutral.fill(view, load, candidate.demand, context.factors,
                                    terms.own_gpu(candidate.demand) if terms.needs_gpu else None)
            found = terms.penalties(load, candidate.stats, neutral.busiest)
            if memo is not None and (load.cpu_percent is not None or load.memory_percent is not None):
                if len(memo) >= _MEMO_SIZE:  # (not remembered when it rests on neutral.busiest())
                    memo.clear()
                memo[with_medians] = found
        candidate.scored(found)


_MEMO_SIZE = 32  # placements and scoring contexts a view remembers at most (its memo starts over beyond)
_contexts = Numbering(256)  # a number per scoring context, a cheap key for the views' memos
_factors_numbers: dict[int, tuple[ScoringFactors, int]] = {}  # id -> (the factors, their number)
_terms_made: dict[tuple, DecisionTerms] = {}  # (factors number, requirements, duration, floor, cap) -> terms
_no_history: dict[int, tuple[DecisionTerms, TaskDemand, int]] = {}  # id(terms) -> (terms, fleet demand, memo key)


def _factors_number(factors: ScoringFactors) -> int:
    """A number for ``factors`` (equal factors, equal numbers), found by the object's identity:
    the scheduler hands the same object until its factors change, and hashing every field on
    each decision would cost more than the lookups it serves."""
    found = _factors_numbers.get(id(factors))
    if found is None or found[0] is not factors:
        if len(_factors_numbers) >= 64:
            _factors_numbers.clear()
        found = _factors_numbers[id(factors)] = (factors, _contexts.of(factors)[0])
    return found[1]


def terms_for(context: DecisionContext, requirements: TaskRequirements, fleet_duration: float | None
              ) -> DecisionTerms:
    """The :class:`DecisionTerms` of a decision, made once per distinct inputs (they repeat from
    one decision to the next); ``fleet_duration``: the task type's over the fleet (seconds)."""
    key = (_factors_number(context.factors), requirements, fleet_duration, context.floor, context.cap, context.probe)
    terms = _terms_made.get(key)
    if terms is None:
        if len(_terms_made) >= 256:
            _terms_made.clear()
        terms = _terms_made[key] = DecisionTerms(context.factors, requirements, fleet_duration, context.floor,
                                                 context.cap, context.probe)
    return terms


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


def _stale_misfit(s: _Setting, candidate: Candidate) -> Exclusion | None:
    """The hard checks on a worker whose samples stopped while the coordinator sees it alive.
    Incompressible: its last sample's free memory, less the tasks placed there since, must hold
    the task (with headroom). On a drained worker (nothing of ours running or in flight) what
    its last sample showed used may have been ours, so only its whole memory must hold the
    task: judged on the old figures, tasks could wait forever beside it, but none goes where it
    never fits. A reserved worker takes only what fits beside the reserved task's need, as when
    sampled. Quiet: the last CPU (GPU) it showed plus what went there since is the best
    estimate of its load, so a quiet task is held to the quiet threshold on it as on a sampled
    worker (a quiet promise is not made on a load no one knows to be low), and so is a task
    placed beside a quiet task running there (nor broken by it)."""
    view, demand = candidate.view, candidate.demand
    hold = s.reserved.get(candidate.worker_id) if s.reserved else None
    if hold is not None:  # backfill, as on a sampled worker: only beside the reserved task's need
        misfit = s.terms.misfit(view, demand, (hold.memory_bytes, hold.gpu_memory_bytes))
        excluded = None if misfit is None else hold.exclusion
    elif (not s.count_of(candidate.worker_id, 0) and not view.inflight_memory_bytes
            and not view.inflight_gpu_tasks):
        total = view.memory_total_bytes
        if demand.memory_bytes is not None and total and demand.memory_bytes > total:
            return Exclusion.memory_fit(view.worker_id, demand.memory_bytes, total, 0.0)
        excluded = None
    else:
        excluded = s.terms.misfit(view, demand)
    if excluded is None and (s.terms.quiet or view.quiet_tasks):
        cores = s.context.factors.default_task_cores if demand.cores is None else demand.cores
        excluded = s.terms.not_quiet(view, cores, demand)
    return excluded
