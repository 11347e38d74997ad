"""A scheduling decision's typed inputs and its record (pure).

:class:`DecisionContext` and its parts (:class:`HardwareChecks`, :class:`OriginalChoice`,
:class:`Reservation`) are what :func:`~fleet_hwmon.scoring.decide.decide_among` reads besides
the task and the workers; :class:`SchedulingDecision` (with its :class:`CandidateScore`
records) is what it returns, stored and reported as it is; :func:`make_decision` writes its
explanation for people.
"""

from __future__ import annotations

import collections
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from fleet_hwmon.scoring import ranking
from fleet_hwmon.scoring.exclusions import Exclusion
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.history import PerformanceHistory, TaskDemand
from fleet_hwmon.scoring.requirements import TaskRequirements
from fleet_hwmon.scoring.terms import GIB, NO_CAP, DemandCap


# The two records below are made on every decision, so they are plain slotted dataclasses: a
# frozen one costs about 7x more to make (one object.__setattr__ per field). Treat them as
# read-only: ``dataclasses.replace`` makes a changed copy.
@dataclass(slots=True)
class CandidateScore:
    """A worker that could take the task, with every term of its score. Percent 0-100; the
    load figures include in-flight tasks; ``None`` = unknown."""

    worker_id: str
    original_score: float
    adjusted_score: float
    cpu_percent: float | None
    memory_percent: float | None
    gpu_percent: float | None
    cpu_penalty: float
    memory_penalty: float
    gpu_penalty: float
    balance_penalty: float
    history_penalty: float
    inflight_tasks: int


@dataclass(slots=True)
class SchedulingDecision:
    """A decision and why. ``candidates`` are the best ``max_recorded`` by adjusted score (all
    when fewer), ``exclusions`` every worker that could not take the task and the reason.
    ``original_worker_id`` is what the original scheduler alone would have chosen among the
    available workers."""

    decision_id: str
    timestamp: datetime
    task_id: str
    task_type: str | None
    chosen_worker_id: str | None
    chosen_score: float | None
    original_worker_id: str | None
    original_score: float | None
    candidate_count: int
    candidates: tuple[CandidateScore, ...]
    exclusions: tuple[Exclusion, ...]
    explanation: str
    isolation: str = "shared"
    unplaceable_reason: str | None = None  # no worker of the fleet could ever hold the task
    needs_gpu: bool = False  # decided as a GPU task (a GPU, a CUDA or GPU-memory minimum asked for)


class OriginalChoice(NamedTuple):
    """What the original scheduler itself chose among all the workers (``None``: none)."""

    worker_id: str | None
    score: float | None


class Reservation(NamedTuple):
    """A worker kept for a waiting task: that task's need (bytes, with headroom; infinite when
    unknown) and the exclusion of a task that does not fit beside it."""

    memory_bytes: float
    gpu_memory_bytes: float
    exclusion: Exclusion


_UNSEEN: Any = object()  # a worker whose hardware has not been checked yet


class HardwareChecks(NamedTuple):
    """Each worker's hardware mismatch for the task's requirements (``None``: it fits):
    ``known`` holds those checked already, ``check(worker_id)`` checks another (a caller that
    remembers the checks stores the answer in ``known``)."""

    known: Mapping[str, Exclusion | None]
    check: Callable[[str], Exclusion | None]

    def of(self, worker_id: str) -> Exclusion | None:
        found = self.known.get(worker_id, _UNSEEN)
        return self.check(worker_id) if found is _UNSEEN else found


def _fits(worker_id: str) -> None:
    return None


ALL_FIT = HardwareChecks({}, _fits)


