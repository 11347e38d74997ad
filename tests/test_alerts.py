"""Threshold rules, the alert state machine and the callback dispatcher (pure logic and one thread)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest

from fleet_hwmon.alerts import (
    DEFAULT_THRESHOLDS,
    AlertResource,
    AlertSeverity,
    AlertState,
    AlertTracker,
    CallbackDispatcher,
    Threshold,
    parse_thresholds,
)
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
W, C, F, R = AlertSeverity.WARNING, AlertSeverity.CRITICAL, AlertState.FIRING, AlertState.RESOLVED


def at(i: int, worker_id: str = "w1", **fields) -> ResourceUtilization:
    return ResourceUtilization(worker_id=worker_id, timestamp=T0 + timedelta(seconds=i), **fields)


def feed(tracker: AlertTracker, resource_field: str, values: list[float | None]) -> list[list[tuple]]:
    out = []
    for i, value in enumerate(values):
        events = tracker.evaluate(at(i, **{resource_field: value}))
        out.append([(e.resource, e.severity, e.state, e.value, e.threshold) for e in events])
    return out


def test_fires_once_escalates_once_and_resolves_below_the_margin():
    tracker = AlertTracker(parse_thresholds({"memory": (80, 90)}), margin_percent=5.0)
    assert feed(tracker, "memory_percent", [79.9, 80.0, 89.9, 90.0, 99.0, 80.0, 75.0, 74.99, 74.0]) == [
        [],
        [("memory", W, F, 80.0, 80.0)],
        [],
        [("memory", C, F, 90.0, 90.0)],
        [],
        [],  # back under critical: stays critical until it resolves, no de-escalation flood
        [],  # exactly warning - margin: not yet
        [("memory", C, R, 74.99, 90.0)],
        [],
    ]
    assert tracker.active() == []


def test_a_value_jumping_straight_to_critical_fires_one_critical():
    tracker = AlertTracker(parse_thresholds({"cpu": (80, 90)}))
    assert feed(tracker, "cpu_percent", [10.0, 97.0, 85.0, 10.0]) == [
        [], [("cpu", C, F, 97.0, 90.0)], [], [("cpu", C, R, 10.0, 90.0)]]


def test_unknown_values_change_nothing():
    tracker = AlertTracker(parse_thresholds({"cpu": (80, 90)}))
    assert feed(tracker, "cpu_percent", [None, 85.0, None, None, 10.0]) == [
        [], [("cpu", W, F, 85.0, 80.0)], [], [], [("cpu", W, R, 10.0, 80.0)]]


def test_mig_gpu_with_null_utilization_never_alerts_and_gpu_memory_does():
    tracker = AlertTracker(parse_thresholds({"gpu": (50, 60), "gpu_memory": (50, 60)}))
    gib = 1024**3
    mig = GpuUtilization(0, "GPU-a100", "A100", None, 39 * gib, 40 * gib, mig_enabled=True, unavailable_reason="MIG")
    events = tracker.evaluate(at(0, gpus=(mig,)))
    assert [(e.resource, e.severity) for e in events] == [("gpu_memory", C)]
    assert events[0].value == pytest.approx(97.5)


def test_state_is_kept_per_worker_and_resource():
    tracker = AlertTracker(parse_thresholds({"cpu": (80, 90), "memory": (80, 90)}))
    a = tracker.evaluate(at(0, "w1", cpu_percent=85.0, memory_percent=85.0))
    b = tracker.evaluate(at(0, "w2", cpu_percent=85.0))
    assert sorted((e.worker_id, e.resource) for e in a + b) == [("w1", "cpu"), ("w1", "memory"), ("w2", "cpu")]
    assert len(tracker.active()) == 3
    assert tracker.evaluate(at(1, "w2", cpu_percent=86.0, task_ids=("t-9",))) == []


def test_event_fields_and_message():
    tracker = AlertTracker(parse_thresholds({"disk": (50, 90)}))
    (event,) = tracker.evaluate(at(3, "w<1>", disk_usage_percent=61.25, task_ids=("t-1", "t-2")))
    assert (event.worker_id, event.task_id, event.timestamp) == ("w<1>", "t-1", T0 + timedelta(seconds=3))
    assert event.message == "disk at 61.2% on w<1> crossed the warning threshold of 50%"
    data = event.to_dict()
    assert data["severity"] == "warning" and data["state"] == "firing" and data["timestamp"].endswith("+00:00")
    (resolved,) = tracker.evaluate(at(4, "w<1>", disk_usage_percent=10.0))
    assert resolved.message == "disk back to 10.0% on w<1>; warning alert resolved"
    assert resolved.alert_id != event.alert_id


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"cpu": {"warning": 70, "critical": 85}}, Threshold(70.0, 85.0)),
    ({"cpu": (70, 85)}, Threshold(70.0, 85.0)),
    ({"cpu": Threshold(70.0, 85.0)}, Threshold(70.0, 85.0)),
    ({"cpu_warning": 70}, Threshold(70.0, 95.0)),
    ({"cpu_critical": 99, "cpu_warning": 10}, Threshold(10.0, 99.0)),
    ({"cpu": {"critical": 97}}, Threshold(90.0, 97.0)),
    ({"cpu": 85.0}, Threshold(85.0, 95.0)),  # one number: the warning; critical from the table
    ({"cpu": "85"}, Threshold(85.0, 95.0)),
    ({"cpu_percent": 90}, Threshold(90.0, 95.0)),
    ({"cpu_percent": ("70", 80.5)}, Threshold(70.0, 80.5)),
    ({"cpu_percent_critical": "99"}, Threshold(90.0, 99.0)),
    ({"cpu": {"warning": "60"}}, Threshold(60.0, 95.0)),
])
def test_parse_thresholds_forms(overrides, expected):
    result = parse_thresholds(overrides)
    assert result["cpu"] == expected
    assert result["memory"] == DEFAULT_THRESHOLDS["memory"]


@pytest.mark.parametrize("overrides", [
    {"network": (1, 2)}, {"cpu": (90, 80)}, {"cpu": (-1, 50)}, {"cpu": (50, 101)}, {"cpu_warning": 99},
])
def test_parse_thresholds_refuses_nonsense(overrides):
    with pytest.raises(ValueError):
        parse_thresholds(overrides)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"cpu": "high"}, "alert threshold 'cpu': 'high' is not a percent"),
    ({"cpu": "nan"}, "alert threshold 'cpu': 'nan' is not a percent"),
    ({"cpu": None}, "alert threshold 'cpu': None is not a percent"),
    ({"cpu": True}, "alert threshold 'cpu': True is not a percent"),
    ({"memory_percent": (1, 2, 3)}, r"alert threshold 'memory_percent': a pair is \(warning, critical\)"),
    ({"gpu": {"warn": 50}}, r"alert threshold 'gpu': unknown level\(s\) \['warn'\]"),
    ({"cpu": 97}, r"alert threshold 'cpu': thresholds need 0 <= warning <= critical <= 100, got 97.0 / 95.0"),
    ({"network_percent": 50}, "alert threshold 'network_percent': unknown resource; expected one of cpu, memory"),
])
def test_parse_thresholds_errors_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        parse_thresholds(overrides)


def test_alert_enums_compare_as_strings():
    tracker = AlertTracker(parse_thresholds({"cpu": (80, 90)}))
    (event,) = tracker.evaluate(at(0, cpu_percent=95.0))
    assert event.severity == "critical" and event.severity.upper() == "CRITICAL" and f"{event.severity}" == "critical"
    assert event.state == "firing" and event.resource == "cpu" and event.resource_type == "cpu"
    assert event.resource is AlertResource.CPU and str(event.resource_type) == "cpu"
    assert {"cpu": 1}[event.resource] == 1  # usable as a key of plain-name dicts


# -- the dispatcher --------------------------------------------------------------------------
def test_dispatcher_runs_callbacks_in_order_off_the_callers_thread(caplog):
    dispatcher = CallbackDispatcher("test")
    got: list[tuple[int, int]] = []

    def bad(item: int) -> None:
        raise KeyError(item)

    dispatcher.register(bad)
    dispatcher.register(lambda item: got.append((item, threading.get_ident())))
    dispatcher.register(bad)  # registering twice keeps one
    with caplog.at_level(logging.ERROR, logger="fleet_hwmon.alerts.dispatch"):
        for i in range(5):
            assert dispatcher.submit(i)
        dispatcher.join_pending()
    dispatcher.stop()
    dispatcher.stop()  # idempotent
    assert [item for item, _ in got] == [0, 1, 2, 3, 4]
    assert {ident for _, ident in got} != {threading.get_ident()} and len({ident for _, ident in got}) == 1
    assert dispatcher.failures == 5
    assert len([r for r in caplog.records if "bad" in r.getMessage()]) == 1
    assert dispatcher.unregister(bad) is True and dispatcher.unregister(bad) is False
    with pytest.raises(TypeError):
        dispatcher.register("not callable")


def test_dispatcher_full_queue_drops_and_counts():
    release = threading.Event()
    dispatcher = CallbackDispatcher("slow", max_queue=2)
    dispatcher.register(lambda item: release.wait(10))
    accepted = [dispatcher.submit(i) for i in range(10)]
    release.set()
    dispatcher.join_pending()
    dispatcher.stop()
    # the thread may already hold the first item while the queue fills: 2 or 3 accepted
    assert accepted[:2] == [True, True] and sum(accepted) in (2, 3)
    assert dispatcher.dropped == 10 - sum(accepted)
