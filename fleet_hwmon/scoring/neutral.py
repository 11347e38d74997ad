"""Unknown load counts as the candidates' median, never as idle (pure).

A worker whose samples do not show a figure yet (a new worker, MIG GPUs) is scored at the
median of what the other candidates' samples show, plus what the tasks in flight and this
task add; a worker with no figure known at all balances at the median of the candidates'
busiest loads. The medians are worked out once per decision, when first needed, and shared
by decisions whose candidates have the same samples (the views' sample serials stand for
their percents).
"""

from __future__ import annotations

import itertools
import statistics
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Sequence

from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.history import TaskDemand
from fleet_hwmon.scoring.terms import Load
from fleet_hwmon.scoring.views import WorkerView

if TYPE_CHECKING:
    from fleet_hwmon.scoring.decide import Candidate

_serial_of = attrgetter("sample_serial")


class Numbering:
    """Equal keys, equal numbers, a number never given to another key (even after the table,
    bounded to ``limit`` keys, starts over); each number comes with a dict for what is worked
    out under it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._table: dict[Any, tuple[int, dict]] = {}
        self._numbers = itertools.count()

    def of(self, key: Any) -> tuple[int, dict]:
        found = self._table.get(key)
        if found is None:
            if len(self._table) >= self.limit:
                self._table.clear()
            found = self._table[key] = (next(self._numbers), {})
        return found


_medians = Numbering(64)  # the candidates' sample serials -> (a number, resource -> median)


class Neutral:
    """The medians of one decision's ``candidates`` (records with ``view`` and ``load``),
    each worked out when first needed."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.candidates = candidates
        self._values: dict[str, float] = {}
        self._shared: tuple[int, dict[str, float]] | None = None
        self._views: list[WorkerView] = []
        self._busiest: float | None = None

    def number(self) -> int:
        """A number for these candidates' samples (equal samples, equal numbers)."""
        return self._medians()[0]

    def _medians(self) -> tuple[int, dict[str, float]]:
        if self._shared is None:
            self._views = [c.view for c in self.candidates if c.view is not None]
            self._shared = _medians.of(tuple(map(_serial_of, self._views)))
        return self._shared

    def median(self, resource: str) -> float:
        """The candidates' median of the view attribute ``resource`` as their samples show it
        (0 when none does)."""
        value = self._values.get(resource)
        if value is None:
            medians = self._medians()[1]
            value = medians.get(resource)
            if value is None:
                known = [value for value in map(attrgetter(resource), self._views) if value is not None]
                value = medians[resource] = statistics.median(known) if known else 0.0
            self._values[resource] = value
        return value

    def busiest(self) -> float:
        """The median of the candidates' busiest known CPU / memory load (0 when none is known)."""
        if self._busiest is None:
            known = []
            for candidate in self.candidates:
                cpu, memory, _ = candidate.load
                if cpu is None:
                    if memory is not None:
                        known.append(memory)
                else:  # max(cpu, memory) of the known ones: the first unless the second is larger
                    known.append(memory if memory is not None and memory > cpu else cpu)
            self._busiest = statistics.median(known) if known else 0.0
        return self._busiest

    def fill(self, view: WorkerView, load: Load, demand: TaskDemand, factors: ScoringFactors,
             own_gpu: float | None) -> Load:
        """``load`` of ``view``'s worker with each figure its samples do not show yet taken as
        the candidates' median plus what the tasks in flight and this task (``demand``; GPU:
        ``own_gpu``, ``None`` for a task without a GPU) add. A resource whose capacity is
        unknown too stays unknown."""
        cpu, memory, gpu = load
        if cpu is None and view.cpu_count:
            cores = factors.default_task_cores if demand.cores is None else demand.cores
            cpu = self.median("cpu_percent") + 100.0 * (view.inflight_cores + cores) / view.cpu_count
        if memory is None and view.memory_total_bytes:
            memory_bytes = factors.default_task_memory_bytes if demand.memory_bytes is None else demand.memory_bytes
            memory = (self.median("memory_percent")
                      + 100.0 * (view.inflight_memory_bytes + memory_bytes) / view.memory_total_bytes)
        if gpu is None and (view.inflight_gpu_tasks or (own_gpu is not None and view.has_gpus)):
            gpu = self.median("gpu_least_percent") + view.inflight_gpu_percent + (own_gpu or 0.0)
        return Load(cpu, memory, gpu)
