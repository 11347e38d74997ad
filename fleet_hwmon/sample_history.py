"""The samples a monitor keeps in memory, held as columns (the database is the full history).

A :class:`ResourceUtilization` object costs about 550 bytes, most of it for fields a pushed
sample leaves ``None``; a coordinator keeps minutes of samples for each of a thousand workers.
Here a held sample costs 8 bytes for its timestamp, 8 bytes per number field that has a value
(float64 / int64 columns of the ``array`` module, created in a block of rows only once a field
has a value in it) and one reference to its *shape*: the tuple of its other fields (worker id,
GPUs, disks, NICs, mounts, task ids, per-CPU figures, field-name lists), shared with the sample
before it when they are equal, as they mostly are.

Records read back equal the records appended (same values, same types). A sample that cannot
be held exactly this way (a timestamp not in UTC, a NaN, an integer outside int64) is kept whole.

Rows are written once and never changed (eviction only moves the start), so a reader may take a
:meth:`SampleHistory.window` under the owner's lock and build the records outside it.
"""

from __future__ import annotations

import collections
import math
from array import array
from datetime import datetime, timedelta, timezone
from itertools import compress
from operator import attrgetter, is_not
from typing import NamedTuple

from fleet_hwmon.sample import ResourceUtilization

BLOCK_ROWS = 128  # rows per block: at most one partly used block per worker
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_NO_INT = -(2**63)  # an int64 column's None (the domain checks keep values above it)
_INT_MAX = 2**63 - 1
_NAN = math.nan

_FLOATS: tuple[str, ...] = ResourceUtilization._FLOATS
_INTS: tuple[str, ...] = ResourceUtilization._INTS
_NUMBERS = (*_FLOATS, *_INTS)  # column i holds float64 for i < len(_FLOATS), else int64
_SHAPE: tuple[str, ...] = tuple(n for n in ResourceUtilization._NAMES if n not in _NUMBERS and n != "timestamp")
_TASK_IDS = _SHAPE.index("task_ids")
_numbers_of = attrgetter(*_NUMBERS)
_INDEXES = range(len(_NUMBERS))
_NONES = (None,) * len(_NUMBERS)
_shape_of = attrgetter(*_SHAPE)
_EMPTY_COLUMNS = tuple(array("d", [_NAN]) * BLOCK_ROWS if i < len(_FLOATS) else array("q", [_NO_INT]) * BLOCK_ROWS
                       for i in range(len(_NUMBERS)))
_setters = [getattr(ResourceUtilization, name).__set__ for name in (*_SHAPE, *_NUMBERS)]


class _Block:
    """``BLOCK_ROWS`` rows: timestamps (microseconds since the epoch), one column per number
    field that has a value in the block, and per row its shape tuple or the whole record."""

    __slots__ = ("times_us", "columns", "shapes", "used")

    def __init__(self) -> None:
        self.times_us = array("q", bytes(8 * BLOCK_ROWS))
        self.columns: list[array | None] = [None] * len(_NUMBERS)  # by index in _NUMBERS
        self.shapes: list = [None] * BLOCK_ROWS
        self.used = 0


class Window(NamedTuple):
    """The rows held at one moment: ``blocks``, the first row's index in ``blocks[0]``, and how many."""

    blocks: tuple[_Block, ...]
    start: int
    length: int


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:  # naive times are UTC by the product's convention
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // _MICROSECOND


