"""Host sources and the sampler: exact field-report inputs through fake psutil modules (C01, C03,
C04, C07, C08, C23), real readings where the host has them, and the sample record's dict form."""

from __future__ import annotations

import json
import logging
import math
import threading
import types
from collections import namedtuple
from datetime import datetime, timezone
from typing import Any, Callable

import psutil
import pytest

from fleet_hwmon.levels import MonitoringLevel
from fleet_hwmon.sample import DiskIO, GpuUtilization, MountUsage, NicIO, ResourceUtilization, finite
from fleet_hwmon.sampling.cgroup import CgroupReader
from fleet_hwmon.sampling.counters import CounterRates, counter_delta, summed
from fleet_hwmon.sampling.host import CpuSource, DiskSource, NetworkSource, TemperatureSource
from fleet_hwmon.sampling.sampler import Sampler, build_host_sources

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
NetCounters = namedtuple("NetCounters", "bytes_sent bytes_recv")
Partition = namedtuple("Partition", "device mountpoint fstype opts")
Temperature = namedtuple("Temperature", "label current high critical")


class HostPsutil(types.ModuleType):
    """The real psutil with the named functions replaced; everything else reads this host."""

    def __init__(self, **replacements: Callable[..., Any]) -> None:
        super().__init__("psutil")
        for name, fn in replacements.items():
            setattr(self, name, fn)

    def __getattr__(self, name: str) -> Any:
        return getattr(psutil, name)


def no_cgroup(tmp_path) -> CgroupReader:
    """A cgroup reader that finds no cgroup filesystem (an empty tree)."""
    root = tmp_path / "no-cgroup"
    root.mkdir(exist_ok=True)
    membership = tmp_path / "no-cgroup-membership"
    membership.write_text("")
    return CgroupReader(root=root, proc_self_cgroup=membership)


