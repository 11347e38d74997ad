"""Plumbing between the integration and any coordinator: the contract check, the patch of the
scheduler's method (sync or async) and its undo, and the original scheduler's per-worker scores."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

SCHEDULER_METHODS = ("find_best_worker_for_task", "find_best_worker")


class CoordinatorContractError(TypeError):
    """The coordinator lacks what the integration needs (see DESIGN: the coordinator contract)."""


def check_contract(coordinator: Any) -> tuple[Any, str]:
    """``(task_scheduler, method name)``; raises :class:`CoordinatorContractError` saying what is missing."""
    problems = []
    workers = getattr(coordinator, "workers", None)
    if not isinstance(workers, Mapping):
        problems.append("a 'workers' mapping (worker_id -> {'capabilities': ..., 'status': ...})")
    scheduler = getattr(coordinator, "task_scheduler", None)
    method = next((m for m in SCHEDULER_METHODS if callable(getattr(scheduler, m, None))), None)
    if scheduler is None or method is None:
        problems.append("a 'task_scheduler' with find_best_worker_for_task(task, available_workers, "
                        "worker_task_count) or find_best_worker(...)")
    if problems:
        raise CoordinatorContractError(
            f"{type(coordinator).__name__} cannot be monitored: it needs " + " and ".join(problems))
    return scheduler, method


@dataclass
class SchedulerPatch:
    """The scheduler's method replaced by a hardware-aware one; :meth:`restore` undoes it."""

    scheduler: Any
    name: str
    original: Callable[..., Any]
    was_instance_attribute: bool
    is_async: bool

    @classmethod
    def apply(cls, scheduler: Any, name: str, make_replacement: Callable[[Callable, bool], Callable]) -> SchedulerPatch:
        original = getattr(scheduler, name)
        is_async = inspect.iscoroutinefunction(original)
        patch = cls(scheduler, name, original, name in getattr(scheduler, "__dict__", {}), is_async)
        setattr(scheduler, name, make_replacement(original, is_async))
        return patch

    def restore(self) -> None:
        if self.was_instance_attribute:
            setattr(self.scheduler, self.name, self.original)
        else:
            try:
                delattr(self.scheduler, self.name)
            except AttributeError:
                pass


def worker_ids(available_workers: Any) -> list[str]:
    """Worker ids from what a coordinator passes as ``available_workers``: ids, dicts with
    ``worker_id``/``id``, or a mapping keyed by id."""
    if isinstance(available_workers, Mapping):
        return [str(w) for w in available_workers]
    ids = []
    for item in available_workers or ():
        if type(item) is not str:  # ids are the common case; skip the slower Mapping check for them
            if isinstance(item, Mapping):
                item = item.get("worker_id", item.get("id"))
            item = str(item)
        ids.append(item)
    return ids


def original_scores_sync(scheduler: Any, original: Callable, task: Mapping, ids: Iterable[str],
                         counts: Mapping[str, int], workers: Mapping[str, Any]) -> dict[str, float | None]:
    """The original scheduler's score of each worker, all computed the same way: its batch
    ``score_workers`` when it has one, else ``score_worker`` per worker, else the original
    method asked about one worker at a time. ``None``: the scheduler would not pick it."""
    ids = list(ids)
    if callable(getattr(scheduler, "score_workers", None)):
        scores = scheduler.score_workers(task, ids, counts)
        return scores if type(scores) is dict else dict(scores)  # the reference scheduler's is a new dict
    if callable(getattr(scheduler, "score_worker", None)):
        return {w: scheduler.score_worker(task, w, workers.get(w), counts.get(w, 0)) for w in ids}
    out: dict[str, float | None] = {}
    for w in ids:
        chosen, score = original(task, [w], counts)
        out[w] = float(score) if chosen is not None else None
    return out


async def original_scores_async(scheduler: Any, original: Callable, task: Mapping, ids: Iterable[str],
                                counts: Mapping[str, int], workers: Mapping[str, Any]) -> dict[str, float | None]:
    """:func:`original_scores_sync` for a scheduler whose method is a coroutine function."""
    ids = list(ids)
    if callable(getattr(scheduler, "score_workers", None)) or callable(getattr(scheduler, "score_worker", None)):
        return original_scores_sync(scheduler, original, task, ids, counts, workers)
    out: dict[str, float | None] = {}
    for w in ids:
        chosen, score = await original(task, [w], counts)
        out[w] = float(score) if chosen is not None else None
    return out
