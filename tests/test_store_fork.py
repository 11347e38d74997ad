"""A forked child that inherits a monitor or a store never writes through its parent's writer:
it gets a clear error, or opens its own store on its own path; it never hangs and never loses
rows silently. Real ``os.fork`` and ``multiprocessing`` with the fork start method."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time

import duckdb
import pytest

from fleet_hwmon.store import StoreError, StoreLockedError, open_store
from hardware_utilization_monitor import HardwareUtilizationMonitor

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def child_tries(monitor: HardwareUtilizationMonitor, own_path: str) -> dict:
    """What a child can and cannot do with an inherited monitor."""
    out: dict = {}
    try:
        monitor.sample_now()
        out["inherited_write"] = "written"
    except StoreError as err:
        out["inherited_write"] = str(err)
    try:
        open_store(monitor.db_path)
        out["reopen"] = "opened"
    except StoreLockedError as err:
        out["reopen"] = str(err)
    with HardwareUtilizationMonitor("child", own_path, interval_seconds=0.02) as own:
        time.sleep(0.2)
        own.sample_now()
    with duckdb.connect(own_path) as con:
        out["own_rows"] = con.execute("SELECT count(*) FROM resource_utilization").fetchone()[0]
    return out


def wait_or_kill(pid: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"forked child {pid} hung for {timeout_s} s")


def forked_child_tries(monitor: HardwareUtilizationMonitor, own_path: str) -> dict:
    """:func:`child_tries` in an ``os.fork()`` child; its results come back through a pipe. The
    child must exit 0 within 60 s (a hang is killed and fails the test)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(child_tries(monitor, own_path)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    assert wait_or_kill(pid, 60) == 0
    with os.fdopen(read_end) as pipe:
        return json.loads(pipe.read())


def test_os_fork_child_gets_clear_errors_and_its_own_store(tmp_path):
    parent_path = str(tmp_path / "parent.duckdb")
    with HardwareUtilizationMonitor("parent", parent_path, interval_seconds=0.005) as monitor:
        results = []
        for n in range(5):  # forks land while the sampler and the writer are busy
            time.sleep(0.05)
            results.append(forked_child_tries(monitor, str(tmp_path / f"child-{n}.duckdb")))
        assert monitor.is_running
    parent_samples = monitor.status()["samples"]
    for result in results:
        assert f"was opened by process {os.getpid()}" in result["inherited_write"]
        assert "cannot write through its parent's writer" in result["inherited_write"]
        assert f"is locked by process {os.getpid()}" in result["reopen"]
        assert result["own_rows"] >= 2
    with duckdb.connect(parent_path) as con:  # the parent lost nothing to its children
        assert con.execute("SELECT count(*) FROM resource_utilization").fetchone()[0] == parent_samples


def test_locks_the_sampling_thread_held_at_the_fork_do_not_hang_the_child(tmp_path):
    # Fork while another thread holds every lock a tick takes (what a loaded host makes likely,
    # the sampling thread being descheduled inside them): the child's own sample must not wait.
    with HardwareUtilizationMonitor("parent", str(tmp_path / "parent.duckdb"), interval_seconds=3600,
                                    enable_gpu=False) as monitor:
        cgroups = {id(s._cgroup): s._cgroup for s in monitor._sampler.sources if getattr(s, "_cgroup", None)}
        locks = [monitor._clock_steps._lock, monitor._log._lock, monitor._sampler._log._lock,
                 *(c._lock for c in cgroups.values())]
        assert cgroups  # the cgroup reader's lock is among them
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            for lock in locks:
                lock.acquire()
            held.set()
            release.wait()
            for lock in locks:
                lock.release()

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert held.wait(30)
            result = forked_child_tries(monitor, str(tmp_path / "child.duckdb"))
        finally:
            release.set()
            holder.join()
    assert "cannot write through its parent's writer" in result["inherited_write"]
    assert result["own_rows"] >= 2


def _multiprocessing_child(monitor: HardwareUtilizationMonitor, own_path: str, queue) -> None:
    queue.put(child_tries(monitor, own_path))


def test_multiprocessing_fork_child_never_writes_through_the_parent(tmp_path):
    context = multiprocessing.get_context("fork")
    with HardwareUtilizationMonitor("parent", str(tmp_path / "parent.duckdb"), interval_seconds=0.01) as monitor:
        queue = context.Queue()
        process = context.Process(target=_multiprocessing_child,
                                  args=(monitor, str(tmp_path / "child.duckdb"), queue))
        process.start()
        result = queue.get(timeout=60)
        process.join(60)
        assert process.exitcode == 0
    assert "cannot write through its parent's writer" in result["inherited_write"]
    assert "locked by process" in result["reopen"] and result["own_rows"] >= 2
