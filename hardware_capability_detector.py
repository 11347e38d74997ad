"""What hardware a worker has, for hardware-aware scheduling.

Public names: :class:`HardwareCapabilityDetector`, :class:`HardwareType`, :class:`HardwareVendor`,
:class:`PrecisionType`, :class:`CapabilityScore`, :class:`HardwareCapability`,
:class:`WorkerHardwareCapabilities`. The parts live in ``fleet_hwmon.capabilities``; this module
composes them and offers a command line::

    python hardware_capability_detector.py [--worker-id ID] [--db-path X] [--browsers] [--browser-path PATH] [--json]

Example::

    detector = HardwareCapabilityDetector(worker_id="worker-1", db_path="metrics.duckdb")
    caps = detector.detect_all_capabilities()
    detector.store_capabilities(caps)
    detector.find_compatible_workers({"hardware": ["gpu"], "min_cuda_compute": 8.0})

Detection reads the host once per call; what cannot change while the process runs (CPU model and
flags, accelerators on the bus, NVML initialisation) is probed on the first call and cached, so
later calls take milliseconds. Nothing here sits on the sampling path.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Self

import psutil

from fleet_hwmon.capabilities import storage
from fleet_hwmon.capabilities.accelerators import detect_accelerators
from fleet_hwmon.capabilities.cpu import (
    cpu_capability,
    cpu_temperature_status,
    probe_cpu_static,
    read_host_figures,
)
from fleet_hwmon.capabilities.fingerprint import hardware_fingerprint
from fleet_hwmon.capabilities.gpu import nvidia_capabilities
from fleet_hwmon.capabilities.matching import find_compatible, to_coordinator
from fleet_hwmon.capabilities.model import (
    UNHEALTHY,
    CapabilityScore,
    HardwareCapability,
    HardwareType,
    HardwareVendor,
    PrecisionType,
    WorkerHardwareCapabilities,
)
from fleet_hwmon.capabilities.web import (
    browser_status_line,
    browser_summary,
    webgpu_capabilities,
    webnn_capabilities,
)
from fleet_hwmon.printable import printable
from fleet_hwmon.sampling.cgroup import CgroupReader
from fleet_hwmon.sampling.nvml import DRIVER_MISMATCH_REASON, NvmlGateway, NvmlStatus, get_gateway

__all__ = [
    "CapabilityScore",
    "HardwareCapability",
    "HardwareCapabilityDetector",
    "HardwareType",
    "HardwareVendor",
    "PrecisionType",
    "WorkerHardwareCapabilities",
]

log = logging.getLogger(__name__)
GIB = 1024**3


def _default_probe(executable_path: str | None) -> dict[str, Any]:
    """Run the headless-browser probe; a missing probe module reads as status "unknown"."""
    try:
        from fleet_hwmon.capabilities.browser import probe_browser
    except ImportError as err:
        return {"status": "unknown", "reason": f"browser probe unavailable: {err}", "browser_version": None,
                "flags": [], "webgpu": {"available": None}, "webnn": {"available": None}}
    return probe_browser(executable_path=executable_path)


class HardwareCapabilityDetector:
    """Detects, stores and matches worker hardware capabilities.

    ``worker_id`` defaults to the hostname. ``db_path`` is a DuckDB file shared with the rest of
    the product (opened through :func:`fleet_hwmon.store.open_store` on first use; raises
    ``StoreLockedError`` when another process holds it); without it, stored records live in
    memory. ``enable_browser_detection`` makes :meth:`detect_all_capabilities` also probe
    WebGPU/WebNN in headless Chromium (``browser_executable_path`` picks the binary).

    Keyword-only seams for tests: ``nvml`` (an :class:`NvmlGateway`; default the process-wide
    one), ``psutil_module``, ``cgroup`` (:class:`CgroupReader`), ``sys_root``, ``dev_root``,
    ``env``, ``cpuinfo_path``, ``system``/``machine`` (platform), ``browser_probe``
    (``callable(executable_path) -> probe result dict``).
    """

    def __init__(self, worker_id: str | None = None, db_path: str | os.PathLike[str] | None = None,
                 enable_browser_detection: bool = False, browser_executable_path: str | None = None, *,
                 nvml: NvmlGateway | None = None, psutil_module: ModuleType = psutil,
                 cgroup: CgroupReader | None = None, sys_root: str | Path = "/sys", dev_root: str | Path = "/dev",
                 env: Mapping[str, str] | None = None, cpuinfo_path: str = "/proc/cpuinfo",
                 system: str | None = None, machine: str | None = None,
                 browser_probe: Callable[[str | None], dict[str, Any]] | None = None) -> None:
        self.worker_id = worker_id or socket.gethostname()
        self.db_path = None if db_path is None else str(db_path)
        self.enable_browser_detection = enable_browser_detection
        self.browser_executable_path = browser_executable_path
        self._nvml = nvml
        self._psutil = psutil_module
        self._cgroup = cgroup or CgroupReader()
        self._sys_root, self._dev_root = sys_root, dev_root
        self._env = env
        self._cpuinfo_path = cpuinfo_path
        self._system = system or platform.system()
        self._machine = machine or platform.machine()
        self._browser_probe = browser_probe or _default_probe
        self._browser_result: dict[str, Any] | None = None
        self._accelerators: list[HardwareCapability] | None = None
        self._temperature: tuple[bool, str] | None = None
        self._store: Any = None
        self._memory_registry: dict[str, WorkerHardwareCapabilities] = {}

    # -- detection ------------------------------------------------------------------------------
    @property
    def nvml(self) -> NvmlGateway:
        if self._nvml is None:
            self._nvml = get_gateway()
        return self._nvml

    def detect_all_capabilities(self) -> WorkerHardwareCapabilities:
        """CPU, memory, NVIDIA GPUs (NVML), other accelerators; browsers too when enabled.

        Never raises for missing hardware or libraries: what cannot be read is absent, with a
        line in ``status`` (``"nvml": "nvml: unavailable (…)"``, ``"cpu_temperature": …``).
        """
        static = probe_cpu_static(self._cpuinfo_path, self._system)
        figures = read_host_figures(self._psutil, self._cgroup)
        if self._temperature is None:
            self._temperature = cpu_temperature_status(self._psutil)
        temperature_ok, temperature_line = self._temperature
        status = {"cpu_temperature": temperature_line}
        found = [cpu_capability(static, figures, temperature_ok)]

        gpus, gpu_status = nvidia_capabilities(self.nvml, self._sys_root)
        status.update(gpu_status)
        if self.nvml.status is NvmlStatus.DRIVER_MISMATCH:
            gpus = self._previous_gpus_as_unhealthy() or gpus
        found += gpus

        if self._accelerators is None:
            self._accelerators = detect_accelerators(
                sys_root=self._sys_root, dev_root=self._dev_root, env=self._env, system=self._system,
                machine=self._machine, cpu_model=static.model, memory_bytes=figures.host_memory_bytes)
        found += [HardwareCapability.from_dict(c.to_dict()) for c in self._accelerators]  # callers may mutate

        caps = WorkerHardwareCapabilities(
            worker_id=self.worker_id, hostname=socket.gethostname(), os_name=self._system,
            os_version=platform.release(), cpu_count=figures.logical, cpu_count_effective=figures.effective_cores,
            total_memory_bytes=figures.memory_total_bytes, memory_source=figures.memory_source,
            hardware_capabilities=found, detected_at=datetime.now(UTC), status=status,
        )
        caps.hardware_fingerprint = self.generate_hardware_fingerprint(caps)
        if self.enable_browser_detection:
            self._add_browser(caps)
        return caps

    def _previous_gpus_as_unhealthy(self) -> list[HardwareCapability]:
        """Under a driver mismatch NVML cannot name the GPUs; the last good record still can (C12)."""
        try:
            previous = self.get_worker_capabilities(self.worker_id)
        except Exception as err:  # noqa: BLE001 - a storage problem must not stop detection
            log.warning("could not read the previous capability record of %s: %s", self.worker_id, err)
            return []
        if previous is None:
            return []
        carried = []
        for cap in previous.of_type(HardwareType.GPU, healthy_only=False):
            if cap.vendor is HardwareVendor.NVIDIA:
                cap.health = UNHEALTHY
                cap.capabilities["health_reason"] = DRIVER_MISMATCH_REASON
                cap.capabilities["nvml_status"] = NvmlStatus.DRIVER_MISMATCH.value
                carried.append(cap)
        return carried

    def _probe_browser(self) -> dict[str, Any]:
        if self._browser_result is None:
            try:
                self._browser_result = self._browser_probe(self.browser_executable_path)
            except Exception as err:  # noqa: BLE001 - the probe is documented never to raise; guard anyway
                self._browser_result = {"status": "unknown", "reason": f"browser probe failed: {err}",
                                        "flags": [], "webgpu": {}, "webnn": {}}
        return self._browser_result

    def detect_webgpu_capabilities(self) -> list[HardwareCapability]:
        """WebGPU adapters the browser really hands out (C32); ``[]`` when unavailable or unknown."""
        return webgpu_capabilities(self._probe_browser())[0]

    def detect_webnn_capabilities(self) -> list[HardwareCapability]:
        """WebNN with its per-device (cpu/gpu/npu) results; ``[]`` when unavailable or unknown."""
        return webnn_capabilities(self._probe_browser())[0]

    def _add_browser(self, caps: WorkerHardwareCapabilities) -> None:
        result = self._probe_browser()
        webgpu, webgpu_status = webgpu_capabilities(result)
        webnn, webnn_status = webnn_capabilities(result)
        caps.hardware_capabilities += webgpu + webnn
        caps.status.update(browser=browser_status_line(result), **webgpu_status, **webnn_status)
        caps.browser = browser_summary(result)

    def detect_all_capabilities_with_browsers(self) -> WorkerHardwareCapabilities:
        """:meth:`detect_all_capabilities` plus WebGPU/WebNN, whatever ``enable_browser_detection`` says.

        The fingerprint is unchanged by the browser entries.
        """
        caps = self.detect_all_capabilities()
        if not self.enable_browser_detection:
            self._add_browser(caps)
        return caps

    @staticmethod
    def generate_hardware_fingerprint(caps: WorkerHardwareCapabilities) -> str:
        """Stable 32-hex-digit hash of the scheduling-relevant hardware (no hostname, no times)."""
        return hardware_fingerprint(caps)

    # -- storage --------------------------------------------------------------------------------
    def _open(self) -> Any:
        if self._store is None and self.db_path is not None:
            from fleet_hwmon.store import open_store

            self._store = open_store(self.db_path)
        return self._store

    def store_capabilities(self, caps: WorkerHardwareCapabilities) -> None:
        """Insert or update ``caps`` (one row per worker). Raises the store's errors."""
        self._memory_registry[caps.worker_id] = WorkerHardwareCapabilities.from_dict(caps.to_dict())
        store = self._open()
        if store is not None:
            storage.save(store, caps)

    def get_worker_capabilities(self, worker_id: str) -> WorkerHardwareCapabilities | None:
        store = self._open()
        if store is not None:
            return storage.load(store, worker_id)
        found = self._memory_registry.get(worker_id)
        return None if found is None else WorkerHardwareCapabilities.from_dict(found.to_dict())

    def _all_workers(self) -> list[WorkerHardwareCapabilities]:
        store = self._open()
        if store is not None:
            return storage.load_all(store)
        return [self._memory_registry[k] for k in sorted(self._memory_registry)]

    def get_workers_by_hardware_type(self, hardware_type: HardwareType | str) -> list[str]:
        """Worker ids with healthy, real hardware of this type, ordered by id."""
        store = self._open()
        if store is not None:
            return storage.workers_with_type(store, hardware_type)
        wanted = HardwareType(hardware_type).value
        return [w.worker_id for w in self._all_workers() if wanted in w.hardware_types]

    def find_compatible_workers(self, requirements: Mapping[str, Any], min_memory_gb: float | None = None,
                                preferred_hardware_types: Sequence[str | HardwareType] | None = None) -> list[str]:
        """Stored workers that satisfy ``requirements`` (the scheduler's keys and matcher: docs/requirements.md),
        preferred hardware types first, then by worker id."""
        return find_compatible(self._all_workers(), requirements, min_memory_gb, preferred_hardware_types)

    def to_coordinator_capabilities(self, caps: WorkerHardwareCapabilities | None = None) -> dict[str, Any]:
        """The coordinator contract's ``capabilities`` dict for ``caps`` (detected now when None)."""
        return to_coordinator(caps if caps is not None else self.detect_all_capabilities())

    def close(self) -> None:
        """Release the DuckDB store (the last user of a file closes it). Idempotent."""
        store, self._store = self._store, None
        if store is not None:
            from fleet_hwmon.store import close_store

            close_store(store)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- command line -------------------------------------------------------------------------------
