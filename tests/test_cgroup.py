"""Container limits from fake cgroup trees (C05, C06) and from this machine."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from fleet_hwmon.sampling import cgroup
from fleet_hwmon.sampling.cgroup import (
    CgroupLimits,
    CgroupReader,
    effective_cpu_count,
    effective_memory,
    parse_cpu_max,
)

GIB = 1024**3
V1_NO_LIMIT = "9223372036854771712"


def write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + "\n")


def v2_reader(tmp_path: Path, files: dict[str, str], membership: str = "0::/\n") -> CgroupReader:
    root = tmp_path / "cgroup"
    write_tree(root, {"cgroup.controllers": "cpu memory", **files})
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(membership)
    return CgroupReader(root=root, proc_self_cgroup=proc)


def v1_reader(tmp_path: Path, files: dict[str, str], membership: str | None = None) -> CgroupReader:
    root = tmp_path / "cgroup"
    write_tree(root, files)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(membership or "4:memory:/\n3:cpu,cpuacct:/\n0::/\n")
    return CgroupReader(root=root, proc_self_cgroup=proc)


# -- C05: memory ------------------------------------------------------------------------------
def test_c05_v2_limit_gives_cgroup_figures(tmp_path):
    limits = v2_reader(tmp_path, {"memory.max": "2147483648", "memory.current": "1610612736"}).read()
    assert limits == CgroupLimits(version=2, cpu_quota_cores=None, memory_limit_bytes=2 * GIB,
                                  memory_usage_bytes=1610612736)
    total, used, percent, source = effective_memory(128 * GIB, 100 * GIB, limits)
    assert (total, used, percent, source) == (2 * GIB, 1610612736, 75.0, "cgroup")


def test_c05_v1_sentinel_means_no_limit(tmp_path):
    limits = v1_reader(tmp_path, {"memory/memory.limit_in_bytes": V1_NO_LIMIT,
                                  "memory/memory.usage_in_bytes": "1610612736"}).read()
    assert limits.version == 1
    assert limits.memory_limit_bytes is None
    total, used, percent, source = effective_memory(128 * GIB, 96 * GIB, limits)
    assert (total, used, percent, source) == (128 * GIB, 32 * GIB, 25.0, "host")


def test_c05_v2_max_means_no_limit(tmp_path):
    limits = v2_reader(tmp_path, {"memory.max": "max", "memory.current": "1610612736"}).read()
    assert limits.memory_limit_bytes is None
    assert effective_memory(128 * GIB, 96 * GIB, limits)[3] == "host"


def test_limit_at_or_above_host_total_uses_host(tmp_path):
    limits = CgroupLimits(version=2, memory_limit_bytes=256 * GIB, memory_usage_bytes=GIB)
    assert effective_memory(128 * GIB, 96 * GIB, limits) == (128 * GIB, 32 * GIB, 25.0, "host")


def test_v1_limit_and_usage(tmp_path):
    limits = v1_reader(tmp_path, {"memory/memory.limit_in_bytes": str(4 * GIB),
                                  "memory/memory.usage_in_bytes": str(GIB),
                                  "cpu,cpuacct/cpu.cfs_quota_us": "150000",
                                  "cpu,cpuacct/cpu.cfs_period_us": "100000"}).read()
    assert limits == CgroupLimits(version=1, cpu_quota_cores=1.5, memory_limit_bytes=4 * GIB,
                                  memory_usage_bytes=GIB)



def test_memory_read_leaves_the_quota_files_alone(tmp_path, monkeypatch):
    # the memory source reads every sample; the quota is the CPU source's, re-read every few seconds
    v1 = v1_reader(tmp_path / "v1", {"memory/memory.limit_in_bytes": str(4 * GIB),
                                     "memory/memory.usage_in_bytes": str(GIB),
                                     "memory/memory.stat": "total_inactive_file 1024",
                                     "cpu,cpuacct/cpu.cfs_quota_us": "150000",
                                     "cpu,cpuacct/cpu.cfs_period_us": "100000"})
    v2 = v2_reader(tmp_path / "v2", {"memory.max": str(2 * GIB), "memory.current": str(GIB),
                                     "memory.stat": "inactive_file 2048", "cpu.max": "200000 100000"})
    for reader, version, quota, inactive in ((v1, 1, 1.5, 1024), (v2, 2, 2.0, 2048)):
        full = reader.read()
        assert (full.cpu_quota_cores, full.memory_inactive_file_bytes) == (quota, inactive)
        assert reader.read_memory() == CgroupLimits(
            version=version, cpu_quota_cores=None, memory_limit_bytes=full.memory_limit_bytes,
            memory_usage_bytes=GIB, memory_inactive_file_bytes=inactive)
    opened: list[str] = []
    read_text = cgroup._read_text
    monkeypatch.setattr(cgroup, "_read_text", lambda path: opened.append(os.path.basename(path)) or read_text(path))
    v1.read_memory()
    v2.read_memory()
    assert opened and not [name for name in opened if name.startswith("cpu")]

# -- C06: CPUs --------------------------------------------------------------------------------
def test_c06a_quota_below_affinity(tmp_path):
    limits = v2_reader(tmp_path, {"cpu.max": "200000 100000"}).read()
    assert limits.cpu_quota_cores == 2.0
    assert effective_cpu_count(limits.cpu_quota_cores, 4, 64) == 2.0


def test_c06b_no_quota_uses_affinity(tmp_path):
    limits = v2_reader(tmp_path, {"cpu.max": "max 100000"}).read()
    assert limits.cpu_quota_cores is None
    assert effective_cpu_count(limits.cpu_quota_cores, 4, 64) == 4.0


def test_c06c_unknown_figures_do_not_crash():
    assert effective_cpu_count(None, None, 4) == 4.0
    assert effective_cpu_count(None, None, None) is None


def test_v1_no_quota(tmp_path):
    limits = v1_reader(tmp_path, {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}).read()
    assert limits.cpu_quota_cores is None


@pytest.mark.parametrize("text, cores", [("200000 100000", 2.0), ("max 100000", None), ("50000", 0.5),
                                         ("", None), ("garbage", None), (None, None)])
def test_parse_cpu_max(text, cores):
    assert parse_cpu_max(text) == cores


# -- path resolution --------------------------------------------------------------------------
def test_v2_own_cgroup_and_ancestor_limits(tmp_path):
    reader = v2_reader(tmp_path, {
        "system.slice/memory.max": str(8 * GIB),
        "system.slice/cpu.max": "400000 100000",
        "system.slice/worker.service/memory.max": str(3 * GIB),
        "system.slice/worker.service/memory.current": str(GIB),
        "system.slice/worker.service/cpu.max": "max 100000",
    }, membership="0::/system.slice/worker.service\n")
    assert reader.read() == CgroupLimits(version=2, cpu_quota_cores=4.0, memory_limit_bytes=3 * GIB,
                                         memory_usage_bytes=GIB)


def test_v1_host_path_not_visible_falls_back_to_root(tmp_path):
    reader = v1_reader(tmp_path, {"memory/memory.limit_in_bytes": str(2 * GIB),
                                  "memory/memory.usage_in_bytes": str(GIB)},
                       membership="4:memory:/docker/abc123\n")
    assert reader.read().memory_limit_bytes == 2 * GIB


def test_limits_are_reread_but_paths_are_cached(tmp_path):
    reader = v2_reader(tmp_path, {"memory.max": str(2 * GIB), "memory.current": "1"})
    assert reader.read().memory_limit_bytes == 2 * GIB
    (tmp_path / "cgroup" / "memory.max").write_text(str(4 * GIB))  # `docker update --memory 4g`
    assert reader.read().memory_limit_bytes == 4 * GIB


def test_missing_everything_is_unknown_not_an_error(tmp_path):
    reader = CgroupReader(root=tmp_path / "nope", proc_self_cgroup=tmp_path / "nope2")
    assert reader.read() == CgroupLimits()
    assert reader.version is None
    # a v2 mount with no limit files at all
    assert v2_reader(tmp_path, {}).read() == CgroupLimits(version=2)


def test_effective_memory_with_unknown_host():
    assert effective_memory(None, None, CgroupLimits()) == (None, None, None, "host")


# -- this machine -----------------------------------------------------------------------------
def test_this_machine():
    limits = CgroupReader().read()
    assert limits.version in (None, 1, 2)
    host = psutil.virtual_memory()
    total, _used, percent, source = effective_memory(host.total, host.available, limits)
    assert source in ("cgroup", "host")
    assert total is not None and total <= host.total
    assert percent is None or 0.0 <= percent <= 100.0
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = effective_cpu_count(limits.cpu_quota_cores, affinity, os.cpu_count())
    assert cores is not None and 0 < cores <= os.cpu_count()


# -- page cache: the working set, not the raw usage ---------------------------------------------
# A worker holding 0.7 GiB of a 4 GiB limit after reading 3.2 GiB of files: raw usage 97.5 %,
# working set 17.5 %.
LIMIT_4G, USAGE_39G, INACTIVE_32G = 4 * GIB, int(3.9 * GIB), int(3.2 * GIB)


def page_cache_reader(tmp_path: Path, version: int) -> CgroupReader:
    if version == 2:
        return v2_reader(tmp_path, {"memory.max": str(LIMIT_4G), "memory.current": str(USAGE_39G),
                                    "memory.stat": f"anon 751619276\nfile 3435973836\n"
                                                   f"active_file 0\ninactive_file {INACTIVE_32G}"})
    return v1_reader(tmp_path, {"memory/memory.limit_in_bytes": str(LIMIT_4G),
                                "memory/memory.usage_in_bytes": str(USAGE_39G),
                                "memory/memory.stat": f"cache 3435973836\ninactive_file 1\n"
                                                      f"total_cache 3435973836\ntotal_inactive_file {INACTIVE_32G}"})


@pytest.mark.parametrize("version", [1, 2])
def test_page_cache_never_makes_a_container_look_full(tmp_path, version):
    from types import SimpleNamespace

    from fleet_hwmon.alerts import AlertTracker
    from fleet_hwmon.sample import ResourceUtilization, utc_now
    from fleet_hwmon.sampling.host import MemorySource

    reader = page_cache_reader(tmp_path, version)
    limits = reader.read()
    assert (limits.memory_usage_bytes, limits.memory_inactive_file_bytes) == (USAGE_39G, INACTIVE_32G)
    assert limits.memory_working_set_bytes == USAGE_39G - INACTIVE_32G
    host = SimpleNamespace(virtual_memory=lambda: SimpleNamespace(total=128 * GIB, available=100 * GIB))
    fields = MemorySource(host, cgroup=reader, swap=False).read(0.0)
    assert fields["memory_percent"] == pytest.approx(17.5)
    assert fields["memory_used_bytes"] == USAGE_39G - INACTIVE_32G
    assert fields["cgroup_memory_usage_bytes"] == USAGE_39G  # the raw usage, kept in its own field
    assert 100.0 * fields["cgroup_memory_usage_bytes"] / LIMIT_4G == pytest.approx(97.5)
    sample = ResourceUtilization(worker_id="w", timestamp=utc_now(), **fields)
    assert AlertTracker().evaluate(sample) == []  # no critical alert from page cache


def test_working_set_is_the_usage_when_memory_stat_is_unreadable(tmp_path):
    limits = v2_reader(tmp_path, {"memory.max": str(LIMIT_4G), "memory.current": str(USAGE_39G)}).read()
    assert limits.memory_inactive_file_bytes is None
    assert limits.memory_working_set_bytes == USAGE_39G
    # more inactive pages than usage (the two files are read at different instants): never below 0
    from fleet_hwmon.sampling.cgroup import parse_memory_stat
    assert CgroupLimits(memory_usage_bytes=5, memory_inactive_file_bytes=9).memory_working_set_bytes == 0
    assert parse_memory_stat("inactive_file x\n", "inactive_file") is None
