"""One vocabulary of requirement keys, one matcher: the capability detector and the scheduler
give the same answer for the same requirements on the same workers."""

from __future__ import annotations

import pytest

from fleet_hwmon.capabilities.matching import explain_mismatch, find_compatible, to_coordinator
from fleet_hwmon.capabilities.model import (
    HardwareCapability,
    HardwareType,
    HardwareVendor,
    PrecisionType,
    WorkerHardwareCapabilities,
)
from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.scheduling import HardwareAwareScheduler
from fleet_hwmon.scoring.exclusions import ExclusionKind
from fleet_hwmon.scoring.requirements import REQUIREMENT_KEYS, TaskRequirements

GIB = 1024**3
P = PrecisionType


def cpu(vendor: HardwareVendor, model: str) -> HardwareCapability:
    return HardwareCapability(HardwareType.CPU, vendor, model, supported_precisions=[P.FP64, P.FP32, P.INT8])


def device(kind: HardwareType, vendor: HardwareVendor, model: str, memory_gb: float, precisions: list,
           **extra) -> HardwareCapability:
    return HardwareCapability(kind, vendor, model, memory_bytes=int(memory_gb * GIB), supported_precisions=precisions,
                              capabilities=extra, device_id=f"{model}-0")


def worker(worker_id: str, memory_gb: float, *devices: HardwareCapability) -> WorkerHardwareCapabilities:
    return WorkerHardwareCapabilities(worker_id=worker_id, hostname=worker_id, os_name="Linux", os_version="6",
                                      cpu_count=8, cpu_count_effective=8.0, total_memory_bytes=int(memory_gb * GIB),
                                      hardware_capabilities=list(devices))


WORKERS = [
    worker("w-a100", 256, cpu(HardwareVendor.INTEL, "Intel Xeon Gold 6338"),
           device(HardwareType.GPU, HardwareVendor.NVIDIA, "NVIDIA A100-SXM4-80GB", 80,
                  [P.FP64, P.FP32, P.TF32, P.FP16, P.BF16], compute_capability="8.0")),
    worker("w-mi250", 128, cpu(HardwareVendor.AMD, "AMD EPYC 7763"),
           device(HardwareType.GPU, HardwareVendor.AMD, "AMD Instinct MI250X", 64, [P.FP64, P.FP32, P.FP16, P.BF16])),
    worker("w-tpu", 64, cpu(HardwareVendor.INTEL, "Intel Xeon Platinum"),
           device(HardwareType.TPU, HardwareVendor.GOOGLE, "TPU v5e", 16, [P.BF16, P.INT8])),
    worker("w-soft", 16, cpu(HardwareVendor.INTEL, "Intel Core i7"),
           device(HardwareType.WEBGPU, HardwareVendor.SOFTWARE, "swiftshader", 0, [P.FP32], software_only=True)),
]

CASES = [
    ({}, ["w-a100", "w-mi250", "w-soft", "w-tpu"]),
    ({"hardware": ["gpu"]}, ["w-a100", "w-mi250"]),
    ({"hardware": "GPU", "vendor": "AMD"}, ["w-mi250"]),
    ({"min_cuda_compute": "8.0"}, ["w-a100"]),  # a CUDA minimum asks for an NVIDIA GPU
    ({"min_cuda_compute": (8, 6)}, []),
    ({"hardware": ["gpu"], "min_gpu_memory_gb": 70}, ["w-a100"]),
    ({"hardware": ["gpu"], "precision": ["bf16", "tf32"]}, ["w-a100"]),
    ({"hardware": ["tpu"], "precision": "int8"}, ["w-tpu"]),
    ({"device": "v5e"}, ["w-tpu"]),
    ({"device": "epyc"}, ["w-mi250"]),
    ({"hardware": ["cpu"], "vendor": "amd"}, ["w-mi250"]),
    ({"precision": "fp8"}, []),
    ({"hardware": ["webgpu"]}, []),
    ({"hardware": ["webgpu"], "allow_software": True}, ["w-soft"]),
    ({"min_memory_gb": 100, "isolation": "quiet"}, ["w-a100", "w-mi250"]),
]


@pytest.mark.parametrize("requirements, expected", CASES)
def test_the_detector_and_the_scheduler_agree(requirements, expected):
    assert find_compatible(WORKERS, requirements) == expected
    # The scheduler sees the same workers through the coordinator contract's capabilities.
    coordinator = Coordinator(max_tasks_per_worker=4)
    for caps in WORKERS:
        coordinator.register_worker(caps.worker_id, to_coordinator(caps))
    decisions = []
    scheduler = HardwareAwareScheduler(coordinator, clock=lambda: 1000.0, record=decisions.append)
    for worker_id, info in coordinator.workers.items():
        scheduler.worker_registered(worker_id, info["capabilities"])
    scheduler.install()
    try:
        task = {"task_id": "t1", "type": "unit", "requirements": requirements}
        chosen, _ = coordinator.task_scheduler.find_best_worker_for_task(task, list(coordinator.workers), {})
    finally:
        scheduler.uninstall()
    (decision,) = decisions
    gpu_asked = requirements.get("hardware") in (["gpu"], "GPU") or "min_cuda_compute" in requirements \
        or "min_gpu_memory_gb" in requirements
    assert decision.needs_gpu is gpu_asked  # recorded: the report judges a GPU task's GPU load
    hardware = {e.worker_id for e in decision.exclusions if e.kind is ExclusionKind.HARDWARE}
    assert hardware == {w.worker_id for w in WORKERS} - set(expected)
    assert (chosen in expected) if expected else chosen is None


