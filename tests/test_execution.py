"""Running real tasks and measuring their process trees (fleet_hwmon.execution).

Real subprocesses and real psutil readings throughout; the fake psutil below is only for the
cases a real system cannot produce on demand (C08: a process vanishing or denied between
listing and reading; C01: exact first-interval arithmetic on a controlled clock).
"""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from typing import NamedTuple

import psutil
import pytest

from fleet_hwmon.execution import ProcessTreeSampler, TaskExecutionResult, TaskSpec, run_task
from fleet_hwmon.execution.workloads import cpu_burn, failing_task, io_write, memory_hog, sleep_task

MIB = 1024 * 1024
PY = sys.executable


def _alive(pid: int) -> bool:
    """Running and not a zombie (a zombie has exited; only its exit status is left)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _on_tmpfs(path) -> bool:
    mounts = [p for p in psutil.disk_partitions(all=True) if str(path).startswith(p.mountpoint)]
    return bool(mounts) and max(mounts, key=lambda p: len(p.mountpoint)).fstype == "tmpfs"


# -- real workloads -------------------------------------------------------------------------
def test_cpu_burn_measures_cpu_seconds_and_first_sample_is_unknown():
    samples = []
    result = run_task(cpu_burn(1.5), on_sample=samples.append)
    assert result.success and result.returncode == 0 and result.error is None
    assert 0.9 <= result.cpu_seconds <= 2.0
    # The busiest window is at least as busy as the run on average (the burner's share of a core
    # depends on what else the machine runs, so no fixed level).
    assert result.peak_cpu_percent >= 0.8 * 100 * result.cpu_seconds / result.duration_s
    assert 0 < result.mean_cpu_percent <= 100 * psutil.cpu_count() + 10
    assert samples[0].cpu_percent is None  # C01: no reference point yet, so not 0.0
    assert result.num_samples >= len(samples) >= 3
    assert result.duration_s >= 1.4


def test_two_process_cpu_burn_counts_the_child():
    samples = []
    result = run_task(cpu_burn(1.0, processes=2), on_sample=samples.append)
    assert result.success
    assert 1.6 <= result.cpu_seconds <= 2.8  # about twice one process's 1.0 s
    assert max(s.num_processes for s in samples) == 2


def test_memory_hog_peak_rss():
    result = run_task(memory_hog(200, 1.0))
    assert result.success
    assert result.peak_rss_bytes >= 200 * MIB
    assert result.peak_rss_bytes < 400 * MIB


def test_io_write_counts_written_bytes(tmp_path):
    if _on_tmpfs(tmp_path):
        pytest.skip("temporary folder is tmpfs: nothing reaches storage")
    result = run_task(io_write(50, directory=str(tmp_path)))
    assert result.success
    if hasattr(psutil.Process, "io_counters"):
        assert result.write_bytes >= 50 * MIB
    else:
        assert result.write_bytes is None
    assert list(tmp_path.iterdir()) == []  # the workload deleted its file


def test_sleep_task_uses_little_cpu():
    result = run_task(sleep_task(0.5), poll_interval_s=0.1)
    assert result.success
    assert 0.45 <= result.duration_s < 3.0
    assert result.cpu_seconds < 0.4
    assert result.num_samples >= 3


# -- timeouts, cancellation, cleanup --------------------------------------------------------
_TREE = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    escaped = "import os, time; os.setsid(); time.sleep(60)"
    kids = [subprocess.Popen([sys.executable, "-c", code]) for code in (stubborn, escaped)]
    time.sleep(60)
""")


@pytest.mark.skipif(os.name != "posix", reason="process groups and SIGTERM handling are POSIX")
def test_timeout_kills_the_whole_tree():
    seen: set[int] = set()
    result = run_task(TaskSpec(command=[PY, "-c", _TREE], timeout_s=1.5), poll_interval_s=0.1,
                      on_sample=lambda s: seen.update(s.pids), terminate_grace_s=0.5)
    assert result.timed_out and not result.success and not result.cancelled
    assert "timed out after 1.5 s" in result.error
    assert "SIGKILL" in result.error  # one child ignores SIGTERM
    assert 1.4 <= result.duration_s < 10
    assert len(seen) >= 3, "root, the SIGTERM-ignoring child and the child in its own session"
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in seen if _alive(pid)]


