"""The per-worker arithmetic of a decision (pure): the task's predicted demand, the load after
placing it, whether it fits what is free, and the penalties of that load.

Every figure is on the scale :mod:`fleet_hwmon.scoring.decide` documents: percent 0-100 of the
worker's capacity (GPU: of one GPU), bytes for memory, ``None`` when unknown.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Callable, Iterable, NamedTuple, Sequence

from fleet_hwmon.scoring.exclusions import Exclusion
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.history import NO_DEMAND, PerformanceHistory, TaskDemand, TypeStats
from fleet_hwmon.scoring.requirements import TaskRequirements
from fleet_hwmon.scoring.views import WorkerView

GIB = 1024**3
_terms_numbers = itertools.count()  # a number for each DecisionTerms made (see DecisionTerms.number)
FLOOR = 0.05  # a penalised worker keeps a sliver of its score, so it still ranks by the original


class DemandCap(NamedTuple):
    """Memory and GPU memory (bytes) of the largest compatible worker (GPU), and the most cores
    of one; ``None``: unknown."""

    memory_bytes: float | None = None
    gpu_memory_bytes: float | None = None
    cores: float | None = None


NO_CAP = DemandCap()


class Load(NamedTuple):
    """A worker's load once the task is placed there, percent (GPU: of the GPU it lands on)."""

    cpu_percent: float | None
    memory_percent: float | None
    gpu_percent: float | None


UNKNOWN_LOAD = Load(None, None, None)


class Penalties(NamedTuple):
    """The terms taken off a worker's original score, and their total."""

    cpu: float
    memory: float
    gpu: float
    balance: float
    history: float
    total: float


