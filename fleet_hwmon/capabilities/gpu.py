"""NVIDIA GPU capabilities, read through the product's single NVML gateway.

Each physical GPU becomes one :class:`HardwareCapability` identified by UUID (NVML and CUDA
number devices differently: C16), with its MIG layout and the metrics NVML cannot report on it
(C10). When NVML cannot start, nothing is invented (C11) unless the failure itself proves GPUs
exist: a driver/library mismatch (C12) yields one *unhealthy* GPU entry per NVIDIA display
device on the PCI bus (``/sys/bus/pci/devices/*/vendor`` = ``0x10de``), so the worker is not
mistaken for a CPU worker and GPU tasks are kept away from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleet_hwmon.capabilities.model import (
    HEALTHY,
    UNHEALTHY,
    HardwareCapability,
    HardwareType,
    HardwareVendor,
    PrecisionType,
)
from fleet_hwmon.capabilities.scores import score_compute_capability, score_memory
from fleet_hwmon.sampling.nvml import DRIVER_MISMATCH_REASON, NvmlGateway, NvmlStatus

NVIDIA_PCI_VENDOR = "0x10de"


def precisions_from_compute_capability(major: int, minor: int) -> list[PrecisionType]:
    """Native formats of an NVIDIA GPU of compute capability ``major.minor``.

    fp64 and fp32 always; fp16 from 5.3; int8 (dp4a) from 6.1; int4 (tensor cores) from 7.5;
    bf16 and tf32 from 8.0; fp8 from 8.9.
    """
    cc = (major, minor)
    found = [PrecisionType.FP64, PrecisionType.FP32]
    if cc >= (8, 0):
        found.append(PrecisionType.TF32)
    if cc >= (5, 3):
        found.append(PrecisionType.FP16)
    if cc >= (8, 0):
        found.append(PrecisionType.BF16)
    if cc >= (8, 9):
        found.append(PrecisionType.FP8)
    if cc >= (6, 1):
        found.append(PrecisionType.INT8)
    if cc >= (7, 5):
        found.append(PrecisionType.INT4)
    return found


def _nvidia_capability(info: dict[str, Any]) -> HardwareCapability:
    capability = info.get("compute_capability")
    scores = {}
    if capability is not None:
        scores["compute"] = score_compute_capability(*capability)
    if info.get("memory_total_bytes") is not None:
        scores["memory"] = score_memory(info["memory_total_bytes"], gpu=True)
    return HardwareCapability(
        hardware_type=HardwareType.GPU,
        vendor=HardwareVendor.NVIDIA,
        model=info["name"],
        driver_version=info.get("driver_version"),
        memory_bytes=info.get("memory_total_bytes"),
        supported_precisions=(precisions_from_compute_capability(*capability) if capability
                              else [PrecisionType.FP32]),
        capabilities={
            "index": info.get("index"),
            "uuid": info["uuid"],
            "pci_bus_id": info.get("pci_bus_id"),
            "compute_capability": None if capability is None else f"{capability[0]}.{capability[1]}",
            "cuda_driver_version": info.get("cuda_driver_version"),
            "mig_mode": info.get("mig_mode"),
            "mig_instances": list(info.get("mig_instances") or ()),
            "unsupported_metrics": list(info.get("unsupported_fields") or ()),
            "gpu_health": info.get("health"),  # ok / degraded / lost, as the samples show it
            "health_reason": info.get("health_reason"),
        },
        scores=scores,
        device_id=info["uuid"],
        # A lost GPU (fell off the bus) is present but unusable; a degraded one still runs work.
        health=UNHEALTHY if info.get("health") == "lost" else HEALTHY,
    )


def nvidia_pci_devices(sys_root: str | Path = "/sys") -> list[str]:
    """PCI addresses of NVIDIA display/3D controllers (class 0x03xxxx), sorted. ``[]`` when unknown."""
    found = []
    try:
        entries = sorted((Path(sys_root) / "bus" / "pci" / "devices").iterdir())
    except OSError:
        return []
    for entry in entries:
        try:
            vendor = (entry / "vendor").read_text().strip().lower()
            pci_class = (entry / "class").read_text().strip().lower()
        except OSError:
            continue
        if vendor == NVIDIA_PCI_VENDOR and pci_class.startswith("0x03"):
            found.append(entry.name)
    return found


def nvidia_capabilities(gateway: NvmlGateway, sys_root: str | Path = "/sys"
                        ) -> tuple[list[HardwareCapability], dict[str, str]]:
    """``(capabilities, status)`` for NVIDIA GPUs. ``status`` has an ``"nvml"`` line unless NVML is OK.

    OK: one healthy entry per GPU. DRIVER_MISMATCH: one unhealthy entry per NVIDIA PCI device
    (one placeholder when the PCI bus is not visible), status "GPU present but unhealthy
    (driver mismatch)". Anything else: no entry, status "nvml: unavailable (<reason>)" or
    "nvml: no GPU devices".
    """
    status = gateway.status
    if status is NvmlStatus.OK:
        return [_nvidia_capability(info) for info in gateway.device_info()], {}
    reason = gateway.reason or f"nvml: unavailable ({status.value})"
    if status is not NvmlStatus.DRIVER_MISMATCH:
        return [], {"nvml": reason}
    addresses = nvidia_pci_devices(sys_root) or [None]
    unhealthy = [
        HardwareCapability(
            hardware_type=HardwareType.GPU, vendor=HardwareVendor.NVIDIA,
            model="NVIDIA GPU (model unknown: driver mismatch)", health=UNHEALTHY, device_id=address,
            capabilities={"pci_bus_id": address, "health_reason": DRIVER_MISMATCH_REASON,
                          "nvml_status": status.value},
        )
        for address in addresses
    ]
    return unhealthy, {"nvml": DRIVER_MISMATCH_REASON}
