"""The single NVML gateway of the product: every NVIDIA GPU reading goes through here.

NVML is optional. ``pynvml`` may be missing, its shared library may be missing (CPU-only
workers, Macs), the driver may be unloaded, or the kernel module and the user-space library
may disagree after a driver update (``NVML_ERROR_LIB_RM_VERSION_MISMATCH``, value 18: the GPUs
exist but cannot be used). :class:`NvmlGateway` records which of these happened in
:class:`NvmlStatus` with a readable ``reason`` and never raises out of a failed init.

Per-field failures (``NVMLError_NotSupported`` for power or fan on some boards, utilization
under MIG) turn that one field into ``None``; each (GPU, field) failure is logged once and
NotSupported fields are not asked again. A GPU that answers ``GpuIsLost`` or ``Unknown`` (fell
off the bus) is not a field failure: it is marked lost, reported with ``health="lost"`` and no
figures, and re-probed with exponential backoff while the other GPUs keep being read (see
``fleet_hwmon.sampling.gpu_health``). Critical XID events, uncorrectable ECC errors, retired
pages and clock-throttle reasons are read where NVML offers them. GPUs are identified by UUID, never by index, because
NVML numbers them by PCI bus while CUDA numbers them fastest first
(see :func:`cuda_visible_devices_for`).

Example::

    gateway = get_gateway()
    if gateway.available:
        for gpu in gateway.read_gpus():
            print(gpu.uuid, gpu.utilization_percent, gpu.memory_used_bytes)
    else:
        print(gateway.reason)   # "nvml: unavailable (NVML Shared Library Not Found)"
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fleet_hwmon import lifecycle
from fleet_hwmon.sample import GpuUtilization
from fleet_hwmon.sampling.gpu_health import LOST, GpuHealth, GpuLost, throttle_names
from fleet_hwmon.sampling.nvml_processes import ProcessQueries

log = logging.getLogger(__name__)

# NVML return codes (nvml.h); matched by value so any pynvml-like module works.
_ERR_NOT_SUPPORTED = 3
_ERR_DRIVER_NOT_LOADED = 9
_ERR_LIBRARY_NOT_FOUND = 12
_ERR_FUNCTION_NOT_FOUND = 13
_ERR_TIMEOUT = 10
_ERR_GPU_IS_LOST = 15
_ERR_LIB_RM_VERSION_MISMATCH = 18
_ERR_UNKNOWN = 999
_LOST_ERRORS = {_ERR_GPU_IS_LOST: "GpuIsLost", _ERR_UNKNOWN: "Unknown"}
_XID_CRITICAL_EVENT = 0x8  # nvmlEventTypeXidCriticalError
_ECC_UNCORRECTED, _ECC_VOLATILE = 1, 0
_PAGE_RETIREMENT_CAUSES = (0, 1)  # multiple single-bit ECC errors, double-bit ECC error
_NVML_TEMPERATURE_GPU = 0
_NVML_CLOCK_SM = 1
_NVML_CLOCK_MEM = 2

DRIVER_MISMATCH_REASON = "GPU present but unhealthy (driver mismatch)"


class NvmlStatus(enum.Enum):
    """Why GPU monitoring is (or is not) on. Only ``OK`` means GPUs can be read."""

    OK = "ok"
    NOT_INSTALLED = "not_installed"  # ``import pynvml`` failed
    LIBRARY_NOT_FOUND = "library_not_found"  # libnvidia-ml.so / nvml.dll absent
    DRIVER_NOT_LOADED = "driver_not_loaded"
    DRIVER_MISMATCH = "driver_mismatch"  # value 18: GPUs present but unusable until reboot
    NO_DEVICES = "no_devices"  # NVML works but sees no GPU
    ERROR = "error"  # any other init failure

    @property
    def gpus_present(self) -> bool | None:
        """True when GPUs are known to exist (even unhealthy), False when known absent, else None."""
        if self in (NvmlStatus.OK, NvmlStatus.DRIVER_MISMATCH):
            return True
        if self is NvmlStatus.NO_DEVICES:
            return False
        return None


def _text(value: Any) -> str:
    """NVML strings: older pynvml returns ``bytes``, newer ``str``."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").rstrip("\x00")
    return str(value)


