"""Turn a browser probe result (``fleet_hwmon.capabilities.browser.probe_browser``) into capabilities.

The probe says ``None`` for "could not tell". Only an explicit ``available: True`` becomes a
capability; a software adapter (SwiftShader, llvmpipe) is recorded as ``software_only`` and never
counts as hardware (C32). Whatever the outcome, the status lines and the browser summary
(version, launch flags) go into the worker's record.
"""

from __future__ import annotations

from typing import Any

from fleet_hwmon.capabilities.model import HardwareCapability, HardwareType, HardwareVendor

_ADAPTER_VENDORS = {"nvidia": HardwareVendor.NVIDIA, "amd": HardwareVendor.AMD, "ati": HardwareVendor.AMD,
                    "intel": HardwareVendor.INTEL, "apple": HardwareVendor.APPLE,
                    "qualcomm": HardwareVendor.QUALCOMM, "arm": HardwareVendor.ARM,
                    "microsoft": HardwareVendor.MICROSOFT, "google": HardwareVendor.GOOGLE}


def browser_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The part of a probe result that belongs in the worker record."""
    return {"status": result.get("status"), "reason": result.get("reason"),
            "browser_version": result.get("browser_version"), "flags": list(result.get("flags") or ())}


def _line(name: str, section: dict[str, Any] | None, result: dict[str, Any]) -> str:
    section = section or {}
    available = section.get("available")
    reason = section.get("reason") or result.get("reason")
    if available is True:
        text = "software only" if section.get("software_only") else "available"
    elif available is False:
        text = "unavailable"
    else:
        text = "unknown"
    return f"{name}: {text}" + (f" ({reason})" if reason and available is not True else "")


def webgpu_capabilities(result: dict[str, Any]) -> tuple[list[HardwareCapability], dict[str, str]]:
    """``(capabilities, status)`` for WebGPU: one entry when an adapter was obtained."""
    section = result.get("webgpu") or {}
    status = {"webgpu": _line("webgpu", section, result)}
    if section.get("available") is not True:
        return [], status
    adapter = section.get("adapter") or {}
    software = bool(section.get("software_only"))
    vendor_text = str(adapter.get("vendor") or "").lower()
    vendor = HardwareVendor.SOFTWARE if software else _ADAPTER_VENDORS.get(vendor_text, HardwareVendor.UNKNOWN)
    model = (adapter.get("description") or adapter.get("device") or adapter.get("architecture")
             or "WebGPU adapter")
    return [HardwareCapability(
        hardware_type=HardwareType.WEBGPU, vendor=vendor, model=str(model),
        capabilities={**browser_summary(result), "software_only": software, "adapter": adapter,
                      "features": list(adapter.get("features") or ())},
    )], status


def webnn_capabilities(result: dict[str, Any]) -> tuple[list[HardwareCapability], dict[str, str]]:
    """``(capabilities, status)`` for WebNN: one entry when ``navigator.ml`` works, with per-device results."""
    section = result.get("webnn") or {}
    status = {"webnn": _line("webnn", section, result)}
    if section.get("available") is not True:
        return [], status
    devices = dict(section.get("devices") or {})
    usable = sorted(name for name, ok in devices.items() if ok is True)
    return [HardwareCapability(
        hardware_type=HardwareType.WEBNN, vendor=HardwareVendor.UNKNOWN,
        model=f"WebNN ({', '.join(usable) or 'no device'})",
        capabilities={**browser_summary(result), "devices": devices, "usable_devices": usable},
    )], status


def browser_status_line(result: dict[str, Any]) -> str:
    version = result.get("browser_version")
    text = f"browser: {result.get('status') or 'unknown'}"
    if version:
        text += f" ({version})"
    if result.get("reason"):
        text += f": {result['reason']}"
    return text
