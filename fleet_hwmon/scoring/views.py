"""The scheduler's view of each worker: smoothed load, exclusion with hysteresis, staleness,
and tasks assigned but not yet visible in the samples. Updated from samples; no I/O."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from fleet_hwmon.sample import ResourceUtilization
from fleet_hwmon.scoring.exclusions import Exclusion
from fleet_hwmon.scoring.factors import ScoringFactors

LOST = "lost"  # a GPU's health when it fell off the bus (no task may use it)
_serials = itertools.count()  # sample serials: unique across every view


@dataclass
class InFlight:
    """A task assigned to the worker whose load the samples do not show yet: its predicted
    cores, memory, GPU memory and GPU utilization (percent of one GPU). ``assigned_s`` is the
    scheduler's (monotonic) clock, ``assigned_at`` the wall time (UTC) of the assignment: a
    sample TAKEN before it cannot show the task, however late it arrives. ``cores_measured``:
    its cores come from runs of its type (``False``: the default stands in for them)."""

    task_id: str
    assigned_s: float
    cores: float
    memory_bytes: float
    uses_gpu: bool
    gpu_memory_bytes: float = 0.0
    assigned_at: datetime | None = None
    gpu_percent: float = 0.0
    cores_measured: bool = True


@dataclass
class WorkerView:
    """What scoring knows of one worker. Times are monotonic seconds; percents 0-100; ``None`` unknown."""

    worker_id: str
    registered_s: float
    last_sample_s: float | None = None
    cpu_percent: float | None = None  # smoothed (EWMA) views, used for penalties
    memory_percent: float | None = None
    gpu_levels: tuple[float, ...] = ()  # smoothed, per GPU that reports utilization (not MIG)
    gpu_least_percent: float | None = None  # min(gpu_levels), read per worker by decide()
    # For quiet hardware, a hard limit: each figure the larger of smoothed and latest, so a rise
    # counts at once (the smoothed figure lags it by a sample or two).
    quiet_cpu_percent: float | None = None
    quiet_gpu_levels: tuple[float, ...] = ()
    quiet_gpu_least_percent: float | None = None
    has_gpus: bool = False  # the latest sample lists usable GPUs (utilization known or not)
    gpus_lost: int = 0  # GPUs of the latest sample whose health is "lost"
    gpu_totals: tuple[float, ...] = ()  # memory of each usable GPU with known memory, latest sample
    last_alive_s: float | None = None  # a task started or ended there (the coordinator sees it alive)
    exclusive_task: str | None = None  # an exclusive task of ours runs there
    # When a sample last showed its background (load less our tasks there) under the exclusive
    # allowance: CPU alone, and CPU with its least busy GPU (no GPU task of ours there).
    quiet_seen_s: float | None = None
    gpu_quiet_seen_s: float | None = None
    first_sample_s: float | None = None  # when its first sample arrived
    newest_sample_at: datetime | None = None  # the latest timestamp among its samples
    quiet_tasks: set[str] = field(default_factory=set)  # quiet tasks of ours running there
    latest: ResourceUtilization | None = None  # raw latest sample, used for exclusion
    cpu_count: float | None = None
    memory_total_bytes: float | None = None
    excluded: Exclusion | None = None  # critical load, until it recovers (hysteresis)
    below_since_s: float | None = None
    inflight: dict[str, InFlight] = field(default_factory=dict)
    simulated: bool = False
    reports_tasks: bool = False  # its samples list the tasks running when they were taken
    below_samples: int = 0  # consecutive samples under the recovery mark while excluded
    # Kept up to date by observe() / add_inflight() / task_finished(), so a decision reads
    # them instead of recomputing them for every task (the scorer's hot path):
    inflight_cores: float = 0.0
    inflight_memory_bytes: float = 0.0
    inflight_gpu_tasks: int = 0
    inflight_gpu_percent: float = 0.0
    inflight_gpu_shares: tuple[float, ...] = ()  # GPU share of each in-flight GPU task
    inflight_gpu_memory: tuple[float, ...] = ()  # GPU memory of in-flight GPU tasks
    inflight_unmeasured: int = 0  # in-flight tasks whose type's cores no run has measured
    memory_free_bytes: float | None = None  # latest sample's available memory (+ departed tasks')
    gpu_free_bytes: tuple[float, ...] = ()  # per GPU with known memory: total - used, latest sample
    # Our tasks there (predicted memory, GPU memory, cores: NaN for a type never measured), and
    # those that ended while the latest sample still shows them (with their end time): what they
    # held is free again.
    placed: dict[str, tuple[float, float, float]] = field(default_factory=dict, repr=False)
    placed_gpu_tasks: set[str] = field(default_factory=set, repr=False)  # those that use a GPU there
    departed: dict[str, tuple[float, float, datetime | None]] = field(default_factory=dict, repr=False)
    sample_memory_free_bytes: float | None = None
    sample_gpu_free_bytes: tuple[float, ...] = ()
    memory_headroom: float = 1.25  # 1 + memory_headroom_percent / 100, as of the latest sample
    # What decide() worked out from the fields above (the load after placing a task, its
    # penalties, the candidate and its record), by scoring context; forgotten whenever observe() /
    # add_inflight() / task_finished() change the view, so the fields it rests on are changed through them.
    scoring_memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    # A number no other view or state shares, renewed by observe(): it stands for the smoothed
    # percents above, so decide() can remember medians over many views by their serials.
    sample_serial: int = field(default=-1, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.sample_serial = next(_serials)
        self._resum()

    def observe(self, sample: ResourceUtilization, now_s: float, factors: ScoringFactors) -> None:
        """Take a new sample received at ``now_s`` (the scheduler's clock)."""
        self.scoring_memo.clear()
        self.sample_serial = next(_serials)
        alpha = _sample_weight(factors, self.newest_sample_at, sample.timestamp)
        if self.newest_sample_at is None or _later(sample.timestamp, self.newest_sample_at):
            self.newest_sample_at = sample.timestamp
        if self.first_sample_s is None:
            self.first_sample_s = now_s
        self.cpu_percent = _ewma(self.cpu_percent, sample.cpu_percent, alpha)
        self.memory_percent = _ewma(self.memory_percent, sample.memory_percent, alpha)
        gpus = [g for g in sample.gpus if getattr(g, "health", None) != LOST]
        self.gpus_lost = len(sample.gpus) - len(gpus)
        known = [g.utilization_percent for g in gpus if g.utilization_percent is not None]
        if len(known) == len(self.gpu_levels):  # the same GPUs: smoothed each
            self.gpu_levels = tuple(_ewma(old, new, alpha) for old, new in zip(self.gpu_levels, known))
        elif known:  # other GPUs (none reporting: like any unknown figure, the last ones stay)
            self.gpu_levels = tuple(known)
        self.gpu_least_percent = min(self.gpu_levels) if self.gpu_levels else None
        self.quiet_cpu_percent = _larger(self.cpu_percent, sample.cpu_percent)
        self.quiet_gpu_levels = (tuple(map(max, self.gpu_levels, known)) if len(known) == len(self.gpu_levels)
                                 else self.gpu_levels)
        self.quiet_gpu_least_percent = min(self.quiet_gpu_levels) if self.quiet_gpu_levels else None
        self.has_gpus = bool(gpus)
        if sample.cpu_count_effective is not None:
            self.cpu_count = sample.cpu_count_effective
        if sample.memory_total_bytes is not None:
            self.memory_total_bytes = float(sample.memory_total_bytes)
        previous, self.latest = self.latest, sample
        self.last_sample_s = now_s
        if sample.task_ids:
            self.reports_tasks = True
        self.simulated = bool(sample.simulated_fields)
        self.sample_memory_free_bytes = (None if sample.memory_available_bytes is None
                                         else float(sample.memory_available_bytes))
        self.memory_headroom = 1.0 + factors.memory_headroom_percent / 100.0
        with_memory = [g for g in gpus if g.memory_total_bytes is not None and g.memory_used_bytes is not None]
        self.sample_gpu_free_bytes = tuple(float(g.memory_total_bytes - g.memory_used_bytes) for g in with_memory)
        if self.departed:  # kept while this sample still shows them
            self.departed = {k: v for k, v in self.departed.items()
                             if (k in sample.task_ids if self.reports_tasks
                                 else v[2] is not None and sample.timestamp <= v[2])}
        self._refree()
        self.gpu_totals = tuple(float(g.memory_total_bytes) for g in gpus if g.memory_total_bytes)
        if self.inflight:
            hold = timedelta(seconds=factors.inflight_hold_s)
            # Listed by this sample and the one before: it ran through the whole interval this
            # sample's CPU figure averages over (listed by this one alone, it may have run a
            # moment of it). No clock is needed, so a monitor whose samples come late is judged
            # like one on time.
            listed = (frozenset(sample.task_ids).intersection(previous.task_ids if previous is not None else ())
                      if self.reports_tasks else None)
            self.inflight = {k: v for k, v in self.inflight.items()
                             if not _in_sample(v, sample, now_s, hold, listed)}
            self._resum()
            self._refree()
        self._note_quiet(now_s, factors.exclusive_background_percent)
        least_full_gpu = min((g.memory_percent for g in with_memory if g.memory_percent is not None), default=None)
        self._update_exclusion((("memory", sample.memory_percent), ("gpu_memory", least_full_gpu)), now_s, factors)

    def _note_quiet(self, now_s: float, allowance_percent: float) -> None:
        """Whether this sample shows a background an exclusive task could run beside: the quiet
        CPU figure less our tasks there (at their predicted cores), and the least busy GPU (where
        no GPU task of ours runs). What cannot be told counts as quiet: the CPU figure unknown,
        the cores unknown while tasks of ours run there, or one of them of a type never measured."""
        cpu = self.quiet_cpu_percent
        if cpu is not None and cpu > allowance_percent and self.placed:
            ours = sum(v[2] for v in self.placed.values())
            cpu = None if not self.cpu_count or ours != ours else cpu - 100.0 * ours / self.cpu_count
        if cpu is not None and cpu > allowance_percent:
            return
        self.quiet_seen_s = now_s
        # A GPU busy with tasks of ours says nothing of the background (they end); unknown (no
        # GPU figure, MIG) refuses nothing, as in the quiet check.
        gpu = self.quiet_gpu_least_percent
        if self.placed_gpu_tasks or gpu is None or gpu <= allowance_percent:
            self.gpu_quiet_seen_s = now_s

    def _update_exclusion(self, levels: tuple[tuple[str, float | None], ...], now_s: float,
                          factors: ScoringFactors) -> None:
        """Critical load of the incompressible resources (memory, and GPU memory on the least full
        usable GPU), with hysteresis. CPU and GPU utilization never exclude: they are penalised."""
        known = [(r, v) for r, v in levels if v is not None]
        critical = [(r, v) for r, v in known if v > factors.critical_percent]
        if critical:
            resource, value = max(critical, key=lambda rv: rv[1])
            self.excluded = Exclusion.critical(self.worker_id, resource, value, factors.critical_percent)
            self.below_since_s = None
            self.below_samples = 0
        elif self.excluded is not None:
            if all(v < factors.recovery_percent for _, v in known):
                if self.below_since_s is None:
                    self.below_since_s = now_s
                self.below_samples += 1
                # Readmitted after recovery_s under the mark, or after recovery_samples samples
                # in a row under it (when that factor is set), whichever comes first.
                if now_s - self.below_since_s >= factors.recovery_s or (
                        factors.recovery_samples and self.below_samples >= factors.recovery_samples):
                    self.excluded = None
                    self.below_since_s = None
                    self.below_samples = 0
            else:
                self.below_since_s = None
                self.below_samples = 0

    @property
    def excluded_reason(self) -> str | None:
        """Why the worker is excluded for critical load, for people (``None``: it is not)."""
        return None if self.excluded is None else self.excluded.reason

    def alive(self, now_s: float) -> None:
        """The coordinator showed the worker alive at ``now_s`` (a task started or ended there)."""
        self.last_alive_s = now_s

    def samples_stale(self, now_s: float, stale_after_s: float) -> bool:
        """Its samples stopped: the last one arrived more than ``stale_after_s`` ago (a worker
        that never sent one is unknown, not stale)."""
        return self.last_sample_s is not None and now_s - self.last_sample_s > stale_after_s

    def stale_exclusion(self, now_s: float, stale_after_s: float) -> Exclusion | None:
        """The worker's exclusion as stale at ``now_s``, or ``None``: its samples stopped and
        the coordinator has not shown it alive since (a worker whose monitor lags while its
        tasks start and end is not excluded; its load counts as unknown). A task that started or
        ended there after its last sample arrived shows that the worker outlived its monitor: it
        is not excluded as stale until its samples come back, even once it has drained (else no
        task would go there again to show it alive)."""
        if not self.samples_stale(now_s, stale_after_s):
            return None
        if self.last_alive_s is not None and (now_s - self.last_alive_s <= stale_after_s
                                              or self.last_alive_s > self.last_sample_s):
            return None
        return Exclusion.stale(self.worker_id, now_s - self.last_sample_s, stale_after_s, False)

    def stale_reason(self, now_s: float, stale_after_s: float) -> str | None:
        """:meth:`stale_exclusion`'s message, for people."""
        stale = self.stale_exclusion(now_s, stale_after_s)
        return None if stale is None else stale.reason

    def add_inflight(self, item: InFlight) -> None:
        if item.task_id in self.inflight:  # replaced: add it up again
            self.inflight[item.task_id] = item
            self._resum()
            return
        # A burst adds many: update the totals instead of adding them all up again.
        self.inflight[item.task_id] = item
        self.placed[item.task_id] = (item.memory_bytes, item.gpu_memory_bytes if item.uses_gpu else 0.0,
                                     item.cores if item.cores_measured else _UNKNOWN)
        if item.uses_gpu:
            self.placed_gpu_tasks.add(item.task_id)
        self.scoring_memo.clear()
        self.inflight_cores += item.cores
        self.inflight_memory_bytes += item.memory_bytes
        self.inflight_unmeasured += not item.cores_measured
        if item.uses_gpu:
            self.inflight_gpu_tasks += 1
            self.inflight_gpu_shares += (item.gpu_percent,)
            self.inflight_gpu_percent += item.gpu_percent
            if item.gpu_memory_bytes:
                self.inflight_gpu_memory += (item.gpu_memory_bytes,)

    def add_quiet(self, task_id: str) -> None:
        """A quiet task of ours runs there: what is placed beside it must keep the load quiet."""
        self.quiet_tasks.add(task_id)
        self.scoring_memo.clear()

    def task_finished(self, task_id: str, ended_at: datetime | None = None,
                      peaks: tuple[float | None, float | None] = (None, None), cores: float | None = None) -> None:
        """``task_id`` is no longer ours there: it ended at ``ended_at`` (wall time), or, without
        it, it is being decided again. An ended task that the latest sample shows frees what it
        held (its predicted memory and GPU memory, or its measured ``peaks`` in bytes where
        smaller) until a sample without it arrives, and its CPU share (its measured mean
        ``cores``, else its predicted ones) leaves the smoothed CPU figure at once: the samples
        lag the end by up to an interval and the figure (an EWMA) lags the samples, so the
        worker would look busy with a task that is gone for several samples more."""
        if self.exclusive_task == task_id:
            self.exclusive_task = None
        if task_id in self.quiet_tasks:
            self.quiet_tasks.discard(task_id)
            self.scoring_memo.clear()
        placed = self.placed.pop(task_id, None)
        self.placed_gpu_tasks.discard(task_id)
        if self.inflight.pop(task_id, None) is not None:
            self._resum()
        elif placed is not None and ended_at is not None and self.latest is not None and (
                not self.reports_tasks or task_id in self.latest.task_ids):
            # The latest sample shows it: what it held is free until a sample shows that.
            freed = tuple(p if m is None or not m >= 0 else min(p, m) for p, m in zip(placed, peaks))
            self.departed[task_id] = (*freed, ended_at)
            self._cpu_freed(cores if cores is not None and 0 <= cores < float("inf") else placed[2])
            self._refree()
        elif placed is not None:
            self._refree()

    def _cpu_freed(self, cores: float) -> None:
        """Take ``cores`` of a task that ended off the smoothed CPU figure (not below zero). The
        quiet figure keeps them until a sample shows the end: a promise of quiet is not made on
        a prediction."""
        if self.cpu_count and self.cpu_percent is not None and cores == cores:  # NaN: never measured
            self.cpu_percent = max(0.0, self.cpu_percent - 100.0 * min(cores, self.cpu_count) / self.cpu_count)
            self.sample_serial = next(_serials)

    def _refree(self) -> None:
        """Free memory and GPU memory: the latest sample's, plus what departed tasks held (GPU
        memory only on a worker with one GPU, where it is known which GPU it was); memory at
        most the worker's total less the predicted peaks, with headroom, of our tasks there that
        the samples show (not in flight)."""
        self.scoring_memo.clear()
        memory, gpus = self.sample_memory_free_bytes, self.sample_gpu_free_bytes
        if self.departed:
            if memory is not None:
                memory += sum(v[0] for v in self.departed.values())
                if self.memory_total_bytes:
                    memory = min(memory, self.memory_total_bytes)
            if len(gpus) == 1:
                gpus = (gpus[0] + sum(v[1] for v in self.departed.values()),)
        if memory is not None and self.placed and self.memory_total_bytes:
            # A task's memory grows over its life: a sample shows what our tasks hold so far, not
            # what they will. Each one the samples show is spoken for at its predicted peak with
            # the headroom its fit check asked for, until it ends (the callers take the in-flight
            # ones off at their figures), so our tasks' predictions never add up past the worker.
            shown = sum(v[0] for task_id, v in self.placed.items() if task_id not in self.inflight)
            memory = min(memory, self.memory_total_bytes - shown * self.memory_headroom)
        self.memory_free_bytes, self.gpu_free_bytes = memory, gpus

    def _resum(self) -> None:
        self.scoring_memo.clear()
        items = self.inflight.values()
        self.inflight_cores = sum(i.cores for i in items)
        self.inflight_memory_bytes = sum(i.memory_bytes for i in items)
        self.inflight_unmeasured = sum(not i.cores_measured for i in items)
        self.inflight_gpu_tasks = sum(1 for i in items if i.uses_gpu)
        self.inflight_gpu_shares = tuple(i.gpu_percent for i in items if i.uses_gpu)
        self.inflight_gpu_percent = sum(self.inflight_gpu_shares)
        self.inflight_gpu_memory = tuple(i.gpu_memory_bytes for i in items if i.uses_gpu and i.gpu_memory_bytes)

    def inflight_percent(self) -> tuple[float | None, float | None, float]:
        """(cpu, memory, gpu) percent the in-flight tasks add to the worker's load; ``None`` where
        the worker's capacity (cores, memory) is not known yet."""
        if not self.inflight:
            return 0.0, 0.0, 0.0
        return (100.0 * self.inflight_cores / self.cpu_count if self.cpu_count else None,
                100.0 * self.inflight_memory_bytes / self.memory_total_bytes if self.memory_total_bytes else None,
                self.inflight_gpu_percent)

    @property
    def gpu_percent(self) -> float | None:
        """The busiest GPU's smoothed utilization; ``None`` when no GPU reports one."""
        return max(self.gpu_levels) if self.gpu_levels else None

    def effective_load(self) -> tuple[float | None, float | None, float | None]:
        """(cpu, memory, gpu) percent: smoothed samples plus the in-flight tasks' predicted load,
        not capped at 100 (a worker promised more than it has shows above 100). A resource whose
        samples are unknown stays unknown."""
        cpu, memory, gpu = self.cpu_percent, self.memory_percent, self.gpu_percent
        if self.inflight:
            cpu_add, memory_add, gpu_add = self.inflight_percent()
            if cpu is not None and cpu_add is not None:
                cpu = cpu + cpu_add
            if memory is not None and memory_add is not None:
                memory = memory + memory_add
            if gpu is not None and gpu_add:
                gpu = gpu + gpu_add
        return cpu, memory, gpu

    def gpu_memory_room(self) -> float | None:
        """The most GPU memory (bytes) one GPU of the worker has free for a new task: the latest
        sample's free memory per GPU, less what the in-flight GPU tasks are predicted to take
        (each placed on the GPU with the most room); ``None`` when the samples do not show GPU
        memory."""
        if not self.gpu_free_bytes:
            return None
        free = list(self.gpu_free_bytes)
        for need in sorted(self.inflight_gpu_memory, reverse=True):
            best = max(range(len(free)), key=free.__getitem__)
            free[best] -= need
        return max(free)


_UNKNOWN = float("nan")  # a figure not known (NaN: it stays unknown through arithmetic)


def _in_sample(item: InFlight, sample: ResourceUtilization, now_s: float, hold: timedelta,
               listed: frozenset[str] | None = None) -> bool:
    """Does ``sample`` show the in-flight task? Yes when it was TAKEN more than ``hold`` after
    the assignment (by the sample's own timestamp, however late it arrived); without the
    assignment's wall time, when it arrived after the assignment. When the worker's samples
    list their running tasks, ``listed`` holds those this sample and the one before it both
    list, and only they are shown: a monitor whose samples are always late looks like a clock
    behind the coordinator's, and the offset taken out makes its samples look taken later than
    they were (one taken a moment after the start, showing a fraction of the task, would look
    taken a whole interval after it)."""
    if listed is not None and item.task_id not in listed:
        return False
    if item.assigned_at is not None:
        return sample.timestamp > item.assigned_at + hold
    return item.assigned_s < now_s


def capacity_from_capabilities(capabilities: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(cores, memory bytes) a worker's contract capabilities state, ``None`` where they do not:
    the capacity in-flight tasks are weighed against before the worker's first sample."""
    if not isinstance(capabilities, Mapping):
        return None, None
    cpu = capabilities.get("cpu") or {}
    cores = cpu.get("cores_effective") or cpu.get("cores_logical") if isinstance(cpu, Mapping) else None
    memory = capabilities.get("memory") or {}
    total_gb = memory.get("total_gb") if isinstance(memory, Mapping) else None
    try:
        cores = float(cores) if cores else None
        memory_bytes = float(total_gb) * 1024**3 if total_gb else None
    except (TypeError, ValueError):
        return None, None
    return cores, memory_bytes


def _larger(value: float | None, other: float | None) -> float | None:
    if other is None:
        return value
    return other if value is None or other > value else value


def _sample_weight(factors: ScoringFactors, newest: datetime | None, taken: datetime) -> float:
    """The EWMA weight of a sample ``taken`` then: ``ewma_alpha`` per ``ewma_interval_s`` of the
    gap since the ``newest`` sample before it (by the samples' own timestamps), never less than
    ``ewma_alpha`` (a late sample, older than the newest, weighs ``ewma_alpha``)."""
    alpha, interval_s = factors.ewma_alpha, factors.ewma_interval_s
    if newest is None or not interval_s:
        return alpha
    try:
        intervals = (taken - newest).total_seconds() / interval_s
    except (TypeError, AttributeError):  # a timestamp missing or of another kind: per sample
        return alpha
    return alpha if not intervals > 1.0 + 1e-9 else 1.0 - (1.0 - alpha) ** intervals


def _later(taken: datetime, newest: datetime) -> bool:
    try:
        return taken > newest
    except TypeError:
        return True


def _ewma(previous: float | None, value: float | None, alpha: float) -> float | None:
    if value is None:
        return previous
    if previous is None:
        return value
    return previous + alpha * (value - previous)