class SampleHistory:
    """The newest samples of one worker, oldest first, bounded by ``max_samples`` and by
    ``window_s`` seconds before the newest sample's timestamp (``None``: no time bound).
    Not thread-safe: the owner holds its lock around :meth:`append` and :meth:`window`."""

    def __init__(self, max_samples: int, window_s: float | None = None) -> None:
        if max_samples <= 0:
            raise ValueError(f"max_samples must be positive, got {max_samples!r}")
        self.max_samples = max_samples
        self._window_us = None if window_s is None else math.ceil(window_s * 1e6)
        self._blocks: collections.deque[_Block] = collections.deque()
        self._start = 0  # first held row of self._blocks[0]
        self._length = 0
        self._last_shape: tuple | None = None

    def __len__(self) -> int:
        return self._length

    def append(self, sample: ResourceUtilization) -> None:
        """Hold ``sample`` as the newest; drop what falls out of the bounds."""
        block = self._blocks[-1] if self._blocks and self._blocks[-1].used < BLOCK_ROWS else None
        if block is None:
            block = _Block()
            self._blocks.append(block)
        row = block.used
        moment_us = _micros(sample.timestamp)
        block.times_us[row] = moment_us
        block.shapes[row] = self._pack(block, row, sample)
        block.used = row + 1
        self._length += 1
        horizon_us = None if self._window_us is None else moment_us - self._window_us
        while self._length > self.max_samples or (
                horizon_us is not None and self._blocks[0].times_us[self._start] < horizon_us):
            self._drop_oldest()

    def _pack(self, block: _Block, row: int, sample: ResourceUtilization) -> ResourceUtilization | tuple:
        """Write ``sample``'s numbers into ``block``'s columns; returns its shape tuple, or the
        sample itself when the columns cannot give it back exactly."""
        moment = sample.timestamp
        if moment.tzinfo is not timezone.utc or moment.fold:
            return sample
        columns, floats = block.columns, len(_FLOATS)
        numbers = _numbers_of(sample)
        for i in compress(_INDEXES, map(is_not, numbers, _NONES)):  # a new row holds the missing mark already
            value = numbers[i]
            if i < floats:
                if type(value) is not float or value != value:  # an int, a NaN (None's mark)
                    return sample
            elif type(value) is not int or not _NO_INT < value <= _INT_MAX:  # a bool, beyond int64
                return sample
            column = columns[i]
            if column is None:  # the field's first value in this block
                column = columns[i] = _EMPTY_COLUMNS[i][:]
            column[row] = value
        shape = _shape_of(sample)
        if shape == self._last_shape:
            return self._last_shape  # one tuple for a run of equal shapes
        self._last_shape = shape
        return shape

    def _drop_oldest(self) -> None:
        self._length -= 1
        self._start += 1
        if self._start == BLOCK_ROWS:  # the newest sample is never dropped: the block being filled stays
            self._blocks.popleft()
            self._start = 0

    def window(self) -> Window:
        """The rows held now; they stay readable (and unchanged) whatever is appended later."""
        return Window(tuple(self._blocks), self._start, self._length)

    @staticmethod
    def records(window: Window, start: datetime | None = None, end: datetime | None = None,
                task_id: str | None = None) -> list[ResourceUtilization]:
        """The records of ``window``, oldest first, taken at or after ``start`` and at or before
        ``end`` (aware ``datetime``; naive ones are UTC) while ``task_id`` was running (each
        ``None``: no bound)."""
        start_us = None if start is None else _micros(start)
        end_us = None if end is None else _micros(end)
        out = []
        row, left = window.start, window.length
        for block in window.blocks:
            stop = min(block.used, row + left)
            left -= stop - row
            for i in range(row, stop):
                moment_us = block.times_us[i]
                if (start_us is not None and moment_us < start_us) or (end_us is not None and moment_us > end_us):
                    continue
                shape = block.shapes[i]
                if type(shape) is ResourceUtilization:
                    if task_id is None or task_id in shape.task_ids:
                        out.append(shape)
                elif task_id is None or task_id in shape[_TASK_IDS]:
                    out.append(_record(block, i, moment_us, shape))
            row = 0
        return out


def _record(block: _Block, row: int, moment_us: int, shape: tuple) -> ResourceUtilization:
    record = object.__new__(ResourceUtilization)
    ResourceUtilization.timestamp.__set__(record, _EPOCH + timedelta(microseconds=moment_us))
    floats = len(_FLOATS)
    numbers = [None if column is None else column[row] for column in block.columns]
    for i in range(len(numbers)):
        value = numbers[i]
        if value is not None and (value != value if i < floats else value == _NO_INT):
            numbers[i] = None
    for put, value in zip(_setters, (*shape, *numbers)):
        put(record, value)
    return record
