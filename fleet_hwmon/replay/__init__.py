"""A discrete-event replay of a fleet, to compare scheduling policies on one seeded workload.

``simulate(ReplayConfig(...), make_policy("hardware_aware"))`` runs the real scheduling code
(the integration's patched scheduler) against simulated workers; see ``docs/scheduling.md``.
"""

from fleet_hwmon.replay.outcomes import METRICS, compute_outcomes, mean_outcomes
from fleet_hwmon.replay.policies import POLICY_NAMES, make_policy
from fleet_hwmon.replay.sim import ReplayResult, Simulation, makespan_lower_bound_s, simulate
from fleet_hwmon.replay.workload import ReplayConfig, build_fleet, build_tasks

__all__ = ["METRICS", "POLICY_NAMES", "ReplayConfig", "ReplayResult", "Simulation", "build_fleet", "build_tasks",
           "compute_outcomes", "make_policy", "makespan_lower_bound_s", "mean_outcomes", "simulate"]