def test_stop_event_cancels():
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    result = run_task(sleep_task(30), poll_interval_s=0.1, stop_event=stop)
    assert result.cancelled and not result.timed_out and not result.success
    assert "cancelled" in result.error
    assert result.duration_s < 5


def test_processes_left_behind_are_stopped():
    code = ("import subprocess, sys\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print(p.pid, flush=True)\n")
    result = run_task(TaskSpec(command=[PY, "-c", code]))
    assert result.success
    child = int(result.stdout_tail.split()[0])
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


# -- failures -------------------------------------------------------------------------------
def test_failing_task_reports_its_message():
    result = run_task(failing_task("disk on fire", exit_code=3))
    assert not result.success and result.returncode == 3
    assert "disk on fire" in result.error and "code 3" in result.error
    assert "disk on fire" in result.stderr_tail


def test_missing_executable_is_a_result_not_an_exception():
    result = run_task(TaskSpec(command=["no-such-program-fleet-hwmon"]))
    assert isinstance(result, TaskExecutionResult)
    assert not result.success and result.returncode is None
    assert "no-such-program-fleet-hwmon" in result.error and "not found" in result.error
    assert result.cpu_seconds is None and result.num_samples == 0


def test_missing_working_directory(tmp_path):
    result = run_task(TaskSpec(command=[PY, "-c", "pass"], cwd=str(tmp_path / "gone")))
    assert not result.success and "does not exist" in result.error


def test_large_output_does_not_block_and_keeps_the_tail():
    code = "import sys\nsys.stdout.write('x' * 3_000_000 + 'END-OUT')\nsys.stderr.write('y' * 3_000_000 + 'END-ERR')"
    result = run_task(TaskSpec(command=[PY, "-c", code], timeout_s=30))
    assert result.success
    assert result.stdout_tail.endswith("END-OUT") and len(result.stdout_tail) <= 4096
    assert result.stderr_tail.endswith("END-ERR") and len(result.stderr_tail) <= 4096


# -- pytest node ids and Python callables ---------------------------------------------------
def test_pytest_node_id_success_and_failure(tmp_path):
    (tmp_path / "test_tiny.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n\n"
                                           "def test_bad():\n    assert 1 + 1 == 3\n")
    ok = run_task(TaskSpec(pytest_node_id="test_tiny.py::test_ok", cwd=str(tmp_path), timeout_s=60))
    assert ok.success and ok.returncode == 0, ok.error
    bad = run_task(TaskSpec(pytest_node_id="test_tiny.py::test_bad", cwd=str(tmp_path), timeout_s=60))
    assert not bad.success and bad.returncode == 1
    assert "tests failed" in bad.error and "test_bad" in bad.error


def test_python_callable_gets_args_and_kwargs(tmp_path):
    (tmp_path / "tinymod.py").write_text("def write(path, text, repeat=1):\n"
                                         "    open(path, 'w').write(text * repeat)\n")
    out = tmp_path / "out.txt"
    spec = TaskSpec(python_callable="tinymod:write", args=[str(out), "ab"], kwargs={"repeat": 3},
                    cwd=str(tmp_path))
    assert run_task(spec).success
    assert out.read_text() == "ababab"
    assert run_task(TaskSpec(python_callable="os:_exit", args=[4])).returncode == 4
    raised = run_task(TaskSpec(python_callable="json:loads", args=["{bad"]))
    assert not raised.success and "JSONDecodeError" in raised.error


