"""The demo's fleet and workload: embedded workers of mixed profiles and real test tasks."""

from __future__ import annotations

import atexit
import importlib.util
import random
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from fleet_hwmon.coordinator.embedded import PROFILES, EmbeddedWorker
from fleet_hwmon.execution import TaskSpec
from fleet_hwmon.execution import workloads

# Profiles handed out in turn, so any fleet size mixes CPU-only and GPU workers of several sizes.
PROFILE_CYCLE = ("cpu-small", "gpu-t4", "gpu-a100", "cpu-large", "gpu-h100x2")


def build_workers(count: int, seed: int) -> list[EmbeddedWorker]:
    """``count`` embedded workers named ``worker-<n>-<profile>``."""
    if count < 1:
        raise ValueError("the demo needs at least one worker")
    workers = []
    for n in range(count):
        profile = PROFILES[PROFILE_CYCLE[n % len(PROFILE_CYCLE)]]
        workers.append(EmbeddedWorker(f"worker-{n + 1}-{profile.name}", profile, seed=seed))
    return workers


_PYTEST_FILE = textwrap.dedent('''
    import hashlib


    def test_hashing_throughput():
        data = b"x" * 1_000_000
        digest = b""
        for _ in range(60):
            digest = hashlib.sha256(data + digest).digest()
        assert len(digest) == 32


    def test_sorting():
        values = list(range(300_000, 0, -1))
        assert sorted(values)[:3] == [1, 2, 3]
''')


def _pytest_suite() -> Path | None:
    """A small real test file for pytest tasks (removed at exit), or ``None`` when pytest is not
    installed."""
    if importlib.util.find_spec("pytest") is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="hwmon-demo-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # one folder per run, gone with the run
    path = folder / "test_demo_suite.py"
    path.write_text(_PYTEST_FILE)
    return path


def build_tasks(count: int, seed: int, *, task_timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """``count`` tasks of different kinds and requirements, reproducible for a seed.

    Kinds: CPU unit tests (CPU burn), memory-heavy integration tests, I/O tests, pytest runs of
    a real test file (when pytest is installed), GPU training and inference (a CPU workload on
    a GPU worker; the GPU load is simulated), and an occasional failing test.
    """
    rng = random.Random(seed)
    suite = _pytest_suite()
    kinds = ["unit", "integration", "io", "gpu-training", "gpu-inference", "unit", "integration"]
    if suite is not None:
        kinds.append("pytest")
    tasks = []
    for n in range(count):
        kind = kinds[n % len(kinds)] if n < len(kinds) else rng.choice(kinds)
        if n > 0 and n % 9 == 8:
            kind = "flaky"
        spec, requirements = _task(kind, rng, suite, task_timeout_s)
        tasks.append({"task_id": f"task-{n + 1:03d}-{kind}", "type": kind, "priority": rng.randint(0, 3),
                      "requirements": requirements, "spec": spec})
    return tasks


def _task(kind: str, rng: random.Random, suite: Path | None, timeout_s: float) -> tuple[TaskSpec, dict]:
    if kind == "unit":
        return workloads.cpu_burn(rng.uniform(0.5, 1.5), timeout_s=timeout_s), {"hardware": ["cpu"]}
    if kind == "integration":
        return (workloads.memory_hog(rng.choice([128, 256, 384]), rng.uniform(1.0, 2.0), timeout_s=timeout_s),
                {"hardware": ["cpu"], "min_memory_gb": 2})
    if kind == "io":
        return workloads.io_write(rng.choice([32, 64]), timeout_s=timeout_s), {"hardware": ["cpu"]}
    if kind == "pytest" and suite is not None:
        return TaskSpec(pytest_node_id=str(suite), timeout_s=timeout_s, cwd=str(suite.parent)), {"hardware": ["cpu"]}
    if kind == "gpu-training":
        return (workloads.cpu_burn(rng.uniform(1.0, 2.0), timeout_s=timeout_s),
                {"hardware": ["gpu"], "min_cuda_compute": 8.0, "min_gpu_memory_gb": 24, "min_memory_gb": 16})
    if kind == "gpu-inference":
        return (workloads.cpu_burn(rng.uniform(0.3, 0.8), timeout_s=timeout_s),
                {"hardware": ["gpu"], "min_cuda_compute": 7.0, "min_gpu_memory_gb": 4})
    return workloads.failing_task("AssertionError: expected 200, got 503 from the service under test",
                                  timeout_s=timeout_s), {"hardware": ["cpu"]}
