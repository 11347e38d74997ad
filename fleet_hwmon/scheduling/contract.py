"""Plumbing between the scheduler and any coordinator: the contract check, the patch of the
scheduler's method (sync or async) and its undo, and the original scheduler's per-worker scores."""

from __future__ import annotations

import collections
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple

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
    task_limit_of(coordinator)  # a limit that is not a whole number fails here, not at every decision
    return scheduler, method


def task_limit_of(coordinator: Any) -> int | None:
    """The coordinator's ``max_tasks_per_worker`` as an int (``None``: it has none). An integer
    string (``"2"``, read from a config file) or an integral float counts; anything else raises
    :class:`CoordinatorContractError` naming the value."""
    limit = getattr(coordinator, "max_tasks_per_worker", None)
    if limit is None or type(limit) is int:
        return limit
    try:
        number = int(limit.strip()) if isinstance(limit, str) else None
        if isinstance(limit, float) and limit.is_integer():
            number = int(limit)
    except ValueError:
        number = None
    if number is None:
        raise CoordinatorContractError(f"{type(coordinator).__name__}.max_tasks_per_worker must be a whole number "
                                       f"of tasks, got {limit!r}")
    return number


@dataclass
class SchedulerPatch:
    """The scheduler's method replaced by a hardware-aware one; :meth:`restore` undoes it.

    Patches may stack (two integrations on one coordinator) and be undone in any order: a patch
    undone while another sits on top of it is ``released`` (its entry then calls the method it
    replaced straight away) and stays in the chain; undoing the top one skips the released ones
    below it, so the method ends as it was before the first."""

    scheduler: Any
    name: str
    original: Callable[..., Any]
    was_instance_attribute: bool
    is_async: bool
    entry: Callable[..., Any] | None = None  # what was set on the scheduler
    released: bool = False

    @classmethod
    def apply(cls, scheduler: Any, name: str, make_replacement: Callable[[Callable, bool], Callable]) -> SchedulerPatch:
        original = getattr(scheduler, name)
        # (a decorator made with functools.wraps over a coroutine function keeps it in __wrapped__)
        is_async = inspect.iscoroutinefunction(original) or inspect.iscoroutinefunction(inspect.unwrap(original))
        patch = cls(scheduler, name, original, name in getattr(scheduler, "__dict__", {}), is_async)
        replacement = make_replacement(original, is_async)
        if is_async:
            async def entry(*args: Any, **kwargs: Any) -> Any:
                return await (original if patch.released else replacement)(*args, **kwargs)
        else:
            def entry(*args: Any, **kwargs: Any) -> Any:
                return (original if patch.released else replacement)(*args, **kwargs)
        entry._hwmon_patch = patch  # type: ignore[attr-defined]
        patch.entry = entry
        setattr(scheduler, name, entry)
        return patch

    def restore(self) -> None:
        if getattr(self.scheduler, "__dict__", {}).get(self.name) is not self.entry:
            self.released = True  # another patch sits on ours: ours passes through from now on
            return
        target, instance_attribute = self.original, self.was_instance_attribute
        while (below := getattr(target, "_hwmon_patch", None)) is not None and below.released:
            target, instance_attribute = below.original, below.was_instance_attribute
        if instance_attribute:
            setattr(self.scheduler, self.name, target)
        else:
            try:
                delattr(self.scheduler, self.name)
            except AttributeError:
                pass


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def signature_of(method: Callable[..., Any]) -> inspect.Signature | None:
    """The method's signature (``None`` when Python cannot read it, as for some builtins)."""
    try:
        return inspect.signature(method)
    except (TypeError, ValueError):
        return None


def contract_call(original: Callable[..., Any], signature: inspect.Signature | None, args: tuple,
                  kwargs: Mapping[str, Any]) -> tuple[Any, Any, Any, Callable[[Any, Any, Any], Any]]:
    """``(task, available_workers, worker_task_count, ask)`` from a call of the scheduler's method
    made otherwise than with exactly those three by position: by the method's own parameter names,
    or with more arguments (``exclude=...``, say). ``ask(task, available, counts)`` calls
    ``original`` with every other argument the caller gave, so the original scores honour them.
    Raises ``TypeError`` for a call the original itself would refuse."""
    names = [p.name for p in signature.parameters.values() if p.kind in _POSITIONAL][:3] if signature else []
    if len(names) < 3:  # no readable signature: the contract's three come first
        if len(args) < 3:
            raise TypeError(f"the scheduler's method takes (task, available_workers, worker_task_count), "
                            f"got {len(args)} positional argument(s) and {sorted(kwargs)}")
        rest = args[3:]
        return args[0], args[1], args[2], lambda task, available, counts: original(task, available, counts, *rest,
                                                                                   **kwargs)
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    given = bound.arguments

    def ask(task: Any, available: Any, counts: Any) -> Any:
        call = inspect.BoundArguments(signature, {**given, names[0]: task, names[1]: available, names[2]: counts})
        return original(*call.args, **call.kwargs)
    return given[names[0]], given[names[1]], given[names[2]], ask


def worker_ids(available_workers: Any) -> list[str]:
    """Worker ids from what a coordinator passes as ``available_workers``: ids, dicts with
    ``worker_id``/``id``, or a mapping keyed by id."""
    if isinstance(available_workers, Mapping):
        return [str(w) for w in available_workers]
    if isinstance(available_workers, (list, tuple)) and set(map(type, available_workers)) <= {str}:
        return list(available_workers)  # plain ids, the common case: one pass over their types
    return [_id_of(item) for item in available_workers or ()]