# -- TaskSpec validation --------------------------------------------------------------------
@pytest.mark.parametrize(("data", "message"), [
    ({}, "exactly one of"),
    ({"command": ["true"], "pytest_node_id": "t.py::x"}, "got 2"),
    ({"command": 5}, "list of strings or a string"),
    ({"command": []}, "empty list"),
    ({"command": "   "}, "empty string"),
    ({"command": ["echo", 1]}, "every element"),
    ({"command": ["true"], "timeout_s": -1}, "positive"),
    ({"command": ["true"], "timeout_s": "10"}, "number of seconds"),
    ({"command": ["true"], "timeout_s": float("nan")}, "finite"),
    ({"python_callable": "no_colon"}, "package.module:function"),
    ({"python_callable": "m:f", "args": [object()]}, "JSON-serialisable"),
    ({"python_callable": "m:f", "kwargs": {1: 2}}, "string keys"),
    ({"command": ["true"], "args": [1]}, "only allowed with 'python_callable'"),
    ({"command": ["true"], "env": {"A": 1}}, "'env'"),
    ({"command": ["true"], "cwd": 3}, "'cwd'"),
    ({"command": ["true"], "timeout": 5}, "unknown task spec key"),
    (["command"], "must be a mapping"),
])
def test_malformed_spec_dicts_raise_value_error(data, message):
    with pytest.raises(ValueError, match=message):
        TaskSpec.from_dict(data)


def test_spec_round_trip():
    specs = [TaskSpec(command=["a", "b"], timeout_s=2, env={"X": "1"}, cwd="/tmp"),
             TaskSpec(command="echo hi"),
             TaskSpec(python_callable="pkg.mod:fn", args=[1, "x"], kwargs={"k": [1]}),
             TaskSpec(pytest_node_id="tests/test_a.py::test_b")]
    for spec in specs:
        assert TaskSpec.from_dict(spec.to_dict()) == spec
    assert specs[0].command == ("a", "b") and specs[0].timeout_s == 2.0


# -- the sampler against a fake psutil (C08, C01, exited children) ---------------------------
class _Times(NamedTuple):
    user: float
    system: float = 0.0
    children_user: float = 0.0
    children_system: float = 0.0


class _Mem(NamedTuple):
    rss: int


class _IO(NamedTuple):
    read_bytes: int
    write_bytes: int


class FakeProc:
    """A psutil.Process stand-in; ``fail`` maps a method name to the exception it raises."""

    def __init__(self, pid, cpu=0.0, rss=0, write=0, ppid=1, kids=(), fail=None, reaped_cpu=0.0):
        self.pid, self.cpu, self.rss, self.write, self._ppid = pid, cpu, rss, write, ppid
        self.kids, self.fail, self.reaped_cpu, self.running = list(kids), fail or {}, reaped_cpu, True

    def _maybe_fail(self, name):
        if name in self.fail:
            raise self.fail[name]

    def create_time(self):
        return 1000.0 + self.pid

    def cpu_times(self):
        self._maybe_fail("cpu_times")
        return _Times(self.cpu, children_user=self.reaped_cpu)

    def memory_info(self):
        self._maybe_fail("memory_info")
        return _Mem(self.rss)

    def io_counters(self):
        self._maybe_fail("io_counters")
        return _IO(0, self.write)

    def ppid(self):
        return self._ppid

    def cmdline(self):
        self._maybe_fail("cmdline")
        return ["fake"]

    def children(self, recursive=False):
        return [k for k in self.kids if k.running]

    def is_running(self):
        return self.running


class FakePsutil:
    NoSuchProcess = psutil.NoSuchProcess
    AccessDenied = psutil.AccessDenied
    ZombieProcess = psutil.ZombieProcess

    def __init__(self, *procs):
        self.procs = {p.pid: p for p in procs}

    def Process(self, pid):  # mirrors psutil's class name
        if pid not in self.procs:
            raise psutil.NoSuchProcess(pid)
        return self.procs[pid]


def test_c08_vanished_and_denied_processes_are_skipped_and_counted():
    gone = FakeProc(101, cpu=1.0, rss=50, ppid=100, fail={"memory_info": psutil.NoSuchProcess(101)})
    denied = FakeProc(102, cpu=1.0, rss=70, ppid=100,
                      fail={"cpu_times": psutil.AccessDenied(102), "cmdline": psutil.AccessDenied(102)})
    zombie = FakeProc(103, ppid=100, fail={"io_counters": psutil.ZombieProcess(103)})
    root = FakeProc(100, cpu=2.0, rss=1000, write=10, kids=[gone, denied])
    sampler = ProcessTreeSampler(100, psutil_module=FakePsutil(root, gone, denied))
    sample = sampler.sample()
    assert sample.pids == (100,) and sample.num_processes == 1
    assert sample.skipped_processes == 2
    assert sample.rss_bytes == 1000 and sample.write_bytes == 10
    root.kids.append(zombie)
    assert sampler.sample().skipped_processes == 3