def _error_value(err: BaseException) -> int | None:
    value = getattr(err, "value", None)
    return value if isinstance(value, int) else None


def _error_types(module: Any) -> tuple[type[BaseException], ...]:
    """What an NVML call may raise: the binding's NVMLError, a function missing from an older
    binding (AttributeError), ctypes / decoding trouble. Anything else is a bug and propagates."""
    nvml_error = getattr(module, "NVMLError", None)
    base: tuple[type[BaseException], ...] = (AttributeError, OSError, TypeError, ValueError)
    return (nvml_error, *base) if isinstance(nvml_error, type) else base


def cuda_visible_devices_for(uuid: str) -> dict[str, str]:
    """Launch environment that pins a task to one GPU or MIG instance by UUID.

    Returns ``{"CUDA_VISIBLE_DEVICES": "GPU-…"}`` (or ``"MIG-…"``). A UUID works whatever the
    CUDA device order, so NVML and CUDA numbering never need to agree.
    Raises ``ValueError`` for anything that is not a GPU or MIG UUID (an index, say).
    """
    uuid = uuid.strip()
    if not uuid.startswith(("GPU-", "MIG-")):
        raise ValueError(f"expected a GPU-… or MIG-… UUID, got {uuid!r}")
    return {"CUDA_VISIBLE_DEVICES": uuid}


def pick_least_loaded_gpu(gpus: Iterable[GpuUtilization]) -> GpuUtilization | None:
    """The GPU with the lowest known utilization (then memory use, then UUID for a stable tie-break).

    GPUs whose utilization is unknown (MIG, NotSupported) rank after every GPU with a known
    figure: unknown load is never taken for idle. ``None`` when ``gpus`` is empty.
    """
    def key(gpu: GpuUtilization) -> tuple[int, float, float, str]:
        util = gpu.utilization_percent
        mem = gpu.memory_percent
        return (util is None, util if util is not None else 0.0,
                mem if mem is not None else 100.0, gpu.uuid)

    ranked = sorted(gpus, key=key)
    return ranked[0] if ranked else None


@dataclass(frozen=True, slots=True)
class _Device:
    """Static facts about one NVML device, read once at init."""

    index: int
    handle: Any
    uuid: str
    name: str
    pci_bus_id: str | None