def _id_of(item: Any) -> str:
    if type(item) is not str:  # ids are the common case; skip the slower Mapping check for them
        if isinstance(item, Mapping):
            item = item.get("worker_id", item.get("id"))
        item = str(item)
    return item


def _empty_like(mapping: Mapping) -> dict:
    """An empty dict that answers a missing key as ``mapping`` does (a ``defaultdict`` keeps its factory)."""
    if isinstance(mapping, collections.defaultdict):
        return collections.defaultdict(mapping.default_factory)
    return {}


class CallerShape:
    """What the caller passed as ``available_workers`` and ``worker_task_count``, so the original
    scheduler is always asked in that shape: a mapping ``worker_id -> worker dict`` stays a
    mapping (the framework's own scheduler iterates ``.items()``), a list (of ids or of worker
    dicts) stays a list, and ``worker_task_count`` stays a mapping, each restricted to the
    workers asked about. Built once per decision; :meth:`only` is O(1) per worker."""

    __slots__ = ("available_workers", "worker_task_count", "ids", "_entries", "_counts")

    def __init__(self, available_workers: Any, worker_task_count: Any) -> None:
        self.available_workers = available_workers
        self.worker_task_count = worker_task_count
        self.ids = worker_ids(available_workers)
        self._entries: dict[str, Any] | None = None  # id -> the caller's key or item, built on first use
        self._counts: dict[str, Any] | None = None

    def only(self, worker_id: str) -> tuple[Any, Any]:
        """``(available_workers, worker_task_count)`` with just ``worker_id``, in the caller's shapes."""
        workers, counts = self.available_workers, self.worker_task_count
        if self._entries is None:  # a mapping's keys, or the list's items (ids or worker dicts)
            self._entries = dict(zip(self.ids, workers))
            self._counts = {str(k): k for k in counts} if isinstance(counts, Mapping) else {}
        entry = self._entries[worker_id]
        if isinstance(workers, Mapping):
            subset: Any = _empty_like(workers)
            subset[entry] = workers[entry]
        else:
            subset = (entry,) if isinstance(workers, tuple) else [entry]
        if isinstance(counts, Mapping):
            restricted = _empty_like(counts)
            key = self._counts.get(worker_id)
            if key is not None:
                restricted[key] = counts[key]
            counts = restricted
        return subset, counts


class OriginalScores(NamedTuple):
    """The original scheduler's view of one task: each worker's score (``None``: it would not
    pick the worker) and, when the scores had to be asked one worker at a time, its own choice
    among all of them (so the recorded "original choice" is really what it would pick)."""

    scores: dict[str, float | None]
    choice: tuple[str | None, float] | None = None


def checked_choice(result: Any, name: str = "find_best_worker_for_task") -> tuple[str | None, float]:
    """``(worker_id or None, score)`` from what a scheduler method returned; raises
    :class:`CoordinatorContractError` for any other shape (a bare worker id, say)."""
    if not isinstance(result, (tuple, list)) or len(result) != 2 or isinstance(result, str):
        raise CoordinatorContractError(f"the scheduler's {name} must return (worker_id or None, score), "
                                       f"got {result!r}")
    chosen, score = result
    try:
        return (None if chosen is None else str(chosen)), float(score or 0.0)
    except (TypeError, ValueError):
        raise CoordinatorContractError(f"the scheduler's {name} returned a non-numeric score: {score!r}") from None


def _per_worker_scoring(scheduler: Any) -> bool:
    return callable(getattr(scheduler, "score_workers", None)) or callable(getattr(scheduler, "score_worker", None))


def _shape(available_workers: Any, counts: Any) -> CallerShape:
    if isinstance(available_workers, CallerShape):
        return available_workers
    return CallerShape(available_workers, counts)


def original_scores_sync(scheduler: Any, original: Callable, task: Mapping, available_workers: Any,
                         counts: Mapping[str, int], workers: Mapping[str, Any]) -> OriginalScores:
    """The original scheduler's score of each worker, all computed the same way: its batch
    ``score_workers`` when it has one, else ``score_worker`` per worker, else the original
    method asked about one worker at a time (and once about all of them, for its own choice).

    ``available_workers`` is what the caller passed (ids, worker dicts, a mapping keyed by id)
    or a :class:`CallerShape` of it; the original method is called in that same shape."""
    shape = _shape(available_workers, counts)
    ids = shape.ids
    if callable(getattr(scheduler, "score_workers", None)):
        scores = scheduler.score_workers(task, ids, counts)
        return OriginalScores(scores if type(scores) is dict else dict(scores))  # the reference's is new
    if callable(getattr(scheduler, "score_worker", None)):
        return OriginalScores({w: scheduler.score_worker(task, w, workers.get(w), counts.get(w, 0)) for w in ids})
    out: dict[str, float | None] = {}
    for w in ids:
        chosen, score = checked_choice(original(task, *shape.only(w)))
        out[w] = score if chosen is not None else None
    return OriginalScores(out, checked_choice(original(task, shape.available_workers, shape.worker_task_count)))


async def original_scores_async(scheduler: Any, original: Callable, task: Mapping, available_workers: Any,
                                counts: Mapping[str, int], workers: Mapping[str, Any]) -> OriginalScores:
    """:func:`original_scores_sync` for a scheduler whose method is a coroutine function."""
    shape = _shape(available_workers, counts)
    if _per_worker_scoring(scheduler):
        return original_scores_sync(scheduler, original, task, shape, counts, workers)
    out: dict[str, float | None] = {}
    for w in shape.ids:
        chosen, score = checked_choice(await original(task, *shape.only(w)))
        out[w] = score if chosen is not None else None
    return OriginalScores(out, checked_choice(await original(task, shape.available_workers,
                                                             shape.worker_task_count)))