def _sample_from_two_threads(sampler: ProcessTreeSampler, rounds: int, expect_sample: bool = False) -> list:
    """Call ``sampler.sample()`` ``rounds`` times from each of two threads at once; the errors raised."""
    errors: list[BaseException] = []

    def hammer():
        try:
            for _ in range(rounds):
                sample = sampler.sample()
                assert sample is not None or not expect_sample
        except BaseException as err:  # noqa: BLE001 - collected for the caller's assertion
            errors.append(err)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_c08_concurrent_sampling_is_serialised():
    class Racy(FakeProc):
        """Fails like psutil#1991 when two threads list processes at once."""
        inside = False

        def children(self, recursive=False):
            if Racy.inside:
                raise TypeError("concurrent process listing")
            Racy.inside = True
            time.sleep(0.002)
            Racy.inside = False
            return []

    sampler = ProcessTreeSampler(100, psutil_module=FakePsutil(Racy(100, cpu=1.0, rss=10)))
    assert _sample_from_two_threads(sampler, 40, expect_sample=True) == []
    assert sampler.totals().num_samples == 80


def test_concurrent_sampling_of_a_real_tree():
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3)'])\n"
            "time.sleep(3)")
    proc = psutil.Popen([PY, "-c", code])
    try:
        sampler = ProcessTreeSampler(proc.pid)
        assert _sample_from_two_threads(sampler, 50) == []
        assert sampler.totals().num_samples == 100
    finally:
        for child in proc.children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()


def test_c01_first_sample_unknown_and_new_child_adds_nothing_to_its_first_interval():
    clock = [0.0]
    child = FakeProc(101, cpu=5.0, ppid=100)
    root = FakeProc(100, cpu=1.0)
    sampler = ProcessTreeSampler(100, psutil_module=FakePsutil(root, child), clock=lambda: clock[0])
    assert sampler.sample().cpu_percent is None
    clock[0], root.cpu = 1.0, 1.5
    root.kids.append(child)  # appears with 5 s of CPU already used: none of it is this interval's
    second = sampler.sample()
    assert second.num_processes == 2 and second.cpu_percent == pytest.approx(50.0)
    clock[0], root.cpu, child.cpu = 2.0, 2.0, 5.5
    assert sampler.sample().cpu_percent == pytest.approx(100.0)
    totals = sampler.totals()
    assert totals.cpu_seconds == pytest.approx(7.5) and totals.peak_cpu_percent == pytest.approx(100.0)


def test_exited_children_stay_in_totals_without_double_counting():
    clock = [0.0]
    child = FakeProc(101, cpu=3.0, write=1000, ppid=100)
    orphan = FakeProc(102, cpu=1.0, write=500, ppid=101)
    root = FakeProc(100, cpu=1.0, rss=100, kids=[child, orphan])
    sampler = ProcessTreeSampler(100, psutil_module=FakePsutil(root, child, orphan), clock=lambda: clock[0])
    sampler.sample()
    # The child exits and the root reaps it: the kernel folds its CPU and I/O into the root's
    # counters. The grandchild was re-parented away (to init) and is still followed.
    clock[0] = 1.0
    child.running = False
    root.kids.remove(child)
    root.kids.remove(orphan)
    orphan._ppid = 1
    root.reaped_cpu, root.write = 3.2, 1000
    assert sampler.sample().pids == (100, 102)
    totals = sampler.totals()
    assert totals.cpu_seconds == pytest.approx(1.0 + 3.2 + 1.0)
    assert totals.write_bytes == 1500  # not 2500: the child's 1000 bytes are in the root's now
    # Then the orphan exits outside the tree: its last reading is kept.
    clock[0] = 2.0
    orphan.running = False
    sampler.sample()
    assert sampler.totals().write_bytes == 1500
    assert sampler.totals().cpu_seconds == pytest.approx(5.2)


