"""Coarse 1-5 ratings of devices, for humans and for tie-breaking; never a substitute for the
exact figures (memory bytes, compute capability) that task requirements are matched against."""

from __future__ import annotations

from fleet_hwmon.capabilities.model import CapabilityScore

GIB = 1024**3


def _band(value: float, thresholds: tuple[float, float, float, float]) -> CapabilityScore:
    """MINIMAL below thresholds[0], BASIC from [0], AVERAGE from [1], GOOD from [2], EXCELLENT from [3]."""
    rank = 1 + sum(value >= t for t in thresholds)
    return CapabilityScore(rank)


def score_cores(effective_cores: float) -> CapabilityScore:
    """By usable cores: <4 minimal, 4 basic, 8 average, 16 good, 32+ excellent."""
    return _band(effective_cores, (4, 8, 16, 32))


def score_memory(memory_bytes: int, *, gpu: bool) -> CapabilityScore:
    """Host memory: 8/16/64/256 GiB bands; GPU memory: 6/12/24/40 GiB bands."""
    bands = (6, 12, 24, 40) if gpu else (8, 16, 64, 256)
    return _band(memory_bytes / GIB, bands)


def score_compute_capability(major: int, minor: int) -> CapabilityScore:
    """NVIDIA compute capability: <6 minimal, 6.x basic, 7.x average, 8.x good, 9.0+ excellent."""
    return _band(major + minor / 10, (6.0, 7.0, 8.0, 9.0))
