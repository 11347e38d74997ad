"""The hardware-aware scheduler of one coordinator: its view of every worker, the tasks in
flight, reservations, statistics, and the patch of the coordinator's scheduler method.

Samples arrive through :meth:`HardwareAwareScheduler.observe`, task ends through
:meth:`task_finished`; each decision is handed to ``record`` (the integration stores it). No I/O
and no threads of its own: callers may come from any thread (one lock).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import logging
import threading
import time
from datetime import datetime
from typing import Any, Callable, Mapping

from fleet_hwmon.sample import ResourceUtilization, finite, utc_now
from fleet_hwmon.scheduling.contract import (CallerShape, OriginalScores, SchedulerPatch, check_contract,
                                             contract_call, original_scores_async, original_scores_sync,
                                             signature_of, task_limit_of)
from fleet_hwmon.scheduling.heartbeats import busy_exclusion
from fleet_hwmon.scheduling.held import ANY_ROOM, Held, Room, room_made, room_of
from fleet_hwmon.scheduling.retry import AvoidedWorkers, resource_failure
from fleet_hwmon.scheduling.statistics import SchedulerStatistics
from fleet_hwmon.scoring import vectorised
from fleet_hwmon.scoring.decide import (DecisionContext, HardwareChecks, OriginalChoice, Reservation,
                                        SchedulingDecision, decide_among)
from fleet_hwmon.scoring.decision import predicted_demand
from fleet_hwmon.scoring.exclusions import GPU_RESOURCES, Exclusion, ExclusionKind
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.fleet_state import FleetState
from fleet_hwmon.scoring.history import NO_DEMAND, PerformanceHistory, TaskDemand, demand_of
from fleet_hwmon.scoring.requirements import TaskRequirements, hardware_mismatch
from fleet_hwmon.scoring.reservations import Reservations, Shield, fits_at_s
from fleet_hwmon.scoring.terms import (NO_CAP, DemandCap, cap_for, capacity_frontier, demand_figures, drained_misfit,
                                       fits_when_idle, required_gpu_memory_bytes, task_demand_for)
from fleet_hwmon.scoring.vectorised import decide_vectorised
from fleet_hwmon.scoring.views import InFlight, WorkerView, capacity_from_capabilities

log = logging.getLogger("fleet_hwmon.scheduling")
GIB = 1024**3

class HardwareAwareScheduler:
    """Hardware-aware decisions for ``coordinator`` (see DESIGN: the coordinator contract).

    Args:
        coordinator: its ``workers`` give each worker's capabilities, its ``task_scheduler`` the
            original scores, ``max_tasks_per_worker`` (optional) the task limit.
        factors: the live ``hardware_scoring_factors`` dict; edits apply to the next decision.
        update_interval_s: expected interval of worker samples (staleness).
        seed: makes tie-breaking reproducible.
        clock: monotonic seconds; ``wall_clock``: UTC time that dates decisions.
        record: called with every decision (outside the lock), e.g. to store it.
        max_recorded_candidates: candidates kept in a decision's explanation.
        vectorised: decide over the fleet's arrays (:mod:`fleet_hwmon.scoring.vectorised`) where
            that covers the case; ``False``: always worker by worker (the same decisions, slower).
    """

    def __init__(self, coordinator: Any, factors: dict[str, float] | None = None, *, update_interval_s: float = 5.0,
                 seed: int = 0, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = utc_now,
                 record: Callable[[SchedulingDecision], Any] | None = None, max_recorded_candidates: int = 20,
                 vectorised: bool = True) -> None:
        self.coordinator = coordinator
        self.factors_source = factors if factors is not None else ScoringFactors().as_dict()
        self.update_interval_s = float(update_interval_s)
        self.seed = seed
        self.max_recorded_candidates = max_recorded_candidates
        self.history = PerformanceHistory()
        self._clock = clock
        self._wall_clock = wall_clock
        self._record = record
        self._views: dict[str, WorkerView] = {}
        self.state = FleetState()  # the views' figures as arrays, synced whenever a view changes (large fleets)
        self._columns_on = False  # whether self.state is kept (see _sync)
        self.vectorised = vectorised
        # requirements -> worker id -> why its hardware cannot run them (None: it can)
        self._mismatch_cache: dict[TaskRequirements, dict[str, Exclusion | None]] = {}
        self._reservations = Reservations()
        self._task_types: dict[str, str | None] = {}
        self._inflight_at: dict[str, str] = {}  # task id -> worker its latest decision chose
        self._decisions: collections.deque[SchedulingDecision] = collections.deque(maxlen=1000)
        self._stats = SchedulerStatistics()
        self._factors_cache: tuple[dict, ScoringFactors] | None = None
        self._lock = threading.RLock()
        self._patch: SchedulerPatch | None = None
        # Liveness: a retried task's own raised estimate; the largest compatible worker per
        # requirements (memory, GPU memory), remembered until the fleet changes.
        self._retry_floor: dict[str, TaskDemand] = {}
        # per placed GPU task: the GPU room its decision saw (None: unknown), the number of its
        # placement among GPU placements, and whether its worker showed one GPU with no GPU task
        # of ours on it
        self._gpu_room_at_start: dict[str, tuple[float | None, int, bool]] = {}
        self._gpu_placed = 0  # GPU placements so far
        self._last_gpu_placement: dict[str, int] = {}  # per worker, the number of its latest
        # per task whose attempt ran out of GPU memory alone on its worker's one GPU (nothing of
        # ours there when it was placed, nor placed there since), with that GPU's room known when
        # it was placed and when it failed: the most of the lesser of the two
        self._gpu_proven_short: dict[str, float] = {}
        self._avoided = AvoidedWorkers()  # per retried task, the workers it ran out of a resource on
        # requirements -> (fleet version, capacity frontier, how many workers are compatible)
        self._caps: dict[TaskRequirements, tuple[int, tuple[DemandCap, ...], int]] = {}
        self._cap_memo: dict[tuple, DemandCap] = {}  # see _cap_for
        self._relaxed_factors: tuple[ScoringFactors | None, ScoringFactors | None] = (None, None)
        self._fleet_version = 0
        self._reserved_need: dict[str, tuple[float, float]] = {}  # reserved worker -> its task's need
        self._ends_s: dict[str, float] = {}  # placed task id -> its predicted end (type's mean duration)
        # Asked again only after a change that could make room for it: a held task's last answer
        # and what it lacked (Held); each change that made room, and what kind (_room_made_since).
        self._room_version = 0
        self._held: dict[str, Held] = {}
        self._room_made: collections.deque[tuple[int, Room]] = collections.deque(maxlen=_ROOM_LOG)
        self._running: collections.Counter[str] = collections.Counter()  # worker -> tasks started, not ended
        self._warned_unknown: set[str] = set()

    # -- the patch ------------------------------------------------------------------------------
    def install(self) -> None:
        """Route the coordinator's scheduler method through :meth:`decide` (idempotent).
        Raises ``CoordinatorContractError`` when the coordinator lacks what it needs."""
        if self._patch is None:
            scheduler, method = check_contract(self.coordinator)
            self._patch = SchedulerPatch.apply(scheduler, method, self._make_patched)

    def uninstall(self) -> None:
        """Restore the original method (safe twice)."""
        if self._patch is not None:
            self._patch.restore()
            self._patch = None

    def _make_patched(self, original: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
        """The replacement of the scheduler's method. Called with the contract's three arguments
        by position (the common case) it asks ``original`` with them; called by the method's own
        parameter names or with more arguments, the original is asked with all of them
        (:func:`contract_call`)."""
        scheduler = self.coordinator.task_scheduler
        signature = signature_of(original)
        if is_async:
            async def patched_async(*args, **kwargs):
                if len(args) == 3 and not kwargs:
                    (task, available_workers, worker_task_count), ask = args, original
                else:
                    task, available_workers, worker_task_count, ask = contract_call(original, signature, args, kwargs)
                shape = CallerShape(available_workers, worker_task_count)
                original_view = await original_scores_async(scheduler, ask, task, shape, worker_task_count,
                                                             self.coordinator.workers)
                return self._choice(self.decide(task, shape.ids, worker_task_count, original_view))
            return patched_async

        def patched(*args, **kwargs):
            if len(args) == 3 and not kwargs:
                (task, available_workers, worker_task_count), ask = args, original
            else:
                task, available_workers, worker_task_count, ask = contract_call(original, signature, args, kwargs)
            shape = CallerShape(available_workers, worker_task_count)
            original_view = original_scores_sync(scheduler, ask, task, shape, worker_task_count,
                                                 self.coordinator.workers)
            return self._choice(self.decide(task, shape.ids, worker_task_count, original_view))
        return patched

    @staticmethod
    def _choice(decision: SchedulingDecision) -> tuple[str | None, float]:
        return decision.chosen_worker_id, decision.chosen_score or 0.0

    # -- workers and samples --------------------------------------------------------------------
    def worker_registered(self, worker_id: str, capabilities: Mapping[str, Any] | None) -> None:
        """A worker (re)joined: a fresh view, its hardware checked again."""
        cores, memory_bytes = capacity_from_capabilities(capabilities or {})
        with self._lock:
            for per_worker in self._mismatch_cache.values():
                per_worker.pop(worker_id, None)
            view = self._views[worker_id] = WorkerView(worker_id, registered_s=self._clock(), cpu_count=cores,
                                                       memory_total_bytes=memory_bytes)
            self._sync(view)
            self._fleet_changed()

    def capabilities_changed(self, worker_id: str) -> None:
        """The worker's record states other hardware than when it was last checked (replaced or
        changed without a new registration): its hardware is checked again at the next decision;
        what its samples showed stays."""
        with self._lock:
            for per_worker in self._mismatch_cache.values():
                per_worker.pop(worker_id, None)
            self._fleet_changed()

    def worker_left(self, worker_id: str) -> None:
        with self._lock:
            self._views.pop(worker_id, None)
            self._last_gpu_placement.pop(worker_id, None)
            self.state.remove(worker_id)
            self._sync(None)
            self._reservations.worker_left(worker_id)
            self._fleet_changed()

    def observe(self, sample: ResourceUtilization) -> None:
        """Take a sample of ``sample.worker_id`` (received now)."""
        with self._lock:
            view = self._views.get(sample.worker_id)
            if view is None:
                view = self._views[sample.worker_id] = WorkerView(sample.worker_id, registered_s=self._clock())
            now_s, factors = self._clock(), self.factors()
            before = room_of(view, now_s, factors.stale_after_intervals * self.update_interval_s)
            totals = (view.memory_total_bytes, view.gpu_totals, view.gpus_lost, view.cpu_count)
            view.observe(sample, now_s, factors)
            self._sync(view)
            if totals != (view.memory_total_bytes, view.gpu_totals, view.gpus_lost, view.cpu_count):
                self._fleet_changed()
            else:
                made = room_made(before, room_of(view, now_s, float("inf")), view.memory_total_bytes)
                if made is not None:
                    self._made_room(self._kept(view, made))

    def _sync(self, view: WorkerView | None) -> None:
        """Copy ``view``'s figures into the fleet's columns. The columns serve the column path
        only, so they are kept only while the fleet has ``VECTORISE_FROM`` workers or more (every
        view copied when it gets there, the columns dropped below): a small fleet's samples and
        decisions skip the copy."""
        if len(self._views) >= vectorised.VECTORISE_FROM:
            if not self._columns_on:
                self._columns_on = True
                for each in self._views.values():
                    self.state.sync(each)
            elif view is not None:
                self.state.sync(view)
        elif self._columns_on:
            self._columns_on = False
            self.state = FleetState()

    def _fleet_changed(self) -> None:
        self._fleet_version += 1
        self._reservations.drop_shields()
        self._made_room()

    def _made_room(self, room: Room | None = None) -> None:
        """Something may have made room for a held task: ``room`` says what (``None``: anything)."""
        self._room_version += 1
        self._room_made.append((self._room_version, ANY_ROOM if room is None else room))

    def _kept(self, view: WorkerView, room: Room) -> Room:
        """``room`` made on ``view``'s worker: whether it has drained (no task of ours started and
        not ended, none in flight: a task needs no headroom there), less what a reservation keeps
        there for its task."""
        worker_id = view.worker_id
        drained = not self._running.get(worker_id) and not view.inflight
        holder = self._reservations.holder(worker_id)
        if holder is None:
            return dataclasses.replace(room, drained=drained, worker_id=worker_id)
        return dataclasses.replace(room, drained=drained, kept_for=holder,
                                   kept_bytes=self._reserved_need.get(worker_id, _ALL)[0], worker_id=worker_id)

    def _freed(self, worker_id: str) -> Room:
        """The room a reservation's end leaves on ``worker_id``: what is free there less the tasks
        in flight (all of it while its samples are stale or unknown), for the tasks it kept off."""
        view = self._views.get(worker_id)
        if view is None:
            return Room(reserved=True)
        stale = view.samples_stale(self._clock(), self.factors().stale_after_intervals * self.update_interval_s)
        free = float("inf") if view.memory_free_bytes is None or stale else (
            view.memory_free_bytes - view.inflight_memory_bytes)
        return self._kept(view, Room(free, reserved=True))

    def _room_made_since(self, held: Held) -> bool:
        """Did a change since ``held`` was decided make room it could use (:meth:`Room.serves`),
        on a worker whose hardware fits it (as far as checked: the decisions' hardware checks)?"""
        if held.room_version == self._room_version:
            return False
        made = self._room_made
        if not made or made[0][0] > held.room_version + 1:  # older than what is remembered
            return True
        mismatches = self._mismatch_cache.get(held.requirements, {})
        for version, room in reversed(made):
            if version <= held.room_version:
                return False
            if room.serves(held) and mismatches.get(room.worker_id) is None and self._left(room).serves(held):
                return True
        return False

    def _left(self, room: Room) -> Room:
        """``room`` less what tasks placed on its worker since have taken: the memory free there
        now less the tasks in flight, when that is less (a fresh sample showing more made a room
        of its own). Without it every held task the room served was decided again after the first
        of them took it, and with hundreds held each such room cost hundreds of decisions."""
        view = self._views.get(room.worker_id) if room.worker_id is not None else None
        if view is None or view.memory_free_bytes is None or room.memory_bytes == float("-inf"):
            return room
        free = view.memory_free_bytes - view.inflight_memory_bytes
        drained = room.drained and not self._running.get(view.worker_id) and not view.inflight
        if free >= room.memory_bytes and drained == room.drained:
            return room
        return dataclasses.replace(room, memory_bytes=min(free, room.memory_bytes), drained=drained)

    # -- tasks ----------------------------------------------------------------------------------
    def task_type_of(self, task_id: str) -> str | None:
        """The type a decision saw for ``task_id`` (``None``: unknown)."""
        return self._task_types.get(task_id)

    def task_started(self, task_id: str, task_type: str | None, worker_id: str | None = None) -> None:
        """``task_id`` started on ``worker_id``, which the coordinator thereby shows alive."""
        self._task_types[task_id] = task_type
        with self._lock:  # a decision may be reading the columns
            if worker_id is not None:
                self._running[worker_id] += 1
            view = self._views.get(worker_id) if worker_id is not None else None
            if view is not None:
                now_s = self._clock()
                if view.samples_stale(now_s, self.factors().stale_after_intervals * self.update_interval_s):
                    self._made_room()  # shown alive: no longer excluded as stale
                view.alive(now_s)
                self._sync(view)

    def task_finished(self, task_id: str, worker_id: str, *, success: bool, task_type: str | None = None,
                      duration_s: float | None = None, cpu_seconds: float | None = None,
                      peak_rss_bytes: float | None = None, gpu_memory_bytes: float | None = None,
                      gpu_percent: float | None = None, error: str | None = None) -> None:
        """``task_id`` ended on ``worker_id``: no longer in flight; its figures (CPU seconds of
        its process tree, peak RSS and GPU memory in bytes, GPU percent of one GPU) are learnt
        per worker and task type. A failure raises the task's own estimate for its retry; one
        whose ``error`` says it ran out of GPU memory (or memory, with no peak figure) keeps the
        retry off that worker (:mod:`fleet_hwmon.scheduling.retry`)."""
        task_type = self._task_types.pop(task_id, None) or task_type
        with self._lock:
            view = self._views.get(worker_id)
            room = float("inf")  # what the end freed: the worker's room, when its samples say it
            gpu_room = None  # the most GPU memory one of its GPUs has free now, when its samples say it
            if self._running.get(worker_id):
                self._running[worker_id] -= 1
            # Whether it freed GPU memory: what it reports holding, else whether it used the GPU there.
            freed_gpu = gpu_memory_bytes > 0 if gpu_memory_bytes is not None else (
                view is not None and task_id in view.placed_gpu_tasks)
            if view is not None:
                now_s = self._clock()
                # Its measured cores leave the CPU figure now, not samples later.
                cores = cpu_seconds / duration_s if cpu_seconds is not None and duration_s else None
                view.task_finished(task_id, self._wall_clock(), (peak_rss_bytes, gpu_memory_bytes), cores)
                stale = view.samples_stale(now_s, self.factors().stale_after_intervals * self.update_interval_s)
                if view.memory_free_bytes is not None and not stale:
                    room = view.memory_free_bytes - view.inflight_memory_bytes
                if not stale:
                    gpu_room = view.gpu_memory_room()
                view.alive(now_s)
                self._sync(view)
            self._inflight_at.pop(task_id, None)
            self._ends_s.pop(task_id, None)
            room_at_start, placed, alone = self._gpu_room_at_start.pop(task_id, (None, None, False))
            self._made_room(self._kept(view, Room(room, gpu=True, slot=True)) if view is not None else None)
            self._avoided.ended(worker_id, freed_gpu)
            if success:
                self._retry_floor.pop(task_id, None)
                self._gpu_proven_short.pop(task_id, None)
                self._avoided.succeeded(task_id)
            else:  # its retry needs more than this attempt reached; its type's estimate stays
                self._avoided.failed(task_id, worker_id, error, peak_rss_bytes)
                if len(self._retry_floor) >= _HELD_LIMIT:  # tasks never retried: start over
                    self._retry_floor.clear()
                growth = self.factors().retry_growth
                old = self._retry_floor.get(task_id, NO_DEMAND)
                gpu_floor = _grown(old.gpu_memory_bytes, gpu_memory_bytes, growth)
                # A GPU task of ours placed there after this one may have taken the room, and then
                # what is free now says nothing of what this one lacked.
                later = placed is not None and self._last_gpu_placement.get(worker_id, -1) > placed
                seen = [r for r in (room_at_start, None if later else gpu_room) if r is not None]
                if not gpu_memory_bytes and seen and resource_failure(error) == "gpu_memory":
                    # The allocation failed and held nothing: the task needs more than the GPU had
                    # free, at least the less of what its decision saw and what is free now (what
                    # others hold may have grown or shrunk meanwhile). A figure, as a history mean
                    # is: the fit check adds the headroom where tasks of ours run, not on a drained worker.
                    headroom = 1.0 + self.factors().memory_headroom_percent / 100.0
                    gpu_floor = max(gpu_floor or 0.0, (max(min(seen), 0.0) + _BEYOND_BYTES) * headroom)
                    if len(seen) == 2 and alone:  # what it lacked, beyond doubt (see _too_large)
                        if len(self._gpu_proven_short) >= _HELD_LIMIT:
                            self._gpu_proven_short.clear()
                        self._gpu_proven_short[task_id] = max(self._gpu_proven_short.get(task_id, 0.0), min(seen))
                self._retry_floor[task_id] = old._replace(
                    memory_bytes=_grown(old.memory_bytes, peak_rss_bytes, growth),
                    gpu_memory_bytes=gpu_floor, source="retry")
            if task_type is not None:
                self.history.record(worker_id, task_type, success=success, duration_s=duration_s,
                                    cpu_seconds=cpu_seconds, peak_rss_bytes=peak_rss_bytes,
                                    gpu_memory_bytes=gpu_memory_bytes, gpu_percent=gpu_percent)
            self._stats.finished(success)

    def _occupied(self, worker_id: str, resource: str) -> bool:
        """Whether a task of ours placed on ``worker_id`` uses ``resource`` there ("memory", or
        "gpu_memory": a task on its GPU), so its end may make room."""
        view = self._views.get(worker_id)
        return view is not None and bool(view.placed_gpu_tasks if resource == "gpu_memory" else view.placed)

    # -- decisions ------------------------------------------------------------------------------
    def factors(self) -> ScoringFactors:
        """The factors of the live dict (re-read when it changes)."""
        cached = self._factors_cache
        if cached is None or cached[0] != self.factors_source:
            cached = (dict(self.factors_source), ScoringFactors.from_mapping(self.factors_source))
            self._factors_cache = cached
        return cached[1]

    def decide_task(self, task: Mapping[str, Any], available_workers: Any,
                    worker_task_count: Mapping[str, int]) -> SchedulingDecision:
        """Decide (and record) where ``task`` goes, with the explanation, asking the original
        scheduler for its scores. With an async scheduler this runs its coroutines to completion,
        so it must not be called from a running event loop (``RuntimeError``; await the patched
        scheduler method there instead)."""
        scheduler = self.coordinator.task_scheduler
        original = self._patch.original if self._patch else getattr(scheduler, check_contract(self.coordinator)[1])
        shape = CallerShape(available_workers, worker_task_count)
        workers = self.coordinator.workers
        if inspect.iscoroutinefunction(original):
            if _loop_running():
                raise RuntimeError("the scheduler is async: inside an event loop, await "
                                   "coordinator.task_scheduler's patched method instead")
            original_view = asyncio.run(original_scores_async(scheduler, original, task, shape, worker_task_count,
                                                              workers))
        else:
            original_view = original_scores_sync(scheduler, original, task, shape, worker_task_count, workers)
        return self.decide(task, shape.ids, worker_task_count, original_view)

    def decide(self, task: Mapping[str, Any], ids: list[str], counts: Mapping[str, int],
               original_view: OriginalScores) -> SchedulingDecision:
        """The decision for ``task`` among the available workers ``ids`` given the original
        scores; recorded, counted and (when a worker is chosen) put in flight there."""
        started = time.perf_counter()
        requirements = TaskRequirements.from_task(task)
        factors = self.factors()
        limit = task_limit_of(self.coordinator)
        workers = self.coordinator.workers
        now_s = self._clock()
        if limit is not None and 0 < limit and counts and _below(counts.values(), limit):
            limit = None  # no worker is at the limit: skip the check per worker
        raw_id = task.get("task_id")
        if raw_id is None or raw_id == "":  # decisions, load in flight and history all go by it
            raise ValueError(f"a task needs a task_id (the coordinator contract); got one with keys {sorted(task)}")
        task_id = str(raw_id)
        with self._lock:
            held = self._held.get(task_id)
            recheck_s, held_since_s = factors.recheck_s, now_s
            if held is not None and held.requirements == requirements:
                held_since_s = held.since_s
                if not self._room_made_since(held) and not (held.recheck_s > factors.recheck_s
                                                            and self._offers_more(ids, counts, limit, held)):
                    if now_s - held.decided_s < held.recheck_s:
                        self._stats.asked_again()
                        if held.recheck_s > factors.recheck_s:  # its rechecks spaced out: still waiting
                            self._reservations.asked(task_id, now_s)
                        return held.decision  # nothing that could make room for it happened: the same answer
                    if now_s - held.since_s >= _RECHECK_BACKOFF_AFTER * factors.recheck_s:
                        # Held long, and decided again for time alone: if it is held again, the
                        # next such recheck waits twice as long (a task that waits for hours is
                        # not decided every 10 s).
                        recheck_s = min(2.0 * held.recheck_s, _RECHECK_GROWTH * factors.recheck_s)
            self._forget_inflight(task_id)  # a task asked about again is not load yet
            cache = self._mismatch_cache.get(requirements)
            if cache is None:
                if len(self._mismatch_cache) >= 256:  # many distinct requirement sets: start over
                    self._mismatch_cache.clear()
                cache = self._mismatch_cache[requirements] = {}

            def check_hardware(worker_id: str) -> Exclusion | None:  # remembered until the worker re-registers
                if worker_id in cache:
                    return cache[worker_id]
                info = workers.get(worker_id) or {}
                reason = hardware_mismatch(requirements, info.get("capabilities") or {})
                mismatch = cache[worker_id] = None if reason is None else Exclusion.hardware(worker_id, reason)
                return mismatch

            frontier, compatible = self._largest(requirements, check_hardware)
            floor = self._retry_floor.get(task_id)
            asked = requirements  # as the task states them (a held answer is kept for these)
            too_large = None if floor is None else self._too_large(task_id, frontier)
            if too_large:  # its attempts fail at their allocation wherever they go: placed at once
                floor = floor._replace(gpu_memory_bytes=None)  # (its host memory still counts)
                requirements = dataclasses.replace(requirements, isolation="shared")
            cap = frontier[0] if len(frontier) == 1 else self._cap_for(frontier, task.get("type"), requirements,
                                                                          floor, factors)
            if too_large:  # whatever GPU memory is free
                cap = cap._replace(gpu_memory_bytes=0.0)
            avoid = None
            if floor is not None and not too_large:  # a retried task: not back where it ran out of a resource

                def holds(worker_id: str) -> bool:  # the worker could run the task once drained
                    return worker_id in self._views and check_hardware(worker_id) is None and self._fits_when_drained(
                        worker_id, task.get("type"), requirements, factors, floor, cap)
                avoid = self._avoided.of(task_id, self._views, holds, self._occupied) or None

            def offers_isolation(worker_id: str) -> bool:  # it could hold the task, and the task may go there
                return (avoid is None or worker_id not in avoid) and self._fits_when_drained(
                    worker_id, task.get("type"), requirements, factors, floor, cap)
            relaxed = (self._isolation_unmet(requirements, now_s, held.since_s, factors, check_hardware,
                                             offers_isolation)
                       if held is not None and held.requirements == requirements else None)
            too_small: tuple[Exclusion, ...] = ()
            fits_factors = factors  # the limits a worker must hold the task under (never the lifted ones)
            if relaxed:  # alone where it fits by itself, whatever the background there
                too_small = tuple(e for e in (self._drained_misfit(w, task.get("type"), requirements, factors, floor,
                                                                   cap) for w in dict.fromkeys(ids)
                                              if check_hardware(w) is None) if e is not None)
                if too_small:
                    kept_off = {e.worker_id for e in too_small}
                    ids = [w for w in ids if w not in kept_off]
                factors = self._relaxed(factors)
            stale_after_s = factors.stale_after_intervals * self.update_interval_s
            reserved: dict[str, Reservation] = {}
            if factors.reserve_for_waiting_tasks:
                blocked = self._reservations.blocked(task_id, requirements.needs_gpu, now_s)
                if blocked:
                    reserved = self._not_backfilled({w: Reservation(*self._reserved_need.get(w, _ALL), e)
                                                     for w, e in blocked.items()}, task.get("type"), now_s)
                if requirements.needs_gpu:  # the GPUs only a waiting task can use: what fits beside its need
                    for worker_id, (gpu_need, exclusion) in self._reservations.shielded(
                            task_id, compatible, held_since_s, now_s).items():
                        reserved.setdefault(worker_id, Reservation(0.0, gpu_need, exclusion))
            hardware = HardwareChecks(cache, check_hardware)
            choice = original_view.choice
            context = DecisionContext(  # (in field order: keywords cost twice as much)
                factors, self.history, now_s, stale_after_s, self._wall_clock(), self.seed,
                self.max_recorded_candidates, counts, limit, None if choice is None else OriginalChoice(*choice),
                floor, cap, reserved, too_small, avoid,
                self._probe(task_id, task.get("type"), requirements, ids, hardware))
            busy_workers: list[Exclusion] = []
            while True:
                unknown: list[str] = []
                decision = kinds = None  # kinds: its exclusions counted by kind, when the column path made it
                if self.vectorised and self._columns_on:
                    kinds = {}
                    decision = decide_vectorised(task, requirements, ids, original_view.scores, self.state, hardware,
                                                 context, unknown, kinds)
                if decision is None:
                    kinds = None
                    decision = decide_among(task, requirements, ids, original_view.scores, self._views, hardware,
                                            context, unknown)
                # A worker whose status says "busy" is at its task limit. Checked on the winner
                # only, so a decision does not read every worker's status (callers rarely pass one).
                busy = busy_exclusion(decision.chosen_worker_id, workers)
                if busy is None:
                    break
                busy_workers.append(busy)
                ids = [w for w in ids if w != busy.worker_id]
            if busy_workers:
                decision = dataclasses.replace(decision, exclusions=(*busy_workers, *decision.exclusions))
                if kinds is not None:
                    kinds[ExclusionKind.TASK_LIMIT] = kinds.get(ExclusionKind.TASK_LIMIT, 0) + len(busy_workers)
            if relaxed:
                note = f"isolation {requirements.isolation} relaxed: {relaxed}"
                decision = dataclasses.replace(decision, explanation=f"{note}; {decision.explanation}")
            if not compatible and self._views:
                reason = "no worker of the fleet has the hardware the task requires"
                decision = dataclasses.replace(decision, unplaceable_reason=reason,
                                               explanation=f"{reason}; {decision.explanation}")
            elif too_large:
                decision = dataclasses.replace(decision, unplaceable_reason=too_large,
                                               explanation=f"{too_large}; {decision.explanation}")
            if unknown:
                self._warn_unknown(unknown, now_s - stale_after_s)
            if factors.reserve_for_waiting_tasks:
                task_type = task.get("type")
                held_at = self._reservations.worker_of(task_id)
                newly = self._reservations.observe(
                    task_id, task_type, decision.chosen_worker_id, decision.exclusions, now_s,
                    after_s=factors.reserve_after_s, expire_s=stale_after_s, depth=int(factors.reservation_depth),
                    preference=lambda w: self._reserve_order(w, requirements.needs_gpu, counts),
                    fits=(lambda w: False) if too_large else (
                        lambda w: self._fits_when_drained(w, task_type, requirements, fits_factors, floor, cap)),
                    shield=None if too_large else self._shield(decision, task_type, requirements, compatible,
                                                               factors, floor, cap))
                for worker_id in self._reservations.take_freed():
                    self._made_room(self._freed(worker_id))  # no longer shielded: free for the others again
                if newly is not None:
                    _, memory, gpu_memory, _ = task_demand_for(self._views.get(newly), self.history, newly, task_type,
                                                               requirements, factors, floor, cap)
                    headroom = 1.0 + factors.memory_headroom_percent / 100.0
                    self._reserved_need[newly] = (memory * headroom, gpu_memory * headroom)
                elif held_at is not None and not self._reservations.holds(task_id):
                    self._made_room(self._freed(held_at))  # its worker is free for the others again
            if decision.chosen_worker_id is None:
                if len(self._held) >= _HELD_LIMIT:  # tasks cancelled while held: start over
                    self._held.clear()
                predicted = task_demand_for(None, self.history, "", task.get("type"), requirements, factors,
                                            floor, cap)[1]
                self._held[task_id] = Held.of(decision, asked, now_s, self._room_version,
                                               1.0 + factors.memory_headroom_percent / 100.0, predicted, recheck_s,
                                               held_since_s)
            else:
                self._held.pop(task_id, None)
            self._account(decision, task, requirements, factors, now_s, time.perf_counter() - started, floor, cap,
                          kinds, self._gpu_proven_short[task_id] if too_large else None)
        if self._record is not None:
            self._record(decision)
        return decision

    def _probe(self, task_id: str, task_type: str | None, requirements: TaskRequirements, ids: list[str],
               hardware: HardwareChecks) -> str | None:
        """The worker where a quiet task may go as its type's probe, if any: when no run of its
        type has measured its cores and no other task of the type is placed and not ended, the
        quietest of ``ids`` (least CPU by the figures the quiet checks read, with its tasks in
        flight) whose hardware fits. There the probe counts as the heaviest type measured
        (:meth:`DecisionTerms.not_quiet`); elsewhere, and the other tasks of the type until its
        figures come, at their share. Counted at its share everywhere, the first task of a
        quiet type fitted only a worker under 25 % CPU: on a small busy fleet it waited
        500-700 s, the type stayed unmeasured, and every task of it waited with it."""
        if requirements.isolation == "shared" or task_type is None:
            return None
        stats = self.history.fleet_stats(task_type)
        if stats is not None and stats.cores is not None:
            return None
        if any(other == task_type for placed, other in self._task_types.items() if placed != task_id):
            return None
        quietest, least = None, float("inf")
        for worker_id in ids:
            view = self._views.get(worker_id)
            if view is None or view.quiet_cpu_percent is None or not view.cpu_count:
                continue
            load = view.quiet_cpu_percent + 100.0 * view.inflight_cores / view.cpu_count
            if load < least and hardware.of(worker_id) is None:
                quietest, least = worker_id, load
        return quietest

    def _shield(self, decision: SchedulingDecision, task_type: str | None, requirements: TaskRequirements,
                compatible: frozenset[str], factors: ScoringFactors, floor: TaskDemand | None,
                cap: DemandCap) -> Shield | None:
        """The shield of a GPU task held for lack of GPU room: its ``compatible`` workers and its
        predicted GPU memory need with headroom (see :mod:`fleet_hwmon.scoring.reservations`)."""
        if decision.chosen_worker_id is not None or not requirements.needs_gpu or not any(
                e.resource in GPU_RESOURCES for e in decision.exclusions):
            return None
        need = task_demand_for(None, self.history, "", task_type, requirements, factors, floor, cap)[2]
        return None if need is None else Shield(compatible, need * (1.0 + factors.memory_headroom_percent / 100.0))

    def _reserve_order(self, worker_id: str, needs_gpu: bool, counts: Mapping[str, int] | None) -> tuple[float, int]:
        """Which worker a starving task reserves first, lowest first: for a GPU task the one
        whose largest GPU is smallest (best fit: a task that fits a 40 GB GPU does not drain the
        fleet's only 80 GB one, which tasks that fit nowhere else need), then the fewest tasks."""
        view = self._views.get(worker_id)
        gpu_bytes = max(view.gpu_totals) if needs_gpu and view is not None and view.gpu_totals else 0.0
        return gpu_bytes, counts.get(worker_id, 0) if counts else 0

    def _fits_when_drained(self, worker_id: str, task_type: str | None, requirements: TaskRequirements,
                           factors: ScoringFactors, floor: TaskDemand | None, cap: DemandCap) -> bool:
        """Could the task run on ``worker_id`` once it has drained (its demand shaped with its
        retry ``floor`` and the ``cap`` of the largest compatible worker, as its decisions shape
        it)? A starving task never reserves a worker too small for it, and always one of those
        its decisions would place it on."""
        demand = self.history.task_demand(worker_id, task_type) if task_type is not None else NO_DEMAND
        return fits_when_idle(self._views.get(worker_id), demand, requirements, factors, floor, cap)

    def _drained_misfit(self, worker_id: str, task_type: str | None, requirements: TaskRequirements,
                        factors: ScoringFactors, floor: TaskDemand | None, cap: DemandCap) -> Exclusion | None:
        """Why the task could not run on ``worker_id`` even once it has drained (see :meth:`_fits_when_drained`)."""
        demand = self.history.task_demand(worker_id, task_type) if task_type is not None else NO_DEMAND
        return drained_misfit(self._views.get(worker_id), demand, requirements, factors, floor, cap)

    def _offers_more(self, worker_ids: list[str], counts: Mapping[str, int], limit: int | None, held: Held) -> bool:
        """Does the caller offer a worker a held decision did not see (it had no free slot or was
        not offered then) with room for the task (memory, as a change there would have to make;
        any, for a task some worker held back for its GPU), or one it saw at its task limit now
        below it? While a held task's rechecks are spaced out, the coordinator's own changes
        decide it again."""
        for worker_id in worker_ids:
            if worker_id in held.excluded:
                continue
            view = self._views.get(worker_id)
            if view is None or view.memory_free_bytes is None or held.gpu_room:
                return True
            drained = not self._running.get(worker_id) and not view.inflight
            need = held.memory_bytes if drained else held.memory_busy_bytes
            if view.memory_free_bytes - view.inflight_memory_bytes >= need:
                return True
        return any(e.kind is ExclusionKind.TASK_LIMIT and (limit is None or counts.get(e.worker_id, 0) < limit)
                   for e in held.decision.exclusions)

    def _isolation_unmet(self, requirements: TaskRequirements, now_s: float, since_s: float,
                         factors: ScoringFactors, check_hardware: Callable[[str], Exclusion | None],
                         holds: Callable[[str], bool]) -> str | None:
        """For a quiet or exclusive task found no worker before (held since ``since_s``): why no
        worker offers it isolation, or ``None`` while one may. Offers none: no compatible worker's
        sample has shown a background under the exclusive allowance (for a GPU task, its CPU and
        a GPU) for ``isolation_patience_s``, each of them sampled for that long (one that joined
        since, or has sent no sample, may still be quiet); or the task has waited twice that and
        none shows one now (backgrounds that dip under the allowance now and then, while tasks
        of ours run there, kept the first from ever holding). Compatible: with the hardware, and
        one that ``holds`` the task: it could run it once drained and the task may go there (a
        quiet worker too small for the task by itself, or one its retry avoids, never offers it
        isolation)."""
        patience = factors.isolation_patience_s
        if requirements.isolation == "shared" or not patience:
            return None
        cutoff, waited_long = now_s - patience, now_s - since_s >= 2 * patience
        compatible, quiet_lately, quiet_now = 0, False, False
        for worker_id, view in self._views.items():
            if check_hardware(worker_id) is not None:
                continue
            seen = view.gpu_quiet_seen_s if requirements.needs_gpu else view.quiet_seen_s
            lately = (view.first_sample_s is None or view.first_sample_s > cutoff
                      or (seen is not None and seen >= cutoff))
            now = view.last_sample_s is None or (seen is not None and seen >= view.last_sample_s)
            if (compatible and not lately and not now) or not holds(worker_id):  # (holds asked only when it counts)
                continue
            compatible += 1
            quiet_lately, quiet_now = quiet_lately or lately, quiet_now or now
            if quiet_lately and (quiet_now or not waited_long):
                return None  # a worker that holds it may still offer isolation
        if not compatible:
            return None
        allowance = f"{factors.exclusive_background_percent:g}%"
        if not quiet_lately:
            return f"no worker's background under {allowance} for {patience:g} s"
        return f"no worker's background under {allowance} now, after a wait of {now_s - since_s:.0f} s"

    def _too_large(self, task_id: str, frontier: tuple[DemandCap, ...]) -> str | None:
        """Why no worker can ever hold the task, when an attempt of it ran out of GPU memory with
        (nearly) the whole of the largest compatible GPU free (``_WHOLE_GPU`` of its memory,
        the samples' figure, less what the driver holds): alone on its worker's one GPU (no GPU
        task of ours there when it was placed, nor placed there since, whose use a sample might
        not show yet), and that much free both when it was placed and when it failed. ``None``
        otherwise, and while a compatible worker's GPU memory is unknown."""
        short = self._gpu_proven_short.get(task_id)
        sizes = [c.gpu_memory_bytes for c in frontier]
        if short is None or not sizes or None in sizes or short < _WHOLE_GPU * max(sizes):
            return None
        largest = max(sizes)
        return (f"an attempt ran out of GPU memory with {short / GIB:.1f} GiB free, as much as the largest "
                f"compatible GPU has ({largest / GIB:.1f} GiB): no worker can hold it")

    def _relaxed(self, factors: ScoringFactors) -> ScoringFactors:
        """``factors`` with the quiet threshold and the exclusive allowance at 100 % (one object
        per factors object, so decisions keep their memo)."""
        if self._relaxed_factors[0] is not factors:
            self._relaxed_factors = (factors, factors.replace(quiet_threshold_percent=100.0,
                                                              exclusive_background_percent=100.0))
        return self._relaxed_factors[1]

    def _cap_for(self, frontier: tuple[DemandCap, ...], task_type: str | None, requirements: TaskRequirements,
                 floor: TaskDemand | None, factors: ScoringFactors) -> DemandCap:
        """:func:`cap_for` the type's predicted need over the fleet, remembered by its figures."""
        demand = demand_of(None, self.history.fleet_stats(task_type)) if task_type is not None else NO_DEMAND
        key = (frontier, demand.memory_bytes, demand.gpu_memory_bytes, requirements, floor,
               factors.memory_headroom_percent, factors.recovery_percent)
        cap = self._cap_memo.get(key)
        if cap is None:
            if len(self._cap_memo) >= 1024:
                self._cap_memo.clear()
            cap = self._cap_memo[key] = cap_for(frontier, demand, requirements.needs_gpu,
                                                required_gpu_memory_bytes(requirements), floor, factors)
        return cap

    def _largest(self, requirements: TaskRequirements, check_hardware: Callable[[str], Exclusion | None]
                 ) -> tuple[tuple[DemandCap, ...], frozenset[str]]:
        """(the :func:`capacity_frontier` of the workers whose hardware fits the task: memory
        bytes, GPU memory bytes of the largest usable GPU (for a GPU task), cores; the workers
        that fit), remembered until a worker joins, leaves or reports other totals."""
        found = self._caps.get(requirements)
        if found is not None and found[0] == self._fleet_version:
            return found[1], found[2]
        capacities = set()
        compatible = []
        workers = self.coordinator.workers
        cache = self._mismatch_cache.get(requirements, {})
        for worker_id, view in self._views.items():
            mismatch = cache[worker_id] if worker_id in cache else check_hardware(worker_id)
            if mismatch is not None:
                continue
            compatible.append(worker_id)
            gpu = None
            if requirements.needs_gpu:
                gpu = max(view.gpu_totals) if view.gpu_totals else _gpu_memory_of(workers.get(worker_id))
            capacities.add(DemandCap(view.memory_total_bytes or None, gpu or None, view.cpu_count or None))
        if len(self._caps) >= 256:
            self._caps.clear()
        frontier = capacity_frontier(capacities) or (NO_CAP,)
        fitting = frozenset(compatible)
        self._caps[requirements] = (self._fleet_version, frontier, fitting)
        return frontier, fitting

    def _warn_unknown(self, worker_ids: list[str], registered_before_s: float) -> None:
        """One warning per worker that has sent no sample in the staleness window since it joined."""
        for worker_id in worker_ids:
            view = self._views.get(worker_id)
            if worker_id not in self._warned_unknown and view is not None and view.registered_s < registered_before_s:
                self._warned_unknown.add(worker_id)
                log.warning("worker %s has sent no hardware sample: scored at the candidates' median load "
                            "until it does; feed its samples with update_worker_utilization(worker_id, sample) "
                            "or the fleet-hwmon worker plugin (or 'hardware_metrics' in its worker record)",
                            worker_id)

    def _account(self, decision: SchedulingDecision, task: Mapping[str, Any], requirements: TaskRequirements,
                 factors: ScoringFactors, now_s: float, latency_s: float, floor: TaskDemand | None = None,
                 cap: DemandCap = NO_CAP, kinds: Mapping[ExclusionKind, int] | None = None,
                 whole_gpu_bytes: float | None = None) -> None:
        """Count the decision and put its task in flight on the chosen worker with its predicted
        demand; ``whole_gpu_bytes``: a task too large for every GPU, in flight with this much GPU
        memory (what it may fill before its allocation fails), not the nothing it was placed by."""
        self._decisions.append(decision)
        self._stats.decided(decision, latency_s, kinds)
        chosen = decision.chosen_worker_id
        if chosen is None:
            return
        task_type = task.get("type")
        self._task_types[decision.task_id] = task_type
        view = self._views.get(chosen)
        if view is not None:
            demand = predicted_demand(decision)
            if demand is not None:  # as the decision shaped it (history, floor, cap)
                cores, memory_bytes, gpu_memory_bytes, gpu_percent = demand_figures(demand, requirements.needs_gpu,
                                                                                    factors)
                measured = task_type is not None and demand.cores is not None
            else:  # (its explanation already written: worked out again)
                cores, memory_bytes, gpu_memory_bytes, gpu_percent = task_demand_for(
                    view, self.history, chosen, task_type, requirements, factors, floor, cap)
                measured = task_type is not None and self.history.task_demand(chosen, task_type).cores is not None
            if whole_gpu_bytes is not None:
                gpu_memory_bytes = whole_gpu_bytes
            self._inflight_at[decision.task_id] = chosen
            duration_s = self.history.predicted_duration_s(chosen, task_type)
            if duration_s is not None:
                if len(self._ends_s) >= _HELD_LIMIT:  # tasks never ended: start over
                    self._ends_s.clear()
                self._ends_s[decision.task_id] = now_s + duration_s
            if requirements.isolation == "exclusive":
                view.exclusive_task = decision.task_id
            elif requirements.isolation == "quiet":
                view.add_quiet(decision.task_id)
            if requirements.needs_gpu:
                self._gpu_placed += 1
                self._last_gpu_placement[chosen] = self._gpu_placed
                room = None if view.samples_stale(now_s, factors.stale_after_intervals * self.update_interval_s) \
                    else view.gpu_memory_room()
                if len(self._gpu_room_at_start) >= _HELD_LIMIT:  # tasks never ended: start over
                    self._gpu_room_at_start.clear()
                alone = len(view.gpu_free_bytes) == 1 and not (view.placed_gpu_tasks - {decision.task_id})
                self._gpu_room_at_start[decision.task_id] = (room, self._gpu_placed, alone)
            view.add_inflight(InFlight(decision.task_id, now_s, cores, memory_bytes, requirements.needs_gpu,
                                       gpu_memory_bytes, decision.timestamp, gpu_percent, measured))
            self._sync(view)

    def _not_backfilled(self, reserved: dict[str, Reservation], task_type: str | None,
                        now_s: float) -> dict[str, Reservation]:
        """``reserved`` less the workers the task may backfill: where it is predicted to end (its
        type's mean duration there) before the reserved task's need fits (:func:`fits_at_s`)."""
        kept = {}
        for worker_id, hold in reserved.items():
            duration_s = self.history.predicted_duration_s(worker_id, task_type)
            view = self._views.get(worker_id)
            if duration_s is None or view is None or now_s + duration_s > self._fits_at_s(view, hold, now_s):
                kept[worker_id] = hold
        return kept

    def _fits_at_s(self, view: WorkerView, hold: Reservation, now_s: float) -> float:
        """:func:`fits_at_s` on the worker of ``view``: its free memory less what is in flight,
        the room of its one GPU, and each task of ours there at its predicted end, holding its
        predicted memory with the headroom its fit check asked for."""
        free = None if view.memory_free_bytes is None else view.memory_free_bytes - view.inflight_memory_bytes
        gpu_room = view.gpu_memory_room() if len(view.gpu_free_bytes) == 1 else None
        ends, inf, headroom = self._ends_s, float("inf"), view.memory_headroom
        ours = [(ends.get(task_id, inf), memory * headroom, gpu_memory)
                for task_id, (memory, gpu_memory, _) in view.placed.items()]
        return fits_at_s(now_s, free, gpu_room, ours, hold.memory_bytes, hold.gpu_memory_bytes)

    def _forget_inflight(self, task_id: str) -> None:
        self._ends_s.pop(task_id, None)
        worker_id = self._inflight_at.pop(task_id, None)
        view = self._views.get(worker_id) if worker_id is not None else None
        if view is not None:
            view.task_finished(task_id)
            self._sync(view)

    # -- what it knows --------------------------------------------------------------------------
    def statistics(self, resource_aware: bool = True) -> dict[str, Any]:
        """Plain data (see :meth:`SchedulerStatistics.as_dict`)."""
        with self._lock:
            return self._stats.as_dict(resource_aware)

    def recent_decisions(self) -> list[SchedulingDecision]:
        with self._lock:
            return list(self._decisions)

    def held_decision(self, task_id: str) -> SchedulingDecision | None:
        """The latest decision of a task no worker took, while it waits (``None``: placed since,
        or never decided): its exclusions say why each worker it was offered passed it over."""
        with self._lock:
            held = self._held.get(str(task_id))
            return None if held is None else held.decision

    def smoothed_views(self) -> dict[str, dict[str, Any]]:
        """Each worker's smoothed load as plain data: ``cpu_percent``, ``memory_percent``,
        ``gpu_percent`` (busiest GPU), ``excluded_reason``, ``updated`` (ISO time of the latest
        sample, ``None`` before the first); percents 0-100, ``None`` unknown."""
        with self._lock:
            return {w: {"cpu_percent": v.cpu_percent, "memory_percent": v.memory_percent,
                        "gpu_percent": v.gpu_percent,
                        "excluded_reason": v.excluded.reason if v.excluded else None,
                        "updated": v.latest.timestamp.isoformat() if v.latest is not None else None}
                    for w, v in self._views.items()}

    def worker_state(self, worker_id: str) -> dict[str, Any]:
        """``excluded_reason`` and ``excluded_resource`` (critical load), ``stale`` (why it
        counts as stale, or ``None``) and ``sampled`` (a sample of it was seen) of one worker, now."""
        stale_after_s = self.factors().stale_after_intervals * self.update_interval_s
        with self._lock:
            view = self._views.get(worker_id)
            excluded = view.excluded if view else None
            return {"excluded_reason": excluded.reason if excluded else None,
                    "excluded_resource": excluded.resource if excluded else None,
                    "stale": view.stale_reason(self._clock(), stale_after_s) if view else None,
                    "sampled": view is not None and view.last_sample_s is not None}


# A task held this many recheck_s has its rechecks for time alone spaced out, up to _RECHECK_GROWTH
# recheck_s apart; before that (most held tasks are placed by then) every recheck_s.
_RECHECK_BACKOFF_AFTER = 12.0
_RECHECK_GROWTH = 8.0
_HELD_LIMIT = 100_000  # held tasks and retry estimates remembered at most
_WHOLE_GPU = 0.98  # an attempt that failed with this share of a GPU free needed more than the whole GPU
_BEYOND_BYTES = 64 * 1024**2  # a need proven above a figure: this much above it (one allocation's granule)
_ROOM_LOG = 4096  # changes that made room remembered (a held task older than them is decided again)
_ALL = (float("inf"), float("inf"))  # a reserved task's need when it is not known: nothing fits beside


def _grown(previous: float | None, peak: float | None, growth: float) -> float | None:
    """A failed attempt's ``peak`` grown by ``growth``, never below the ``previous`` estimate."""
    if peak is None or peak <= 0:
        return previous
    return max(previous or 0.0, peak * growth)


def _gpu_memory_of(info: Mapping[str, Any] | None) -> float | None:
    """The largest GPU memory (bytes) a worker's contract capabilities state, if any."""
    caps = (info or {}).get("capabilities")
    if not isinstance(caps, Mapping):
        return None
    gpus = caps.get("gpus") or ([caps["gpu"]] if caps.get("gpu") else [])
    gpus = gpus if isinstance(gpus, (list, tuple)) else [gpus]
    sizes = [finite(g.get("memory_gb")) for g in gpus if isinstance(g, Mapping)]  # (a malformed figure: unknown)
    return max(s for s in sizes if s) * GIB if any(sizes) else None


def _below(counts: Any, limit: Any) -> bool:
    """Every count is below ``limit`` (False when they do not compare as numbers)."""
    try:
        return max(counts) < limit
    except (TypeError, ValueError):
        return False


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