@dataclass(slots=True)
class DecisionContext:
    """What a decision reads besides the task and the workers (read-only).

    ``now_s``: the scheduler's clock (seconds); ``stale_after_s``: samples older than this are
    stale; ``timestamp`` dates the decision; ``seed`` makes ties reproducible;
    ``max_recorded``: candidates kept in the decision. ``task_counts`` (worker id -> tasks of
    ours there, absent: 0) and ``task_limit`` (``None``: no limit) come from the coordinator.
    ``original_choice``: what the original scheduler chose itself, when it was asked (else the
    best original score stands for it). ``floor``: a retried task's own raised figures;
    ``cap``: the largest compatible worker (see :meth:`DecisionTerms.shape`). ``reserved``:
    workers kept for a waiting task, which this task may backfill when it fits beside that
    task's need. ``extra_exclusions``: workers excluded before the decision, listed first.
    ``avoid``: workers a retried task's earlier attempts ran out of a resource on (worker id ->
    ``memory`` or ``gpu_memory``), excluded (``failed_here``) when their hardware fits.
    ``probe``: the worker where a quiet task of a type never measured may go as its type's
    probe (``None``: none; see :meth:`DecisionTerms.not_quiet`)."""

    factors: ScoringFactors
    history: PerformanceHistory | None
    now_s: float
    stale_after_s: float
    timestamp: datetime
    seed: int = 0
    max_recorded: int = 20
    task_counts: Mapping[str, int] | None = None
    task_limit: Any = None
    original_choice: OriginalChoice | None = None
    floor: TaskDemand | None = None
    cap: DemandCap = NO_CAP
    reserved: Mapping[str, Reservation] = field(default_factory=dict)
    extra_exclusions: Sequence[Exclusion] = ()
    avoid: Mapping[str, str] | None = None
    probe: str | None = None


class Unranked(NamedTuple):
    """A decision's candidate records before they are ordered: ``best`` (the one chosen, by
    :func:`ranking.top`) and the ``records`` of every contender (:func:`ranking.contenders`),
    ordered by :func:`ranking.best` with ``count``, ``seed`` and ``task_id`` when the decision's
    candidates are first read (see :func:`make_decision`): the tie-breaks of the workers below
    the best score are not worked out while the caller waits."""

    best: CandidateScore
    records: list[CandidateScore]
    count: int  # the decision's max_recorded
    seed: int
    task_id: str


_ID_PREFIX = uuid.uuid4().hex[:16]  # this process's; ids then count up (no system call per decision)
_id_numbers = itertools.count()


def new_decision_id() -> str:
    """A decision id unique across processes: 32 hex digits, like a UUID's."""
    return f"{_ID_PREFIX}{next(_id_numbers):016x}"


def make_decision(task_id: str, task_type: Any, requirements: TaskRequirements, context: DecisionContext,
                  ranked: list[CandidateScore] | Unranked | None, chosen_demand: TaskDemand | None,
                  original: tuple[str | None, float | None], exclusions: list[Exclusion],
                  candidate_count: int, original_is_candidate: bool = False) -> SchedulingDecision:
    """The decision record: ``ranked`` best first (the first is chosen; ``chosen_demand`` is
    the task's predicted demand there), or :class:`Unranked` (its ``best`` is chosen; the
    candidates are ordered when first read), or ``None`` (no candidate); ``original`` the
    original scheduler's (worker id, score), ``exclusions`` in order, ``candidate_count`` the
    workers that could take the task; ``original_is_candidate``: the original choice is known
    not to be among the exclusions (so they are not searched for its reason)."""
    if type(ranked) is Unranked:
        chosen, candidates = ranked.best, ranked
    else:
        chosen = ranked[0] if ranked else None
        candidates = tuple(ranked[:context.max_recorded]) if ranked else ()
    original_id, original_score = original
    exclusions = tuple(exclusions)
    # The explanation is written when first read (the store's writer thread, a report), from
    # these figures, which are not changed afterwards: most decisions are never read by a person.
    explanation = (chosen, original_id, () if original_is_candidate else exclusions,
                   len(exclusions) + candidate_count, len(exclusions), chosen_demand)
    # In field order, not by keyword: a dataclass of 15 fields takes keywords at twice the cost.
    return SchedulingDecision(
        new_decision_id(), context.timestamp, task_id, None if task_type is None else str(task_type),
        chosen.worker_id if chosen else None, chosen.adjusted_score if chosen else None,  # chosen, its score
        original_id, original_score, candidate_count, candidates, exclusions,  # type: ignore[arg-type]
        explanation,  # type: ignore[arg-type]  (a str once read: see _read_explanation)
        requirements.isolation, None, requirements.needs_gpu)  # isolation, unplaceable_reason, needs_gpu


