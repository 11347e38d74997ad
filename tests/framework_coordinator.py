"""A coordinator and scheduler written to the distributed testing framework's own contract,
as its users have them: ``available_workers`` is a dict worker id -> worker dict iterated with
``.items()``, the scheduler is async and keeps ``worker_performance`` through
``update_worker_performance``, workers are ``"idle"`` or ``"busy"`` and report their own
``hardware_metrics`` in heartbeats, and there is no ``register_worker_callback``.
Nothing here knows about hardware monitoring."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from typing import Any


class FrameworkTaskScheduler:
    """Prefers workers with the best success record, then the fewest running tasks."""

    def __init__(self, coordinator: FrameworkCoordinator) -> None:
        self.coordinator = coordinator
        self.worker_performance: dict[str, dict[str, Any]] = {}

    async def find_best_worker_for_task(self, task: dict, available_workers: dict[str, dict],
                                        worker_task_count: dict[str, int]) -> tuple[str | None, float]:
        required = set(task.get("requirements", {}).get("hardware", []))
        best_id, best_score = None, 0.0
        for worker_id, worker in available_workers.items():
            if not required <= set(worker["capabilities"].get("hardware", [])):
                continue
            record = self.worker_performance.get(worker_id, {"success_rate": 0.5})
            score = record["success_rate"] + 1.0 / (1 + worker_task_count.get(worker_id, 0))
            if score > best_score:
                best_id, best_score = worker_id, score
        return best_id, best_score

    def update_worker_performance(self, worker_id: str, task_result: dict) -> None:
        record = self.worker_performance.setdefault(worker_id, {"completed": 0, "succeeded": 0})
        record["completed"] += 1
        record["succeeded"] += 1 if task_result.get("success") else 0
        record["success_rate"] = record["succeeded"] / record["completed"]


class FrameworkCoordinator:
    """Workers register ``"idle"``, become ``"busy"`` at their task limit, and send heartbeats
    carrying their own ``hardware_metrics``."""

    def __init__(self, max_tasks_per_worker: int = 1) -> None:
        self.max_tasks_per_worker = max_tasks_per_worker
        self.workers: dict[str, dict[str, Any]] = {}
        self.running_tasks: dict[str, str] = {}  # task id -> worker id
        self.task_scheduler = FrameworkTaskScheduler(self)
        self._lock = threading.Lock()

    def register_worker(self, worker_id: str, capabilities: dict) -> None:
        with self._lock:
            self.workers[worker_id] = {"worker_id": worker_id, "capabilities": capabilities, "status": "idle",
                                       "hardware_metrics": {}}

    def handle_heartbeat(self, worker_id: str, **hardware_metrics: float | None) -> None:
        """What a worker's heartbeat message does: its figures, stamped with the time sent."""
        now = datetime.now(timezone.utc)
        with self._lock:
            worker = self.workers[worker_id]
            worker["hardware_metrics"] = {**hardware_metrics, "updated": now.isoformat()}
            worker["last_heartbeat"] = now

    def worker_task_count(self) -> dict[str, int]:
        counts = {w: 0 for w in self.workers}
        for worker_id in self.running_tasks.values():
            counts[worker_id] += 1
        return counts

    async def assign_task(self, task: dict) -> str | None:
        with self._lock:
            available = {w: info for w, info in self.workers.items() if info["status"] in ("idle", "active")}
            counts = self.worker_task_count()
        worker_id, _ = await self.task_scheduler.find_best_worker_for_task(task, available, counts)
        if worker_id is not None:
            with self._lock:
                self.running_tasks[task["task_id"]] = worker_id
                if self.worker_task_count()[worker_id] >= self.max_tasks_per_worker:
                    self.workers[worker_id]["status"] = "busy"
        return worker_id

    def assign(self, tasks: list[dict]) -> dict[str, str | None]:
        """Assign ``tasks`` in order, as the coordinator's event loop would."""
        async def run() -> dict[str, str | None]:
            return {task["task_id"]: await self.assign_task(task) for task in tasks}
        return asyncio.run(run())

    def complete_task(self, task_id: str, success: bool = True) -> None:
        with self._lock:
            worker_id = self.running_tasks.pop(task_id)
            self.workers[worker_id]["status"] = "idle"
        self.task_scheduler.update_worker_performance(worker_id, {"success": success})
