"""CPU and memory capability: model, cores (physical, logical, usable), ISA features, precisions.

Static facts (model, flags, maximum frequency) are probed once per process and cached: they
cost a few milliseconds to tens of milliseconds on large hosts and never change while the
process runs. The figures a container can change at run time (affinity, cgroup quota and
memory limit) are read on every detection; they are a handful of small file reads.

Sources: ``/proc/cpuinfo`` (Linux: ``vendor_id``, ``model name``, ``flags`` / ARM
``CPU implementer``, ``Features``), ``sysctl`` (macOS), ``platform.processor()`` elsewhere;
``psutil.cpu_count()``, ``psutil.cpu_count(logical=False)`` (may be None: C06c),
``os.sched_getaffinity(0)``, ``psutil.cpu_freq()``, ``psutil.virtual_memory()``,
``psutil.sensors_temperatures()`` (absent on Windows/macOS, ``{}`` in VMs: C07), and
:class:`fleet_hwmon.sampling.cgroup.CgroupReader`.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import psutil as _psutil

from fleet_hwmon.capabilities.model import HardwareCapability, HardwareType, HardwareVendor, PrecisionType
from fleet_hwmon.capabilities.scores import score_cores, score_memory
from fleet_hwmon.sampling.cgroup import CgroupReader, effective_cpu_count, effective_memory

_X86_VENDORS = {"GenuineIntel": HardwareVendor.INTEL, "AuthenticAMD": HardwareVendor.AMD,
                "HygonGenuine": HardwareVendor.AMD}
# ARM "CPU implementer" codes (arch/arm64/include/asm/cputype.h).
_ARM_IMPLEMENTERS = {"0x41": HardwareVendor.ARM, "0x51": HardwareVendor.QUALCOMM,
                     "0x61": HardwareVendor.APPLE, "0x48": HardwareVendor.HUAWEI,
                     "0xc0": HardwareVendor.AMPERE}

# ISA features worth showing and matching on; the full flag list is ~150 entries of noise.
FEATURES_OF_INTEREST = frozenset({
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq",
    "avx512cd", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "avx_vnni_int8",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "aes", "sha_ni",
    "neon", "asimd", "asimdhp", "asimddp", "fphp", "bf16", "i8mm", "sve", "sve2", "sme",
})


def precisions_from_flags(flags: set[str] | None) -> list[PrecisionType]:
    """Formats the CPU computes natively, implied by its feature flags.

    fp32/fp64 always; fp16 with ``avx512_fp16`` / ``amx_fp16`` (x86) or ``fphp``/``asimdhp`` (ARM);
    bf16 with ``avx512_bf16`` / ``amx_bf16`` / ARM ``bf16``; int8 dot products with ``avx512_vnni``,
    ``avx_vnni``, ``amx_int8`` or ARM ``asimddp`` / ``i8mm``. ``f16c`` only converts, so it does
    not count.
    """
    flags = flags or set()
    found = [PrecisionType.FP64, PrecisionType.FP32]
    if flags & {"avx512_fp16", "amx_fp16", "fphp", "asimdhp"}:
        found.append(PrecisionType.FP16)
    if flags & {"avx512_bf16", "amx_bf16", "bf16"}:
        found.append(PrecisionType.BF16)
    if flags & {"avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8", "asimddp", "i8mm"}:
        found.append(PrecisionType.INT8)
    return found


@dataclass(frozen=True)
class CpuStatic:
    """What never changes while the process runs. ``flags`` is None when the platform hides them."""

    vendor: HardwareVendor
    model: str
    architecture: str
    flags: frozenset[str] | None
    frequency_max_mhz: float | None


def parse_cpuinfo(text: str) -> tuple[HardwareVendor, str | None, frozenset[str] | None]:
    """``(vendor, model name, flags)`` from the first processor block of ``/proc/cpuinfo``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough: every core reports the same
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    vendor = _X86_VENDORS.get(fields.get("vendor_id", ""))
    if vendor is None:
        vendor = _ARM_IMPLEMENTERS.get(fields.get("CPU implementer", "").lower(), HardwareVendor.UNKNOWN)
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or fields.get("cpu")
    raw_flags = fields.get("flags") or fields.get("Features")
    flags = frozenset(raw_flags.split()) if raw_flags else None
    return vendor, model, flags


