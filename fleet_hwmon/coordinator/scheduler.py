"""The reference task scheduler: hardware match plus a task-count and track-record score.

It knows nothing of utilization; that is what the integration adds by patching
``find_best_worker_for_task``. ``score_worker`` is the per-worker score the integration uses to
put every candidate on the scheduler's own scale.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from fleet_hwmon.scoring.ranking import tie_break
from fleet_hwmon.scoring.requirements import TaskRequirements, hardware_mismatch


_NO_CAPABILITIES: Mapping[str, Any] = {}  # a worker without capabilities (never changed)


class TaskScheduler:
    """Picks the worker with the fewest running tasks and the best success record.

    score = (1 / (1 + running tasks)) * (0.5 + 0.5 * success rate), for workers whose
    capabilities satisfy the task's requirements; ties break by a seeded hash.
    """

    def __init__(self, workers: Mapping[str, dict], seed: int = 0) -> None:
        self._workers = workers
        self.seed = seed
        self._results: dict[str, list[int]] = {}  # worker id -> [successes, runs]
        self._record_factor: dict[str, float] = {}  # worker id -> 0.5 + 0.5 * success rate (1.0 unknown)
        # requirements -> worker id -> (the capabilities dict it was checked against, fits?)
        self._fits: dict[TaskRequirements, dict[str, tuple[Any, bool]]] = {}

    def score_worker(self, task: Mapping[str, Any], worker_id: str, worker: Mapping[str, Any] | None,
                     task_count: int) -> float | None:
        """This scheduler's score for one worker, ``None`` when its hardware cannot run the task."""
        worker = worker if worker is not None else self._workers.get(worker_id)
        return self._scores(TaskRequirements.from_task(task), [worker_id], {worker_id: worker},
                            {worker_id: task_count})[worker_id]

    def score_workers(self, task: Mapping[str, Any], worker_ids: Sequence[str],
                      worker_task_count: Mapping[str, int]) -> dict[str, float | None]:
        """:meth:`score_worker` of many workers at once (the requirements are parsed once)."""
        return self._scores(TaskRequirements.from_task(task), worker_ids, self._workers, worker_task_count)

    def _scores(self, requirements: TaskRequirements, worker_ids: Sequence[str], workers: Mapping[str, Any],
                worker_task_count: Mapping[str, int]) -> dict[str, float | None]:
        # Runs for every available worker and task: the hardware check is remembered per worker
        # until its capabilities dict is replaced (re-registering a worker replaces it), and the
        # track-record factor is kept up to date by update_worker_performance().
        fits = self._fits.get(requirements)
        if fits is None:
            if len(self._fits) >= 256:  # many distinct requirement sets: start over rather than grow
                self._fits.clear()
            fits = self._fits[requirements] = {}
        worker_of, known_fit, count_of, record_of = workers.get, fits.get, worker_task_count.get, \
            self._record_factor.get
        out: dict[str, float | None] = {}
        for worker_id in worker_ids:
            worker = worker_of(worker_id)
            capabilities = (worker.get("capabilities") if worker is not None else None) or _NO_CAPABILITIES
            known = known_fit(worker_id)
            if known is None or known[0] is not capabilities:
                known = fits[worker_id] = (capabilities, hardware_mismatch(requirements, capabilities) is None)
            # (1 / (1 + running tasks)) * (0.5 + 0.5 * success rate); an unknown record counts as good
            out[worker_id] = (1.0 / (1 + count_of(worker_id, 0))) * record_of(worker_id, 1.0) if known[1] else None
        return out

    def find_best_worker_for_task(self, task: Mapping[str, Any], available_workers: Sequence[str],
                                  worker_task_count: Mapping[str, int]) -> tuple[str | None, float]:
        """``(worker_id, score)`` of the best available worker, ``(None, 0.0)`` when none fits."""
        best: tuple[float, int, str] | None = None
        task_id = str(task.get("task_id", ""))
        for worker_id, score in self.score_workers(task, available_workers, worker_task_count).items():
            if score is None:
                continue
            key = (score, -tie_break(self.seed, task_id, worker_id), worker_id)
            if best is None or key > best:
                best = key
        return (best[2], best[0]) if best else (None, 0.0)

    def update_worker_performance(self, worker_id: str, task_result: Mapping[str, Any]) -> None:
        """Record a finished task: ``task_result["success"]`` (bool)."""
        record = self._results.setdefault(worker_id, [0, 0])
        record[1] += 1
        record[0] += 1 if task_result.get("success") else 0
        successes, runs = record
        self._record_factor[worker_id] = 0.5 + 0.5 * ((successes + 1) / (runs + 1))