def test_sampler_of_a_finished_process_returns_none():
    proc = psutil.Popen([PY, "-c", "pass"])
    proc.wait()
    sampler = ProcessTreeSampler(proc.pid)
    assert sampler.sample() is None
    assert sampler.totals().cpu_seconds is None and sampler.totals().num_samples == 0


# -- GPU memory through the NVML gateway's one method (fake) --------------------------------
class FakeNvml:
    def __init__(self, answers):
        self.answers, self.calls = list(answers), []

    def process_gpu_memory_bytes(self, pids):
        self.calls.append(set(pids))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


def test_gpu_memory_peak_is_the_highest_per_sample_sum():
    nvml = FakeNvml([{"GPU-a": 100, "GPU-b": 50}, {"GPU-a": 300, "GPU-b": 200}, {"GPU-a": 10}])
    samples = []
    result = run_task(sleep_task(0.6), poll_interval_s=0.1, nvml=nvml, on_sample=samples.append)
    assert result.success and len(nvml.calls) >= 3
    assert result.gpu_memory_peak_bytes == 500
    assert samples[0].gpu_memory_bytes == 150
    assert dict(samples[1].gpu_memory_bytes_by_uuid) == {"GPU-a": 300, "GPU-b": 200}
    assert samples[0].root_pid in nvml.calls[0]


def test_gpu_memory_unknown_without_nvml_or_when_it_fails():
    class Broken:
        def process_gpu_memory_bytes(self, pids):
            raise RuntimeError("NVML went away")

    assert run_task(sleep_task(0.2), nvml=FakeNvml([None])).gpu_memory_peak_bytes is None
    assert run_task(sleep_task(0.2), nvml=FakeNvml([{}])).gpu_memory_peak_bytes is None
    idle = run_task(sleep_task(0.2), nvml=FakeNvml([{"GPU-a": 0}]))
    assert idle.gpu_memory_peak_bytes == 0  # a readable GPU the task does not use: a real 0
    broken = run_task(sleep_task(0.2), nvml=Broken(), poll_interval_s=0.05)
    assert broken.success and broken.gpu_memory_peak_bytes is None
    assert run_task(sleep_task(0.1)).gpu_memory_peak_bytes is None


def test_gpu_utilization_is_the_mean_over_the_samples_that_read_it():
    class Utilization(FakeNvml):
        def __init__(self, percents):
            super().__init__([{"GPU-a": 0}])
            self.percents, self.seen = list(percents), []

        def process_gpu_utilization_percent(self, pids, last_seen_us):
            self.seen.append(last_seen_us)
            last_seen_us["GPU-a"] = len(self.seen)  # the sampler keeps its own place
            return self.percents[min(len(self.seen), len(self.percents)) - 1]

    nvml = Utilization([30.0, None, 50.0])
    samples = []
    result = run_task(sleep_task(0.6), poll_interval_s=0.1, nvml=nvml, on_sample=samples.append)
    assert result.success and len(nvml.seen) >= 3 and all(d is nvml.seen[0] for d in nvml.seen)
    assert [s.gpu_utilization_percent for s in samples[:3]] == [30.0, None, 50.0]
    n = len(nvml.seen)  # 30, unknown, then 50 for the rest: the unknown one does not count as 0
    assert result.gpu_utilization_percent == pytest.approx((30.0 + 50.0 * (n - 2)) / (n - 1))
    assert run_task(sleep_task(0.1), nvml=FakeNvml([{"GPU-a": 0}])).gpu_utilization_percent is None


def test_a_failing_on_sample_callback_is_ignored():
    def explode(sample):
        raise RuntimeError("callback bug")

    result = run_task(sleep_task(0.3), poll_interval_s=0.05, on_sample=explode)
    assert result.success and result.num_samples >= 2
    assert set(result.to_dict()) >= {"returncode", "success", "error", "duration_s", "cpu_seconds",
                                     "peak_rss_bytes", "gpu_memory_peak_bytes", "num_samples"}
