"""Field reports through the whole monitor: the exact inputs of each case go in through a fake
source (psutil stand-in, cgroup tree, pynvml stand-in) or a real process, and the test reads
what the monitor kept, stored in DuckDB, exported as JSON or rendered as HTML."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections import namedtuple
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import psutil
import pytest

from fleet_hwmon.levels import MonitoringLevel
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization
from fleet_hwmon.sampling.cgroup import CgroupReader
from fleet_hwmon.sampling.host import CpuSource, NetworkSource
from fleet_hwmon.sampling.nvml import NvmlGateway, NvmlStatus
from fleet_hwmon.sampling.sampler import build_host_sources
from fleet_hwmon.store import close_store, open_store, queries
from hardware_utilization_monitor import HardwareUtilizationMonitor
from tests.fakes.nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    a100_mig,
    make_fake_nvml,
    rtx_3060,
    rtx_4090,
)
from tests.test_hardware_utilization_monitor import db_rows, parse_html, start_cpu_burner, strict_json, wait_until
from tests.test_sampling import BusyCpuPsutil, HostPsutil, NicPsutil, c04_psutil, no_cgroup

GIB = 1024**3
Vmem = namedtuple("Vmem", "total available percent used free")


def ticks(monitor: HardwareUtilizationMonitor, n: int) -> None:
    assert wait_until(lambda: monitor.status()["samples"] >= n), monitor.status()


# -- C01 ---------------------------------------------------------------------------------------
def test_c01_first_stored_cpu_is_not_zero_while_a_core_burns(db_path):
    burner = start_cpu_burner(20.0)
    try:
        monitor = HardwareUtilizationMonitor("worker-c01", db_path=db_path, interval_seconds=0.05, enable_gpu=False)
        with monitor:
            ticks(monitor, 6)
    finally:
        burner.kill()
        burner.wait()
    rows = db_rows(db_path, "SELECT cpu_percent FROM resource_utilization ORDER BY timestamp")
    one_core = 100.0 / psutil.cpu_count()
    first = rows[0]["cpu_percent"]
    assert first is None or first >= 0.5 * one_core, "the first reading shows a busy host as idle"
    # after the 0.1 s warm-up every reading is real and shows the busy core
    assert all(r["cpu_percent"] is not None and r["cpu_percent"] >= 0.5 * one_core for r in rows[3:])


def test_c01_fake_host_busy_from_the_start(db_path):
    fake = BusyCpuPsutil(cpus=4)
    # The fake adds a busy second per read, so any window reads 100 %; with no minimum window
    # after the warm-up, a loaded host running two ticks a few milliseconds apart (whose short
    # window would read unknown) cannot change the values.
    monitor = HardwareUtilizationMonitor("worker-c01-fake", db_path=db_path, interval_seconds=0.05,
                                         sources=[CpuSource(fake, min_interval_s=0.0)])
    with monitor:
        ticks(monitor, 6)
    values = [r["cpu_percent"] for r in db_rows(db_path, "SELECT cpu_percent FROM resource_utilization "
                                                         "ORDER BY timestamp")]
    # warming up (a window under 0.1 s is too short to mean anything), then real: never 0.0. The
    # third tick is due 0.1 s after the first, so at most two are still warming up (fewer when a
    # loaded machine delays the first ticks past the warm-up).
    warming = values.index(100.0)
    assert warming <= 2 and values == [None] * warming + [100.0] * (len(values) - warming)
    assert fake.percent_calls == 0


# -- C03 ---------------------------------------------------------------------------------------
def test_c03_counter_reset_is_stored_as_null(db_path):
    fake = NicPsutil({"eth0": (1_000_000, 1_000), "veth1234": (5_000, 9_000_000_000)})
    monitor = HardwareUtilizationMonitor("worker-c03", db_path=db_path, interval_seconds=3600,
                                         sources=[NetworkSource(fake, per_nic=True)])
    with monitor:
        ticks(monitor, 1)
        fake.nics = {"eth0": (10, 1_500)}  # recv reset, sent grew, the veth is gone
        reset = monitor.sample_now()
        fake.nics = {"eth0": (1_010, 1_500)}
        after = monitor.sample_now()
    assert reset.net_recv_bytes_per_s is None
    assert reset.net_sent_bytes_per_s is not None and reset.net_sent_bytes_per_s > 0
    assert after.net_recv_bytes_per_s > 0 and after.net_sent_bytes_per_s == 0.0
    rows = db_rows(db_path, "SELECT net_recv_bytes_per_s AS recv, net_sent_bytes_per_s AS sent, nics "
                            "FROM resource_utilization ORDER BY timestamp")
    assert len(rows) == 3
    assert rows[1]["recv"] is None and rows[1]["sent"] == reset.net_sent_bytes_per_s
    assert rows[1]["nics"] == [{"nic": "eth0", "recv_bytes_per_s": None,
                                "sent_bytes_per_s": reset.net_sent_bytes_per_s}]
    assert rows[2]["recv"] == after.net_recv_bytes_per_s
    assert all(r["sent"] is None or r["sent"] >= 0 for r in rows)


# -- C04 ---------------------------------------------------------------------------------------
def test_c04_root_mount_stored_and_bad_mounts_logged_once(db_path, tmp_path, caplog):
    sources = build_host_sources(MonitoringLevel.DETAILED, psutil=c04_psutil(), cgroup=no_cgroup(tmp_path))
    monitor = HardwareUtilizationMonitor("worker-c04", db_path=db_path, interval_seconds=0.05, sources=sources)
    with caplog.at_level(logging.INFO, logger="fleet_hwmon.sampling.sampler"):
        with monitor:
            ticks(monitor, 5)
    assert monitor.status()["source_errors"]["disk"] == 0
    rows = db_rows(db_path, "SELECT mounts, disk_usage_percent FROM resource_utilization")
    total = psutil.disk_usage("/").total
    for row in rows:
        assert [m["mountpoint"] for m in row["mounts"]] == ["/"]
        assert row["mounts"][0]["total_bytes"] == total
        assert row["disk_usage_percent"] is not None
    skipped = [r.getMessage() for r in caplog.records if "unreadable mount" in r.getMessage()]
    assert sorted(m.split()[3].rstrip(":") for m in skipped) == ["/mnt/gone", "Z:\\"]


# -- C05 / C06 ---------------------------------------------------------------------------------
def cgroup_v2(tmp_path: Path, files: dict[str, str]) -> CgroupReader:
    root = tmp_path / "cgroup"
    for name, text in {"cgroup.controllers": "cpu memory", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    membership = tmp_path / "proc_self_cgroup"
    membership.write_text("0::/\n")
    return CgroupReader(root=root, proc_self_cgroup=membership)


def big_host_psutil() -> HostPsutil:
    """A 128 GiB, 64-CPU host as psutil reports it from inside the container; 100 GiB available."""
    return HostPsutil(
        virtual_memory=lambda: Vmem(128 * GIB, 100 * GIB, 21.875, 28 * GIB, 90 * GIB),
        cpu_count=lambda logical=True: 64 if logical else None)  # C06 (c): no physical count


@pytest.fixture
def four_cpu_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


def test_c05_c06_container_limits_through_the_monitor(db_path, tmp_path, four_cpu_affinity):
    cgroup = cgroup_v2(tmp_path, {"memory.max": "2147483648", "memory.current": "1610612736",
                                  "cpu.max": "200000 100000"})
    sources = build_host_sources(MonitoringLevel.STANDARD, psutil=big_host_psutil(), cgroup=cgroup)
    monitor = HardwareUtilizationMonitor("worker-container", db_path=db_path, interval_seconds=0.05,
                                         sources=sources, alert_thresholds={"memory": (70, 80)})
    with monitor:
        ticks(monitor, 3)
    samples = monitor.get_historical_metrics()
    for s in samples:
        assert (s.memory_total_bytes, s.memory_used_bytes, s.memory_percent) == (2 * GIB, 1610612736, 75.0)
        assert s.memory_available_bytes == 2 * GIB - 1610612736
        assert (s.cgroup_memory_limit_bytes, s.cgroup_cpu_quota_cores, s.cpu_count_effective) == (2 * GIB, 2.0, 2.0)
    rows = db_rows(db_path, "SELECT DISTINCT memory_total_bytes, memory_used_bytes, memory_percent, "
                            "cgroup_memory_limit_bytes, cgroup_cpu_quota_cores, cpu_count_effective "
                            "FROM resource_utilization")
    assert rows == [{"memory_total_bytes": 2 * GIB, "memory_used_bytes": 1610612736, "memory_percent": 75.0,
                     "cgroup_memory_limit_bytes": 2 * GIB, "cgroup_cpu_quota_cores": 2.0,
                     "cpu_count_effective": 2.0}]
    # the alert is measured against the container's 2 GiB, not the host's 128 GiB
    assert [(a.severity.value, a.value) for a in monitor.get_alerts(resource="memory")] == [("warning", 75.0)]


@pytest.mark.parametrize(("files", "cores", "quota"), [
    ({"cpu.max": "max 100000", "memory.max": "max", "memory.current": "1610612736"}, 4.0, None),
])
def test_c05_c06_no_limits_fall_back_to_the_host(db_path, tmp_path, four_cpu_affinity, files, cores, quota):
    sources = build_host_sources(MonitoringLevel.STANDARD, psutil=big_host_psutil(),
                                 cgroup=cgroup_v2(tmp_path, files))
    monitor = HardwareUtilizationMonitor("worker-unlimited", db_path=db_path, interval_seconds=3600,
                                         sources=sources)
    with monitor:
        ticks(monitor, 1)
    (row,) = db_rows(db_path, "SELECT memory_total_bytes, memory_used_bytes, memory_percent, "
                              "cgroup_memory_limit_bytes, cgroup_cpu_quota_cores, cpu_count_effective "
                              "FROM resource_utilization")
    assert row == {"memory_total_bytes": 128 * GIB, "memory_used_bytes": 28 * GIB, "memory_percent": 21.875,
                   "cgroup_memory_limit_bytes": None, "cgroup_cpu_quota_cores": quota, "cpu_count_effective": cores}


def test_c05_v1_sentinel_through_the_monitor(db_path, tmp_path, four_cpu_affinity):
    root = tmp_path / "cgroup-v1"
    for name, text in {"memory/memory.limit_in_bytes": "9223372036854771712",
                       "memory/memory.usage_in_bytes": "1610612736",
                       "cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    membership = tmp_path / "membership-v1"
    membership.write_text("4:memory:/\n3:cpu,cpuacct:/\n")
    sources = build_host_sources(MonitoringLevel.STANDARD, psutil=big_host_psutil(),
                                 cgroup=CgroupReader(root=root, proc_self_cgroup=membership))
    monitor = HardwareUtilizationMonitor("worker-v1", interval_seconds=3600, sources=sources)
    s = monitor.sample_now()
    assert (s.memory_total_bytes, s.memory_percent, s.cgroup_memory_limit_bytes) == (128 * GIB, 21.875, None)
    assert (s.cgroup_cpu_quota_cores, s.cpu_count_effective) == (None, 4.0)


# -- C07 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["missing", "empty"])
def test_c07_no_temperature_sensors_through_the_monitor(db_path, monkeypatch, variant):
    if variant == "missing":
        monkeypatch.delattr(psutil, "sensors_temperatures", raising=False)
    else:
        monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {}, raising=False)
    monitor = HardwareUtilizationMonitor("worker-c07", db_path=db_path, monitoring_level="detailed",
                                         interval_seconds=0.05, enable_gpu=False)
    with monitor:
        ticks(monitor, 3)
    assert all(count == 0 for count in monitor.status()["source_errors"].values())
    rows = db_rows(db_path, "SELECT cpu_temperature_celsius AS t, memory_total_bytes AS m, "
                            "disk_usage_percent AS d, load_average_1m AS l FROM resource_utilization")
    assert len(rows) >= 3
    assert all(r["t"] is None and r["m"] and r["d"] is not None and r["l"] is not None for r in rows)


# -- C10 / C11 / C14 ---------------------------------------------------------------------------
def test_c10_null_power_and_fan_through_the_monitor(db_path, caplog):
    unsupported = {"nvmlDeviceGetPowerUsage", "nvmlDeviceGetFanSpeed"}
    fake = make_fake_nvml([rtx_3060(not_supported=set(unsupported), utilization_percent=35, memory_used_bytes=GIB),
                           rtx_4090(not_supported=set(unsupported), utilization_percent=80,
                                    memory_used_bytes=6 * GIB, temperature_celsius=71)])
    monitor = HardwareUtilizationMonitor("worker-c10", db_path=db_path, monitoring_level="detailed",
                                         interval_seconds=0.05, nvml=NvmlGateway(module=fake))
    with caplog.at_level(logging.INFO, logger="fleet_hwmon.sampling.nvml"):
        with monitor:
            ticks(monitor, 4)
    assert monitor.status()["source_errors"]["gpu"] == 0
    assert monitor.status()["gpu_monitoring"] == {"status": "ok", "reason": None}
    rows = db_rows(db_path, "SELECT gpus FROM resource_utilization ORDER BY timestamp")
    assert len(rows) >= 4
    for row in rows:
        first, second = row["gpus"]
        assert (first["uuid"], first["utilization_percent"], first["memory_used_bytes"]) == (
            rtx_3060().uuid, 35.0, GIB)
        assert (second["uuid"], second["utilization_percent"], second["temperature_celsius"]) == (
            rtx_4090().uuid, 80.0, 71.0)
        for gpu in (first, second):
            assert gpu["power_watts"] is None and gpu["fan_percent"] is None
            assert gpu["sm_clock_mhz"] == 1500.0
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 2  # asked once per GPU, then known unsupported
    unsupported_logs = [r for r in caplog.records if "unavailable from nvmlDeviceGet" in r.getMessage()]
    assert len(unsupported_logs) == 4  # (power, fan) x 2 GPUs, once each


def test_c14_mig_utilization_is_null_never_zero(db_path):
    fake = make_fake_nvml([a100_mig()])
    monitor = HardwareUtilizationMonitor("worker-c14", db_path=db_path, interval_seconds=0.05,
                                         nvml=NvmlGateway(module=fake), alert_thresholds={"gpu": (1, 2)})
    with monitor:
        ticks(monitor, 3)
        store = open_store(db_path)  # the monitor's own store: one per file in a process
        try:
            (summary,) = queries.summary(store, "worker-c14")
        finally:
            close_store(store)
    assert summary["gpu"] == {"min": None, "mean": None, "max": None, "current": None}
    assert monitor.get_alerts(resource="gpu") == []  # an unknown utilization never looks busy or idle
    latest = monitor.get_current_metrics()
    assert latest.gpu_utilization_percent is None
    rows = db_rows(db_path, "SELECT gpus, list_max(list_transform(gpus, lambda g: g.utilization_percent)) AS util "
                            "FROM resource_utilization")
    for row in rows:
        assert row["util"] is None
        parent, mig_a, mig_b = row["gpus"]
        assert (parent["utilization_percent"], parent["unavailable_reason"], parent["mig_enabled"]) == (
            None, "MIG", True)
        assert [(g["memory_used_bytes"], g["memory_total_bytes"], g["parent_uuid"]) for g in (mig_a, mig_b)] == [
            (8 * GIB, 20 * GIB, parent["uuid"]), (4 * GIB, 20 * GIB, parent["uuid"])]
        assert all(g["utilization_percent"] is None and g["unavailable_reason"] == "MIG" for g in (mig_a, mig_b))
    zeros = db_rows(db_path, "SELECT count(*) AS n FROM (SELECT unnest(gpus) AS g FROM resource_utilization) "
                             "WHERE g.utilization_percent = 0")
    assert zeros == [{"n": 0}]


@pytest.mark.parametrize(("init_error", "status"), [
    (NVML_ERROR_LIBRARY_NOT_FOUND, NvmlStatus.LIBRARY_NOT_FOUND),
    (NVML_ERROR_DRIVER_NOT_LOADED, NvmlStatus.DRIVER_NOT_LOADED),
])
def test_c11_no_nvml_runs_cpu_only_and_says_so_once(db_path, caplog, init_error, status):
    fake = make_fake_nvml([rtx_3060()], init_error=init_error)
    gateway = NvmlGateway(module=fake)
    monitor = HardwareUtilizationMonitor("worker-c11", db_path=db_path, monitoring_level="detailed",
                                         interval_seconds=0.05, nvml=gateway)
    with caplog.at_level(logging.INFO):
        with monitor:
            ticks(monitor, 5)
    gpu_state = monitor.status()["gpu_monitoring"]
    assert gpu_state["status"] == status.value and gpu_state["reason"].startswith("nvml: unavailable (")
    says = [r for r in caplog.records if r.name == "fleet_hwmon.monitor" and "GPU monitoring off" in r.getMessage()]
    assert len(says) == 1 and gpu_state["reason"] in says[0].getMessage()
    rows = db_rows(db_path, "SELECT gpus, cpu_percent, memory_total_bytes FROM resource_utilization")
    assert len(rows) >= 5 and all(r["gpus"] == [] and r["memory_total_bytes"] for r in rows)
    assert fake.calls["nvmlShutdown"] == 0 and fake.calls["nvmlInit"] == 1
    assert monitor.status()["source_errors"]["gpu"] == 0


def test_c11c_pynvml_not_importable(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    gateway = NvmlGateway()
    monitor = HardwareUtilizationMonitor("worker-c11c", interval_seconds=3600, nvml=gateway)
    with monitor:
        ticks(monitor, 1)
    assert monitor.status()["gpu_monitoring"]["status"] == "not_installed"
    assert monitor.get_current_metrics().gpus == ()
    assert monitor.get_current_metrics().memory_total_bytes is not None
    report = monitor.generate_html_report(str(tmp_path / "r.html"))
    assert "nvml: unavailable (pynvml is not installed" in "".join(parse_html(report).text)


# -- C23 ---------------------------------------------------------------------------------------
def test_c23_non_finite_values_become_null_everywhere(db_path, tmp_path):
    fake = NicPsutil({"eth0": (1000, 1000)})
    network = NetworkSource(fake)
    now = time.monotonic()
    network.read(now)
    fake.nics["eth0"] = (9000, 9000)
    zero_interval = network.read(now)  # a rate over elapsed = 0
    assert zero_interval == {"net_recv_bytes_per_s": None, "net_sent_bytes_per_s": None}

    powers = [120.0, float("nan"), float("inf"), 80.0]
    utilizations = [50.0, 30.0, 40.0, float("nan")]
    t0 = datetime.now(timezone.utc)
    monitor = HardwareUtilizationMonitor("worker-c23", db_path=db_path, interval_seconds=3600, sources=[])
    with monitor:
        ticks(monitor, 1)
        for i, (power, util) in enumerate(zip(powers, utilizations)):
            gpu = GpuUtilization(0, "GPU-c23", "NVIDIA <test> GPU", utilization_percent=util, power_watts=power)
            monitor.record_sample(ResourceUtilization(
                worker_id="worker-c23", timestamp=t0 + timedelta(seconds=i + 1), gpus=(gpu,),
                cpu_percent=float("-inf") if i == 2 else 10.0 * (i + 1),
                net_recv_bytes_per_s=math.inf if i == 1 else zero_interval["net_recv_bytes_per_s"],
                net_sent_bytes_per_s=zero_interval["net_sent_bytes_per_s"]))
        html = monitor.generate_html_report(str(tmp_path / "c23.html"))
        out = monitor.export_metrics_to_json(str(tmp_path / "c23.json"))

    with duckdb.connect(db_path) as con:
        stats = con.execute("SELECT avg(g.power_watts), max(g.power_watts), stddev(g.power_watts), "
                            "count(g.power_watts), count(*) "
                            "FROM (SELECT unnest(gpus) AS g FROM resource_utilization)").fetchone()
        nets = con.execute("SELECT count(*) FROM resource_utilization WHERE net_recv_bytes_per_s IS NOT NULL "
                           "OR net_sent_bytes_per_s IS NOT NULL OR isnan(cpu_percent) OR isinf(cpu_percent)").fetchone()
        summarize = con.execute("SUMMARIZE SELECT cpu_percent, net_recv_bytes_per_s "
                                "FROM resource_utilization").fetchall()
    avg, peak, stddev, known, total = stats
    assert (avg, peak, known, total) == (100.0, 120.0, 2, 4)
    assert stddev == pytest.approx(math.sqrt(800.0))
    assert nets == (0,) and len(summarize) == 2

    data = strict_json(out.read_text())
    fed = [s for s in data["samples"] if s["gpus"]]
    assert [s["gpus"][0]["power_watts"] for s in fed] == [120.0, None, None, 80.0]
    assert [s["cpu_percent"] for s in fed] == [10.0, 20.0, None, 40.0]
    assert all(s["net_recv_bytes_per_s"] is None for s in fed)
    assert data["summary"]["gpu"] == {"min": 30.0, "mean": 40.0, "max": 50.0, "current": None}

    page = parse_html(html)
    gpu_row = next(row for row in page.rows if row and row[0] == "gpu")
    assert gpu_row[1:] == ["n/a", "30.0%", "40.0%", "50.0%"]
    assert "nan" not in "".join(page.text).lower().replace("nanosecond", "")


# -- DETAILED: per-device views round-trip through JSON and DuckDB ------------------------------
def test_detailed_level_exports_and_stores_per_device_views(db_path, tmp_path):
    monitor = HardwareUtilizationMonitor("worker-detailed", db_path=db_path, monitoring_level="detailed",
                                         interval_seconds=0.05, enable_gpu=False)
    with monitor:
        ticks(monitor, 3)
        path = monitor.export_metrics_to_json(str(tmp_path / "detailed.json"))
    samples = monitor.get_historical_metrics()
    data = strict_json(path.read_text())
    exported = [ResourceUtilization.from_dict(d) for d in data["samples"]]
    assert len(exported) >= 3 and exported == samples[:len(exported)]  # a last tick may follow the export
    assert all(s.mounts for s in samples) and samples[-1].per_cpu_percent is not None
    rows = db_rows(db_path, "SELECT mounts, nics, disks, per_cpu_percent FROM resource_utilization ORDER BY timestamp")
    for s, row in zip(samples, rows):
        assert row["mounts"] == [m.to_dict() for m in s.mounts]
        assert row["nics"] == [n.to_dict() for n in s.nics]
        assert row["disks"] == [d.to_dict() for d in s.disks]
        assert row["per_cpu_percent"] == (None if s.per_cpu_percent is None else list(s.per_cpu_percent))
    remote = json.loads(json.dumps(samples[-1].to_dict()))
    assert ResourceUtilization.from_dict(remote) == samples[-1]

