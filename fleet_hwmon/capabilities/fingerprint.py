"""A stable hash of the hardware that matters for scheduling.

Same machine, same fingerprint: on every run and after a reboot. Changing a GPU (or its MIG
layout, or the container's CPU / memory limit) changes it. What is left out, and why:

- the hostname: a renamed host is still the same hardware, and hostnames in containers change
  on every start;
- times, utilization, free memory, driver versions: they change without the hardware changing;
- browser-derived entries (WebGPU, WebNN): they depend on the browser build and launch flags,
  and whether a browser probe ran at all must not change the machine's identity.

Memory is rounded to 1/4 GiB because MemTotal moves by a few MiB between kernel versions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fleet_hwmon.capabilities.model import HardwareType, WorkerHardwareCapabilities

_BROWSER_TYPES = {HardwareType.WEBGPU, HardwareType.WEBNN}
_QUARTER_GIB = 2**28


def _memory(value: int | None) -> int | None:
    return None if value is None else round(value / _QUARTER_GIB)


def fingerprint_material(caps: WorkerHardwareCapabilities) -> dict[str, Any]:
    """The canonical, JSON-ready facts the fingerprint hashes (exposed so a change can be explained)."""
    devices = []
    for cap in caps.hardware_capabilities:
        if cap.hardware_type in _BROWSER_TYPES:
            continue
        extra = cap.capabilities
        entry: dict[str, Any] = {
            "type": cap.hardware_type.value, "vendor": cap.vendor.value, "model": cap.model,
            "id": cap.device_id, "memory": _memory(cap.memory_bytes), "health": cap.health,
        }
        if cap.hardware_type is HardwareType.CPU:
            entry.update(arch=extra.get("architecture"), logical=extra.get("cores_logical"),
                         physical=extra.get("cores_physical"), effective=extra.get("cores_effective"))
        if extra.get("mig_instances"):
            entry["mig"] = sorted((m.get("uuid"), _memory(m.get("memory_total_bytes")))
                                  for m in extra["mig_instances"])
        devices.append(entry)
    devices.sort(key=lambda d: json.dumps(d, sort_keys=True))
    return {"os": caps.os_name, "memory": _memory(caps.total_memory_bytes), "devices": devices}


def hardware_fingerprint(caps: WorkerHardwareCapabilities) -> str:
    """Hex SHA-256 (first 32 characters) of :func:`fingerprint_material`."""
    text = json.dumps(fingerprint_material(caps), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
