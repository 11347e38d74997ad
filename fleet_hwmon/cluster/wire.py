"""What a worker publishes in its heartbeat metrics, and how the coordinator reads it.

The record lives under ``worker.metrics[METRIC_KEY]`` on the worker and arrives, with every
heartbeat, in the scheduler's ``scheduler_info()["workers"][address]["metrics"][METRIC_KEY]``.
It is plain msgpack-able data (dicts, lists, str, numbers, None)::

    {"version": 1,
     "epoch": "3f2a...",          # one per plugin start; a restarted plugin counts from 0 again
     "seq": 17,                   # samples taken so far (ever increasing within an epoch)
     "sample": {...} | None,      # ResourceUtilization.to_dict() of the worker's own host
     "capabilities": {...} | None,           # the coordinator contract's capabilities dict
     "hardware_capabilities": {...} | None,  # WorkerHardwareCapabilities.to_dict()
     "process": {"pid": 123, "hostname": "h", "rss_bytes": 1, "cpu_percent": 2.0 | None},
     "paused": False,
     "interval_s": 1.0}

No import of ``distributed`` here: this module is pure and shared by both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

PLUGIN_NAME = "fleet-hwmon"
# "module:factory" of an extra metric source for the plugin (see HardwareMetricsPlugin.extra_source)
EXTRA_SOURCE_ENV = "FLEET_HWMON_EXTRA_SOURCE"
METRIC_KEY = "fleet_hwmon"
VERSION = 1


@dataclass(frozen=True)
class Published:
    """One worker's published record, as the coordinator reads it."""

    epoch: str
    seq: int
    sample: dict[str, Any] | None
    capabilities: dict[str, Any] | None
    hardware_capabilities: dict[str, Any] | None
    process: dict[str, Any]
    paused: bool
    interval_s: float | None

    @property
    def ready(self) -> bool:
        """Capabilities are detected and a first sample exists: the worker can be registered."""
        return self.capabilities is not None and self.sample is not None

    def is_newer_than(self, marker: tuple[str, int] | None) -> bool:
        """True when this record carries a sample not seen at ``marker`` (``(epoch, seq)``)."""
        if self.sample is None:
            return False
        return marker is None or marker[0] != self.epoch or self.seq > marker[1]

    @property
    def marker(self) -> tuple[str, int]:
        return (self.epoch, self.seq)


def parse_published(metrics: Mapping[str, Any] | None) -> Published | None:
    """The record in a worker's heartbeat ``metrics``; ``None`` when the worker does not run the
    plugin or the record is malformed (a newer, incompatible version included)."""
    if not isinstance(metrics, Mapping):
        return None
    raw = metrics.get(METRIC_KEY)
    if not isinstance(raw, Mapping) or raw.get("version") != VERSION:
        return None
    try:
        seq = int(raw.get("seq", 0))
    except (TypeError, ValueError):
        return None
    sample = raw.get("sample")
    caps = raw.get("capabilities")
    hw = raw.get("hardware_capabilities")
    process = raw.get("process")
    interval = raw.get("interval_s")
    return Published(
        epoch=str(raw.get("epoch", "")), seq=seq,
        sample=dict(sample) if isinstance(sample, Mapping) else None,
        capabilities=dict(caps) if isinstance(caps, Mapping) else None,
        hardware_capabilities=dict(hw) if isinstance(hw, Mapping) else None,
        process=dict(process) if isinstance(process, Mapping) else {},
        paused=bool(raw.get("paused", False)),
        interval_s=float(interval) if isinstance(interval, (int, float)) else None,
    )