# -- C01: the first CPU value ----------------------------------------------------------------
class BusyCpuPsutil(HostPsutil):
    """cpu_times: the first call is the reference; every later call adds one fully busy second per
    CPU. cpu_percent answers 0.0 first and 100.0 after, like psutil's non-blocking call."""

    def __init__(self, cpus: int = 4) -> None:
        super().__init__()
        self.cpus = cpus
        self.times_calls = 0
        self.percent_calls = 0

    def cpu_times(self, percpu: bool = False) -> Any:
        busy = float(self.times_calls)
        if not percpu:
            self.times_calls += 1
        one = CpuTimes(100.0 + busy, 0.0, 0.0, 500.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        if percpu:
            return [one] * self.cpus
        return CpuTimes(*(v * self.cpus for v in one))

    def cpu_percent(self, interval: float | None = None, percpu: bool = False) -> Any:
        self.percent_calls += 1
        return 0.0 if self.percent_calls == 1 else 100.0

    def cpu_count(self, logical: bool = True) -> int:
        return self.cpus


def test_c01_first_cpu_value_is_none_then_the_real_busy_percent():
    fake = BusyCpuPsutil(cpus=4)
    source = CpuSource(fake, per_cpu=True)
    start = source._previous_s
    first = source.read(start + 0.001)  # right after start: no meaningful interval yet
    assert "cpu_percent" not in first and "per_cpu_percent" not in first
    second = source.read(start + 1.0)
    assert second["cpu_percent"] == 100.0
    assert second["per_cpu_percent"] == (100.0,) * 4
    assert fake.percent_calls == 0  # psutil's process-global cpu_percent is never consulted


def test_c01_first_sample_through_the_sampler_is_null_not_zero(tmp_path):
    fake = BusyCpuPsutil(cpus=2)
    clock = iter([0.0005, 2.0, 4.0])
    source = CpuSource(fake)
    source._previous_s = 0.0
    sampler = Sampler("worker-c01", [source], clock=lambda: next(clock))
    assert sampler.sample().cpu_percent is None
    assert sampler.sample().cpu_percent == 100.0
    assert sampler.sample().cpu_percent == 100.0


def test_cpu_percent_of_an_idle_interval_is_zero_and_known():
    class Idle(HostPsutil):
        def cpu_times(self, percpu: bool = False) -> Any:
            return CpuTimes(100.0, 0, 0, 500.0, 0, 0, 0, 0, 0, 0)

    source = CpuSource(Idle())
    # no clock tick passed: total delta 0, the percent is unknown rather than 0
    assert source.read(source._previous_s + 1.0)["cpu_percent"] is None


def test_cpu_source_reads_this_host():
    source = CpuSource(per_cpu=True)
    out = source.read(source._previous_s + 0.5)
    assert out["cpu_percent"] is None or 0.0 <= out["cpu_percent"] <= 100.0
    assert out["per_cpu_percent"] is None or len(out["per_cpu_percent"]) == psutil.cpu_count()
    assert out["cpu_count_effective"] <= psutil.cpu_count()


# -- C03: network counters -------------------------------------------------------------------
class NicPsutil(HostPsutil):
    """net_io_counters(pernic=True) answers from ``self.nics``: {name: (bytes_recv, bytes_sent)}."""

    def __init__(self, nics: dict[str, tuple[int, int]]) -> None:
        super().__init__()
        self.nics = dict(nics)

    def net_io_counters(self, pernic: bool = False) -> Any:
        per = {name: NetCounters(bytes_sent=sent, bytes_recv=recv) for name, (recv, sent) in self.nics.items()}
        if pernic:
            return per
        return NetCounters(sum(c.bytes_sent for c in per.values()), sum(c.bytes_recv for c in per.values()))


def network_source(fake: NicPsutil, per_nic: bool = True) -> tuple[NetworkSource, float]:
    """A source whose reference point sits at a time this test controls (returned)."""
    source = NetworkSource(fake, per_nic=per_nic)
    t0 = 1_000.0
    source._rates._previous_s = t0 - 1.0
    source.read(t0)  # the same counters one second later: the reference is now at t0
    return source, t0


def test_c03a_32bit_wrap_is_11_bytes():
    fake = NicPsutil({"eth0": (4294967290, 1000)})
    source, t0 = network_source(fake)
    fake.nics["eth0"] = (5, 1000)
    out = source.read(t0 + 1.0)
    assert out["net_recv_bytes_per_s"] == 11.0
    assert out["net_sent_bytes_per_s"] == 0.0
    assert out["nics"] == (NicIO("eth0", 11.0, 0.0),)
    fake.nics["eth0"] = (27, 1000)
    assert source.read(t0 + 3.0)["net_recv_bytes_per_s"] == 11.0  # 22 bytes over 2 s


def test_c03b_vanished_veth_does_not_make_the_total_drop():
    fake = NicPsutil({"eth0": (1_000_000, 8_000_000_000), "veth1234": (0, 1_000_000_000)})
    source, t0 = network_source(fake)
    assert psutil.net_io_counters is not fake.net_io_counters
    assert fake.net_io_counters().bytes_sent == 9_000_000_000
    del fake.nics["veth1234"]
    fake.nics["eth0"] = (1_002_000, 8_000_000_500)
    assert fake.net_io_counters().bytes_sent == 8_000_000_500  # the aggregate dropped by ~1 GB
    out = source.read(t0 + 2.0)
    assert out["net_sent_bytes_per_s"] == 250.0
    assert out["net_recv_bytes_per_s"] == 1000.0
    assert out["nics"] == (NicIO("eth0", 1000.0, 250.0),)


def test_c03c_new_nic_contributes_nothing_until_its_second_reading():
    fake = NicPsutil({"eth0": (1000, 1000)})
    source, t0 = network_source(fake)
    fake.nics["eth0"] = (2000, 1000)
    fake.nics["tun0"] = (7_000_000_000, 5_000_000_000)  # a VPN with a large history appears
    out = source.read(t0 + 1.0)
    assert (out["net_recv_bytes_per_s"], out["net_sent_bytes_per_s"]) == (1000.0, 0.0)
    assert [n.nic for n in out["nics"]] == ["eth0"]
    fake.nics["eth0"] = (3000, 1000)
    fake.nics["tun0"] = (7_000_000_400, 5_000_000_100)
    out = source.read(t0 + 2.0)
    assert (out["net_recv_bytes_per_s"], out["net_sent_bytes_per_s"]) == (1400.0, 100.0)
    assert out["nics"] == (NicIO("eth0", 1000.0, 0.0), NicIO("tun0", 400.0, 100.0))


def test_loopback_traffic_is_left_out_of_the_totals_but_listed_per_nic():
    # Local connections show on lo as equal bytes sent and received: not the host's network.
    class Flagged(NicPsutil):
        def net_if_stats(self) -> dict[str, Any]:
            return {"eth0": types.SimpleNamespace(flags="up,broadcast,running"),
                    "lo": types.SimpleNamespace(flags="up,loopback,running")}

    fake = Flagged({"eth0": (1000, 1000), "lo": (5000, 5000)})
    source, t0 = network_source(fake)
    fake.nics.update(eth0=(1300, 1100), lo=(45_000, 45_000))
    out = source.read(t0 + 1.0)
    assert (out["net_recv_bytes_per_s"], out["net_sent_bytes_per_s"]) == (300.0, 100.0)
    assert out["nics"] == (NicIO("eth0", 300.0, 100.0), NicIO("lo", 40_000.0, 40_000.0))


def test_loopback_is_known_by_name_where_psutil_reports_no_flags():
    class Unflagged(NicPsutil):
        def net_if_stats(self) -> dict[str, Any]:  # as psutil on Windows: every NIC's flags are ""
            return {name: types.SimpleNamespace(flags="") for name in self.nics}

    fake = Unflagged({"en0": (0, 0), "lo0": (0, 0), "Loopback Pseudo-Interface 1": (0, 0), "lo": (0, 0),
                      "lowpan0": (0, 0)})
    source, t0 = network_source(fake)
    fake.nics.update({"en0": (10, 20), "lo0": (900, 900), "Loopback Pseudo-Interface 1": (900, 900),
                      "lo": (900, 900), "lowpan0": (5, 0)})
    out = source.read(t0 + 1.0)
    assert (out["net_recv_bytes_per_s"], out["net_sent_bytes_per_s"]) == (15.0, 20.0)


def test_what_the_source_learns_of_nics_that_came_and_went_stays_bounded():
    fake = NicPsutil({"eth0": (0, 0)})
    source, t0 = network_source(fake)
    for i in range(500):  # a container host: a veth per container, each gone a moment later
        fake.nics = {"eth0": (i, i), f"veth{i}": (0, 0)}
        source.read(t0 + 1.0 + i)
    assert len(source._loopback) <= 2 * 2 + 32 + 1 and source._loopback["eth0"] is False


def test_c03_reset_is_none_never_zero_or_negative(caplog):
    fake = NicPsutil({"eth0": (1_000_000, 500)})
    source, t0 = network_source(fake)
    fake.nics["eth0"] = (10, 700)  # recv went back (driver reset, not a 32-bit wrap); sent grew
    with caplog.at_level(logging.INFO, logger="fleet_hwmon.sampling.counters"):
        out = source.read(t0 + 1.0)
    assert out["net_recv_bytes_per_s"] is None
    assert out["net_sent_bytes_per_s"] == 200.0
    assert out["nics"] == (NicIO("eth0", None, 200.0),)
    fake.nics["eth0"] = (110, 700)
    assert source.read(t0 + 2.0)["net_recv_bytes_per_s"] == 100.0  # the reset value is the new reference
    fake.nics["eth0"] = (50, 900)  # another reset of the same NIC: no second log line
    with caplog.at_level(logging.INFO, logger="fleet_hwmon.sampling.counters"):
        assert source.read(t0 + 3.0)["net_recv_bytes_per_s"] is None
    assert len([r for r in caplog.records if "counters of eth0 went back" in r.getMessage()]) == 1


@pytest.mark.parametrize(("previous", "current", "delta"), [
    (4294967290, 5, 11),
    (2**31, 0, 2**31),
    (10, 10, 0),
    (10, 25, 15),
    (1000, 5, None),  # a reset, not a wrap
    (2**40, 2**39, None),  # a 64-bit counter going back: a reset
])
def test_counter_delta(previous, current, delta):
    assert counter_delta(previous, current) == delta


def test_c23_rate_over_a_zero_interval_is_unknown():
    rates = CounterRates()
    assert rates.update({"eth0": (100, 100)}, 5.0) == {}
    assert rates.update({"eth0": (200, 300)}, 5.0) == {}  # elapsed == 0: no rate, no division
    assert rates.update({"eth0": (300, 300)}, 6.0) == {"eth0": (200.0, 200.0)}  # older reference kept
    assert summed({}, 2) == (None, None)
    assert summed({"a": (None, 1.0), "b": (None, 2.0)}, 2) == (None, 3.0)


def test_c23_zero_interval_through_the_network_source_is_null():
    fake = NicPsutil({"eth0": (1000, 1000)})
    source, t0 = network_source(fake)
    fake.nics["eth0"] = (5000, 5000)
    out = source.read(t0)  # the same monotonic time as the reference
    assert (out["net_recv_bytes_per_s"], out["net_sent_bytes_per_s"]) == (None, None)


# -- C04: unreadable mounts ------------------------------------------------------------------
def c04_psutil() -> HostPsutil:
    def disk_partitions(all: bool = False) -> list[Partition]:
        return [Partition("/dev/sda1", "/", "ext4", "rw"),
                Partition("server:/export", "/mnt/gone", "nfs4", "rw"),
                Partition("Z:\\", "Z:\\", "", "cdrom")]

    def disk_usage(path: str) -> Any:
        if path == "/mnt/gone":
            raise FileNotFoundError(2, "No such file or directory", path)
        if path == "Z:\\":
            raise PermissionError(13, "The device is not ready", path)
        return psutil.disk_usage(path)

    return HostPsutil(disk_partitions=disk_partitions, disk_usage=disk_usage)


def test_c04_unreadable_mounts_are_skipped_and_logged_once(tmp_path, caplog):
    sources = build_host_sources(MonitoringLevel.DETAILED, psutil=c04_psutil(), cgroup=no_cgroup(tmp_path))
    sampler = Sampler("worker-c04", sources)
    root_total = psutil.disk_usage("/").total
    with caplog.at_level(logging.INFO, logger="fleet_hwmon.sampling.sampler"):
        samples = [sampler.sample() for _ in range(5)]
    for s in samples:
        assert [m.mountpoint for m in s.mounts] == ["/"]
        assert s.mounts[0].total_bytes == root_total
        assert 0 <= s.mounts[0].usage_percent <= 100
        assert s.disk_usage_percent is not None and s.memory_total_bytes is not None
    assert sampler.errors["disk"] == 0
    skipped = [r.getMessage() for r in caplog.records if "unreadable mount" in r.getMessage()]
    assert len(skipped) == 2, skipped  # one line per bad mount, not one per tick
    assert any("/mnt/gone" in m and "No such file" in m for m in skipped)
    assert any("Z:\\" in m and "not ready" in m for m in skipped)


def test_c04_disk_source_reports_each_failure_to_its_hook():
    seen: list[tuple[str, type]] = []
    source = DiskSource(c04_psutil(), mounts=True, on_mount_error=lambda m, e: seen.append((m, type(e))))
    out = source.read(source._rates._previous_s + 1.0)
    assert [m.mountpoint for m in out["mounts"]] == ["/"]
    assert seen == [("/mnt/gone", FileNotFoundError), ("Z:\\", PermissionError)]


# -- C07: temperatures -----------------------------------------------------------------------
def test_c07_sensors_function_missing(monkeypatch, tmp_path):
    monkeypatch.delattr(psutil, "sensors_temperatures", raising=False)
    assert TemperatureSource(psutil).available is False
    sampler = Sampler("worker-c07", build_host_sources(MonitoringLevel.DETAILED, cgroup=no_cgroup(tmp_path)))
    samples = [sampler.sample() for _ in range(2)]
    for s in samples:
        assert s.cpu_temperature_celsius is None
        assert s.memory_total_bytes == psutil.virtual_memory().total
        assert s.disk_usage_percent is not None and s.load_average_1m is not None
    assert all(count == 0 for count in sampler.errors.values())


def test_c07_sensors_empty_and_present():
    empty = TemperatureSource(HostPsutil(sensors_temperatures=lambda: {}))
    assert empty.available is False and empty.read(0.0) == {"cpu_temperature_celsius": None}
    readings = {"coretemp": [Temperature("Package id 0", 61.0, 80.0, 100.0), Temperature("Core 0", 58.0, 80.0, 100.0)],
                "nvme": [Temperature("Composite", 70.0, 80.0, 90.0)]}
    present = TemperatureSource(HostPsutil(sensors_temperatures=lambda: readings))
    assert present.available is True
    assert present.read(0.0) == {"cpu_temperature_celsius": 61.0}  # the hottest CPU sensor, not the disk


def test_c07_sensors_raising_later_is_null():
    calls = {"n": 0}

    def sensors() -> dict:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("hwmon went away")
        return {"k10temp": [Temperature("Tctl", 55.0, None, None)]}

    source = TemperatureSource(HostPsutil(sensors_temperatures=sensors))
    assert source.available and source.read(0.0) == {"cpu_temperature_celsius": None}


# -- C08: concurrency and a failing source ---------------------------------------------------
class Broken:
    name = "broken"

    def read(self, now_s: float) -> dict[str, Any]:
        raise RuntimeError("sensor bus error")


def test_c08_sample_from_many_threads_and_a_failing_source(tmp_path, caplog):
    sources = build_host_sources(MonitoringLevel.DETAILED, cgroup=no_cgroup(tmp_path)) + [Broken()]
    sampler = Sampler("worker-c08", sources)
    threads_n, per_thread = 8, 10
    barrier = threading.Barrier(threads_n)
    results: list[ResourceUtilization] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                s = sampler.sample(("t-1",))
                with lock:
                    results.append(s)
        except BaseException as err:  # collected and asserted on the main thread
            errors.append(err)

    with caplog.at_level(logging.WARNING, logger="fleet_hwmon.sampling.sampler"):
        threads = [threading.Thread(target=work) for _ in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(results) == threads_n * per_thread
    assert sampler.errors["broken"] == threads_n * per_thread
    assert all(count == 0 for name, count in sampler.errors.items() if name != "broken")
    total = psutil.virtual_memory().total
    for s in results:
        assert s.memory_total_bytes == total and s.task_ids == ("t-1",)
        assert s.disk_usage_percent is not None and s.load_average_1m is not None
        assert s.cpu_percent is None or 0.0 <= s.cpu_percent <= 100.0
    assert len({s.timestamp for s in results}) == len(results)  # serialised: one sample at a time
    broken_logs = [r for r in caplog.records if "'broken' failed" in r.getMessage()]
    assert len(broken_logs) == 1


def test_a_raising_source_loses_only_its_own_fields():
    class Memoryish:
        name = "memoryish"

        def read(self, now_s: float) -> dict[str, Any]:
            return {"memory_percent": 42.0, "memory_total_bytes": 1024}

    sampler = Sampler("w", [Broken(), Memoryish()], clock=lambda: 1.0)
    s = sampler.sample()
    assert (s.memory_percent, s.memory_total_bytes, s.cpu_percent) == (42.0, 1024, None)


def test_levels_choose_the_sources(tmp_path):
    cgroup = no_cgroup(tmp_path)
    names = {level: [s.name for s in build_host_sources(level, cgroup=cgroup)] for level in MonitoringLevel}
    assert names[MonitoringLevel.BASIC] == ["cpu", "memory"]
    assert names[MonitoringLevel.STANDARD] == ["cpu", "load", "memory", "disk", "network"]
    assert names[MonitoringLevel.DETAILED] == ["cpu", "load", "memory", "disk", "network", "temperature"]
    basic = Sampler("w", build_host_sources(MonitoringLevel.BASIC, cgroup=cgroup)).sample()
    assert basic.load_average_1m is None and basic.swap_used_bytes is None and basic.disk_usage_percent is None
    assert basic.memory_total_bytes == psutil.virtual_memory().total


# -- the record's dict form ------------------------------------------------------------------
def full_sample() -> ResourceUtilization:
    gib = 1024**3
    return ResourceUtilization(
        worker_id="worker-rt", timestamp=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone.utc),
        cpu_percent=37.5, per_cpu_percent=(50.0, None, 25.0), load_average_1m=1.5, load_average_5m=1.25,
        load_average_15m=1.0, cpu_count_effective=2.0, cpu_frequency_mhz=2400.0, cpu_temperature_celsius=None,
        memory_used_bytes=3 * gib, memory_available_bytes=5 * gib, memory_total_bytes=8 * gib,
        memory_percent=37.5, swap_used_bytes=0, swap_percent=None, cgroup_cpu_quota_cores=2.0,
        cgroup_memory_limit_bytes=8 * gib, disk_usage_percent=61.2, disk_read_bytes_per_s=1024.0,
        disk_write_bytes_per_s=None, net_sent_bytes_per_s=11.0, net_recv_bytes_per_s=0.0,
        gpus=(
            GpuUtilization(0, "GPU-3060", "NVIDIA GeForce RTX 3060", 12.0, gib, 12 * gib, 41.0, None, None,
                           1500.0, 7000.0, "00000000:01:00.0", False),
            GpuUtilization(1, "GPU-a100", "NVIDIA A100-SXM4-40GB", None, 12 * gib, 40 * gib,
                           mig_enabled=True, unavailable_reason="MIG"),
            GpuUtilization(1, "MIG-a100-a", "NVIDIA A100-SXM4-40GB MIG 3g.20gb", None, 8 * gib, 20 * gib,
                           mig_enabled=True, parent_uuid="GPU-a100", unavailable_reason="MIG"),
        ),
        disks=(DiskIO("sda", 1024.0, None),), nics=(NicIO("eth0", 0.0, 11.0),),
        mounts=(MountUsage("/", 61.2, 10 * gib, 30 * gib),), task_ids=("t-1", "t-2"),
        simulated_fields=("gpus",))


def test_to_dict_from_dict_round_trip_is_exact():
    original = full_sample()
    data = original.to_dict()
    assert ResourceUtilization.from_dict(data) == original
    strict = json.loads(json.dumps(data, allow_nan=False))
    restored = ResourceUtilization.from_dict(strict)
    assert restored == original
    assert restored.gpus[2].parent_uuid == "GPU-a100" and restored.gpus[2].utilization_percent is None
    assert restored.gpu_utilization_percent == 12.0  # MIG's unknown is not taken as 0
    assert restored.timestamp.tzinfo is not None and restored.timestamp == original.timestamp


def test_from_dict_of_a_basic_sample_leaves_the_rest_unknown():
    partial = {"worker_id": "remote-1", "timestamp": "2026-03-01T12:00:00+02:00",
               "cpu_percent": 12.5, "memory_percent": 40, "memory_total_bytes": 8589934592.0}
    s = ResourceUtilization.from_dict(partial)
    assert s.timestamp == datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
    assert s.timestamp.utcoffset().total_seconds() == 0
    assert (s.cpu_percent, s.memory_percent, s.memory_total_bytes) == (12.5, 40.0, 8589934592)
    assert type(s.memory_percent) is float and type(s.memory_total_bytes) is int
    known = {"worker_id", "timestamp", "cpu_percent", "memory_percent", "memory_total_bytes"}
    for name, value in s.to_dict().items():
        if name not in known:
            assert value in (None, []), name
    assert s.resource_percent("gpu") is None and s.resource_percent("disk") is None
    naive = ResourceUtilization.from_dict({"worker_id": "w", "timestamp": "2026-03-01T12:00:00"})
    assert naive.timestamp == datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    epoch = ResourceUtilization.from_dict({"worker_id": "w", "timestamp": 1_700_000_000})
    assert epoch.timestamp == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)


