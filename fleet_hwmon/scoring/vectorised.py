"""The decision of :func:`~fleet_hwmon.scoring.decide.decide_among`, computed over whole columns
of a :class:`~fleet_hwmon.scoring.fleet_state.FleetState` (numpy) instead of worker by worker.

The same rules and the same arithmetic, in the same order, so both give the same decision
(``tests/test_vectorised_decisions.py`` checks it on a recorded corpus); Python objects are
made only for the excluded workers and the best ``max_recorded`` candidates, whose explanation
is recorded. :func:`decide_vectorised` returns ``None`` for what it does not cover (fewer than
``VECTORISE_FROM`` workers, tasks with isolation, a worker listed twice or unknown to the
state); the caller then takes the per-worker path.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np

from fleet_hwmon.scoring import ranking
from fleet_hwmon.scoring.decide import (CandidateScore, DecisionContext, HardwareChecks, SchedulingDecision,
                                        make_decision, terms_for)
from fleet_hwmon.scoring.exclusions import Exclusion, ExclusionKind
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.fleet_state import CRITICAL_GPU_MEMORY, CRITICAL_MEMORY, FleetState
from fleet_hwmon.scoring.history import TaskDemand, demand_of
from fleet_hwmon.scoring.requirements import TaskRequirements
from fleet_hwmon.scoring.terms import FLOOR, gpu_after_placement, history_penalty, quiet_margins, unmeasured_spread

# Below this many workers numpy's per-call cost outweighs the loop: the per-worker path decides.
VECTORISE_FROM = 512


def decide_vectorised(task: Mapping[str, Any], requirements: TaskRequirements, worker_ids: Sequence[str],
                      scores: Mapping[str, float | None], state: FleetState, hardware: HardwareChecks,
                      context: DecisionContext, unknown: list[str] | None = None,
                      kinds: dict[ExclusionKind, int] | None = None) -> SchedulingDecision | None:
    """:func:`~fleet_hwmon.scoring.decide.decide_among` over ``state`` (same arguments, the
    views replaced by the state's rows); ``None`` when the case is not covered. ``kinds``, when
    given, receives the decision's count of exclusions by kind (from the masks that made them,
    so that statistics need not count thousands of records; ``hardware``'s mismatches are
    :attr:`ExclusionKind.HARDWARE` exclusions, as :class:`HardwareChecks` makes them)."""
    count = len(worker_ids)
    if (count < VECTORISE_FROM or count > len(state.views) or requirements.isolation != "shared"
            or context.extra_exclusions):
        return None
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN is unknown: it compares False, and stays NaN
        return _decide(task, requirements, worker_ids, scores, state, hardware, context, unknown, count, kinds)


def _decide(task: Mapping[str, Any], requirements: TaskRequirements, worker_ids: Sequence[str],
            scores: Mapping[str, float | None], state: FleetState, hardware: HardwareChecks,
            context: DecisionContext, unknown: list[str] | None, count: int,
            kinds: dict[ExclusionKind, int] | None = None) -> SchedulingDecision | None:
    factors, history, now_s, stale_after_s = context.factors, context.history, context.now_s, context.stale_after_s
    seed, max_recorded, task_counts, task_limit = (context.seed, context.max_recorded, context.task_counts,
                                                   context.task_limit)
    ids = worker_ids if type(worker_ids) is list else list(worker_ids)
    rows, distinct = state.rows(ids, count)
    if not distinct:
        return None
    col = state.columns(rows)
    task_id = str(task.get("task_id", ""))
    task_type = task.get("type")
    needs_gpu = requirements.needs_gpu
    fleet_stats = history.fleet_stats(task_type) if history is not None and task_type is not None else None
    learnt = fleet_stats is not None
    terms = terms_for(context, requirements, fleet_stats.duration_s if learnt else None)
    fleet_demand = unmeasured_spread(terms.shape(demand_of(None, fleet_stats)), history, factors, needs_gpu)

    base = _column(scores, ids, None)  # None -> NaN: not scored
    # The coordinator's task counts as a column only for the task limit; else read below for
    # the few workers whose being drained can change the answer.
    nothing = np.zeros(count, dtype=bool)  # a mask of a check that cannot fire: shared, never written to
    counts, at_limit, no_score = None, nothing, np.isnan(base)
    if task_limit is not None:
        counts = _column(task_counts or {}, ids, 0)
        at_limit = counts >= task_limit
        no_score &= ~at_limit
    scored = ~(at_limit | no_score)

    hardware_ok, mismatches = state.hardware_mismatches(requirements, hardware.of)
    hardware_ok = hardware_ok[rows]
    last = col.last_sample_s
    alive = col.last_alive_s
    never = np.isnan(last)
    # The rare checks (stopped samples, critical memory, quiet tasks) are skipped when one test
    # shows none can fire; ``nothing`` stands for their masks then.
    samples_stale = stale = critical = nothing
    if now_s - np.fmin.reduce(last) > stale_after_s:  # the oldest sample (NaN: never sampled) is stale
        samples_stale = ~never & (now_s - last > stale_after_s)
        stale = samples_stale & ~((now_s - alive <= stale_after_s) | (alive > last))
    if col.critical.any():
        critical = col.critical
        critical = ~samples_stale & ((critical == CRITICAL_MEMORY)
                                     | ((critical == CRITICAL_GPU_MEMORY) & needs_gpu))
    lost = (col.gpus_lost > 0) & (col.has_gpus == 0) if needs_gpu else nothing
    held = col.exclusive == 1
    if held.any():  # an exclusive task of ours runs there: excluded unless it is this task
        views = state.views
        held &= np.array([views[r].exclusive_task != task_id for r in rows], dtype=bool)
    avoid = context.avoid
    avoided = nothing
    if avoid:  # a retried task: the workers its earlier attempts ran out of a resource on
        avoided = np.fromiter((w in avoid for w in ids), dtype=bool, count=count) & hardware_ok
    rest = scored & hardware_ok & ~avoided & ~stale & ~critical & ~held & ~lost  # reach the load checks
    unknown_rows = rest & (never | samples_stale)
    known = rest & ~unknown_rows
    known_any = bool(known.any())
    # Workers kept for a waiting task (reserved, or shielded): one sampled, or whose samples
    # stopped, takes the task only beside what is kept there, with headroom (decide._place,
    # decide._stale_misfit).
    kept, kept_memory, kept_gpu = nothing, 0.0, 0.0
    if context.reserved:
        kept, kept_memory, kept_gpu = _kept(context.reserved, state, rows, known | (rest & samples_stale))

    # The task's predicted demand: the fleet's (one number each, NaN unknown), or per row where
    # some worker has a history of the type of its own.
    d_cores, d_memory, d_gpu_memory, d_gpu_percent = map(_nan, fleet_demand[:4])
    hist_penalty: Any = 0.0
    own: dict[int, tuple[TaskDemand, Any]] = {}  # position -> (demand, stats) of workers with history
    if learnt:
        position_of = {worker_id: i for i, worker_id in enumerate(ids)}
        for worker_id, stats in history.workers_of_type(task_type).items():
            i = position_of.get(worker_id)
            if i is None or not rest[i]:
                continue
            if not own:
                d_cores, d_memory, d_gpu_memory, d_gpu_percent = (np.full(count, v) for v in
                                                                  (d_cores, d_memory, d_gpu_memory, d_gpu_percent))
                hist_penalty = np.zeros(count)
            demand = unmeasured_spread(terms.shape(demand_of(stats, fleet_stats)), history, factors, needs_gpu)
            own[i] = (demand, stats)
            d_cores[i], d_memory[i], d_gpu_memory[i], d_gpu_percent[i] = map(_nan, demand[:4])
            hist_penalty[i] = history_penalty(stats, terms.fleet_duration, factors)

    # The load after placing the task (NaN: unknown), as _Terms.of computes it.
    cores = _known_or(d_cores, factors.default_task_cores)
    memory_bytes = _known_or(d_memory, factors.default_task_memory_bytes)
    own_gpu = _known_or(d_gpu_percent, factors.default_task_gpu_percent) if needs_gpu else 0.0
    cpu_count, memory_total = col.cpu_count, col.memory_total
    inflight_cores, inflight_memory = col.inflight_cores, col.inflight_memory
    inflight_gpu_tasks, inflight_gpu = col.inflight_gpu_tasks, col.inflight_gpu_percent
    has_gpus = col.has_gpus == 1
    # (An unknown figure stays NaN through + and /: only an unknown capacity needs guarding.)
    has_cores, has_memory = cpu_count > 0, memory_total > 0
    cpu = col.cpu
    cpu = np.where(has_cores, cpu + 100.0 * (inflight_cores + cores) / cpu_count, cpu)
    memory = col.memory
    memory = np.where(has_memory, memory + 100.0 * (inflight_memory + memory_bytes) / memory_total, memory)
    gpu = col.gpu_least
    placed = ~np.isnan(gpu) & (needs_gpu | (inflight_gpu_tasks > 0)) & known
    one = col.gpu_levels == 1
    gpu = np.where(placed & one, gpu + (inflight_gpu + own_gpu), gpu)
    for i in np.flatnonzero(placed & ~one):  # several GPUs: in-flight tasks spread over them
        view = state.views[rows[i]]
        gpu[i] = gpu_after_placement(view.gpu_levels, view.inflight_gpu_shares, _at(own_gpu, i))
    # Incompressible room: memory, then GPU memory on one GPU (with headroom).
    free = col.memory_free - inflight_memory - kept_memory
    room = col.gpu_room
    # A drained worker (nothing of ours running or in flight) waives the headroom (_Terms.misfit).
    idle = (inflight_memory == 0) & (inflight_gpu_tasks == 0)
    if counts is not None:
        drained = (counts == 0) & idle
    else:  # drained matters where a misfit depends on the headroom, and for stopped samples
        maybe = samples_stale | (d_memory > free) | (d_memory * terms.headroom > free)
        if needs_gpu:
            maybe |= (d_gpu_memory > room - 0.0) | (d_gpu_memory * terms.headroom > room - 0.0)
        drained = np.zeros(count, dtype=bool)
        count_of = (task_counts or {}).get
        for i in np.flatnonzero(idle & maybe).tolist():
            drained[i] = count_of(ids[i], 0) == 0
    if kept is not nothing:
        drained &= ~kept  # beside a kept need the headroom always holds
    headroom = np.where(drained, 1.0, terms.headroom)
    # A worker whose samples stopped (alive by the coordinator) is checked too; drained, on
    # its whole memory only (decide._stale_misfit).
    stale_drained = rest & samples_stale & drained
    free = np.where(stale_drained, memory_total, free)
    checked = known | (rest & samples_stale)
    memory_misfit = checked & ~np.isnan(d_memory) & (d_memory * headroom > free)
    gpu_misfit = (checked & ~stale_drained & ~memory_misfit & ~np.isnan(d_gpu_memory)
                  & (d_gpu_memory * headroom > room - kept_gpu)
                  if needs_gpu else nothing)
    # Beside a running quiet task: nothing that pushes the load over the quiet threshold.
    limit = factors.quiet_threshold_percent
    q_cpu, q_gpu, quiet_cpu, quiet_gpu = col.quiet_cpu, col.quiet_gpu_least, nothing, nothing
    # (a stopped worker alive by the coordinator too, on its last figures: decide._stale_misfit)
    guarded = checked & ~memory_misfit & ~gpu_misfit & (col.quiet > 0) if col.quiet.any() else nothing
    # ... on the larger of smoothed and latest figures, the task at its prediction plus its
    # type's margin (the fleet's spread, scaled: one number for every row; for a type never
    # measured, up to the heaviest type's: unmeasured_spread) (_Terms.not_quiet)
    cores_spread, gpu_spread = quiet_margins(fleet_demand, factors)
    if guarded is not nothing:
        q_cpu = np.where(has_cores, q_cpu + 100.0 * (inflight_cores + cores + cores_spread) / cpu_count, q_cpu)
        quiet_cpu = guarded & (q_cpu > limit)
    if needs_gpu and guarded.any():
        q_gpu = np.where(one, q_gpu + (inflight_gpu + (own_gpu + gpu_spread)), q_gpu)
        for i in np.flatnonzero(guarded & ~np.isnan(q_gpu) & ~one):
            view = state.views[rows[i]]
            q_gpu[i] = gpu_after_placement(view.quiet_gpu_levels, view.inflight_gpu_shares,
                                           _at(own_gpu, i) + gpu_spread)
        quiet_gpu = guarded & ~quiet_cpu & (q_gpu > limit)
    candidates = rest & ~memory_misfit & ~gpu_misfit & ~quiet_cpu & ~quiet_gpu
    # Where the keeping's exclusion stands for the task's own: a misfit beside the kept need,
    # and on a sampled worker any (decide._place); a stopped worker's quiet check stays its own.
    kept_off = kept & (memory_misfit | gpu_misfit | known) if kept is not nothing else None
    cpu = np.where(known, cpu, np.nan)  # never-sampled and stopped workers: every figure unknown
    memory = np.where(known, memory, np.nan)
    gpu = np.where(known, gpu, np.nan)
    cpu_unknown, memory_unknown, gpu_unknown = np.isnan(cpu), np.isnan(memory), np.isnan(gpu)
    gpu_matters = (inflight_gpu_tasks > 0) | (needs_gpu & has_gpus)  # the GPU figure is part of the load
    deferred = candidates & (cpu_unknown | memory_unknown | (gpu_unknown & gpu_matters))

    cpu_eff, memory_eff, gpu_eff = cpu, memory, gpu
    if deferred.any() and known_any:  # unknown figures count as the candidates' sampled median
        # Each median only where a figure of its resource is filled in (often GPU alone); the
        # medians rest on the smoothed figures alone, so the state keeps them until one changes.
        memo, among = state.figures_memo(rows), candidates.tobytes()
        fill_cpu = deferred & cpu_unknown & has_cores
        if fill_cpu.any():
            cpu_eff = np.where(fill_cpu, _median(memo, "cpu", among, col.cpu, candidates)
                               + 100.0 * (inflight_cores + cores) / cpu_count, cpu)
        fill_memory = deferred & memory_unknown & has_memory
        if fill_memory.any():
            memory_eff = np.where(fill_memory, _median(memo, "memory", among, col.memory, candidates)
                                  + 100.0 * (inflight_memory + memory_bytes) / memory_total, memory)
        fill_gpu = deferred & gpu_unknown & gpu_matters
        if fill_gpu.any():
            gpu_eff = np.where(fill_gpu, _median(memo, "gpu", among, col.gpu_least, candidates)
                               + inflight_gpu + own_gpu, gpu)
        if (deferred & np.isnan(cpu_eff) & np.isnan(memory_eff)).any():
            return None  # no load known at all: the per-worker path's median of the busiest loads
    penalties = _penalties(terms, cpu_eff, memory_eff, gpu_eff, hist_penalty, needs_gpu)
    total = penalties[-1]
    adjusted = np.where(base > 0, base * np.maximum(FLOOR, 1.0 - total), base - total)
    if not known_any:  # nothing known of any candidate: the original scheduler's choice stands
        adjusted = base
        penalties = tuple(0.0 for _ in penalties)
    if unknown is not None and (candidates & never).any():
        unknown.extend(ids[i] for i in np.flatnonzero(candidates & never))

    # The best (by score, then by the seeded tie-break, as ranking.best orders them), then the
    # records of the few recorded.
    picked = np.flatnonzero(candidates)
    wanted = max(1, max_recorded)
    if picked.size > wanted:
        cut = np.partition(adjusted[picked], picked.size - wanted)[picked.size - wanted]
        picked = picked[adjusted[picked] >= cut]
    task_key = ranking.task_key(seed, task_id)
    picked = picked[np.lexsort((ranking.tie_breaks(task_key, state.tie_keys[rows[picked]]), -adjusted[picked]))]
    recorded = picked[:wanted]
    size = recorded.size
    records = list(itertools.starmap(CandidateScore, zip(
        [ids[i] for i in recorded.tolist()], base[recorded].tolist(), adjusted[recorded].tolist(),
        _nones(cpu[recorded]), _nones(memory[recorded]), _nones(gpu[recorded]),
        *(_values(p, recorded, size) for p in penalties[:-1]), col.inflight_count[recorded].astype(int).tolist())))
    chosen_demand = None
    if records:
        first = int(picked[0])
        chosen_demand = own[first][0] if first in own else fleet_demand
    original, original_is_candidate = context.original_choice, False
    if original is None:
        original = None, None
        best = base if at_limit is nothing else np.where(scored, base, np.nan)  # NaN: not scored
        top = np.fmax.reduce(best)
        if top == top:  # the best original score (NaN: none), ties broken as the adjusted ones
            tied = np.flatnonzero(best == top)
            first = int(tied[np.argmin(ranking.tie_breaks(task_key, state.tie_keys[rows[tied]]))]) if tied.size > 1 \
                else int(tied[0])
            original, original_is_candidate = (ids[first], scores[ids[first]]), bool(candidates[first])
    exclusions = _exclusions(ids, rows, state, mismatches, at_limit, no_score, hardware_ok, task_limit, scored,
                             avoided, avoid, stale, critical, held, lost, memory_misfit, gpu_misfit, drained,
                             d_memory, free, d_gpu_memory, room, factors, now_s, stale_after_s, quiet_cpu, quiet_gpu,
                             q_cpu, q_gpu, kinds, kept_off, context.reserved)
    return make_decision(task_id, task_type, requirements, context, records, chosen_demand, original, exclusions,
                         int(candidates.sum()), original_is_candidate)


def _penalties(terms: Any, cpu: np.ndarray, memory: np.ndarray, gpu: np.ndarray, history: Any,
               needs_gpu: bool) -> tuple[Any, ...]:
    """(cpu, memory, gpu, balance, history penalty, total) per row, as ``_Terms.penalties``
    (a term that is 0 on every row, and ``history`` when given so, as one number). Call
    under ``np.errstate(invalid="ignore")``."""
    factors = terms.factors
    # (x > threshold is False for an unknown x, NaN, as for one at or under the threshold.)
    cpu_pen = np.where(cpu > terms.cpu_t, factors.cpu_penalty_weight * (cpu - terms.cpu_t) / terms.cpu_d
                       + np.where(cpu > 100.0, terms.over_w * (cpu - 100.0), 0.0), 0.0)
    memory_pen = np.where(memory > terms.mem_t, factors.memory_penalty_weight * (memory - terms.mem_t) / terms.mem_d
                          + np.where(memory > 100.0, terms.over_w * (memory - 100.0), 0.0), 0.0)
    busiest = np.fmax(cpu, memory)
    gpu_pen: Any = 0.0  # adding it changes no sum: x + 0.0 is x
    if needs_gpu:
        gpu_pen = np.where(gpu > terms.gpu_t, factors.gpu_penalty_weight * (gpu - terms.gpu_t) / terms.gpu_d, 0.0)
        busiest = np.fmax(busiest, gpu)
    balance = factors.load_balance_weight * busiest / 100.0
    return cpu_pen, memory_pen, gpu_pen, balance, history, cpu_pen + memory_pen + gpu_pen + balance + history


def _exclusions(ids: list[str], rows: np.ndarray, state: FleetState, mismatches: np.ndarray,
                at_limit: np.ndarray, no_score: np.ndarray, hardware_ok: np.ndarray,
                task_limit: Any, scored: np.ndarray, avoided: np.ndarray, avoid: Mapping[str, str] | None,
                stale: np.ndarray, critical: np.ndarray, held: np.ndarray,
                lost: np.ndarray, memory_misfit: np.ndarray, gpu_misfit: np.ndarray, drained: np.ndarray,
                d_memory: Any,
                free: np.ndarray, d_gpu_memory: Any, room: np.ndarray, factors: ScoringFactors, now_s: float,
                stale_after_s: float, quiet_cpu: np.ndarray, quiet_gpu: np.ndarray, cpu: np.ndarray,
                gpu: np.ndarray, kinds: dict[ExclusionKind, int] | None = None, kept_off: Any = None,
                reserved: Mapping[str, Any] | None = None) -> list[Exclusion]:
    """Typed exclusions, in the per-worker path's order: the task limit and workers without an
    original score first, then the others, each in worker order. ``mismatches``: per row, the
    hardware exclusion (``None``: the hardware fits, as ``hardware_ok`` says per position);
    ``avoided`` per position, a retried task's workers from ``avoid`` (worker id -> resource);
    ``d_memory`` and ``d_gpu_memory`` per position, or one number for all; ``kinds`` (when
    given) gets their count by kind: the first and the hardware ones from the masks;
    ``kept_off`` per position, a worker of ``reserved`` (worker id -> ``Reservation``) whose
    exclusion is its reservation's."""
    early = np.flatnonzero(at_limit | no_score)
    records = mismatches[rows[early]]  # a worker without an original score: its hardware, said in one piece
    for j in np.flatnonzero(at_limit[early] | hardware_ok[early]):  # else at the limit, or rejected
        i = early[j]
        records[j] = Exclusion.task_limit(ids[i], task_limit) if at_limit[i] else Exclusion.rejected(ids[i])
    out = records.tolist()
    hardware = scored & ~hardware_ok
    later = (scored & (avoided | stale | critical | held | lost)) | memory_misfit | gpu_misfit | quiet_cpu | quiet_gpu
    later &= ~hardware
    if kinds is not None:  # the task limit, else the hardware (a mismatch, or rejected by the original scheduler)
        limited = int(np.count_nonzero(at_limit))
        kinds[ExclusionKind.TASK_LIMIT] = limited
        kinds[ExclusionKind.HARDWARE] = len(out) - limited + int(np.count_nonzero(hardware))
    if not later.any():  # the common case: hardware alone, taken in one piece
        out.extend(mismatches[rows[hardware]].tolist())
        return out
    # The hardware records are taken in one piece; only the others are made one by one.
    records = np.empty(len(ids), dtype=object)
    headroom_percent = factors.memory_headroom_percent
    records[hardware] = mismatches[rows[hardware]]
    for i in np.flatnonzero(later):
        worker_id, view = ids[i], state.views[rows[i]]
        if avoided[i]:
            records[i] = Exclusion.failed_here(worker_id, avoid[worker_id])
        elif stale[i]:
            records[i] = view.stale_exclusion(now_s, stale_after_s)
        elif critical[i]:
            records[i] = view.excluded
        elif held[i]:
            records[i] = Exclusion.held_exclusive(worker_id, view.exclusive_task)
        elif lost[i]:
            records[i] = Exclusion.gpu_unhealthy(worker_id, view.gpus_lost, view.gpus_lost)
        elif kept_off is not None and kept_off[i]:
            records[i] = reserved[worker_id].exclusion
        elif memory_misfit[i]:
            records[i] = Exclusion.memory_fit(worker_id, _at(d_memory, i), float(free[i]),
                                              0.0 if drained[i] else headroom_percent)
        elif quiet_cpu[i]:
            records[i] = Exclusion.not_quiet(worker_id, "cpu", float(cpu[i]), factors.quiet_threshold_percent)
        elif quiet_gpu[i]:
            records[i] = Exclusion.not_quiet(worker_id, "gpu", float(gpu[i]), factors.quiet_threshold_percent)
        else:
            records[i] = Exclusion.gpu_memory_fit(worker_id, _at(d_gpu_memory, i), float(room[i]) - 0.0,
                                                  required=False,
                                                  headroom_percent=0.0 if drained[i] else headroom_percent)
    if kinds is not None:
        for record in records[later].tolist():
            kinds[record.kind] = kinds.get(record.kind, 0) + 1
    out.extend(records[hardware | later].tolist())
    return out


