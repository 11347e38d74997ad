"""A bug in our own reader code (TypeError, AttributeError, KeyError) is not a hardware fault:
it is logged at ERROR with its traceback once per reader, counted apart from NVML / psutil
errors, and the other readers' fields are kept."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from fleet_hwmon.sampling.sampler import Sampler, reader_bug_count
from hardware_utilization_monitor import HardwareUtilizationMonitor


class BuggyReader:
    name = "buggy"

    def read(self, now_s: float) -> dict[str, Any]:
        return {"cpu_percent": None.real}  # AttributeError: a bug, not a fault of the host


class FailingDevice:
    name = "device"

    def read(self, now_s: float) -> dict[str, Any]:
        raise OSError(5, "Input/output error")  # what a host fault looks like


class Memory:
    name = "memory"

    def read(self, now_s: float) -> dict[str, Any]:
        return {"memory_percent": 42.0, "memory_total_bytes": 1024}


@pytest.mark.reader_bug
def test_reader_bug_is_logged_once_with_traceback_and_counted_apart(caplog):
    sampler = Sampler("w", [BuggyReader(), FailingDevice(), Memory()], clock=lambda: 1.0)
    before = reader_bug_count()
    with caplog.at_level(logging.WARNING, logger="fleet_hwmon.sampling.sampler"):
        samples = [sampler.sample() for _ in range(3)]
    assert all((s.memory_percent, s.memory_total_bytes, s.cpu_percent) == (42.0, 1024, None) for s in samples)
    assert sampler.reader_bugs == {"buggy": 3} and reader_bug_count() == before + 3
    assert sampler.errors == {"buggy": 0, "device": 3, "memory": 0}
    bugs = [r for r in caplog.records if "bug in the 'buggy' reader" in r.getMessage()]
    assert len(bugs) == 1 and bugs[0].levelno == logging.ERROR
    assert bugs[0].exc_info is not None and bugs[0].exc_info[0] is AttributeError
    assert "AttributeError" in caplog.text and "None.real" in caplog.text  # the traceback's source line


@pytest.mark.reader_bug
def test_monitor_status_shows_reader_bugs_and_source_errors_apart():
    with HardwareUtilizationMonitor("w", interval_seconds=60, sources=[BuggyReader(), FailingDevice(), Memory()]) as m:
        m.sample_now()
        status = m.status()
    assert status["reader_bugs"] == {"buggy": 2}  # the start's sample and this one
    assert status["source_errors"] == {"buggy": 0, "device": 2, "memory": 0}
    assert m.get_current_metrics().memory_percent == 42.0
