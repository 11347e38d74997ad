"""How far a remote worker's clock is from the coordinator's, estimated from the samples it sends.

A sample carries the worker's own wall-clock ``timestamp``. The coordinator notes, on its
monotonic clock, when each one arrives. ``received - sent`` is the transit delay plus the
difference of the two clocks; over a sliding window its minimum is the difference plus the
smallest delay seen, the estimate NTP-style filters use (a late sample only raises the figure,
so it never wins the minimum). With it a sample's time maps onto the coordinator's clocks:

- ``monotonic_s = sent + min(received_s - sent)`` (never later than its arrival), and
- ``coordinator_time = received_wall - (received_s - monotonic_s)``;
- ``offset_s = sent - coordinator_time`` (positive: the worker's clock is ahead).

Staleness, in-flight accounting and ordering then use coordinator time, so a worker whose clock
is minutes off is judged exactly like one on time. A worker clock stepped back is judged by the
old, larger estimate until the window forgets it (its samples look at most that much older); a
step forward is taken at once.

Example::

    offsets = ClockOffsets(window_s=300.0)
    mapped = offsets.observe("w1", sample.timestamp, utc_now(), time.monotonic())
    mapped.offset_s, mapped.coordinator_time, mapped.monotonic_s
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class MappedTime:
    """One sample's time on the coordinator's clocks. ``offset_s``: worker clock minus
    coordinator clock (seconds, the window's estimate); ``monotonic_s``: the coordinator's
    monotonic clock; :attr:`coordinator_time`: UTC wall time on the coordinator's clock."""

    offset_s: float
    monotonic_s: float
    received: datetime
    received_s: float

    @property
    def coordinator_time(self) -> datetime:
        return self.received - timedelta(seconds=self.received_s - self.monotonic_s)


class _WindowMinimum:
    """Minimum of ``(time_s, value)`` pairs over the last ``window_s`` seconds (a monotonic
    deque: each pair is pushed and popped at most once)."""

    __slots__ = ("window_s", "_pairs")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._pairs: collections.deque[tuple[float, float]] = collections.deque()

    def add(self, time_s: float, value: float) -> float:
        pairs = self._pairs
        while pairs and pairs[-1][1] >= value:
            pairs.pop()
        pairs.append((time_s, value))
        while pairs[0][0] < time_s - self.window_s:
            pairs.popleft()
        return pairs[0][1]


class ClockOffsets:
    """Per-worker clock offset estimates (see the module docstring). Thread-safe.

    ``window_s`` is how long (coordinator monotonic seconds) an observation counts toward the
    minimum. ``offset_s(worker_id)`` is the latest estimate, ``None`` before the first sample.
    """

    def __init__(self, window_s: float = 300.0) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        self.window_s = window_s
        self._windows: dict[str, _WindowMinimum] = {}
        self._offsets: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(self, worker_id: str, sent: datetime, received: datetime, received_s: float) -> MappedTime:
        """Map a sample sent at ``sent`` (the worker's clock) and received at ``received`` (UTC,
        the coordinator's wall clock) / ``received_s`` (its monotonic clock)."""
        sent_s = sent.timestamp()
        with self._lock:
            window = self._windows.get(worker_id)
            if window is None:
                window = self._windows[worker_id] = _WindowMinimum(self.window_s)
            least = window.add(received_s, received_s - sent_s)
            monotonic_s = sent_s + least
            # sent - coordinator time, where coordinator time = received - (received_s - monotonic_s)
            offset_s = sent_s - received.timestamp() + (received_s - monotonic_s)
            self._offsets[worker_id] = offset_s
        return MappedTime(offset_s, monotonic_s, received, received_s)

    def offset_s(self, worker_id: str) -> float | None:
        with self._lock:
            return self._offsets.get(worker_id)

    def forget(self, worker_id: str) -> None:
        with self._lock:
            self._windows.pop(worker_id, None)
            self._offsets.pop(worker_id, None)