NO_PENALTIES = Penalties(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class Assessment(NamedTuple):
    """What :meth:`DecisionTerms.assess` finds for one worker: the exclusion when the task
    cannot go there, else its load and (when every figure of it is known) its penalties."""

    exclusion: Exclusion | None
    load: Load
    penalties: Penalties | None


def adjusted_score(original: float, penalties: Penalties) -> float:
    """``original * max(FLOOR, 1 - total)`` for a positive original score, else ``original - total``."""
    return original * max(FLOOR, 1.0 - penalties.total) if original > 0 else original - penalties.total


class DecisionTerms:
    """The arithmetic of one decision, its constants worked out once.

    ``fleet_duration``: the task type's mean duration over the fleet (seconds; history's speed
    term), ``floor``: a retried task's own raised figures, ``cap``: the largest compatible
    worker (see :meth:`shape`), ``probe``: the worker where the task may go as its type's probe (:meth:`not_quiet`)."""

    def __init__(self, factors: ScoringFactors, requirements: TaskRequirements, fleet_duration: float | None,
                 floor: TaskDemand | None = None, cap: DemandCap = NO_CAP, probe: str | None = None) -> None:
        self.factors = factors
        self.probe = probe
        self.needs_gpu = requirements.needs_gpu
        self.required_gpu_memory = required_gpu_memory_bytes(requirements)
        self.fleet_duration = fleet_duration
        self.floor = floor
        self.cap = cap
        self.quiet = requirements.isolation in ("quiet", "exclusive")  # exclusive: quiet, and alone
        self.quiet_limit = factors.quiet_threshold_percent
        self.own_limit = factors.quiet_threshold_percent - factors.exclusive_background_percent
        self.headroom = 1.0 + factors.memory_headroom_percent / 100.0
        self.cpu_t, self.mem_t, self.gpu_t = (factors.cpu_threshold_percent, factors.memory_threshold_percent,
                                              factors.gpu_threshold_percent)
        self.cpu_d, self.mem_d, self.gpu_d = (max(1e-9, 100.0 - t) for t in (self.cpu_t, self.mem_t, self.gpu_t))
        self.over_w = factors.overcommit_penalty_weight / 100.0
        self.default_gpu = factors.default_task_gpu_percent
        self.number = next(_terms_numbers)  # never given to other terms: a key for what views remember

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
        when larger, over the headroom (see :func:`shape_demand`); memory and GPU memory are
        capped so that, with headroom, they fit within the recovery mark (85 %) of the largest
        compatible worker (GPU), so a task that fits a drained worker is placed eventually."""
        return shape_demand(demand, self.needs_gpu, self.required_gpu_memory, self.floor, self.cap,
                            self.factors.recovery_percent / 100.0 / self.headroom, self.headroom)

    def assess(self, view: WorkerView, demand: TaskDemand, stats: TypeStats | None,
               reserve: tuple[float, float] = (0.0, 0.0), drained: bool = False) -> Assessment:
        """A worker that is neither stale nor overloaded, with the task's predicted ``demand``
        placed on it: the load after placing the task (smoothed view + in flight + demand), the
        exclusion when the task would not fit there (or, quiet, would make it busy), and the
        penalties when every figure of the load is known (else they need the other
        candidates' loads: see :mod:`fleet_hwmon.scoring.neutral`)."""
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
        load = Load(cpu, memory, gpu)
        reason = self.misfit(view, demand, reserve, drained)
        # CPU and GPU time are compressible: only quiet tasks refuse load, and a worker running a
        # quiet task takes nothing that would push it over the quiet threshold.
        if reason is None and (self.quiet or view.quiet_tasks):
            reason = self.not_quiet(view, cores, demand)
        if reason is not None:
            return Assessment(reason, load, None)
        if cpu is None or memory is None or (gpu is None and (view.inflight_gpu_tasks or
                                                              (self.needs_gpu and view.has_gpus))):
            return Assessment(None, load, None)
        return Assessment(None, load, self.penalties(load, stats, None))

    def not_quiet(self, view: WorkerView, cores: float, demand: TaskDemand) -> Exclusion | None:
        """Quiet hardware is a hard limit: the CPU (and, for a GPU task, GPU) after placing the
        task, from the larger of the smoothed and latest figures (``WorkerView.quiet_*``), must
        stay at or under the quiet threshold. The task counts at its predicted cores and GPU
        share plus a margin for how far tasks of its type stray from them (:func:`quiet_margins`):
        the promise must hold for the task placed, not for the type's mean (for a type never
        measured, as far as the heaviest type measured: :func:`unmeasured_spread`).

        A quiet task's own cores (with their spread) count at most up to the threshold less the
        exclusive background allowance (``own_limit``) of the compatible worker with the most
        cores (``cap.cores``; this worker's when unknown): a task predicted to fill the largest
        hardware by itself still goes there when nothing of ours runs and the background is
        that low, instead of waiting forever for a worker no fleet has. Only there: on a
        smaller worker the whole prediction and spread count, as a task that does not fit under
        the threshold there would break its promise. A quiet task whose type's cores no run has
        measured counts at ``own_limit`` of this worker (it may wait; its promise is not made
        on a guess), except on the ``probe`` worker (the quietest, while no other task of the
        type is placed and not ended), where it counts as the heaviest type measured
        (:func:`unmeasured_spread`; at its share while no type is measured), so that one task
        measures the type and the others do not wait for a worker under 25 % first."""
        cpu, count, limit = view.quiet_cpu_percent, view.cpu_count, self.quiet_limit
        spread, gpu_spread = quiet_margins(demand, self.factors)
        if cpu is not None and count:
            if self.quiet and demand.cores is None and not (view.worker_id == self.probe
                                                            and demand.cores_spread is not None):
                cores, spread = self.own_limit * count / 100.0, 0.0  # its own cores never measured: as many as it may
            elif self.quiet:
                spread = self.own_cores(cores, spread, count) - cores
            inflight = view.inflight_cores
            if self.quiet and view.inflight_unmeasured:  # a task in flight of a type never measured
                inflight += count  # may take the whole worker: no promise beside it until a sample shows it
            cpu += 100.0 * (inflight + cores + spread) / count  # the column path's order
        if cpu is not None and cpu > limit:
            return Exclusion.not_quiet(view.worker_id, "cpu", cpu, limit)
        gpu = view.quiet_gpu_least_percent
        if self.needs_gpu and gpu is not None:
            own = self.own_gpu(demand) + gpu_spread
            if self.quiet:
                own = min(own, self.own_limit)
            if len(view.quiet_gpu_levels) == 1:
                gpu += view.inflight_gpu_percent + own
            else:
                gpu = gpu_after_placement(view.quiet_gpu_levels, view.inflight_gpu_shares, own)
            if gpu > limit:
                return Exclusion.not_quiet(view.worker_id, "gpu", gpu, limit)
        return None

    def own_cores(self, cores: float, spread: float, count: float) -> float:
        """A quiet task's own cores as the quiet check counts them on a worker of ``count``
        cores: its predicted ``cores`` plus their ``spread``, at most ``own_limit`` percent of
        the compatible worker with the most cores (``cap.cores``; this one's when larger)."""
        return min(cores + spread, self.own_limit * max(count, self.cap.cores or 0.0) / 100.0)

    def own_gpu(self, demand: TaskDemand) -> float:
        """The GPU utilization (percent of one GPU) the task itself is predicted to add."""
        if not self.needs_gpu:
            return 0.0
        return self.default_gpu if demand.gpu_percent is None else demand.gpu_percent

    def penalties(self, load: Load, stats: TypeStats | None, neutral_load: Callable[[], float] | None) -> Penalties:
        """The penalties of ``load`` (an unknown figure costs nothing; the balance term takes
        ``neutral_load()`` when no figure is known) and of the worker's history ``stats``."""
        factors = self.factors
        cpu, memory, gpu = load
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
        hist_pen = 0.0 if stats is None else history_penalty(stats, self.fleet_duration, factors)
        return Penalties(cpu_pen, mem_pen, gpu_pen, balance, hist_pen, cpu_pen + mem_pen + gpu_pen + balance + hist_pen)


def shape_demand(demand: TaskDemand, needs_gpu: bool, required_gpu_memory: float | None, floor: TaskDemand | None,
                 cap: DemandCap, cap_fraction: float, headroom: float = 1.0) -> TaskDemand:
    """:meth:`DecisionTerms.shape`: ``required_gpu_memory`` (bytes) stands in for an unknown GPU
    memory, ``floor`` raises, ``cap`` times ``cap_fraction`` (the recovery mark over the
    headroom) caps; a task without a GPU has no GPU memory.

    The fit check multiplies the figure by ``headroom`` (1 + ``memory_headroom_percent`` / 100),
    a margin over a history figure, which is a mean of past peaks. A retried task's ``floor``
    already carries its margin (``retry_growth`` times the peak its attempt reached), so it
    raises the figure to ``floor / headroom``: the check then asks for the floor itself, not
    the floor plus headroom (with both, 1.5 x 1.25 = 1.9 times the peak reached)."""
    cap_memory, cap_gpu = cap.memory_bytes, cap.gpu_memory_bytes
    memory, gpu_memory = demand.memory_bytes, demand.gpu_memory_bytes
    if not needs_gpu:
        gpu_memory = None
    elif gpu_memory is None:
        gpu_memory = required_gpu_memory
    if floor is not None:
        memory = _larger(memory, _over(floor.memory_bytes, headroom))
        gpu_memory = _larger(gpu_memory, _over(floor.gpu_memory_bytes, headroom)) if needs_gpu else None
    if memory is not None and cap_memory is not None:
        memory = min(memory, cap_memory * cap_fraction)
    if gpu_memory is not None and cap_gpu is not None:
        gpu_memory = min(gpu_memory, cap_gpu * cap_fraction)
    if memory == demand.memory_bytes and gpu_memory == demand.gpu_memory_bytes:
        return demand
    return demand._replace(memory_bytes=memory, gpu_memory_bytes=gpu_memory, source=demand.source or "requirements")


def capacity_frontier(capacities: Iterable[DemandCap]) -> tuple[DemandCap, ...]:
    """The distinct worker ``capacities`` (memory, GPU memory, cores) that no other one
    exceeds in every figure, largest memory first. A figure a worker does not state (``None``)
    could be anything: it holds any need, as the fit checks read it. At most
    ``_FRONTIER_LIMIT`` are kept (the largest): each is still one worker's, so a cap taken
    from them is one that worker could hold."""
    front: list[DemandCap] = []
    keys: list[tuple[float, ...]] = []
    # Largest first, so a row's dominators all come before it: one pass against the frontier.
    for row in sorted(set(capacities), key=_capacity_key, reverse=True):
        key = _capacity_key(row)
        if not any(all(a >= b for a, b in zip(kept, key)) for kept in keys):
            front.append(row)
            keys.append(key)
            if len(front) >= _FRONTIER_LIMIT:
                break
    return tuple(front)


_FRONTIER_LIMIT = 64


def _capacity_key(cap: DemandCap) -> tuple[float, ...]:
    return tuple(float("inf") if v is None else v for v in cap)


def cap_for(frontier: Sequence[DemandCap], demand: TaskDemand, needs_gpu: bool, required_gpu_memory: float | None,
            floor: TaskDemand | None, factors: ScoringFactors) -> DemandCap:
    """The cap of one task's demand over its compatible workers' :func:`capacity_frontier`:
    among the workers that could hold its memory and GPU memory once drained (as
    :meth:`DecisionTerms.shape` counts them, its ``floor`` included), the largest of each
    figure; when none could, the one worker that could hold the largest part of it. A cap
    taken per figure over all of them could promise the memory of one worker and the GPU
    memory of another, which no worker has: the task would then wait for ever."""
    if len(frontier) == 1:
        return frontier[0]
    if not frontier:
        return NO_CAP
    headroom = 1.0 + factors.memory_headroom_percent / 100.0
    fraction = factors.recovery_percent / 100.0 / headroom
    shaped = shape_demand(demand, needs_gpu, required_gpu_memory, floor, NO_CAP, fraction, headroom)
    needs = (shaped.memory_bytes, shaped.gpu_memory_bytes)

    def part(cap: DemandCap) -> float:  # how much of the need the worker holds (1: all of it)
        held = 1.0
        for need, have in zip(needs, cap):
            if need and have is not None:
                held = min(held, have * fraction / need)
        return held

    parts = [part(c) for c in frontier]
    holders = [c for c, p in zip(frontier, parts) if p >= 1.0]
    if not holders:
        return frontier[max(range(len(frontier)), key=lambda i: (parts[i], -i))]
    return DemandCap(*(None if None in column else max(column) for column in zip(*holders)))


def unmeasured_spread(demand: TaskDemand, history: PerformanceHistory | None, factors: ScoringFactors,
                      needs_gpu: bool) -> TaskDemand:
    """``demand`` with, for a figure no run of the task's type has measured (cores; GPU share
    of a GPU task), a spread that reaches the heaviest type the fleet has measured
    (:meth:`PerformanceHistory.heaviest`): the default that scores shared work (1 core, 50 % of
    a GPU) says nothing of what a new type will take, and the quiet checks count a task at its
    prediction plus its spread. Unchanged when every figure is measured or nothing is."""
    if history is None or not (demand.cores is None or (needs_gpu and demand.gpu_percent is None)):
        return demand
    cores, gpu_percent = history.heaviest()
    if demand.cores is None and cores is not None:
        demand = demand._replace(cores_spread=max(0.0, cores - factors.default_task_cores))
    if needs_gpu and demand.gpu_percent is None and gpu_percent is not None:
        demand = demand._replace(gpu_percent_spread=max(0.0, gpu_percent - factors.default_task_gpu_percent))
    return demand


def quiet_margins(demand: TaskDemand, factors: ScoringFactors) -> tuple[float, float]:
    """(cores, GPU percent of one GPU) the quiet checks add to a task's prediction:
    ``quiet_spread_factor`` times the spread runs of its type showed (``demand.*_spread``, the
    mean absolute deviation), so that the promise holds for most tasks of the type rather than
    four in five; a figure never measured keeps the spread :func:`unmeasured_spread` gave it (as
    far as the heaviest type measured), which is no deviation to scale. 0 where none is known."""
    factor = factors.quiet_spread_factor
    cores = (demand.cores_spread or 0.0) * (factor if demand.cores is not None else 1.0)
    gpu = (demand.gpu_percent_spread or 0.0) * (factor if demand.gpu_percent is not None else 1.0)
    return cores, gpu


def required_gpu_memory_bytes(requirements: TaskRequirements) -> float | None:
    """A GPU task's stated minimum GPU memory in bytes (``None``: none stated, or no GPU)."""
    if requirements.min_gpu_memory_gb is None or not requirements.needs_gpu:
        return None
    return requirements.min_gpu_memory_gb * GIB


def history_penalty(stats: TypeStats, fleet_duration: float | None, factors: ScoringFactors) -> float:
    """The failure rate of the task type on the worker, less a bonus (or plus a malus) for
    having run it faster (slower) than the fleet."""
    penalty = factors.failure_penalty_weight * stats.failures / (stats.runs + 2)
    if fleet_duration and stats.duration_s:
        penalty -= factors.duration_weight * max(-1.0, min(1.0, fleet_duration / stats.duration_s - 1.0))
    return penalty


def task_demand_for(view: WorkerView | None, history: PerformanceHistory | None, worker_id: str,
                    task_type: str | None, requirements: TaskRequirements, factors: ScoringFactors,
                    floor: TaskDemand | None = None, cap: DemandCap = NO_CAP) -> tuple[float, float, float, float]:
    """(cores, memory bytes, GPU memory bytes, GPU percent of one GPU) a task is expected to take
    on ``worker_id``, as a decision predicts it: history (the worker's, else the fleet's), else
    the defaults; GPU memory the stated minimum while history does not know it (GPU figures 0
    for a task without a GPU); ``floor`` and ``cap`` as for :class:`DecisionTerms`."""
    demand = history.task_demand(worker_id, task_type) if history is not None and task_type is not None else NO_DEMAND
    needs_gpu = requirements.needs_gpu
    headroom = 1.0 + factors.memory_headroom_percent / 100.0
    return demand_figures(shape_demand(demand, needs_gpu, required_gpu_memory_bytes(requirements), floor, cap,
                                       factors.recovery_percent / 100.0 / headroom, headroom), needs_gpu, factors)


def demand_figures(demand: TaskDemand, needs_gpu: bool, factors: ScoringFactors) -> tuple[float, float, float, float]:
    """(cores, memory bytes, GPU memory bytes, GPU percent of one GPU) of a shaped ``demand``
    (:meth:`DecisionTerms.shape`): an unknown figure at its default, GPU figures 0 for a task
    without a GPU."""
    gpu_memory = gpu_percent = 0.0
    if needs_gpu:
        gpu_memory = demand.gpu_memory_bytes or 0.0
        gpu_percent = factors.default_task_gpu_percent if demand.gpu_percent is None else demand.gpu_percent
    return (factors.default_task_cores if demand.cores is None else demand.cores,
            factors.default_task_memory_bytes if demand.memory_bytes is None else demand.memory_bytes,
            gpu_memory, gpu_percent)


def fits_when_idle(view: WorkerView | None, demand: TaskDemand, requirements: TaskRequirements,
                   factors: ScoringFactors, floor: TaskDemand | None = None, cap: DemandCap = NO_CAP) -> bool:
    """Could the task run on the worker once the worker has drained? Its memory (plus headroom)
    within the worker's memory, its GPU memory (plus headroom, else its stated minimum) within
    its largest usable GPU; for a quiet or exclusive task, its own predicted cores with their
    spread under the quiet threshold, as :meth:`DecisionTerms.not_quiet` counts them with no
    other load there. CPU and GPU time are otherwise compressible: they rule nothing out; nor
    does a figure that is unknown. ``demand`` is shaped as a decision shapes it (``floor`` and
    ``cap``: see :meth:`DecisionTerms.shape`), so a worker the decision would place the task on
    once drained is never ruled out here."""
    return drained_misfit(view, demand, requirements, factors, floor, cap) is None


def drained_misfit(view: WorkerView | None, demand: TaskDemand, requirements: TaskRequirements,
                   factors: ScoringFactors, floor: TaskDemand | None = None, cap: DemandCap = NO_CAP
                   ) -> Exclusion | None:
    """Why the task could not run on the worker even once it has drained (:func:`fits_when_idle`
    says whether it could): its memory over the worker's, its own cores over the quiet
    threshold (a quiet or exclusive task), no usable GPU, or its GPU memory over the largest
    GPU's; ``None`` when it fits, or nothing is known."""
    if view is None:
        return None
    terms = DecisionTerms(factors, requirements, None, floor, cap)
    demand = terms.shape(demand)
    headroom = 1.0 + factors.memory_headroom_percent / 100.0
    if (demand.memory_bytes is not None and view.memory_total_bytes
            and demand.memory_bytes * headroom > view.memory_total_bytes):
        return Exclusion.memory_fit(view.worker_id, demand.memory_bytes, view.memory_total_bytes,
                                    factors.memory_headroom_percent)
    if terms.quiet and demand.cores is not None and view.cpu_count:
        # Its own cores alone, as the quiet check counts them, over the threshold: never quiet here.
        own_percent = 100.0 * terms.own_cores(demand.cores, quiet_margins(demand, factors)[0],
                                              view.cpu_count) / view.cpu_count
        if own_percent > terms.quiet_limit:
            return Exclusion.not_quiet(view.worker_id, "cpu", own_percent, terms.quiet_limit)
    if not requirements.needs_gpu:
        return None
    if view.gpus_lost and not view.has_gpus:
        return Exclusion.gpu_unhealthy(view.worker_id, view.gpus_lost, view.gpus_lost)
    need = demand.gpu_memory_bytes or 0.0
    if view.gpu_totals and need * headroom > max(view.gpu_totals):
        return Exclusion.gpu_memory_fit(view.worker_id, need, max(view.gpu_totals), required=False,
                                        headroom_percent=factors.memory_headroom_percent)
    return None


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


def _over(value: float | None, headroom: float) -> float | None:
    return None if value is None else value / headroom


def _larger(value: float | None, other: float | None) -> float | None:
    if other is None:
        return value
    return other if value is None or other > value else value
