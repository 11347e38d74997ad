"""The family of named workloads the replay compares policies on, each a :class:`ReplayConfig`.

* ``default``: a mixed CPU / GPU fleet at 60 % load, bursts and a stream, a few benchmark tasks
  that ask for quiet or exclusive hardware.
* ``saturated``: the same fleet offered 120 % of what it can do, most tasks in large bursts:
  the queue never empties, so every idle core a policy holds back costs makespan.
* ``gpu_heavy``: GPUs of 16, 24, 40, 48 and 80 GB; most tasks use a GPU, some declare that they
  need 40 GB or 80 GB, some need more GPU memory than they declare (learnt from failures), and
  GPU benchmarks ask for a quiet GPU.
* ``memory_bound``: workers with little memory per core, tasks whose memory is mostly
  undeclared and varies widely: over-subscribing memory OOM-kills.
* ``late_monitors``: the default workload where a fifth of the monitors report late (about
  40 s) or stop for good while their workers keep running.
* ``benchmark_suite``: the default fleet and load running a suite heavy in measurements: about
  10 % of the tasks are benchmarks that ask for quiet hardware and 5 % performance tests that
  ask for a worker of their own (the default mix has 3 % and 1 %).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fleet_hwmon.replay.workload import GIB, TASK_TYPES, FleetClass, GpuSpec, ReplayConfig, TaskType

T4 = GpuSpec("Tesla T4", 7.5, 16 * GIB)
L4 = GpuSpec("NVIDIA L4", 8.9, 24 * GIB)
A100 = GpuSpec("NVIDIA A100-SXM4-40GB", 8.0, 40 * GIB)
L40S = GpuSpec("NVIDIA L40S", 8.9, 48 * GIB)
H100 = GpuSpec("NVIDIA H100 80GB HBM3", 9.0, 80 * GIB)

GPU_HEAVY_FLEET = (
    FleetClass("cpu-medium", 5 / 24, 16, 64, None, 1.0),
    FleetClass("gpu-t4", 6 / 24, 16, 64, T4, 0.9),
    FleetClass("gpu-l4", 5 / 24, 16, 64, L4, 1.0),
    FleetClass("gpu-a100", 4 / 24, 32, 128, A100, 1.1),
    FleetClass("gpu-l40s", 2 / 24, 32, 128, L40S, 1.1),
    FleetClass("gpu-h100", 2 / 24, 32, 256, H100, 1.3),
)

GPU_HEAVY_TASKS = (
    TaskType("unit", 0.22, {"hardware": ["cpu"]}, cores=1.0, memory_gb=1.0, work_s=30),
    TaskType("integration", 0.12, {"hardware": ["cpu"]}, cores=2.0, memory_gb=4.0, work_s=120),
    TaskType("gpu_inference", 0.30, {"hardware": ["gpu"], "min_cuda_compute": 7.0}, cores=2.0, memory_gb=6.0,
             work_s=90, gpu_percent=35.0, gpu_memory_gb=5.0),
    TaskType("gpu_eval", 0.14, {"hardware": ["gpu"], "min_cuda_compute": 7.0}, cores=2.0, memory_gb=8.0,
             work_s=150, gpu_percent=50.0, gpu_memory_gb=13.0),
    TaskType("gpu_training", 0.10, {"hardware": ["gpu"], "min_cuda_compute": 8.0, "min_gpu_memory_gb": 40},
             cores=6.0, memory_gb=32.0, work_s=240, gpu_percent=75.0, gpu_memory_gb=30.0, gpu_memory_sigma=0.15),
    TaskType("gpu_llm", 0.03, {"hardware": ["gpu"], "min_cuda_compute": 9.0, "min_gpu_memory_gb": 80},
             cores=8.0, memory_gb=64.0, work_s=300, gpu_percent=85.0, gpu_memory_gb=60.0, gpu_memory_sigma=0.1),
    TaskType("gpu_benchmark", 0.05, {"hardware": ["gpu"], "min_cuda_compute": 7.0, "isolation": "quiet"},
             cores=2.0, memory_gb=4.0, work_s=60, gpu_percent=45.0, gpu_memory_gb=4.0),
    TaskType("perf", 0.04, {"hardware": ["cpu"], "isolation": "exclusive"}, cores=4.0, memory_gb=4.0, work_s=90),
)

MEMORY_BOUND_FLEET = (
    FleetClass("cpu-small", 8 / 24, 8, 16, None, 0.8),
    FleetClass("cpu-medium", 9 / 24, 16, 32, None, 1.0),
    FleetClass("cpu-large", 3 / 24, 32, 128, None, 1.2),
    FleetClass("gpu-t4", 4 / 24, 16, 48, T4, 1.0),
)

MEMORY_BOUND_TASKS = (
    TaskType("unit", 0.35, {"hardware": ["cpu"]}, cores=1.0, memory_gb=1.5, work_s=30, memory_sigma=0.5),
    TaskType("integration", 0.22, {"hardware": ["cpu"]}, cores=2.0, memory_gb=5.0, work_s=120, memory_sigma=0.5),
    TaskType("etl", 0.15, {"hardware": ["cpu"]}, cores=2.0, memory_gb=9.0, work_s=150, memory_sigma=0.6),
    TaskType("data", 0.08, {"hardware": ["cpu"]}, cores=2.0, memory_gb=20.0, work_s=180, memory_sigma=0.4),
    TaskType("build", 0.10, {"hardware": ["cpu"], "min_memory_gb": 32}, cores=6.0, memory_gb=12.0, work_s=240),
    TaskType("gpu_inference", 0.10, {"hardware": ["gpu"], "min_cuda_compute": 7.0}, cores=2.0, memory_gb=10.0,
             work_s=90, gpu_percent=35.0, gpu_memory_gb=5.0, memory_sigma=0.5),
)

BENCHMARK_SUITE_TASKS = tuple(replace(t, weight={"benchmark": 0.12, "perf": 0.06}.get(t.name, t.weight))
                              for t in TASK_TYPES)

WORKLOADS: dict[str, ReplayConfig] = {
    "default": ReplayConfig(),
    "saturated": ReplayConfig(name="saturated", load=1.2, burst_share=0.7, burst_size=(50, 200)),
    "gpu_heavy": ReplayConfig(name="gpu_heavy", load=0.7, fleet_classes=GPU_HEAVY_FLEET, task_types=GPU_HEAVY_TASKS),
    "memory_bound": ReplayConfig(name="memory_bound", load=0.7, fleet_classes=MEMORY_BOUND_FLEET,
                                 task_types=MEMORY_BOUND_TASKS),
    "late_monitors": ReplayConfig(name="late_monitors", faulty_monitor_share=0.2),
    "benchmark_suite": ReplayConfig(name="benchmark_suite", task_types=BENCHMARK_SUITE_TASKS),
}


def workload(name: str, **overrides: Any) -> ReplayConfig:
    """The named workload, with ``overrides`` of any :class:`ReplayConfig` field (``workers``,
    ``tasks``, ``seed``, ``load``...); raises ``ValueError`` for an unknown name."""
    try:
        config = WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; expected one of {', '.join(WORKLOADS)}") from None
    return replace(config, **overrides)
