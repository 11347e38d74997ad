"""Per-device rates from cumulative counters: pure logic, no I/O.

Rates are computed per device (NIC or disk) from the delta of its own counters over a
monotonic interval, then summed, so a device that vanishes simply stops contributing instead
of making the host total drop (negative traffic), and a new device contributes only once it
has two readings. A counter that goes backwards is either a 32-bit wrap (the previous value
was in the upper half of the 32-bit range: the delta wraps around 2**32) or a reset (the
device or driver restarted): a reset has no known rate, ``None``, never 0 or a huge spike.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

_WRAP_32 = 2**32


def counter_delta(previous: int, current: int) -> int | None:
    """Bytes between two readings of one counter; ``None`` for a reset.

    >>> counter_delta(4294967290, 5)   # a 32-bit counter wrapped
    11
    >>> counter_delta(1000, 5) is None  # reset
    True
    """
    if current >= previous:
        return current - previous
    if 2**31 <= previous < _WRAP_32 and current < previous:
        return _WRAP_32 - previous + current
    return None


class CounterRates:
    """Turns per-device cumulative counters into per-second rates.

    ``update(counters, now_s)`` takes ``{device: (counter_a, counter_b, ...)}`` read at the
    monotonic time ``now_s`` and returns ``{device: (rate_a | None, ...)}`` for devices seen in
    both this and the previous reading. Rates are bytes per second.
    """

    def __init__(self) -> None:
        self._previous: dict[str, Sequence[int]] = {}
        self._previous_s: float | None = None
        self._resets_logged: set[str] = set()

    def update(self, counters: Mapping[str, Sequence[int]], now_s: float) -> dict[str, tuple[float | None, ...]]:
        rates: dict[str, tuple[float | None, ...]] = {}
        elapsed = None if self._previous_s is None else now_s - self._previous_s
        if elapsed is not None and elapsed > 0:
            for device, values in counters.items():
                before = self._previous.get(device)
                if before is None:
                    continue  # new device: no rate until it has two readings
                deltas = [counter_delta(b, c) for b, c in zip(before, values)]
                if None in deltas and device not in self._resets_logged:
                    self._resets_logged.add(device)
                    log.info("counters of %s went back (reset): no rate for that interval", device)
                rates[device] = tuple(None if d is None else d / elapsed for d in deltas)
        if elapsed is None or elapsed > 0:  # a zero interval keeps the older reference point
            self._previous = dict(counters)
            self._previous_s = now_s
        return rates


def summed(rates: Mapping[str, tuple[float | None, ...]], width: int) -> tuple[float | None, ...]:
    """Column sums over devices with a known rate; ``None`` where no device has one."""
    totals: list[float | None] = [None] * width
    for values in rates.values():
        for i, value in enumerate(values):
            if value is not None:
                totals[i] = value if totals[i] is None else totals[i] + value
    return tuple(totals)
