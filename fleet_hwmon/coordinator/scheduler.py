"""The reference task scheduler: hardware match plus a task-count and track-record score.

It knows nothing of utilization; that is what the integration adds by patching
``find_best_worker_for_task``. ``score_worker`` is the per-worker score the integration uses to
put every candidate on the scheduler's own scale.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from fleet_hwmon.scoring.decide import tie_break
from fleet_hwmon.scoring.requirements import TaskRequirements, hardware_mismatch


class TaskScheduler:
    """Picks the worker with the fewest running tasks and the best success record.

    score = (1 / (1 + running tasks)) * (0.5 + 0.5 * success rate) * priority boost, for workers
    whose capabilities satisfy the task's requirements; ties break by a seeded hash.
    """

    def __init__(self, workers: Mapping[str, dict], seed: int = 0) -> None:
        self._workers = workers
        self.seed = seed
        self._results: dict[str, list[int]] = {}  # worker id -> [successes, runs]

    def score_worker(self, task: Mapping[str, Any], worker_id: str, worker: Mapping[str, Any] | None,
                     task_count: int) -> float | None:
        """This scheduler's score for one worker, ``None`` when its hardware cannot run the task."""
        return self._score(TaskRequirements.from_task(task), worker_id, worker, task_count)

    def score_workers(self, task: Mapping[str, Any], worker_ids: Sequence[str],
                      worker_task_count: Mapping[str, int]) -> dict[str, float | None]:
        """:meth:`score_worker` of many workers at once (the requirements are parsed once)."""
        requirements = TaskRequirements.from_task(task)
        return {w: self._score(requirements, w, self._workers.get(w), worker_task_count.get(w, 0))
                for w in worker_ids}

    def _score(self, requirements: TaskRequirements, worker_id: str, worker: Mapping[str, Any] | None,
               task_count: int) -> float | None:
        worker = worker if worker is not None else self._workers.get(worker_id, {})
        if hardware_mismatch(requirements, worker.get("capabilities") or {}) is not None:
            return None
        successes, runs = self._results.get(worker_id, (0, 0))
        success_rate = (successes + 1) / (runs + 1)  # unknown record counts as good
        return (1.0 / (1 + task_count)) * (0.5 + 0.5 * success_rate)

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