def _kept(reserved: Mapping[str, Any], state: FleetState, rows: np.ndarray,
          checked: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per position: whether the worker is one of ``reserved`` (worker id -> ``Reservation``)
    whose room is ``checked`` (a never-sampled worker is placed on its other checks alone, as
    ``decide._admit`` does), and the memory and GPU memory kept there (bytes, 0 elsewhere)."""
    width = state.table.shape[1]
    marked, memory, gpu_memory = np.zeros(width, dtype=bool), np.zeros(width), np.zeros(width)
    for worker_id, hold in reserved.items():
        row = state.index.get(worker_id)
        if row is not None:
            marked[row], memory[row], gpu_memory[row] = True, hold.memory_bytes, hold.gpu_memory_bytes
    kept = marked[rows] & checked
    return kept, np.where(kept, memory[rows], 0.0), np.where(kept, gpu_memory[rows], 0.0)


def _column(mapping: Mapping[str, Any], ids: list[str], missing: Any) -> np.ndarray:
    """``mapping``'s value of each of ``ids`` as floats (``None`` -> NaN, absent -> ``missing``).
    A mapping built over the same ids in the same order (the original scheduler's scores, the
    coordinator's counts) is read in one piece, without a lookup per worker."""
    if type(mapping) is dict and len(mapping) == len(ids) and list(mapping) == ids:
        values = list(mapping.values())
    else:
        values = list(map(mapping.get, ids, itertools.repeat(missing)))
    return np.fromiter(values, dtype=float, count=len(values))  # None -> NaN, as np.array, at half its cost


def _median(memo: dict | None, name: str, among: bytes, column: np.ndarray, mask: np.ndarray) -> float:
    """:func:`_median_of` the ``column`` of the rows in ``mask`` (``among``: its bytes),
    remembered in ``memo`` (see ``FleetState.figures_memo``; ``None``: not remembered)."""
    key = (name, among)
    found = memo.get(key) if memo is not None else None
    if found is None:
        found = _median_of(column[mask])
        if memo is not None:
            memo[key] = found
    return found


def _median_of(values: np.ndarray) -> float:
    """The median of the known values (0 when none is), computed as ``statistics.median`` does."""
    known = values[~np.isnan(values)]
    size = known.size
    if not size:
        return 0.0
    low, high = (size - 1) // 2, size // 2
    middle = np.partition(known, (low, high))
    return float(middle[high]) if low == high else (float(middle[low]) + float(middle[high])) / 2


def _nan(value: float | None) -> float:
    return np.nan if value is None else value


def _known_or(values: Any, default: float) -> Any:
    """``values`` (a column, or one number for every row) with ``default`` where NaN."""
    if isinstance(values, np.ndarray):
        return np.where(np.isnan(values), default, values)
    return default if values != values else values


def _at(values: Any, i: int) -> float:
    """Row ``i`` of ``values`` (a column, or one number for every row)."""
    return float(values[i] if isinstance(values, np.ndarray) else values)


def _values(values: Any, rows: np.ndarray, size: int) -> list[float]:
    """``values`` (a column, or one number for every row) at ``rows`` (``size`` of them), as Python floats."""
    return values[rows].tolist() if isinstance(values, np.ndarray) else [float(values)] * size


def _nones(values: np.ndarray) -> list[float | None]:
    """``values`` as Python floats, NaN as ``None`` (unknown)."""
    return [None if value != value else value for value in values.tolist()]  # NaN is the one unequal to itself
