"""Two clocks, each for its job: UTC wall-clock time dates what is stored, a monotonic clock
measures every duration, interval and rate.

The wall clock can step (an NTP correction, a VM resumed, an operator's ``date -s``); a
monotonic clock never does. A sample therefore carries both (``timestamp`` and
``monotonic_s``), and a duration is the difference of two monotonic readings. A step is worth
knowing about, so :class:`WallClockStepDetector` compares how far each clock moved between two
readings and logs a step once, when it happens; it changes no figure.

Example::

    detector = WallClockStepDetector("worker-1")
    detector.observe(utc_now(), time.monotonic())   # every sample; logs a step once
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

log = logging.getLogger(__name__)

# How far the wall clock may drift from the monotonic one between two readings before it counts
# as a step: NTP slews at most 0.5 ms/s, so a second plus 1 % of the interval is no slew.
STEP_TOLERANCE_S = 1.0
STEP_TOLERANCE_FRACTION = 0.01


def wall_step_s(wall_before: datetime, monotonic_before: float, wall_after: datetime,
                monotonic_after: float) -> float | None:
    """Seconds the wall clock stepped between two readings taken with their monotonic times
    (positive: forward), or ``None`` when the two clocks agree within the tolerance.

    >>> from datetime import timedelta, timezone
    >>> t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    >>> wall_step_s(t0, 10.0, t0 + timedelta(days=1, seconds=4), 14.0)
    86400.0
    >>> wall_step_s(t0, 10.0, t0 + timedelta(seconds=4.001), 14.0) is None
    True
    """
    elapsed_s = monotonic_after - monotonic_before
    step = (wall_after - wall_before).total_seconds() - elapsed_s
    if abs(step) <= STEP_TOLERANCE_S + STEP_TOLERANCE_FRACTION * abs(elapsed_s):
        return None
    return step


class WallClockStepDetector:
    """Logs a wall-clock step once, when two consecutive readings disagree (see :func:`wall_step_s`).

    ``observe(wall, monotonic_s)`` returns the step in seconds (``None`` when there was none);
    ``steps`` counts the steps seen. One detector per pair of clocks, shared by everything that
    reads them (a sampler, task starts and ends, sample arrivals), so a step is logged once
    however many readers see it. Thread-safe.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps = 0
        self._previous: tuple[datetime, float] | None = None
        self._lock = threading.Lock()

    def observe(self, wall: datetime, monotonic_s: float) -> float | None:
        with self._lock:
            previous = self._previous
            if previous is not None and monotonic_s < previous[1]:
                return None  # read before the latest reading (another thread): nothing to compare
            self._previous = (wall, monotonic_s)
            step = None if previous is None else wall_step_s(previous[0], previous[1], wall, monotonic_s)
            if step is not None:
                self.steps += 1
        if step is not None:
            log.warning("%s: the wall clock stepped by %+.3f s (durations and rates keep the monotonic "
                        "clock; stored timestamps follow the wall clock)", self.name, step)
        return step
