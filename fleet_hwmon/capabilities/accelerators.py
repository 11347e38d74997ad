"""Non-NVIDIA accelerators, from what the operating system exposes. Nothing is guessed.

- AMD GPUs: ``/sys/class/drm/card*/device/vendor`` = ``0x1002`` (VRAM from ``mem_info_vram_total``),
  ``/dev/kfd`` (the ROCm compute node), names from ``rocm-smi --showproductname --json`` when it
  is installed.
- Intel GPUs: DRM vendor ``0x8086`` with the ``i915`` or ``xe`` driver.
- Apple silicon: ``platform.system() == "Darwin"`` on ``arm64``: the integrated GPU and the
  Neural Engine share the host's unified memory.
- TPUs: ``/sys/class/accel/accel*`` or PCI devices of Google (vendor ``0x1ae0``), or the
  ``TPU_ACCELERATOR_TYPE`` variable Cloud TPU VMs set (marked ``source: environment``).
- NPUs and other accelerators: ``/sys/class/accel/accel*`` by driver (``intel_vpu``, ``amdxdna``,
  ``qaic``, ``habanalabs``).

Every root (``sys_root``, ``dev_root``), the environment and the platform are parameters, so
tests build a fake tree. NVIDIA devices are left to NVML (:mod:`fleet_hwmon.capabilities.gpu`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleet_hwmon.capabilities.model import HardwareCapability, HardwareType, HardwareVendor, PrecisionType

PCI_VENDORS = {"0x1002": HardwareVendor.AMD, "0x8086": HardwareVendor.INTEL, "0x10de": HardwareVendor.NVIDIA,
               "0x1ae0": HardwareVendor.GOOGLE, "0x17cb": HardwareVendor.QUALCOMM,
               "0x1da3": HardwareVendor.INTEL}  # 0x1da3: Habana Labs (Intel)
_INTEL_GPU_DRIVERS = {"i915", "xe"}
# /sys/class/accel drivers -> (type, vendor, model when the device does not name itself)
ACCEL_DRIVERS: dict[str, tuple[HardwareType, HardwareVendor, str]] = {
    "intel_vpu": (HardwareType.NPU, HardwareVendor.INTEL, "Intel NPU"),
    "amdxdna": (HardwareType.NPU, HardwareVendor.AMD, "AMD XDNA NPU"),
    "qaic": (HardwareType.NPU, HardwareVendor.QUALCOMM, "Qualcomm Cloud AI 100"),
    "habanalabs": (HardwareType.HPU, HardwareVendor.INTEL, "Habana Gaudi"),
}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _driver(device_dir: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(device_dir / "driver"))
    except OSError:
        return None


def _pci_address(device_dir: Path) -> str:
    try:
        return os.path.basename(os.path.realpath(device_dir))
    except OSError:
        return device_dir.name


def parse_rocm_smi(text: str) -> dict[str, dict[str, Any]]:
    """``rocm-smi --showproductname --showmeminfo vram --json`` -> {card: {"name", "memory_bytes"}}."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    cards: dict[str, dict[str, Any]] = {}
    for card, fields in data.items() if isinstance(data, dict) else ():
        if not isinstance(fields, dict) or not card.startswith("card"):
            continue
        name = fields.get("Card Series") or fields.get("Card series") or fields.get("Card model")
        memory = fields.get("VRAM Total Memory (B)")
        cards[card] = {"name": name, "memory_bytes": int(memory) if str(memory or "").isdigit() else None}
    return cards


