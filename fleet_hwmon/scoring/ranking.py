"""Ranking a decision's candidates (pure): best score first, exact ties broken by a seeded hash
of (seed, task, worker), so a decision is reproducible and ties do not always favour the same
worker."""

from __future__ import annotations

import hashlib
import heapq
from typing import Callable, Mapping, Sequence, TypeVar

Item = TypeVar("Item")


def tie_break(seed: int, task_id: str, worker_id: str) -> int:
    """The seeded tie-break of ``worker_id`` for ``task_id`` (64 bits; the lowest wins)."""
    digest = hashlib.blake2b(f"{seed}\x00{task_id}\x00{worker_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def tie_breaker(seed: int, task_id: str) -> Callable[[str], int]:
    """``tie_break(seed, task_id, worker_id)`` as a function of the worker id, for many workers
    of one task: the hash of the common prefix is computed once."""
    prefix = hashlib.blake2b(f"{seed}\x00{task_id}\x00".encode(), digest_size=8)

    def key(worker_id: str) -> int:
        digest = prefix.copy()
        digest.update(worker_id.encode())
        return int.from_bytes(digest.digest(), "big")
    return key


def tie_digests(seed: int, task_id: str, worker_ids: Sequence[str]) -> list[bytes]:
    """The :func:`tie_break` hash of each worker as 8 bytes (compared as bytes, they order as
    the integers do), the common prefix hashed once."""
    prefix = hashlib.blake2b(f"{seed}\x00{task_id}\x00".encode(), digest_size=8)
    digests = []
    for worker_id in worker_ids:
        digest = prefix.copy()
        digest.update(worker_id.encode())
        digests.append(digest.digest())
    return digests


def best(items: list[Item], count: int, seed: int, task_id: str, score_of: Callable[[Item], float],
         worker_of: Callable[[Item], str]) -> list[Item]:
    """The ``count`` best of ``items`` by ``score_of``, ordered by score, then by the seeded
    tie-break of ``worker_of``. Only the items that can make the cut (every one tied with the
    last place included) are sorted, and only those in an exact tie among them are hashed."""
    if len(items) > count:
        cut = heapq.nlargest(count, map(score_of, items))[-1]
        items = [item for item in items if score_of(item) >= cut]
    ranked = sorted(items, key=score_of, reverse=True)  # stable: a tie keeps its order
    start, size = 0, len(ranked)
    while start < count and start < size:
        score, end = score_of(ranked[start]), start + 1
        while end < size and score_of(ranked[end]) == score:
            end += 1
        if end - start > 1:
            tied = ranked[start:end]
            digests = tie_digests(seed, task_id, [worker_of(item) for item in tied])
            ranked[start:end] = [tied[i] for i in sorted(range(len(tied)), key=digests.__getitem__)]
        start = end
    return ranked[:count]


def original_choice(tied: Sequence[str], scores: Mapping[str, float | None], seed: int,
                    task_id: str) -> tuple[str | None, float | None]:
    """What the original scores alone choose among the workers ``tied`` at the best original
    score (none: no worker was scored), ties broken like the adjusted ones."""
    if not tied:
        return None, None
    worker_id = tied[0]
    if len(tied) > 1:
        digests = tie_digests(seed, task_id, tied)
        worker_id = tied[digests.index(min(digests))]  # the first of the lowest, as min() picks
    return worker_id, scores[worker_id]
