"""What no policy can beat on a workload: the makespan lower bound."""

from __future__ import annotations

from collections import defaultdict

from fleet_hwmon.replay.workload import ReplayConfig, TaskSpec, WorkerSpec, build_fleet, build_tasks, fits


def released_work_bound_s(jobs: list[tuple[float, float]], capacity: float) -> float:
    """The earliest end of ``jobs`` (``(arrival_s, work)`` pairs) on ``capacity`` work per second:
    the largest, over every arrival ``r``, of ``r`` plus the work arriving at or after ``r`` over the
    capacity (none of it can start before ``r``). 0.0 for no jobs or no capacity."""
    if not jobs or capacity <= 0:
        return 0.0
    bound, work = 0.0, 0.0
    for arrival_s, amount in sorted(jobs, reverse=True):
        work += amount
        bound = max(bound, arrival_s + work / capacity)
    return bound


def can_succeed(spec: TaskSpec, worker: WorkerSpec) -> bool:
    """Could an attempt of ``spec`` ever succeed on ``worker``: its hardware, and its peak memory
    (GPU memory) within the worker's (its GPU's)? Beyond them the OOM killer (a CUDA
    out-of-memory error) ends every attempt there, under any policy."""
    if not fits(spec.requirements, worker) or spec.memory_bytes > worker.memory_bytes:
        return False
    return not spec.needs_gpu or worker.gpu is None or spec.gpu_memory_bytes <= worker.gpu.memory_bytes


def makespan_lower_bound_s(config: ReplayConfig) -> float:
    """The makespan no policy that runs every task to success can beat on ``config``'s workload,
    in seconds: the largest of

    * the latest finish when every task starts at its arrival, alone on the fastest worker it
      could succeed on (:func:`can_succeed`), and never fails;
    * for each set S of workers that some task is limited to (those it could succeed on), over
      the tasks limited to S,
      ``released_work_bound_s`` of their core-seconds on S's cores x speed, and for GPU tasks of
      their GPU-seconds (share x work) on S's GPUs x speed. A task never runs faster than its
      worker's speed, and it uses its cores (its GPU share) while it runs;
    * for each such S, the memory-seconds of the tasks limited to S on S's memory: a task holds
      its memory while it runs, on average the share of its peak its ramp gives
      (``memory_ramp``), for at least its work over the fastest worker of S, and a worker's
      tasks never hold more than its memory (the OOM killer ends one first);
    * for each such S, the tasks needing more than half the memory of S's largest GPU: no GPU
      holds two of them at once, so they run one at a time on each GPU large enough for any of
      them (their GPU-memory peak is allocated at start, and a start that does not fit fails).

    Tasks no worker could succeed on are left out (every attempt fails under every policy), and
    so are tasks no GPU of S can hold. A policy that gives up on tasks after failed attempts can
    end before this bound: it skips their work."""
    fleet = build_fleet(config)
    by_set: dict[frozenset[str], list[TaskSpec]] = defaultdict(list)
    by_id = {w.worker_id: w for w in fleet}
    start_share, peak_at = config.memory_ramp  # (linear from start_share of the peak to it, then the peak)
    held = peak_at * (start_share + 1.0) / 2.0 + (1.0 - peak_at)
    bound = 0.0
    for spec in build_tasks(config, fleet):
        compatible = frozenset(w.worker_id for w in fleet if can_succeed(spec, w))
        if not compatible:
            continue
        by_set[compatible].append(spec)
        bound = max(bound, spec.arrival_s + spec.work_s / max(by_id[w].speed for w in compatible))
    for workers in by_set:
        limited = [s for subset, specs in by_set.items() if subset <= workers for s in specs]
        # In a fixed order, so the float sums do not depend on the hash seed.
        ordered = [by_id[w] for w in sorted(workers)]
        cpu_capacity = sum(w.cores * w.speed for w in ordered)
        bound = max(bound, released_work_bound_s([(s.arrival_s, s.cores * s.work_s) for s in limited], cpu_capacity))
        fastest = max(w.speed for w in ordered)
        bound = max(bound, released_work_bound_s([(s.arrival_s, held * s.memory_bytes * s.work_s / fastest)
                                                  for s in limited], sum(w.memory_bytes for w in ordered)))
        gpus = [w for w in ordered if w.gpu is not None]
        if not gpus:
            continue
        gpu_tasks = [s for s in limited if s.needs_gpu]
        gpu_capacity = sum(w.speed for w in gpus)
        bound = max(bound, released_work_bound_s([(s.arrival_s, s.gpu_percent / 100.0 * s.work_s)
                                                  for s in gpu_tasks], gpu_capacity))
        largest_bytes = max(w.gpu.memory_bytes for w in gpus)
        big = [s for s in gpu_tasks if largest_bytes / 2 < s.gpu_memory_bytes <= largest_bytes]
        if big:
            smallest_big_bytes = min(s.gpu_memory_bytes for s in big)
            lanes = sum(w.speed for w in gpus if w.gpu.memory_bytes >= smallest_big_bytes)
            bound = max(bound, released_work_bound_s([(s.arrival_s, s.work_s) for s in big], lanes))
    return bound


def isolated_lower_bound_s(config: ReplayConfig) -> float:
    """:func:`makespan_lower_bound_s` for a policy that also honours isolation: an exclusive
    task has its worker to itself, so for each set S of workers that some exclusive task is
    limited to (those it could succeed on), the exclusive tasks limited to S run one at a time
    on each worker of S
    (``released_work_bound_s`` of their work on the sum of S's speeds). A policy that ignores
    isolation (least-loaded) can end before it; the replay's horizon is a multiple of it, so a
    run that keeps its promises on a fleet where they cost time is not cut short as stuck."""
    bound = makespan_lower_bound_s(config)
    fleet = build_fleet(config)
    by_set: dict[frozenset[str], list[TaskSpec]] = defaultdict(list)
    for spec in build_tasks(config, fleet):
        if spec.isolation == "exclusive":
            compatible = frozenset(w.worker_id for w in fleet if can_succeed(spec, w))
            if compatible:
                by_set[compatible].append(spec)
    speeds = {w.worker_id: w.speed for w in fleet}
    for workers in by_set:
        limited = [s for subset, specs in by_set.items() if subset <= workers for s in specs]
        lanes = sum(speeds[w] for w in sorted(workers))
        bound = max(bound, released_work_bound_s([(s.arrival_s, s.work_s) for s in limited], lanes))
    return bound