def _sysctl(name: str) -> str | None:
    exe = shutil.which("sysctl")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-n", name], capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def probe_cpu_static(cpuinfo_path: str = "/proc/cpuinfo", system: str | None = None) -> CpuStatic:
    """Probe once per process (cached per path): vendor, model, architecture, flags, max MHz."""
    system = system or platform.system()
    vendor, model, flags = HardwareVendor.UNKNOWN, None, None
    if system == "Linux":
        try:
            with open(cpuinfo_path, encoding="utf-8", errors="replace") as handle:
                vendor, model, flags = parse_cpuinfo(handle.read())
        except OSError:
            pass
    elif system == "Darwin":
        model = _sysctl("machdep.cpu.brand_string")
        features = " ".join(filter(None, (_sysctl("machdep.cpu.features"), _sysctl("machdep.cpu.leaf7_features"))))
        flags = frozenset(f.lower().replace(".", "_") for f in features.split()) or None
        if model and model.startswith("Apple"):
            vendor = HardwareVendor.APPLE
        elif model and "Intel" in model:
            vendor = HardwareVendor.INTEL
    model = model or platform.processor() or None
    if vendor is HardwareVendor.UNKNOWN and model:
        lowered = model.lower()
        vendor = next((v for key, v in (("intel", HardwareVendor.INTEL), ("amd", HardwareVendor.AMD),
                                        ("apple", HardwareVendor.APPLE)) if key in lowered), vendor)
    frequency = None
    try:
        freq = _psutil.cpu_freq()
        # VMs often report max 0.0: unknown, not zero, and not the current frequency either
        # (that one moves with the load and the power state)
        frequency = (freq.max or None) if freq is not None else None
    except (AttributeError, NotImplementedError, OSError, RuntimeError):
        frequency = None
    return CpuStatic(vendor=vendor, model=model or "unknown", architecture=platform.machine() or "unknown",
                     flags=flags, frequency_max_mhz=float(frequency) if frequency else None)


def cpu_temperature_status(psutil: ModuleType = _psutil) -> tuple[bool, str]:
    """``(available, line)``: ``"cpu_temperature: unavailable"`` when psutil has no sensor function
    (Windows, macOS) or it returns ``{}`` (VMs, containers); never raises."""
    sensors = getattr(psutil, "sensors_temperatures", None)
    if sensors is None:
        return False, "cpu_temperature: unavailable"
    try:
        readings = sensors()
    except (OSError, RuntimeError, NotImplementedError, ValueError):
        readings = {}
    if not readings:
        return False, "cpu_temperature: unavailable"
    return True, f"cpu_temperature: available ({', '.join(sorted(readings))})"


@dataclass(frozen=True)
class HostFigures:
    """The dynamic part of a CPU/memory detection (affinity, quota, memory), read every time."""

    logical: int | None
    physical: int | None
    affinity: int | None
    quota_cores: float | None
    effective_cores: float | None
    host_memory_bytes: int | None
    memory_total_bytes: int | None
    memory_limit_bytes: int | None
    memory_source: str


def read_host_figures(psutil: ModuleType = _psutil, cgroup: CgroupReader | None = None) -> HostFigures:
    """Counts and memory as the worker sees them now, corrected for cgroup limits (C05, C06)."""
    logical = psutil.cpu_count() or os.cpu_count()
    try:
        physical = psutil.cpu_count(logical=False)  # None on some ARM / ppc hosts (C06c)
    except (OSError, RuntimeError):
        physical = None
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    limits = (cgroup or CgroupReader()).read()
    vm = psutil.virtual_memory()
    total, _used, _percent, source = effective_memory(vm.total, vm.available, limits)
    return HostFigures(
        logical=logical, physical=physical, affinity=affinity, quota_cores=limits.cpu_quota_cores,
        effective_cores=effective_cpu_count(limits.cpu_quota_cores, affinity, logical),
        host_memory_bytes=vm.total, memory_total_bytes=total,
        memory_limit_bytes=limits.memory_limit_bytes if source == "cgroup" else None,
        memory_source=source,
    )


def cpu_capability(static: CpuStatic, figures: HostFigures, temperature_available: bool) -> HardwareCapability:
    """The CPU entry of a worker's capabilities (pure: built from already-read figures)."""
    features = sorted(static.flags & FEATURES_OF_INTEREST) if static.flags is not None else None
    extra: dict[str, Any] = {
        "architecture": static.architecture,
        "cores_physical": figures.physical,
        "cores_logical": figures.logical,
        "cores_affinity": figures.affinity,
        "cpu_quota_cores": figures.quota_cores,
        "cores_effective": figures.effective_cores,
        "frequency_max_mhz": static.frequency_max_mhz,
        "features": features,
        "host_memory_bytes": figures.host_memory_bytes,
        "memory_limit_bytes": figures.memory_limit_bytes,
        "memory_source": figures.memory_source,
        "temperature_sensor": temperature_available,
    }
    scores = {}
    if figures.effective_cores is not None:
        scores["compute"] = score_cores(figures.effective_cores)
    if figures.memory_total_bytes is not None:
        scores["memory"] = score_memory(figures.memory_total_bytes, gpu=False)
    usable = figures.affinity or figures.logical
    return HardwareCapability(
        hardware_type=HardwareType.CPU, vendor=static.vendor, model=static.model,
        compute_units=usable, cores=figures.physical, memory_bytes=figures.memory_total_bytes,
        supported_precisions=precisions_from_flags(set(static.flags) if static.flags else None),
        capabilities=extra, scores=scores,
    )
