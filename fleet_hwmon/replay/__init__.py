"""A discrete-event replay of a fleet, to compare scheduling policies on seeded workloads.

``simulate(workload("gpu_heavy", seed=1), make_policy("hardware_aware"))`` runs the real
scheduling code (the integration's patched scheduler) against simulated workers; see
``docs/scheduling.md``.
"""

from fleet_hwmon.replay.bounds import isolated_lower_bound_s, makespan_lower_bound_s
from fleet_hwmon.replay.outcomes import METRICS, compute_outcomes, mean_outcomes
from fleet_hwmon.replay.policies import POLICY_NAMES, REFERENCE_POLICY_NAMES, make_policy
from fleet_hwmon.replay.sim import ReplayDidNotFinish, ReplayResult, Simulation, simulate
from fleet_hwmon.replay.workload import FleetClass, GpuSpec, ReplayConfig, TaskType, build_fleet, build_tasks, fits
from fleet_hwmon.replay.workloads import WORKLOADS, workload

__all__ = ["METRICS", "POLICY_NAMES", "REFERENCE_POLICY_NAMES", "WORKLOADS", "FleetClass", "GpuSpec", "ReplayConfig",
           "ReplayDidNotFinish", "ReplayResult", "Simulation", "TaskType", "build_fleet", "build_tasks",
           "compute_outcomes", "fits", "isolated_lower_bound_s", "make_policy", "makespan_lower_bound_s",
           "mean_outcomes", "simulate", "workload"]