@pytest.mark.parametrize("bad", [{}, {"worker_id": "w"}, {"timestamp": 0}, {"worker_id": "", "timestamp": 0},
                                 {"worker_id": "w", "timestamp": [1]}, ["worker_id"]])
def test_from_dict_rejects_what_is_not_a_sample(bad):
    with pytest.raises(ValueError):
        ResourceUtilization.from_dict(bad)


def test_non_finite_values_become_none_on_construction():
    s = ResourceUtilization.from_dict({"worker_id": "w", "timestamp": 0, "cpu_percent": float("nan"),
                                       "memory_used_bytes": float("inf"), "per_cpu_percent": [1.0, float("nan")],
                                       "gpus": [{"index": 0, "uuid": "GPU-x", "name": "x",
                                                 "power_watts": float("-inf"), "utilization_percent": None}]})
    assert s.cpu_percent is None and s.memory_used_bytes is None
    assert s.per_cpu_percent == (1.0, None)
    assert s.gpus[0].power_watts is None and s.gpus[0].utilization_percent is None
    assert finite(True) is None and finite("2.5") == 2.5 and math.isfinite(finite(1e308))


# -- a CPU time field that goes backwards ---------------------------------------------------------
def test_a_cpu_field_going_backwards_counts_zero_and_the_percent_comes_from_the_rest(caplog):
    """Steal time stepping back (some kernels) costs only its own delta: 1 s busy of 2 s is 50 %."""
    readings = iter([
        CpuTimes(100.0, 0, 0, 500.0, 0, 0, 0, 40.0, 0, 0),
        CpuTimes(101.0, 0, 0, 501.0, 0, 0, 0, 10.0, 0, 0),  # steal 40 -> 10
        CpuTimes(102.0, 0, 0, 502.0, 0, 0, 0, 5.0, 0, 0),  # and again
    ])

    class Stepping(HostPsutil):
        def cpu_times(self, percpu: bool = False) -> Any:
            return next(readings)

    source = CpuSource(Stepping())
    with caplog.at_level(logging.WARNING, logger="fleet_hwmon.sampling.host"):
        first = source.read(source._previous_s + 1.0)["cpu_percent"]
        second = source.read(source._previous_s + 1.0)["cpu_percent"]
    assert (first, second) == (50.0, 50.0)
    backwards = [r for r in caplog.records if "went backwards" in r.getMessage()]
    assert len(backwards) == 1 and "'steal'" in backwards[0].getMessage()
