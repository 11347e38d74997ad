"""The fleet's per-worker scheduling state as numpy arrays, one row per worker (no I/O).

Each :class:`~fleet_hwmon.scoring.views.WorkerView` stays the state of record; its scalar
figures are copied into a row by :meth:`FleetState.sync` whenever the view changes (a sample,
an assignment, a finish), so a decision reads whole columns instead of thousands of objects.
Unknown figures are NaN.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterable, NamedTuple

import numpy as np

from fleet_hwmon.scoring.ranking import worker_key
from fleet_hwmon.scoring.views import WorkerView

NAN = float("nan")
# Columns of the table, in the order sync() writes them.
COLUMNS = ("cpu", "memory", "gpu_least", "cpu_count", "memory_total", "memory_free", "inflight_cores",
           "inflight_memory", "inflight_gpu_tasks", "inflight_gpu_percent", "gpu_levels", "last_sample_s",
           "last_alive_s", "critical", "has_gpus", "gpus_lost", "gpu_room", "exclusive", "inflight_count",
           "quiet", "quiet_cpu", "quiet_gpu_least")
CRITICAL_MEMORY, CRITICAL_GPU_MEMORY = 1.0, 2.0  # "critical" column: which incompressible resource

Columns = NamedTuple("Columns", [(name, np.ndarray) for name in COLUMNS])
Columns.__doc__ = "Each column of the table over some rows (see FleetState.columns); read-only."


class FleetState:
    """Rows of worker figures. ``column(name)`` is a view of one column over every row; ``rows``
    maps worker ids to row numbers (``-1``: not in the fleet)."""

    def __init__(self, capacity: int = 64) -> None:
        self.index: dict[str, int] = {}
        self.views: list[WorkerView | None] = []
        self._free: list[int] = []
        self.table = np.full((len(COLUMNS), capacity), NAN)
        self.tie_keys = np.zeros(capacity, dtype=np.uint64)  # each row's ranking.worker_key
        self.version = 0  # bumped when a worker joins or leaves (rows change meaning)
        self._hardware: dict[object, tuple[int, np.ndarray, np.ndarray]] = {}
        self._last_rows: tuple[int, list[str], np.ndarray, bool, bool] | None = None  # version, ids, answer
        # Each row's smoothed (cpu, memory, least busy GPU) percents as its view has them, and
        # what decisions work out from those figures alone (see figures_memo), kept until one
        # of them changes.
        self._figures: list[tuple | None] = []
        self._figures_memo: dict = {}
        self._memo_rows: np.ndarray | None = None
        for number, name in enumerate(COLUMNS):
            setattr(self, name, self.table[number])

    def sync(self, view: WorkerView) -> None:
        """Copy ``view``'s figures into its row (adding the row for a new worker)."""
        row = self.index.get(view.worker_id)
        if row is None:
            row = self._add(view)
        elif self.views[row] is not view:  # the worker registered again: a new view
            self.views[row] = view
            self._changed()
        figures = (view.cpu_percent, view.memory_percent, view.gpu_least_percent)
        if self._figures[row] != figures:  # (None for unknown: equal to None, unlike NaN)
            self._figures[row] = figures
            self._figures_memo = {}
        excluded = view.excluded
        critical = (0.0 if excluded is None else
                    CRITICAL_GPU_MEMORY if excluded.resource == "gpu_memory" else CRITICAL_MEMORY)
        room = view.gpu_memory_room()
        self.table[:, row] = (
            _f(view.cpu_percent), _f(view.memory_percent), _f(view.gpu_least_percent), _f(view.cpu_count),
            _f(view.memory_total_bytes), _f(view.memory_free_bytes), view.inflight_cores,
            view.inflight_memory_bytes, view.inflight_gpu_tasks, view.inflight_gpu_percent, len(view.gpu_levels),
            _f(view.last_sample_s), _f(view.last_alive_s), critical, view.has_gpus, view.gpus_lost, _f(room),
            view.exclusive_task is not None, len(view.inflight), len(view.quiet_tasks),
            _f(view.quiet_cpu_percent), _f(view.quiet_gpu_least_percent))

    def remove(self, worker_id: str) -> None:
        row = self.index.pop(worker_id, None)
        if row is not None:
            self.views[row] = None
            self.table[:, row] = NAN
            self._figures[row] = None
            self._free.append(row)
            self._changed()

    def rows(self, worker_ids: Iterable[str], count: int) -> tuple[np.ndarray, bool]:
        """Row number of each worker id (``-1`` for one not in the fleet), and whether every
        worker is in the fleet and listed once. The dispatch loop asks
        about the same workers decision after decision: the last answer is kept until they or
        the fleet's rows change (a list compare, no lookup per worker). Read-only."""
        ids = worker_ids if type(worker_ids) is list else list(worker_ids)
        last = self._last_rows
        if last is not None and last[0] == self.version and last[1] == ids:
            return last[2], last[3]
        rows = np.fromiter(map(self.index.get, ids, itertools.repeat(-1)), dtype=np.intp, count=count)
        rows.flags.writeable = False
        distinct = bool(count) and rows.min() >= 0 and np.unique(rows).size == count
        in_order = distinct and bool((rows == np.arange(count)).all())  # the first rows, in order
        self._last_rows = (self.version, ids.copy(), rows, distinct, in_order)
        return rows, distinct

    def columns(self, rows: np.ndarray) -> Columns:
        """Every column at ``rows`` (an answer of :meth:`rows`): views of the table when they are
        its first rows in order (the common case: the fleet asked about in the order it joined),
        else one copy of them all. Read-only: the next sync may change the views."""
        last = self._last_rows
        if last is not None and last[2] is rows and last[4] and last[0] == self.version:
            return Columns._make(self.table[:, :rows.size])
        return Columns._make(self.table[:, rows])

    def figures_memo(self, rows: np.ndarray) -> dict | None:
        """A dict for what a decision works out from the smoothed percents (``cpu``,
        ``memory``, ``gpu_least``) of ``rows`` alone (medians, say), kept while those figures
        and the rows asked about stay the same; ``None`` when ``rows`` is not the latest answer
        of :meth:`rows` (nothing is kept then)."""
        last = self._last_rows
        if last is None or last[2] is not rows or last[0] != self.version:
            return None
        if self._memo_rows is not rows or len(self._figures_memo) >= 64:
            self._memo_rows, self._figures_memo = rows, {}
        return self._figures_memo

    def hardware_mismatches(self, key: object, mismatch: Callable[[str], object | None]
                            ) -> tuple[np.ndarray, np.ndarray]:
        """Per row: whether the worker's hardware fits the requirements ``key``, and the
        ``mismatch(worker_id)`` record where it does not (``None`` where it does); asked once
        per worker, remembered until a worker joins, leaves or registers again."""
        found = self._hardware.get(key)
        if found is None or found[0] != self.version:
            records = np.empty(len(self.views), dtype=object)
            for worker_id, row in self.index.items():
                records[row] = mismatch(worker_id)
            if len(self._hardware) >= 256:
                self._hardware.clear()
            found = self._hardware[key] = (self.version, np.equal(records, None), records)
        return found[1], found[2]

    def _add(self, view: WorkerView) -> int:
        if self._free:
            row = self._free.pop()
            self.views[row] = view
        else:
            row = len(self.views)
            self.views.append(view)
            self._figures.append(None)
            if row >= self.table.shape[1]:
                grown = np.full((len(COLUMNS), 2 * self.table.shape[1]), NAN)
                grown[:, :row] = self.table
                self.table = grown
                for number, name in enumerate(COLUMNS):
                    setattr(self, name, self.table[number])
                self.tie_keys = np.concatenate([self.tie_keys, np.zeros(self.tie_keys.size, dtype=np.uint64)])
        self.index[view.worker_id] = row
        self._figures[row] = None
        self.tie_keys[row] = worker_key(view.worker_id)
        self._changed()
        return row

    def _changed(self) -> None:
        self.version += 1


def _f(value: float | None) -> float:
    return NAN if value is None else value