def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / GIB:.1f} GiB"


def summary(caps: WorkerHardwareCapabilities) -> str:
    """A readable multi-line summary of one worker's capabilities."""
    lines = [f"worker {caps.worker_id} on {caps.hostname} ({caps.os_name} {caps.os_version})",
             (f"  cpus: {caps.cpu_count} logical, {caps.cpu_count_effective} usable; "
              f"memory: {_gib(caps.total_memory_bytes)} ({caps.memory_source})")]
    for cap in caps.hardware_capabilities:
        precisions = ",".join(p.value for p in cap.supported_precisions) or "-"
        flag = "" if cap.healthy else f" [{cap.health}]"
        flag += " [software]" if cap.software_only else ""
        lines.append(f"  {cap.hardware_type.value:7s} {cap.vendor.value:8s} {cap.model}"
                     f"  mem={_gib(cap.memory_bytes)}  precisions={precisions}{flag}")
    lines += [f"  {line}" for line in caps.status.values()]
    lines.append(f"  fingerprint: {caps.hardware_fingerprint}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Detect this worker's hardware capabilities.")
    parser.add_argument("--worker-id", help="worker id (default: the hostname)")
    parser.add_argument("--db-path", help="DuckDB file to store the record in")
    parser.add_argument("--browsers", action="store_true", help="also probe WebGPU/WebNN in headless Chromium")
    parser.add_argument("--browser-path", help="browser executable for --browsers")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    args = parser.parse_args(argv)
    if args.browser_path is not None and not (os.path.isfile(args.browser_path)
                                              and os.access(args.browser_path, os.X_OK)):
        parser.error(f"--browser-path {printable(args.browser_path)}: not an executable file")
    import duckdb

    from fleet_hwmon.store import StoreError

    not_stored: Exception | None = None
    detector = HardwareCapabilityDetector(worker_id=args.worker_id, db_path=args.db_path,
                                          browser_executable_path=args.browser_path)
    try:
        caps = (detector.detect_all_capabilities_with_browsers() if args.browsers
                else detector.detect_all_capabilities())
        if args.db_path:
            try:
                detector.store_capabilities(caps)
            except (StoreError, duckdb.Error, OSError) as err:  # the detection still stands: printed below
                not_stored = err
        if args.json:
            print(json.dumps({**caps.to_dict(), "coordinator": detector.to_coordinator_capabilities(caps)},
                             indent=2, allow_nan=False))
        else:
            print(printable(summary(caps), multiline=True))  # GPU and CPU names as the hardware gives them
    finally:
        try:
            detector.close()
        except (StoreError, duckdb.Error, OSError) as err:
            not_stored = not_stored or err
    if not_stored is not None:
        print(f"error: the capabilities were detected but not stored in {args.db_path}: "
              f"{printable(str(not_stored))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
