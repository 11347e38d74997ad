"""The scheduling policies the replay compares, all behind the same small protocol
(:class:`fleet_hwmon.replay.sim.Policy`).

* ``round_robin``: the next compatible available worker after the last one chosen.
* ``least_loaded``: the compatible available worker with the lowest CPU percent in its latest
  delivered sample (a worker with no sample yet ranks after every known one, never as idle).
* ``original``: the reference ``TaskScheduler`` alone (hardware match, fewest running tasks,
  success record).
* ``hardware_aware``: the same scheduler patched by the real
  ``CoordinatorHardwareMonitoringIntegration`` (real scoring, views, history, DuckDB store).
* ``hardware_aware_no_history``: the integration with ``failure_penalty_weight=0`` and
  ``duration_weight=0``, and no process usage handed to ``stop_task_monitoring``, so the history
  has no CPU or memory figures to predict a task's demand from.

A reference point beside them, not a scheduler (not in ``POLICY_NAMES``; ask for it by name):

* ``clairvoyant``: reads the simulation's ground truth (every worker's true load now, each
  task's true demand) and places the task where its true load after placement is lowest,
  among the workers with room for it. What it reaches is what placing tasks alone, knowing
  everything, can reach under the same coordinator (see :class:`Clairvoyant`).

Round robin and least-loaded match hardware with the product's ``hardware_mismatch`` on the
capabilities the coordinator holds, as a coordinator would.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from typing import Any, Callable, Mapping

from fleet_hwmon.replay.monitor import EPOCH
from fleet_hwmon.replay.sim import SimCoordinator
from fleet_hwmon.replay.workload import TaskSpec
from fleet_hwmon.sample import ResourceUtilization
from fleet_hwmon.scoring.ranking import tie_break
from fleet_hwmon.scoring.requirements import TaskRequirements, hardware_mismatch

NO_HISTORY_FACTORS = {"failure_penalty_weight": 0.0, "duration_weight": 0.0}


class _Base:
    name = "base"
    matches_hardware = True

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.coordinator: SimCoordinator | None = None
        self._compatible: dict[tuple[str, str], bool] = {}

    def attach(self, coordinator: SimCoordinator, clock: Callable[[], float]) -> None:
        self.coordinator = coordinator
        self.clock = clock

    def compatible(self, task: Mapping[str, Any], worker_id: str) -> bool:
        key = (str(task.get("type")), worker_id)
        ok = self._compatible.get(key)
        if ok is None:
            caps = self.coordinator.workers[worker_id]["capabilities"]
            ok = self._compatible[key] = hardware_mismatch(TaskRequirements.from_task(task), caps) is None
        return ok

    def on_start(self, spec: TaskSpec, worker_id: str) -> None:
        pass

    def on_finish(self, spec: TaskSpec, worker_id: str, success: bool, error: str | None,
                  usage: dict[str, Any]) -> None:
        pass

    def on_sample(self, worker_id: str, sample: ResourceUtilization) -> None:
        pass

    def close(self) -> None:
        pass


class RoundRobin(_Base):
    name = "round_robin"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self._last = -1

    def choose(self, task: dict, available: list[str], counts: dict[str, int]) -> str | None:
        order = sorted(self.coordinator.workers)
        free = set(available)
        for step in range(1, len(order) + 1):
            index = (self._last + step) % len(order)
            worker_id = order[index]
            if worker_id in free and self.compatible(task, worker_id):
                self._last = index
                return worker_id
        return None


class LeastLoaded(_Base):
    name = "least_loaded"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self._cpu: dict[str, float | None] = {}

    def on_sample(self, worker_id: str, sample: ResourceUtilization) -> None:
        if sample.cpu_percent is not None:
            self._cpu[worker_id] = sample.cpu_percent

    def choose(self, task: dict, available: list[str], counts: dict[str, int]) -> str | None:
        task_id = str(task.get("task_id"))
        best = None
        for worker_id in available:
            if not self.compatible(task, worker_id):
                continue
            cpu = self._cpu.get(worker_id)
            key = (cpu is None, cpu or 0.0, tie_break(self.seed, task_id, worker_id))
            if best is None or key < best[0]:
                best = (key, worker_id)
        return best[1] if best else None


class Clairvoyant(_Base):
    """Knows what no scheduler can: the simulation hands it its workers and the tasks' true
    demand (``see_ground_truth``). Among the compatible available workers with room for the
    task (:meth:`SimWorker.has_room_for`: its true peak memory and GPU memory, quiet or
    exclusive hardware) it picks the lowest true load after placement: CPU demand (background
    and our tasks) plus the task's cores over the cores, and for a GPU task the larger of that
    and the GPU's demand plus the task's share. A task no such worker has room for waits, unless
    an available worker has nothing of ours running (it goes there, ranked after any with
    room). Like every policy it is asked about the task at the head of the queue among the
    workers with a free slot, and it never holds a task for CPU or GPU time: its time above
    95 % is what placement alone can reach (a reference, not a bound: it is greedy)."""

    name = "clairvoyant"

    def see_ground_truth(self, workers: Mapping[str, Any], specs: Mapping[str, TaskSpec]) -> None:
        self._workers, self._specs = workers, specs

    def choose(self, task: dict, available: list[str], counts: dict[str, int]) -> str | None:
        spec = self._specs[str(task.get("task_id"))]
        best = None
        for worker_id in available:
            if not self.compatible(task, worker_id):
                continue
            worker = self._workers[worker_id]
            room = worker.has_room_for(spec)
            if not room and worker.tasks:
                continue
            load = 100.0 * (worker.demand() + spec.cores) / worker.spec.cores
            if spec.needs_gpu:
                load = max(load, worker.gpu_percent() + spec.gpu_percent)
            key = (not room, load, tie_break(self.seed, spec.task_id, worker_id))
            if best is None or key < best[0]:
                best = (key, worker_id)
        return best[1] if best else None


class Original(_Base):
    name = "original"

    def choose(self, task: dict, available: list[str], counts: dict[str, int]) -> str | None:
        worker_id, _ = self.coordinator.task_scheduler.find_best_worker_for_task(task, available, counts)
        return worker_id

    def on_finish(self, spec: TaskSpec, worker_id: str, success: bool, error: str | None,
                  usage: dict[str, Any]) -> None:
        self.coordinator.task_scheduler.update_worker_performance(worker_id, {"success": success})


class HardwareAware(Original):
    """The reference scheduler patched by the real integration. ``factors`` overrides
    ``hardware_scoring_factors``; ``process_usage=False`` withholds the tasks' CPU and memory
    figures (no demand prediction)."""

    name = "hardware_aware"

    def __init__(self, seed: int = 0, factors: Mapping[str, float] | None = None, *, process_usage: bool = True,
                 name: str | None = None, update_interval_s: float = 5.0) -> None:
        super().__init__(seed)
        self.factors = dict(factors or {})
        self.process_usage = process_usage
        self.update_interval_s = update_interval_s
        if name:
            self.name = name
        self.integration = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._held: dict[Any, str] = {}  # task type -> its task held last

    def attach(self, coordinator: SimCoordinator, clock: Callable[[], float]) -> None:
        # The replay is an application of the public integration, like the demo: imported here so
        # the package's lower layers never import the top-level modules.
        import coordinator_hardware_monitoring_integration as cim

        super().attach(coordinator, clock)
        self._tmp = tempfile.TemporaryDirectory(prefix="replay-")
        # Simulated time for intervals and for dates (decisions, task starts and ends, the
        # samples' own timestamps), through the integration's clock seams.
        self.integration = cim.CoordinatorHardwareMonitoringIntegration(
            coordinator, db_path=os.path.join(self._tmp.name, "replay.duckdb"),
            update_interval_seconds=self.update_interval_s, hardware_scoring_factors=self.factors,
            seed=self.seed, detect_capabilities=False, clock=clock,
            wall_clock=lambda: EPOCH + timedelta(seconds=clock()))
        self.integration.initialize()

    def choose(self, task: dict, available: list[str], counts: dict[str, int]) -> str | None:
        worker_id = super().choose(task, available, counts)
        if worker_id is None:
            self._held[task.get("type")] = task["task_id"]
        return worker_id

    def held_on(self, task_type: str, worker_id: str) -> str:
        """Why the type's task held last is kept off ``worker_id``: the kind of its exclusion
        there (``memory_fit``, ``reserved``...), ``no free slot`` (the worker was not offered),
        or ``not decided`` (placed since: the type's waiting tasks were not asked about)."""
        task_id = self._held.get(task_type)
        decision = None if task_id is None else self.integration.scheduler.held_decision(task_id)
        if decision is None:
            return "not decided"
        return next((e.kind.value for e in decision.exclusions if e.worker_id == worker_id), "no free slot")

    def on_start(self, spec: TaskSpec, worker_id: str) -> None:
        self.integration.start_task_monitoring(spec.task_id, worker_id, spec.type)

    def on_finish(self, spec: TaskSpec, worker_id: str, success: bool, error: str | None,
                  usage: dict[str, Any]) -> None:
        self.integration.stop_task_monitoring(spec.task_id, worker_id, success=success, error=error,
                                              process_usage=usage if self.process_usage else None)
        super().on_finish(spec, worker_id, success, error, usage)

    def on_sample(self, worker_id: str, sample: ResourceUtilization) -> None:
        self.integration.update_worker_utilization(worker_id, sample)

    def decisions(self) -> int:
        """Decisions the integration made (its statistics), however often it was asked."""
        return int(self.integration.scheduler_statistics()["decisions"])

    def close(self) -> None:
        if self.integration is not None:
            self.integration.shutdown()
        if self._tmp is not None:
            self._tmp.cleanup()


POLICY_NAMES = ("round_robin", "least_loaded", "original", "hardware_aware", "hardware_aware_no_history")
REFERENCE_POLICY_NAMES = ("clairvoyant",)


def make_policy(name: str, seed: int = 0, factors: Mapping[str, float] | None = None,
                update_interval_s: float = 5.0) -> Any:
    """A fresh policy by name; ``factors`` applies to the hardware-aware ones."""
    if name == "round_robin":
        return RoundRobin(seed)
    if name == "least_loaded":
        return LeastLoaded(seed)
    if name == "clairvoyant":
        return Clairvoyant(seed)
    if name == "original":
        return Original(seed)
    if name == "hardware_aware":
        return HardwareAware(seed, factors, update_interval_s=update_interval_s)
    if name == "hardware_aware_no_history":
        return HardwareAware(seed, {**(factors or {}), **NO_HISTORY_FACTORS}, process_usage=False, name=name,
                             update_interval_s=update_interval_s)
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES + REFERENCE_POLICY_NAMES)}")