_explanation_slot = SchedulingDecision.explanation  # the slot's own descriptor, read and written below


def predicted_demand(decision: SchedulingDecision) -> TaskDemand | None:
    """The task's predicted demand on the chosen worker, as the decision shaped it (history,
    retry floor, cap), while its explanation has not been written (see :func:`make_decision`);
    ``None`` once it has been, or when no worker was chosen."""
    text = _explanation_slot.__get__(decision, SchedulingDecision)
    return text[5] if type(text) is tuple and text[0] is not None else None


def _read_explanation(decision: SchedulingDecision) -> str:
    """The decision's explanation, written from its figures on the first read (see make_decision)."""
    text = _explanation_slot.__get__(decision, SchedulingDecision)
    if type(text) is tuple:
        chosen, original_id, exclusions, available, excluded_count, chosen_demand = text
        text = _explain(chosen, original_id, exclusions, available, excluded_count)
        if chosen is not None and chosen_demand.source is not None:
            text += "; " + _describe_demand(chosen_demand)
        _explanation_slot.__set__(decision, text)
    return text


_candidates_slot = SchedulingDecision.candidates


def _read_candidates(decision: SchedulingDecision) -> tuple[CandidateScore, ...]:
    """The decision's candidates, ordered on the first read when they were made :class:`Unranked`."""
    candidates = _candidates_slot.__get__(decision, SchedulingDecision)
    if type(candidates) is Unranked:
        best, records, count, seed, task_id = candidates
        candidates = tuple(ranking.best(records, max(1, count), seed, task_id, _adjusted_of, _worker_of)[:count])
        _candidates_slot.__set__(decision, candidates)
    return candidates


_adjusted_of = attrgetter("adjusted_score")
_worker_of = attrgetter("worker_id")

# Every reader (attribute, dataclass fields, equality, repr, the store's columns, pickling) goes
# through the properties, so the explanation is always there as text and the candidates in
# order when read.
SchedulingDecision.explanation = property(_read_explanation, _explanation_slot.__set__,  # type: ignore[assignment]
                                          doc="Why this worker (or none), for people.")
SchedulingDecision.candidates = property(_read_candidates, _candidates_slot.__set__,  # type: ignore[assignment]
                                         doc="The best candidates, best first (see the class).")


def _describe_demand(demand: TaskDemand) -> str:
    cores = "default" if demand.cores is None else f"{demand.cores:.1f}"
    memory = ("default" if demand.memory_bytes is None else f"{demand.memory_bytes / GIB:.1f} GiB")
    text = f"task predicted from {demand.source} history: {cores} cores, memory {memory}"
    if demand.gpu_memory_bytes is not None:
        text += f", GPU memory {demand.gpu_memory_bytes / GIB:.1f} GiB"
    if demand.gpu_percent is not None:
        text += f", GPU {demand.gpu_percent:.0f}%"
    return text


def _explain(chosen: CandidateScore | None, original_id: str | None, exclusions: Sequence[Exclusion],
             available: int, excluded_count: int) -> str:
    if chosen is None:
        if not available:
            return "no worker available"
        kinds = collections.Counter(e.kind.value for e in exclusions)
        return f"no worker can take the task ({len(exclusions)} excluded: {_counts(kinds)})"
    parts = [f"chose {chosen.worker_id} (score {chosen.adjusted_score:.3f} of original {chosen.original_score:.3f})"]
    if original_id is not None and original_id != chosen.worker_id:
        excluded = list(map(attrgetter("worker_id"), exclusions))  # thousands in a large fleet
        why = exclusions[excluded.index(original_id)].reason if original_id in excluded else None
        outcome = f"excluded: {why}" if why else "scored lower after penalties"
        parts.append(f"original choice {original_id} {outcome}")
    if excluded_count:
        parts.append(f"{excluded_count} worker(s) excluded")
    return "; ".join(parts)


def _counts(counts: collections.Counter) -> str:
    """``"kind N, kind N"``, the largest first, for an explanation."""
    return ", ".join(f"{kind} {count}" for kind, count in counts.most_common())