class NvmlGateway(ProcessQueries):
    """Lazy, thread-safe access to NVML. Never raises out of init; see :attr:`status`.

    ``module`` is a pynvml-like module (tests pass a fake); ``None`` imports ``pynvml`` on first
    use. ``mig_refresh_s`` bounds how stale the cached MIG layout may be (instances can be
    created and destroyed while the worker runs). A lost GPU is re-probed after
    ``lost_backoff_s[0]`` seconds, doubling up to ``lost_backoff_s[1]``, on ``clock`` (monotonic
    seconds). ``proc_self_status`` tells whether this process sees the host's PIDs.
    """

    def __init__(self, module: Any = None, *, mig_refresh_s: float = 30.0,
                 lost_backoff_s: tuple[float, float] = (5.0, 300.0),
                 clock: Callable[[], float] = time.monotonic,
                 proc_self_status: str = "/proc/self/status") -> None:
        self._module = module
        self._lock = threading.Lock()
        self._init_done = False
        self._init_succeeded = False
        self._shut_down = False
        self._status = NvmlStatus.ERROR
        self._reason: str | None = None
        self._devices: tuple[_Device, ...] = ()
        self._mig_refresh_s = mig_refresh_s
        self._mig_cache: dict[str, tuple[float, bool | None, tuple[_Device, ...]]] = {}
        self._unsupported: dict[str, set[str]] = {}
        self._logged: set[tuple[str, str]] = set()
        self._log_lock = threading.Lock()
        self._errors = _error_types(module)
        self._lost_backoff_s = lost_backoff_s
        self._clock = clock
        self._health: dict[str, GpuHealth] = {}
        self._event_set: Any = None  # None: not created yet; False: XID events not available
        self._proc_self_status = proc_self_status
        self._nested_pids: bool | None = None
        self.process_figures_unknown_reason: str | None = None  # why the last process query gave None

    # -- init / shutdown --------------------------------------------------------------------
    def _ensure_init(self) -> None:
        if self._init_done:
            return
        with self._lock:
            if self._init_done:
                return
            try:
                self._init_locked()
            finally:
                self._init_done = True

    def _init_locked(self) -> None:
        nvml = self._module
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError as err:
                self._status = NvmlStatus.NOT_INSTALLED
                self._reason = f"nvml: unavailable (pynvml is not installed: {err})"
                log.info("%s", self._reason)
                return
            self._module = nvml
        self._errors = _error_types(nvml)
        try:
            nvml.nvmlInit()
        except Exception as err:  # noqa: BLE001 - any init failure means "no NVML", never a crash
            self._status, self._reason = self._classify_init_error(err)
            log.log(logging.WARNING if self._status is NvmlStatus.DRIVER_MISMATCH else logging.INFO,
                    "%s [%s]", self._reason, err)
            return
        self._init_succeeded = True
        # Registered only after a successful init: nvmlShutdown after a failed init is an error.
        lifecycle.at_exit("nvml", self.shutdown)  # after the monitors stop (fleet_hwmon.lifecycle)
        try:
            count = int(nvml.nvmlDeviceGetCount())
            self._devices = tuple(self._describe(nvml.nvmlDeviceGetHandleByIndex(i), i)
                                  for i in range(count))
        except Exception as err:  # noqa: BLE001 - same: a broken enumeration leaves the worker CPU-only
            self._status = NvmlStatus.ERROR
            self._reason = f"nvml: unavailable (device enumeration failed: {err})"
            log.warning("%s", self._reason)
            return
        if not self._devices:
            self._status, self._reason = NvmlStatus.NO_DEVICES, "nvml: no GPU devices"
        else:
            self._status, self._reason = NvmlStatus.OK, None

    def _classify_init_error(self, err: BaseException) -> tuple[NvmlStatus, str]:
        value = _error_value(err)
        if value == _ERR_LIB_RM_VERSION_MISMATCH:
            return NvmlStatus.DRIVER_MISMATCH, DRIVER_MISMATCH_REASON
        status = {_ERR_LIBRARY_NOT_FOUND: NvmlStatus.LIBRARY_NOT_FOUND,
                  _ERR_DRIVER_NOT_LOADED: NvmlStatus.DRIVER_NOT_LOADED}.get(value, NvmlStatus.ERROR)
        try:
            detail = str(err) or type(err).__name__
        except self._errors:  # pynvml's __str__ calls into the library it could not load
            detail = f"NVML error {value}"
        return status, f"nvml: unavailable ({detail})"

    def _describe(self, handle: Any, index: int) -> _Device:
        nvml = self._module
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        try:
            name = _text(nvml.nvmlDeviceGetName(handle))
        except self._errors:
            name = f"GPU {index}"
        try:
            pci = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
        except self._errors:
            pci = None
        return _Device(index=index, handle=handle, uuid=uuid, name=name, pci_bus_id=pci)

    def shutdown(self) -> None:
        """Release NVML. Calls ``nvmlShutdown`` only when init succeeded; idempotent."""
        with self._lock:
            if not self._init_succeeded or self._shut_down:
                return
            self._shut_down = True
            if self._event_set:
                try:
                    self._module.nvmlEventSetFree(self._event_set)
                except self._errors as err:
                    log.debug("nvmlEventSetFree failed: %s", err)
            try:
                self._module.nvmlShutdown()
            except self._errors as err:
                log.debug("nvmlShutdown failed: %s", err)
        lifecycle.forget("nvml", self.shutdown)

    # -- state ------------------------------------------------------------------------------
    @property
    def status(self) -> NvmlStatus:
        self._ensure_init()
        return self._status

    @property
    def reason(self) -> str | None:
        """Why GPUs cannot be read, e.g. ``"nvml: unavailable (NVML Shared Library Not Found)"``; None when OK."""
        self._ensure_init()
        return self._reason

    @property
    def available(self) -> bool:
        """True when NVML initialised, sees at least one GPU and has not been shut down."""
        return self.status is NvmlStatus.OK and not self._shut_down

    @property
    def device_count(self) -> int:
        """Physical GPUs NVML sees (MIG instances not counted); 0 when unavailable."""
        return len(self._devices) if self.available else 0

    def unsupported_fields(self, uuid: str) -> set[str]:
        """Fields NVML answered NotSupported for on this GPU (``"power"``, ``"fan"``, ...)."""
        return set(self._unsupported.get(uuid, ()))

    # -- per-field reads --------------------------------------------------------------------
    def _field(self, uuid: str, field: str, fn_name: str, *args: Any, empty_on: int | None = None) -> Any:
        """One NVML call; any failure yields None for this field only, logged once per (GPU, field).
        The error value ``empty_on`` is an answer, not a failure: ``[]``."""
        if field in self._unsupported.get(uuid, ()):
            return None
        try:
            return getattr(self._module, fn_name)(*args)
        except self._errors as err:
            value = _error_value(err)
            if empty_on is not None and value == empty_on:
                return []
            if value in _LOST_ERRORS:
                raise GpuLost(_LOST_ERRORS[value]) from err
            permanent = value in (_ERR_NOT_SUPPORTED, _ERR_FUNCTION_NOT_FOUND) or isinstance(err, AttributeError)
            if permanent:
                self._unsupported.setdefault(uuid, set()).add(field)
            if self._first_time(uuid, field):
                log.log(logging.INFO if permanent else logging.WARNING,
                        "GPU %s: %s unavailable from %s (%s)%s", uuid, field, fn_name,
                        err or type(err).__name__, "; not asked again" if permanent else "")
            return None

    def _first_time(self, uuid: str, field: str) -> bool:
        with self._log_lock:
            if (uuid, field) in self._logged:
                return False
            self._logged.add((uuid, field))
            return True

    def _mig_layout(self, device: _Device) -> tuple[bool | None, tuple[_Device, ...]]:
        """(MIG enabled?, MIG instances) of a physical GPU, cached for ``mig_refresh_s``."""
        now = time.monotonic()
        cached = self._mig_cache.get(device.uuid)
        if cached is not None and now - cached[0] < self._mig_refresh_s:
            return cached[1], cached[2]
        nvml = self._module
        enabled: bool | None
        children: list[_Device] = []
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(device.handle)
            enabled = int(current) == 1
        except self._errors as err:
            # NotSupported on every non-MIG board: that simply means "no MIG".
            enabled = False if _error_value(err) in (_ERR_NOT_SUPPORTED, _ERR_FUNCTION_NOT_FOUND) else None
        if enabled:
            try:
                slots = int(nvml.nvmlDeviceGetMaxMigDeviceCount(device.handle))
            except self._errors:
                slots = 0
            children = [c for c in (self._mig_child(device, slot) for slot in range(slots)) if c is not None]
        self._mig_cache[device.uuid] = (now, enabled, tuple(children))
        return enabled, tuple(children)

    def _mig_child(self, parent: _Device, slot: int) -> _Device | None:
        nvml = self._module
        try:
            handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent.handle, slot)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        except self._errors:  # NVML_ERROR_NOT_FOUND: an empty slot
            return None
        try:
            name = _text(nvml.nvmlDeviceGetName(handle))
        except self._errors:
            name = f"{parent.name} MIG {slot}"
        return _Device(index=parent.index, handle=handle, uuid=uuid, name=name, pci_bus_id=parent.pci_bus_id)

    def _memory(self, device: _Device) -> tuple[int | None, int | None]:
        info = self._field(device.uuid, "memory", "nvmlDeviceGetMemoryInfo", device.handle)
        if info is None:
            return None, None
        return int(info.used), int(info.total)

    def _detailed(self, device: _Device) -> dict[str, Any]:
        uuid, handle = device.uuid, device.handle
        power_mw = self._field(uuid, "power", "nvmlDeviceGetPowerUsage", handle)
        return {
            "temperature_celsius": self._field(uuid, "temperature", "nvmlDeviceGetTemperature",
                                               handle, _NVML_TEMPERATURE_GPU),
            "power_watts": None if power_mw is None else power_mw / 1000.0,
            "fan_percent": self._field(uuid, "fan", "nvmlDeviceGetFanSpeed", handle),
            "sm_clock_mhz": self._field(uuid, "sm_clock", "nvmlDeviceGetClockInfo", handle, _NVML_CLOCK_SM),
            "memory_clock_mhz": self._field(uuid, "memory_clock", "nvmlDeviceGetClockInfo",
                                            handle, _NVML_CLOCK_MEM),
        }

    def _health_of(self, uuid: str) -> GpuHealth:
        health = self._health.get(uuid)
        if health is None:
            health = self._health[uuid] = GpuHealth(*self._lost_backoff_s)
        return health

    def health(self, uuid: str) -> tuple[str, str | None]:
        """``(state, reason)`` of a GPU: ``("ok", None)``, ``("degraded", "XID 79")``, ``("lost", "GpuIsLost")``."""
        health = self._health_of(uuid)
        return health.state, health.reason

    def _health_fields(self, device: _Device) -> dict[str, Any]:
        """XID, ECC, retired-page and throttle fields of a physical GPU, and its health after them."""
        uuid, handle = device.uuid, device.handle
        health = self._health_of(uuid)
        ecc = self._field(uuid, "ecc_uncorrectable", "nvmlDeviceGetTotalEccErrors", handle,
                          _ECC_UNCORRECTED, _ECC_VOLATILE)
        pending = self._field(uuid, "retired_pages_pending", "nvmlDeviceGetRetiredPagesPendingStatus", handle)
        retired = [self._field(uuid, f"retired_pages_{cause}", "nvmlDeviceGetRetiredPages", handle, cause)
                   for cause in _PAGE_RETIREMENT_CAUSES]
        throttle = self._field(uuid, "throttle_reasons", "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        health.check(None if ecc is None else int(ecc), None if pending is None else bool(int(pending)))
        known_retired = [len(pages) for pages in retired if pages is not None]
        return {
            "xid_count": health.xid_count, "last_xid": health.last_xid,
            "ecc_uncorrectable_errors": None if ecc is None else int(ecc),
            "retired_pages": sum(known_retired) if known_retired else None,
            "retired_pages_pending": None if pending is None else bool(int(pending)),
            "throttle_reasons": throttle_names(throttle),
        }

    def _read_xid_events(self) -> None:
        """Drain the critical XID events NVML queued since the last read (never waits)."""
        nvml = self._module
        if self._event_set is None:
            self._event_set = False
            try:
                event_set = nvml.nvmlEventSetCreate()
            except self._errors as err:
                log.info("GPU XID events unavailable: %s", err)
                return
            registered = 0
            for device in self._devices:
                try:
                    nvml.nvmlDeviceRegisterEvents(device.handle, _XID_CRITICAL_EVENT, event_set)
                    registered += 1
                except self._errors as err:
                    log.info("GPU %s: XID events unavailable: %s", device.uuid, err)
            self._event_set = event_set if registered else False
        if not self._event_set:
            return
        wait = getattr(nvml, "nvmlEventSetWait_v2", None) or nvml.nvmlEventSetWait
        for _ in range(256):  # bounded: a storm of events must not hold up the sample
            try:
                event = wait(self._event_set, 0)
            except self._errors as err:
                if _error_value(err) != _ERR_TIMEOUT and self._first_time("system", "xid_events"):
                    log.warning("reading GPU XID events failed: %s", err)
                return
            try:
                uuid = _text(nvml.nvmlDeviceGetUUID(event.device))
            except self._errors:
                continue
            self._health_of(uuid).xid(int(event.eventData))
            log.warning("GPU %s: XID %s", uuid, int(event.eventData))

    def _lost_reading(self, device: _Device, health: GpuHealth) -> GpuUtilization:
        return GpuUtilization(index=device.index, uuid=device.uuid, name=device.name,
                              pci_bus_id=device.pci_bus_id, health=LOST, health_reason=health.reason,
                              xid_count=health.xid_count, last_xid=health.last_xid)

    def _reprobe(self, device: _Device) -> _Device:
        """A fresh handle of a lost GPU by its UUID; raises :class:`GpuLost` when it vanished."""
        try:
            handle = self._module.nvmlDeviceGetHandleByUUID(device.uuid)
        except self._errors as err:
            value = _error_value(err)
            raise GpuLost(_LOST_ERRORS.get(value, "vanished")) from err
        fresh = _Device(device.index, handle, device.uuid, device.name, device.pci_bus_id)
        self._devices = tuple(fresh if d.uuid == device.uuid else d for d in self._devices)
        self._mig_cache.pop(device.uuid, None)
        return fresh

    def read_gpus(self, detailed: bool = False) -> tuple[GpuUtilization, ...]:
        """One reading per GPU, plus one per MIG instance after its parent. ``()`` when unavailable.

        Always read: utilization (``nvmlDeviceGetUtilizationRates().gpu``, percent), memory
        (``nvmlDeviceGetMemoryInfo``, bytes) and health (``health``, ``health_reason``, XID
        events, uncorrectable ECC count, retired pages, throttle reasons, each ``None`` where
        NVML does not offer it). With ``detailed``: temperature (Celsius), power
        (``nvmlDeviceGetPowerUsage`` / 1000, watts), fan (percent), SM and memory clocks (MHz).
        Under MIG the parent's and the instances' utilization is ``None`` with
        ``unavailable_reason="MIG"``. A lost GPU gives one reading with ``health="lost"`` and
        no figures; it is asked again only when its re-probe is due. Never raises.
        """
        if not self.available:
            return ()
        out: list[GpuUtilization] = []
        now_s = self._clock()
        self._read_xid_events()
        for device in self._devices:
            health = self._health_of(device.uuid)
            if not health.probe_due(now_s):
                out.append(self._lost_reading(device, health))
                continue
            try:
                if health.state == LOST:
                    device = self._reprobe(device)
                readings = self._read_device(device, detailed)
            except GpuLost as lost:
                if health.lose(lost.reason, now_s):
                    log.error("GPU %s lost (%s); re-probing with backoff", device.uuid, lost.reason)
                out.append(self._lost_reading(device, health))
                continue
            except self._errors as err:  # a failing GPU must not take the others with it
                if self._first_time(device.uuid, "*"):
                    log.warning("GPU %s: reading failed: %s", device.uuid, err)
                continue
            if health.state == LOST:
                health.answered()
                log.warning("GPU %s answers again: %s", device.uuid, health.state)
                readings = [dataclasses.replace(r, health=health.state, health_reason=health.reason)
                            for r in readings]
            out.extend(readings)
        return tuple(out)

    def _read_device(self, device: _Device, detailed: bool) -> list[GpuUtilization]:
        mig_enabled, children = self._mig_layout(device)
        used, total = self._memory(device)
        extra = self._detailed(device) if detailed else {}
        extra.update(self._health_fields(device))
        health = self._health_of(device.uuid)
        if health.state != LOST:  # a recovering GPU's state is set by the caller
            extra.update(health=health.state, health_reason=health.reason)
        if mig_enabled:
            util, reason = None, "MIG"
        else:
            rates = self._field(device.uuid, "utilization", "nvmlDeviceGetUtilizationRates", device.handle)
            util = None if rates is None else rates.gpu
            reason = None
            if util is None:
                reason = "NotSupported" if "utilization" in self._unsupported.get(device.uuid, ()) else "error"
        readings = [GpuUtilization(
            index=device.index, uuid=device.uuid, name=device.name, utilization_percent=util,
            memory_used_bytes=used, memory_total_bytes=total, pci_bus_id=device.pci_bus_id,
            mig_enabled=mig_enabled, unavailable_reason=reason, **extra)]
        for child in children:
            child_used, child_total = self._memory(child)
            readings.append(GpuUtilization(
                index=device.index, uuid=child.uuid, name=child.name, utilization_percent=None,
                memory_used_bytes=child_used, memory_total_bytes=child_total,
                pci_bus_id=device.pci_bus_id, mig_enabled=True, parent_uuid=device.uuid,
                unavailable_reason="MIG", health=extra.get("health"), health_reason=extra.get("health_reason")))
        return readings

    # -- static description -----------------------------------------------------------------
    def device_info(self) -> list[dict[str, Any]]:
        """One dict per physical GPU for the capability detector; ``[]`` when unavailable.

        Keys: ``index``, ``uuid``, ``name``, ``pci_bus_id``, ``memory_total_bytes``,
        ``compute_capability`` (``(major, minor)`` from ``nvmlDeviceGetCudaComputeCapability``),
        ``driver_version`` (``nvmlSystemGetDriverVersion``), ``cuda_driver_version``
        (``nvmlSystemGetCudaDriverVersion``, e.g. ``"12.4"``), ``mig_mode`` (bool | None),
        ``mig_instances`` (list of ``{"uuid", "name", "memory_total_bytes"}``),
        ``unsupported_fields`` (sorted names, after one detailed probe), ``health`` and
        ``health_reason`` (a lost GPU's entry has only these and its identity). Unknown values are None.
        """
        if not self.available:
            return []
        self.read_gpus(detailed=True)  # one probe so NotSupported fields are known
        driver = self._field("system", "driver_version", "nvmlSystemGetDriverVersion")
        cuda = self._field("system", "cuda_driver_version", "nvmlSystemGetCudaDriverVersion")
        cuda_text = None if cuda is None else f"{int(cuda) // 1000}.{(int(cuda) % 1000) // 10}"
        info: list[dict[str, Any]] = []
        for device in self._devices:
            state, reason = self.health(device.uuid)
            try:
                if state == LOST:
                    raise GpuLost(reason or "lost")
                capability = self._field(device.uuid, "compute_capability",
                                         "nvmlDeviceGetCudaComputeCapability", device.handle)
                mig_enabled, children = self._mig_layout(device)
                _, total = self._memory(device)
            except GpuLost as lost:
                info.append({"index": device.index, "uuid": device.uuid, "name": device.name,
                             "pci_bus_id": device.pci_bus_id, "health": LOST, "health_reason": lost.reason})
                continue
            info.append({
                "health": state,
                "health_reason": reason,
                "index": device.index,
                "uuid": device.uuid,
                "name": device.name,
                "pci_bus_id": device.pci_bus_id,
                "memory_total_bytes": total,
                "compute_capability": None if capability is None else (int(capability[0]), int(capability[1])),
                "driver_version": None if driver is None else _text(driver),
                "cuda_driver_version": cuda_text,
                "mig_mode": mig_enabled,
                "mig_instances": [{"uuid": c.uuid, "name": c.name, "memory_total_bytes": self._memory(c)[1]}
                                  for c in children],
                "unsupported_fields": sorted(self.unsupported_fields(device.uuid)),
            })
        return info

    def cuda_visible_devices_for(self, uuid: str) -> dict[str, str]:
        """See :func:`cuda_visible_devices_for`."""
        return cuda_visible_devices_for(uuid)


_default: NvmlGateway | None = None
_default_lock = threading.Lock()


def get_gateway() -> NvmlGateway:
    """The process-wide gateway (NVML is initialised at most once per process)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = NvmlGateway()
    return _default
