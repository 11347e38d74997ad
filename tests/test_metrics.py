"""The Prometheus collector and endpoint: exact inputs in, the exposition parsed back with
``prometheus_client.parser``. Unknown figures must be absent, never 0."""

from __future__ import annotations

import gzip
import types
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration  # noqa: E402
from fleet_hwmon.alerts import AlertTracker  # noqa: E402
from fleet_hwmon.coordinator.coordinator import Coordinator  # noqa: E402
from fleet_hwmon.metrics import METRICS, BucketCounts, FleetSnapshot, TaskTally, WorkerState  # noqa: E402
from fleet_hwmon.metrics.collector import FleetCollector  # noqa: E402
from fleet_hwmon.metrics.snapshot import store_counters  # noqa: E402
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization, utc_now  # noqa: E402
from fleet_hwmon.store import close_store, open_store  # noqa: E402

GIB = 1024**3
Series = dict[tuple[str, frozenset], float]


def parse(text: str) -> Series:
    """Every sample of an exposition: (series name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def exposition(snapshot: FleetSnapshot) -> Series:
    registry = CollectorRegistry()
    registry.register(FleetCollector(lambda: snapshot))
    return parse(generate_latest(registry).decode())


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())


def names(series: Series) -> set[str]:
    return {name for name, _ in series}


# -- the collector on exact snapshots ---------------------------------------------------------------
def test_worker_and_gpu_figures_in_base_units_and_unknown_ones_absent() -> None:
    taken = utc_now()
    a100 = GpuUtilization(0, "GPU-a", "NVIDIA A100", utilization_percent=37.5, memory_used_bytes=3 * GIB,
                          memory_total_bytes=80 * GIB, temperature_celsius=61.0, power_watts=212.5)
    mig = GpuUtilization(1, "MIG-b", "NVIDIA A100 MIG 1g.10gb", memory_used_bytes=GIB, memory_total_bytes=10 * GIB,
                         unavailable_reason="MIG", simulated=True)
    full = ResourceUtilization("w-1", taken - timedelta(seconds=2.5), cpu_percent=12.5, cpu_count_effective=6.0,
                               memory_used_bytes=4 * GIB, memory_available_bytes=12 * GIB,
                               memory_total_bytes=16 * GIB, memory_percent=25.0, disk_usage_percent=50.0,
                               disk_read_bytes_per_s=1000.0, disk_write_bytes_per_s=0.0,
                               net_recv_bytes_per_s=10.0, net_sent_bytes_per_s=20.0, gpus=(a100, mig))
    first = ResourceUtilization("w-2", taken, memory_percent=90.0)  # first cpu_percent is unknown
    series = exposition(FleetSnapshot(taken, (WorkerState("w-1", full, False, False),
                                              WorkerState("w-2", first, True, True),
                                              WorkerState("w-3", None))))
    w1, w2 = {"worker_id": "w-1"}, {"worker_id": "w-2"}
    assert series[key("fleet_hwmon_worker_cpu_utilization_ratio", **w1)] == 0.125
    assert series[key("fleet_hwmon_worker_cpu_cores", **w1)] == 6.0
    assert series[key("fleet_hwmon_worker_memory_used_bytes", **w1)] == 4 * GIB
    assert series[key("fleet_hwmon_worker_memory_total_bytes", **w1)] == 16 * GIB
    assert series[key("fleet_hwmon_worker_memory_available_bytes", **w1)] == 12 * GIB
    assert series[key("fleet_hwmon_worker_memory_utilization_ratio", **w1)] == 0.25
    assert series[key("fleet_hwmon_worker_disk_usage_ratio", **w1)] == 0.5
    assert series[key("fleet_hwmon_worker_disk_read_bytes_per_second", **w1)] == 1000.0
    assert series[key("fleet_hwmon_worker_disk_write_bytes_per_second", **w1)] == 0.0  # a measured 0 stays
    assert series[key("fleet_hwmon_worker_network_receive_bytes_per_second", **w1)] == 10.0
    assert series[key("fleet_hwmon_worker_network_transmit_bytes_per_second", **w1)] == 20.0
    assert not {n for n, _ in series if n.endswith("_age_seconds")}  # an age is time() - the timestamp, in PromQL
    assert series[key("fleet_hwmon_worker_last_sample_timestamp_seconds", **w1)] == pytest.approx(
        full.timestamp.timestamp())
    assert series[key("fleet_hwmon_worker_stale", **w1)] == 0.0
    assert series[key("fleet_hwmon_worker_stale", **w2)] == 1.0
    assert series[key("fleet_hwmon_worker_excluded", **w2)] == 1.0
    gpu_a = {"worker_id": "w-1", "gpu_uuid": "GPU-a"}
    gpu_b = {"worker_id": "w-1", "gpu_uuid": "MIG-b"}
    # the model name only on the info series, one per GPU (MIG instance included)
    assert {labels: v for (n, labels), v in series.items() if n == "fleet_hwmon_gpu_info"} == {
        frozenset(dict(gpu_a, gpu_name="NVIDIA A100").items()): 1.0,
        frozenset(dict(gpu_b, gpu_name="NVIDIA A100 MIG 1g.10gb").items()): 1.0}
    assert not [n for (n, labels) in series if n != "fleet_hwmon_gpu_info" and "gpu_name" in dict(labels)]
    assert series[key("fleet_hwmon_gpu_utilization_ratio", **gpu_a)] == 0.375
    assert series[key("fleet_hwmon_gpu_memory_used_bytes", **gpu_a)] == 3 * GIB
    assert series[key("fleet_hwmon_gpu_memory_total_bytes", **gpu_a)] == 80 * GIB
    assert series[key("fleet_hwmon_gpu_temperature_celsius", **gpu_a)] == 61.0
    assert series[key("fleet_hwmon_gpu_power_watts", **gpu_a)] == 212.5
    assert key("fleet_hwmon_gpu_simulated", **gpu_a) not in series  # measured: no flag
    assert series[key("fleet_hwmon_gpu_simulated", **gpu_b)] == 1.0
    assert series[key("fleet_hwmon_gpu_memory_used_bytes", **gpu_b)] == GIB
    # Unknown is absent: MIG utilization, w-2's CPU and everything of w-3 (no sample yet).
    assert key("fleet_hwmon_gpu_utilization_ratio", **gpu_b) not in series
    assert key("fleet_hwmon_gpu_temperature_celsius", **gpu_b) not in series
    assert key("fleet_hwmon_worker_cpu_utilization_ratio", **w2) not in series
    assert series[key("fleet_hwmon_worker_memory_utilization_ratio", **w2)] == 0.9
    assert not [labels for _, labels in series if ("worker_id", "w-3") in labels]
    # No scheduler, no store, no alerts: those metrics are absent, not 0.
    assert not names(series) & {"fleet_hwmon_scheduling_decisions_total", "fleet_hwmon_store_pending_rows",
                                "fleet_hwmon_alerts_firing", "fleet_hwmon_gpu_health"}


def test_gpu_health_is_one_series_labelled_with_its_state_and_absent_when_not_read() -> None:
    now = utc_now()
    gpus = (GpuUtilization(0, "GPU-x", "T4", health="degraded", health_reason="XID 79"),
            GpuUtilization(1, "GPU-y", "T4", health="ok"), GpuUtilization(2, "GPU-z", "T4"))
    series = exposition(FleetSnapshot(now, (WorkerState("w", ResourceUtilization("w", now, gpus=gpus)),)))
    assert {(dict(found)["gpu_uuid"], dict(found)["state"]): v for (n, found), v in series.items()
            if n == "fleet_hwmon_gpu_health"} == {("GPU-x", "degraded"): 1.0, ("GPU-y", "ok"): 1.0}


def test_alerts_firing_by_worker_resource_and_severity() -> None:
    tracker = AlertTracker()
    now = utc_now()
    tracker.evaluate(ResourceUtilization("w", now, cpu_percent=96.0, memory_percent=91.0, disk_usage_percent=10.0))
    series = exposition(FleetSnapshot(now, (WorkerState("w", None, alerts=tuple(tracker.active())),)))
    firing = {(dict(labels)["resource"], dict(labels)["severity"]): value
              for (name, labels), value in series.items() if name == "fleet_hwmon_alerts_firing"}
    assert firing == {("cpu", "critical"): 1.0, ("memory", "warning"): 1.0}


@pytest.mark.parametrize("stats, outcomes, kinds", [
    # the statistics as the integration keeps them now: outcomes derived, categories as kinds
    ({"decisions": 10, "alternatives_chosen": 3, "no_worker": 2,
      "exclusions_by_category": {"stale": 4, "task limit": 1}},
     {"original": 5, "alternative": 3, "no_worker": 2}, {"stale": 4, "task_limit": 1}),
    # typed statistics: outcomes and kinds given
    ({"decisions": 7, "decisions_by_outcome": {"original": 6, "alternative": 1, "no_worker": 0},
      "exclusions_by_kind": {"memory_fit": 2, "gpu_unhealthy": 1}},
     {"original": 6, "alternative": 1, "no_worker": 0}, {"memory_fit": 2, "gpu_unhealthy": 1}),
    ({"decisions": None}, {}, {}),  # nothing known: nothing exposed
])
def test_decisions_by_outcome_and_exclusions_by_kind(stats: dict, outcomes: dict, kinds: dict) -> None:
    series = exposition(FleetSnapshot(utc_now(), scheduler=stats))
    assert {dict(labels)["outcome"]: v for (n, labels), v in series.items()
            if n == "fleet_hwmon_scheduling_decisions_total"} == outcomes
    assert {dict(labels)["kind"]: v for (n, labels), v in series.items()
            if n == "fleet_hwmon_scheduling_exclusions_total"} == kinds


def test_histograms_count_each_value_in_its_bucket() -> None:
    latency = BucketCounts((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.5):  # 0.001 sits on a bound: le is inclusive
        latency.observe(seconds)
    tasks = TaskTally()
    tasks.observe("unit", True, 0.4)
    tasks.observe("unit", False, 3.0)
    tasks.observe(None, True, None)  # unknown type and duration: counted, not bucketed
    stats = {"decision_latency_s": {"count": 4, "sum": latency.total, "p50": 0.0015, "p99": 0.5,
                                    "buckets": latency.cumulative()}}
    series = exposition(FleetSnapshot(utc_now(), scheduler=stats, tasks=tasks))
    name = "fleet_hwmon_scheduling_decision_duration_seconds"
    assert [series[key(name + "_bucket", le=le)] for le in ("0.001", "0.01", "+Inf")] == [2, 3, 4]
    assert series[key(name + "_count")] == 4
    assert series[key(name + "_sum")] == pytest.approx(0.5035)
    # statistics with a count and sum but no buckets: the histogram's +Inf bucket, count and sum
    bare = exposition(FleetSnapshot(utc_now(), scheduler={"decision_latency_s": {"count": 2, "sum": 0.25}}))
    assert {n for n, _ in bare} == {name + "_bucket", name + "_count", name + "_sum"}
    assert bare[key(name + "_bucket", le="+Inf")] == 2 and bare[key(name + "_sum")] == 0.25
    assert series[key("fleet_hwmon_tasks_finished_total", task_type="unit", status="succeeded")] == 1
    assert series[key("fleet_hwmon_tasks_finished_total", task_type="unit", status="failed")] == 1
    assert series[key("fleet_hwmon_tasks_finished_total", task_type="", status="succeeded")] == 1
    assert series[key("fleet_hwmon_task_duration_seconds_count", task_type="unit")] == 2
    assert series[key("fleet_hwmon_task_duration_seconds_bucket", task_type="unit", le="0.5")] == 1
    assert series[key("fleet_hwmon_task_duration_seconds_sum", task_type="unit")] == pytest.approx(3.4)
    assert key("fleet_hwmon_task_duration_seconds_count", task_type="") not in series


def test_store_counters_from_a_real_store_and_from_older_stats(tmp_path) -> None:
    store = open_store(str(tmp_path / "m.duckdb"))
    try:
        store.ensure_table("resource_utilization", ResourceUtilization)
        store.append("resource_utilization", ResourceUtilization("w", utc_now(), cpu_percent=1.0))
        store.flush()
        series = exposition(FleetSnapshot(utc_now(), store=store_counters(store)))
    finally:
        close_store(store)
    assert series[key("fleet_hwmon_store_rows_written_total", table="resource_utilization")] == 1
    assert series[key("fleet_hwmon_store_rows_dropped_total")] == 0  # counted, none: a known 0
    assert series[key("fleet_hwmon_store_rows_rejected_total")] == 0
    assert series[key("fleet_hwmon_store_pending_rows")] == 0
    # counts per table and reason are summed; a store that does not count rejections has none
    counted = exposition(FleetSnapshot(utc_now(), store={
        "rejected_rows": {"a": {"not finite": 2}, "b": {"type": 1}}, "dropped_rows": {"a": {"queue full": 5}}}))
    assert counted[key("fleet_hwmon_store_rows_rejected_total")] == 3
    assert counted[key("fleet_hwmon_store_rows_dropped_total")] == 5
    older = types.SimpleNamespace(stats=lambda: {"written_rows": {"t": 4}, "dropped_rows": 1, "failed_flushes": 0,
                                                 "pending_rows": 2})
    series = exposition(FleetSnapshot(utc_now(), store=store_counters(older)))
    assert series[key("fleet_hwmon_store_rows_written_total", table="t")] == 4
    assert series[key("fleet_hwmon_store_rows_dropped_total")] == 1
    assert series[key("fleet_hwmon_store_pending_rows")] == 2
    assert key("fleet_hwmon_store_rows_rejected_total") not in series


def test_every_catalogued_metric_is_described_and_named_by_convention() -> None:
    described = {m.name for m in FleetCollector(lambda: FleetSnapshot(utc_now())).describe()}
    assert described == {s.name.removesuffix({"counter": "_total", "info": "_info"}.get(s.kind, "")) for s in METRICS}
    for spec in METRICS:
        assert spec.name.startswith("fleet_hwmon_")
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert spec.name.endswith("_info") == (spec.kind == "info"), spec.name
        assert not spec.name.endswith(("_percent", "_ms", "_s", "_mb")), spec.name


# -- the integration's endpoint over real HTTP ------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_integration_endpoint_serves_the_fleet_and_stops_at_shutdown(tmp_path) -> None:
    coordinator = Coordinator(max_tasks_per_worker=2)
    coordinator.register_worker("cpu-1", {"hardware": ["cpu"], "memory": {"total_gb": 16},
                                          "cpu": {"cores_effective": 8}})
    coordinator.register_worker("cpu-2", {"hardware": ["cpu"], "memory": {"total_gb": 16},
                                          "cpu": {"cores_effective": 8}})
    clock = Clock()
    registry = CollectorRegistry()
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "m.duckdb"),
                                                           update_interval_seconds=1.0, clock=clock)
    integration.initialize()
    try:
        now = utc_now()
        integration.update_worker_utilization("cpu-1", ResourceUtilization(
            "cpu-1", now, cpu_percent=97.0, memory_percent=20.0, memory_used_bytes=3 * GIB,
            memory_total_bytes=16 * GIB))
        integration.update_worker_utilization("cpu-2", {"timestamp": now, "cpu_percent": 10.0})
        decision = integration.decide_task({"task_id": "t1", "type": "unit", "requirements": {}},
                                           ["cpu-1", "cpu-2"], {})
        assert decision.chosen_worker_id == "cpu-2"
        integration.start_task_monitoring("t1", "cpu-2")
        integration.stop_task_monitoring("t1", "cpu-2", success=False)
        server = integration.start_metrics_server(0, registry=registry)
        assert server.addr == "127.0.0.1" and server.port > 0
        with pytest.raises(RuntimeError):
            integration.start_metrics_server(0)
        clock.now += 10  # both workers stale now (3 intervals of 1 s by default)
        series = parse(fetch(server.url))
        stats = integration.scheduler_statistics()
    finally:
        integration.shutdown()
    assert series[key("fleet_hwmon_worker_cpu_utilization_ratio", worker_id="cpu-1")] == 0.97
    assert series[key("fleet_hwmon_worker_memory_used_bytes", worker_id="cpu-1")] == 3 * GIB
    assert key("fleet_hwmon_worker_memory_used_bytes", worker_id="cpu-2") not in series
    assert series[key("fleet_hwmon_worker_stale", worker_id="cpu-2")] == 1.0
    assert series[key("fleet_hwmon_alerts_firing", worker_id="cpu-1", resource="cpu", severity="critical")] == 1
    assert stats["alternatives_chosen"] + stats["no_worker"] <= stats["decisions"] == 1
    assert sum(v for (n, _), v in series.items() if n == "fleet_hwmon_scheduling_decisions_total") == 1
    assert series[key("fleet_hwmon_scheduling_decision_duration_seconds_count")] == 1
    assert series[key("fleet_hwmon_tasks_finished_total", task_type="unit", status="failed")] == 1
    assert series[key("fleet_hwmon_task_duration_seconds_count", task_type="unit")] == 1
    assert series[key("fleet_hwmon_store_pending_rows")] >= 0
    with pytest.raises(urllib.error.URLError):  # stopped at shutdown
        fetch(server.url)
    assert list(registry.collect()) == []  # the collector left the injected registry


def test_a_taken_port_is_one_clear_error(tmp_path) -> None:
    coordinator = Coordinator()
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "m.duckdb"))
    integration.initialize()
    try:
        first = integration.start_metrics_server(0)
        other = CoordinatorHardwareMonitoringIntegration(Coordinator(), db_path=str(tmp_path / "n.duckdb"))
        with pytest.raises(OSError, match=f"^cannot serve metrics on 127.0.0.1:{first.port}: "):
            other.start_metrics_server(first.port)
        for port in (-1, 65536, 2**70, True):
            with pytest.raises(ValueError, match="the metrics port must be a whole number from 0 to 65535"):
                other.start_metrics_server(port)
        assert "fleet_hwmon_store_pending_rows" in fetch(first.url)
    finally:
        integration.shutdown()


def test_snapshot_of_a_worker_that_left_keeps_its_decisions(tmp_path) -> None:
    coordinator = Coordinator()
    coordinator.register_worker("w", {"hardware": ["cpu"], "memory": {"total_gb": 8}})
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "m.duckdb"))
    integration.initialize()
    try:
        integration.decide_task({"task_id": "t", "requirements": {}}, ["w"], {})
        coordinator.deregister_worker("w")
        snapshot: Any = integration.metrics_snapshot()
    finally:
        integration.shutdown()
    assert [w.worker_id for w in snapshot.workers] == []
    assert snapshot.scheduler["decision_latency_s"]["count"] == 1


def test_a_stopped_server_releases_its_port_and_registry() -> None:
    from fleet_hwmon.metrics import start_metrics_server

    registry = CollectorRegistry()
    snapshot = FleetSnapshot(utc_now(), store={"pending_rows": 7})
    first = start_metrics_server(lambda: snapshot, 0, registry=registry)
    first.stop()
    first.stop()  # twice is fine
    again = start_metrics_server(lambda: snapshot, first.port, registry=registry)  # same port, same registry
    try:
        assert parse(fetch(again.url))[key("fleet_hwmon_store_pending_rows")] == 7
    finally:
        again.stop()


def test_an_empty_address_serves_on_every_ipv4_interface() -> None:
    from fleet_hwmon.metrics import start_metrics_server

    snapshot = FleetSnapshot(utc_now(), store={"pending_rows": 3})
    server = start_metrics_server(lambda: snapshot, 0, "", registry=CollectorRegistry())
    try:
        assert server.addr == "0.0.0.0"
        local = f"http://127.0.0.1:{server.port}/metrics"
        assert parse(fetch(local))[key("fleet_hwmon_store_pending_rows")] == 3
    finally:
        server.stop()


def test_the_endpoint_answers_prometheus_in_the_text_format_gzipped() -> None:
    from fleet_hwmon.metrics import start_metrics_server

    now = utc_now()
    gpus = (GpuUtilization(0, "GPU-a", "T4", utilization_percent=50.0, health="ok"),)
    snapshot = FleetSnapshot(now, (WorkerState("w", ResourceUtilization("w", now, cpu_percent=10.0, gpus=gpus)),),
                             store={"pending_rows": 3})
    server = start_metrics_server(lambda: snapshot, 0, registry=CollectorRegistry())
    try:
        plain = urllib.request.urlopen(server.url, timeout=10)
        text = plain.read()
        # what Prometheus sends: OpenMetrics preferred, gzip accepted
        asked = urllib.request.Request(server.url, headers={
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            "Accept-Encoding": "gzip"})
        with urllib.request.urlopen(asked, timeout=10) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            assert answer.headers["Content-Type"] == plain.headers["Content-Type"]
            assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = gzip.decompress(answer.read())
        with urllib.request.urlopen(server.url + "?name[]=fleet_hwmon_store_pending_rows", timeout=10) as answer:
            only = parse(answer.read().decode())  # the library's own filter still answers
    finally:
        server.stop()
    assert "Content-Encoding" not in plain.headers and b"# EOF" not in body
    assert parse(body.decode()) == parse(text.decode())
    assert parse(text.decode())[key("fleet_hwmon_gpu_utilization_ratio", worker_id="w", gpu_uuid="GPU-a")] == 0.5
    assert only == {key("fleet_hwmon_store_pending_rows"): 3}


def test_staleness_before_the_first_sample_is_absent_and_a_skewed_clock_is_corrected(tmp_path) -> None:
    """A worker never heard from has no staleness verdict (unknown, not "fresh"); a worker whose
    clock is two hours ahead shows its sample at the coordinator's time, so the age the README's
    formula gives is its real age."""
    coordinator = Coordinator()
    for worker_id in ("silent", "ahead"):
        coordinator.register_worker(worker_id, {"hardware": ["cpu"], "memory": {"total_gb": 8}})
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "m.duckdb"),
                                                           detect_capabilities=False)
    integration.initialize()
    try:
        sent = utc_now() + timedelta(hours=2)
        integration.update_worker_utilization("ahead", {"timestamp": sent, "cpu_percent": 10.0})
        series = exposition(integration.metrics_snapshot())
    finally:
        integration.shutdown()
    assert key("fleet_hwmon_worker_stale", worker_id="silent") not in series
    assert series[key("fleet_hwmon_worker_stale", worker_id="ahead")] == 0.0
    stamp = series[key("fleet_hwmon_worker_last_sample_timestamp_seconds", worker_id="ahead")]
    assert abs(stamp - utc_now().timestamp()) < 60  # not two hours ahead


def test_a_pushed_sample_with_two_gpus_of_one_uuid_is_refused_and_an_unknown_health_is_repaired() -> None:
    """Series are keyed by a GPU's uuid: two alike would merge into one (Prometheus keeps the
    first); a health outside ok / degraded / lost would fire the catalogue's critical rule."""
    now = utc_now()
    gpu = {"index": 0, "uuid": "GPU-1", "name": "A100", "utilization_percent": 10.0}
    with pytest.raises(ValueError, match=r"gpus\[1\]\.uuid 'GPU-1' is gpus\[0\]'s too: each GPU needs its own"):
        ResourceUtilization.from_dict({"worker_id": "w", "timestamp": now, "gpus": [gpu, {**gpu, "index": 1}]})
    sample = ResourceUtilization.from_dict({"worker_id": "w", "timestamp": now, "gpus": [
        {**gpu, "health": "weird value"}, {**gpu, "index": 1, "uuid": "GPU-2", "health": "degraded"}]})
    assert [g.health for g in sample.gpus] == [None, "degraded"] and "gpus.health" in sample.invalid_fields
    series = exposition(FleetSnapshot(now, (WorkerState("w", sample),)))
    assert {dict(labels).get("state") for (name, labels) in series if name == "fleet_hwmon_gpu_health"} == {
        "degraded"}
