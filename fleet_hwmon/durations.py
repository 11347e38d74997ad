"""Durations that people give (sampling intervals, run lengths): finite, positive and bounded.

NaN passes a ``<= 0`` check and would make a sampling loop spin; a huge figure overflows the
platform's clock arithmetic in ``Event.wait`` and ``time.sleep``, killing the thread that waits.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable

MAX_INTERVAL_S = 86_400.0  # a day between two samples
MAX_DURATION_S = 366 * 86_400.0  # a year of running


def checked_seconds(name: str, value: object, maximum_s: float, *, zero: bool = False) -> float:
    """``value`` (any real number but a bool: an int, a float, a numpy scalar, a Fraction) as
    float seconds when it is finite, above 0 (at least 0 with ``zero``) and at most
    ``maximum_s``; else ``ValueError`` naming ``name`` and the allowed range."""
    seconds, refusal = _checked(value, maximum_s, zero)
    if refusal:
        raise ValueError(f"{name} {refusal}")
    return seconds


def _checked(value: object, maximum_s: float, zero: bool) -> tuple[float, str | None]:
    """``(seconds, None)``, or ``(nan, "must be ...")`` saying what ``value`` should have been."""
    seconds = math.nan if isinstance(value, bool) or not isinstance(value, numbers.Real) else float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero) or seconds > maximum_s:
        low = "0 or more" if zero else "above 0"
        return math.nan, f"must be a number of seconds, {low} and at most {maximum_s:,.0f}, not {value!r}"
    return seconds, None


def seconds_argument(maximum_s: float, *, zero: bool = False) -> Callable[[str], float]:
    """An ``argparse`` type for seconds (see :func:`checked_seconds`); argparse names the option."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        seconds, refusal = _checked(value, maximum_s, zero)
        if refusal:
            raise argparse.ArgumentTypeError(refusal)
        return seconds

    parse.__name__ = "seconds"  # argparse says "invalid seconds value" for an unparsable one
    return parse