def _rocm_smi(executable: str | None) -> dict[str, dict[str, Any]]:
    if not executable:
        return {}
    try:
        out = subprocess.run([executable, "--showproductname", "--showmeminfo", "vram", "--json"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_rocm_smi(out.stdout) if out.returncode == 0 else {}


def drm_gpus(sys_root: str | Path = "/sys", dev_root: str | Path = "/dev",
             rocm_smi: str | None = None) -> list[HardwareCapability]:
    """AMD and Intel GPUs listed under ``/sys/class/drm`` (one per PCI device; NVIDIA skipped)."""
    drm = Path(sys_root) / "class" / "drm"
    try:
        cards = sorted(p for p in drm.iterdir() if p.name.startswith("card") and "-" not in p.name)
    except OSError:
        return []
    rocm = _rocm_smi(rocm_smi) if any(_read(c / "device" / "vendor") == "0x1002" for c in cards) else {}
    found: list[HardwareCapability] = []
    seen: set[str] = set()
    for card in cards:
        device = card / "device"
        vendor = PCI_VENDORS.get((_read(device / "vendor") or "").lower())
        driver = _driver(device)
        address = _pci_address(device)
        if address in seen or vendor not in (HardwareVendor.AMD, HardwareVendor.INTEL):
            continue
        if vendor is HardwareVendor.INTEL and driver not in _INTEL_GPU_DRIVERS:
            continue
        seen.add(address)
        device_id = _read(device / "device")
        extra: dict[str, Any] = {"pci_bus_id": address, "pci_device_id": device_id, "driver": driver,
                                 "drm_card": card.name}
        memory = None
        model = f"{vendor.value.upper()} GPU {device_id or ''}".strip()
        if vendor is HardwareVendor.AMD:
            vram = _read(device / "mem_info_vram_total")
            memory = int(vram) if vram and vram.isdigit() else None
            extra["rocm"] = (Path(dev_root) / "kfd").exists()
            smi = rocm.get(card.name, {})
            model = smi.get("name") or model
            memory = memory if memory is not None else smi.get("memory_bytes")
        found.append(HardwareCapability(
            hardware_type=HardwareType.GPU, vendor=vendor, model=model, memory_bytes=memory,
            supported_precisions=[PrecisionType.FP32, PrecisionType.FP16], capabilities=extra,
            device_id=address,
        ))
    return found


def accel_devices(sys_root: str | Path = "/sys") -> list[HardwareCapability]:
    """Devices of the kernel's compute-accelerator class (``/sys/class/accel/accel*``)."""
    accel = Path(sys_root) / "class" / "accel"
    try:
        nodes = sorted(p for p in accel.iterdir() if p.name.startswith("accel"))
    except OSError:
        return []
    found = []
    for node in nodes:
        device = node / "device"
        vendor_id = (_read(device / "vendor") or "").lower()
        driver = _driver(device)
        if vendor_id == "0x1ae0":
            kind, vendor, model = HardwareType.TPU, HardwareVendor.GOOGLE, "Google TPU"
        elif driver in ACCEL_DRIVERS:
            kind, vendor, model = ACCEL_DRIVERS[driver]
        else:
            kind, vendor, model = HardwareType.OTHER, PCI_VENDORS.get(vendor_id, HardwareVendor.UNKNOWN), \
                "accelerator"
        address = _pci_address(device)
        found.append(HardwareCapability(
            hardware_type=kind, vendor=vendor, model=model, device_id=address,
            capabilities={"pci_bus_id": address, "driver": driver, "accel_node": node.name,
                          "pci_device_id": _read(device / "device")},
        ))
    return found


def google_tpus(sys_root: str | Path = "/sys", env: Mapping[str, str] | None = None,
                already_found: int = 0) -> list[HardwareCapability]:
    """TPU chips on the PCI bus (vendor 0x1ae0, e.g. behind ``/dev/vfio``), else the Cloud TPU VM
    environment (``TPU_ACCELERATOR_TYPE``) when no chip was seen through ``/sys/class/accel``."""
    env = os.environ if env is None else env
    if already_found:
        return []
    chips = []
    try:
        entries = sorted((Path(sys_root) / "bus" / "pci" / "devices").iterdir())
    except OSError:
        entries = []
    for entry in entries:
        if (_read(entry / "vendor") or "").lower() == "0x1ae0":
            chips.append(HardwareCapability(
                hardware_type=HardwareType.TPU, vendor=HardwareVendor.GOOGLE, model="Google TPU",
                device_id=entry.name, supported_precisions=[PrecisionType.BF16, PrecisionType.FP32,
                                                            PrecisionType.INT8],
                capabilities={"pci_bus_id": entry.name, "driver": _driver(entry)},
            ))
    if chips:
        return chips
    accelerator_type = env.get("TPU_ACCELERATOR_TYPE")
    if accelerator_type:
        return [HardwareCapability(
            hardware_type=HardwareType.TPU, vendor=HardwareVendor.GOOGLE, model=f"Google TPU {accelerator_type}",
            supported_precisions=[PrecisionType.BF16, PrecisionType.FP32, PrecisionType.INT8],
            capabilities={"source": "environment", "accelerator_type": accelerator_type,
                          "worker_id": env.get("TPU_WORKER_ID")},
        )]
    return []


def apple_silicon(system: str, machine: str, cpu_model: str | None,
                  memory_bytes: int | None) -> list[HardwareCapability]:
    """The integrated GPU and Neural Engine every Apple silicon Mac has (unified memory)."""
    if system != "Darwin" or machine not in ("arm64", "aarch64"):
        return []
    chip = cpu_model or "Apple silicon"
    return [
        HardwareCapability(hardware_type=HardwareType.GPU, vendor=HardwareVendor.APPLE, model=f"{chip} GPU",
                           memory_bytes=memory_bytes,
                           supported_precisions=[PrecisionType.FP32, PrecisionType.FP16],
                           capabilities={"unified_memory": True, "api": "metal"}),
        HardwareCapability(hardware_type=HardwareType.NPU, vendor=HardwareVendor.APPLE,
                           model=f"{chip} Neural Engine",
                           supported_precisions=[PrecisionType.FP16, PrecisionType.INT8],
                           capabilities={"unified_memory": True, "api": "coreml"}),
    ]


def detect_accelerators(*, sys_root: str | Path = "/sys", dev_root: str | Path = "/dev",
                        env: Mapping[str, str] | None = None, system: str | None = None,
                        machine: str | None = None, cpu_model: str | None = None,
                        memory_bytes: int | None = None,
                        rocm_smi: str | None | bool = True) -> list[HardwareCapability]:
    """All non-NVIDIA accelerators visible on this host. ``rocm_smi=True`` looks it up on PATH."""
    system = system or platform.system()
    machine = machine or platform.machine()
    smi = shutil.which("rocm-smi") if rocm_smi is True else (rocm_smi or None)
    found = drm_gpus(sys_root, dev_root, smi)
    accel = accel_devices(sys_root)
    found += accel
    found += google_tpus(sys_root, env, already_found=sum(c.hardware_type is HardwareType.TPU for c in accel))
    found += apple_silicon(system, machine, cpu_model, memory_bytes)
    return found
