"""Ranking a decision's candidates (pure): best score first, exact ties broken by a seeded
tie-break of (seed, task, worker), so a decision is reproducible and ties do not always favour
the same worker.

The tie-break mixes a 64-bit hash of the task (with the seed) and one of the worker, each
computed once and kept, with splitmix64's finaliser: ties among thousands of workers cost a few
integer operations each (a few vector operations over a fleet's column of worker hashes, see
:func:`tie_breaks`), and the order still changes from task to task and from seed to seed.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import operator
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np

Item = TypeVar("Item")
_MASK = (1 << 64) - 1
_MIX_1, _MIX_2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # splitmix64's finaliser
_WORKER_KEYS_LIMIT = 1 << 17  # worker hashes kept at most (the table starts over beyond)
_worker_keys: dict[str, int] = {}


def tie_break(seed: int, task_id: str, worker_id: str) -> int:
    """The seeded tie-break of ``worker_id`` for ``task_id`` (64 bits; the lowest wins)."""
    return _mix(task_key(seed, task_id) ^ worker_key(worker_id))


def tie_breaker(seed: int, task_id: str) -> Callable[[str], int]:
    """``tie_break(seed, task_id, worker_id)`` as a function of the worker id, for many workers
    of one task (the task's hash computed once)."""
    key = task_key(seed, task_id)
    return lambda worker_id: _mix(key ^ worker_key(worker_id))


@functools.lru_cache(maxsize=256)
def task_key(seed: int, task_id: str) -> int:
    """The task's half of :func:`tie_break`: a 64-bit hash of the seed and the task id."""
    return _hash64(f"{seed}\x00{task_id}")


def worker_key(worker_id: str) -> int:
    """The worker's half of :func:`tie_break`: a 64-bit hash of its id, hashed once and kept."""
    key = _worker_keys.get(worker_id)
    if key is None:
        if len(_worker_keys) >= _WORKER_KEYS_LIMIT:
            _worker_keys.clear()
        key = _worker_keys[worker_id] = _hash64(worker_id)
    return key


def tie_breaks_of(seed: int, task_id: str, worker_ids: Sequence[str]) -> list[int]:
    """:func:`tie_break` of each of ``worker_ids`` for ``task_id``, in their order: one call for
    a group of tied workers (the mixing written out, a few integer operations per worker)."""
    task, known, out = task_key(seed, task_id), _worker_keys.get, []
    for worker_id in worker_ids:
        key = known(worker_id)
        value = task ^ (worker_key(worker_id) if key is None else key)
        value = ((value ^ (value >> 30)) * _MIX_1) & _MASK
        value = ((value ^ (value >> 27)) * _MIX_2) & _MASK
        out.append(value ^ (value >> 31))
    return out


def tie_breaks(task: int, worker_keys: np.ndarray) -> np.ndarray:
    """:func:`tie_break` of each worker whose :func:`worker_key` is in ``worker_keys`` (uint64)
    for the task whose :func:`task_key` is ``task``, over the whole column at once."""
    value = worker_keys ^ np.uint64(task)
    value = (value ^ (value >> np.uint64(30))) * np.uint64(_MIX_1)  # uint64 products wrap, as & _MASK does
    value = (value ^ (value >> np.uint64(27))) * np.uint64(_MIX_2)
    return value ^ (value >> np.uint64(31))


def _mix(value: int) -> int:
    """splitmix64's finaliser: a bijection of 64-bit integers that scatters nearby inputs."""
    value = ((value ^ (value >> 30)) * _MIX_1) & _MASK
    value = ((value ^ (value >> 27)) * _MIX_2) & _MASK
    return value ^ (value >> 31)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def contenders(items: list[Item], count: int, score_of: Callable[[Item], float]) -> list[Item]:
    """The items of ``items`` that can be among its ``count`` best by ``score_of`` (every one
    tied with the last place included), in their order."""
    if len(items) > count:
        cut = heapq.nlargest(count, map(score_of, items))[-1]
        items = [item for item in items if score_of(item) >= cut]
    return items


def best(items: list[Item], count: int, seed: int, task_id: str, score_of: Callable[[Item], float],
         worker_of: Callable[[Item], str]) -> list[Item]:
    """The ``count`` best of ``items`` by ``score_of``, ordered by score, then by the seeded
    tie-break of ``worker_of``. Only the :func:`contenders` are ordered, and a tie-break is
    computed only when some score repeats (then for all of them in one call, and one sort of
    their positions orders them: by tie-break alone when every score is the same, as in a
    fleet at the score floor)."""
    items = contenders(items, count, score_of)
    scores = list(map(score_of, items))
    distinct = len(set(scores))
    if distinct == len(scores):  # no tie (the common case in a loaded fleet)
        return sorted(items, key=score_of, reverse=True)[:count]
    breaks = tie_breaks_of(seed, task_id, list(map(worker_of, items)))
    same = distinct == 1 and scores[0] == scores[0]  # (a NaN score orders as it did among tuples)
    keys = breaks if same else list(zip(map(operator.neg, scores), breaks))
    return [items[i] for i in sorted(range(len(items)), key=keys.__getitem__)[:count]]


def top(items: list[Item], seed: int, task_id: str, score_of: Callable[[Item], float],
        worker_of: Callable[[Item], str]) -> Item | None:
    """``best(items, ...)[0]`` (``None``: no item) without ordering the others: the best score,
    ties broken by the tie-breaks of the items that have it (computed for those alone)."""
    if not items:
        return None
    scores = list(map(score_of, items))
    high, total = max(scores), sum(scores)
    if total != total:  # a NaN (or infinities of both signs): max() says nothing; as best() orders them
        return best(items, len(items), seed, task_id, score_of, worker_of)[0]
    tied = [item for item, score in zip(items, scores) if score == high]
    if len(tied) == 1:
        return tied[0]
    breaks = tie_breaks_of(seed, task_id, list(map(worker_of, tied)))
    return tied[breaks.index(min(breaks))]


def original_choice(tied: Sequence[str], scores: Mapping[str, float | None], seed: int,
                    task_id: str) -> tuple[str | None, float | None]:
    """What the original scores alone choose among the workers ``tied`` at the best original
    score (none: no worker was scored), ties broken like the adjusted ones."""
    if not tied:
        return None, None
    if len(tied) == 1:
        worker_id = tied[0]
    else:
        breaks = tie_breaks_of(seed, task_id, tied)
        worker_id = tied[breaks.index(min(breaks))]
    return worker_id, scores[worker_id]