@pytest.mark.parametrize("worker_id, requirements, reason", [
    ("w-tpu", {"hardware": ["gpu"], "vendor": "amd"}, "lacks gpu"),
    ("w-a100", {"hardware": ["gpu"], "vendor": "amd"}, "no GPU from vendor 'amd'"),
    ("w-a100", {"hardware": ["gpu"], "precision": ["fp8", "bf16"]}, "no GPU supporting bf16, fp8"),
    ("w-a100", {"min_cuda_compute": 9.0}, "no GPU with CUDA compute >= 9"),
    ("w-mi250", {"device": "v5e"}, "no device matching 'v5e'"),
    ("w-soft", {"hardware": ["webgpu"]}, "lacks webgpu"),
    ("w-soft", {"min_memory_gb": 32}, "memory 16 GB < required 32 GB"),
])
def test_one_message_for_people(worker_id, requirements, reason):
    caps = next(w for w in WORKERS if w.worker_id == worker_id)
    assert explain_mismatch(caps, requirements) == reason


def test_the_coordinator_view_carries_what_the_matcher_reads():
    soft = to_coordinator(WORKERS[3])
    assert soft["hardware"] == ["cpu"] and soft["software"] == ["webgpu"]
    assert soft["webgpu"] == [{"model": "swiftshader", "vendor": "software", "id": "swiftshader-0", "memory_gb": 0.0,
                               "precisions": ["fp32"], "software_only": True}]
    assert soft["cpu"]["precisions"] == ["fp64", "fp32", "int8"]
    assert to_coordinator(WORKERS[2])["tpu"][0]["precisions"] == ["bf16", "int8"]


def test_every_key_parses():
    parsed = TaskRequirements.parse({"hardware": ["GPU", HardwareType.CPU], "min_memory_gb": "16",
                                     "min_cuda_compute": (8, 6), "min_gpu_memory_gb": 24, "device": "A100",
                                     "vendor": HardwareVendor.NVIDIA, "precision": ["BF16", P.FP8],
                                     "allow_software": True, "isolation": "Quiet"})
    assert parsed == TaskRequirements(frozenset({"gpu", "cpu"}), 16.0, 8.6, "A100", 24.0, "quiet", "nvidia",
                                      frozenset({"bf16", "fp8"}), True)
    assert len(REQUIREMENT_KEYS) == 9 and TaskRequirements.parse(None) == TaskRequirements()


@pytest.mark.parametrize("key, meant", [
    ("hardware_type", "hardware"), ("compute_capability", "min_cuda_compute"),
    ("min_gpu_memory", "min_gpu_memory_gb"), ("gpu_memory_gb", "min_gpu_memory_gb"), ("isolaton", "isolation"),
    ("precisions", "precision"),
])
def test_a_misspelt_key_names_the_key_meant_in_both(key, meant):
    known = ", ".join(REQUIREMENT_KEYS)
    with pytest.raises(ValueError) as scheduler_error:
        TaskRequirements.from_task({"task_id": "t9", "requirements": {key: 1}})
    assert str(scheduler_error.value) == f"task 't9': unknown requirement(s) {key} (did you mean {meant!r}?); " \
                                         f"known: {known}"
    with pytest.raises(ValueError) as detector_error:
        find_compatible(WORKERS, {key: 1})
    assert str(detector_error.value) == f"unknown requirement(s) {key} (did you mean {meant!r}?); known: {known}"


def test_other_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match="^unknown requirement\\(s\\) colour; known: hardware"):
        find_compatible(WORKERS, {"colour": "green"})
    with pytest.raises(ValueError, match="^task 't': requirements.allow_software must be true or false, got 'yes'$"):
        TaskRequirements.from_task({"task_id": "t", "requirements": {"allow_software": "yes"}})
    with pytest.raises(ValueError, match="^requirements.precision must be a list of names$"):
        find_compatible(WORKERS, {"precision": 16})


@pytest.mark.parametrize("requirements, message", [
    ({"min_memory_gb": float("nan")}, "requirements.min_memory_gb must be a number, got nan"),
    ({"min_memory_gb": True}, "requirements.min_memory_gb must be a number, got True"),
    ({"min_gpu_memory_gb": "lots"}, "requirements.min_gpu_memory_gb must be a number, got 'lots'"),
    ({"hardware": [None]}, r"requirements.hardware must be a list of names, got \[None\]"),
    ({"hardware": ["gpu", ""]}, r"requirements.hardware must be a list of names, got \['gpu', ''\]"),
])
def test_figures_that_are_no_number_and_kinds_that_are_no_name_are_refused(requirements, message):
    """NaN would match every worker, True would read as 1 GB, None would match none: each is a
    clear error naming the task instead."""
    with pytest.raises(ValueError, match=f"^task 't': {message}$"):
        TaskRequirements.from_task({"task_id": "t", "requirements": requirements})
    assert TaskRequirements.from_task({"task_id": "t", "requirements": {"min_memory_gb": "16"}}).min_memory_gb == 16
