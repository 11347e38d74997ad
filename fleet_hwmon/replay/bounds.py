"""What no policy can beat on a workload: the makespan lower bound."""

from __future__ import annotations

from collections import defaultdict

from fleet_hwmon.replay.workload import ReplayConfig, TaskSpec, build_fleet, build_tasks, fits


def makespan_lower_bound_s(config: ReplayConfig) -> float:
    """The makespan no policy can beat on ``config``'s workload, in seconds: the largest of

    * the latest finish when every task starts at its arrival, alone on the fastest worker that
      has its hardware, and never fails;
    * for each set S of workers that some task type is limited to, the first arrival among the
      tasks limited to S plus their work over S's capacity: core-seconds over S's cores x speed,
      and for GPU tasks GPU-seconds (share x work) over S's GPUs x speed. A task never runs
      faster than its worker's speed, and it uses its cores (its GPU share) while it runs.

    Tasks no worker has the hardware for are left out (they fail at once under every policy)."""
    fleet = build_fleet(config)
    by_set: dict[frozenset[str], list[TaskSpec]] = defaultdict(list)
    by_id = {w.worker_id: w for w in fleet}
    bound = 0.0
    for spec in build_tasks(config, fleet):
        compatible = frozenset(w.worker_id for w in fleet if fits(spec.requirements, w))
        if not compatible:
            continue
        by_set[compatible].append(spec)
        bound = max(bound, spec.arrival_s + spec.work_s / max(by_id[w].speed for w in compatible))
    for workers in by_set:
        limited = [s for subset, specs in by_set.items() if subset <= workers for s in specs]
        first = min(s.arrival_s for s in limited)
        # In a fixed order, so the float sums do not depend on the hash seed.
        cpu_capacity = sum(by_id[w].cores * by_id[w].speed for w in sorted(workers))
        bound = max(bound, first + sum(s.cores * s.work_s for s in limited) / cpu_capacity)
        gpu_capacity = sum(by_id[w].speed for w in sorted(workers) if by_id[w].gpu is not None)
        gpu_work = sum(s.gpu_percent / 100.0 * s.work_s for s in limited if s.needs_gpu)
        if gpu_work and gpu_capacity:
            bound = max(bound, first + gpu_work / gpu_capacity)
    return bound
