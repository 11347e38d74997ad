"""Capability records in DuckDB, through the product's single writer per file.

Table ``hardware_capabilities`` (created by :mod:`fleet_hwmon.store`'s schema)::

    worker_id VARCHAR PRIMARY KEY, fingerprint VARCHAR, hostname VARCHAR, os VARCHAR,
    cpu_count INTEGER, total_memory_bytes BIGINT, hardware_types VARCHAR[],
    detected_at TIMESTAMPTZ, capabilities JSON

One row per worker: storing again replaces the row (``ON CONFLICT (worker_id) DO UPDATE``).
The scalar columns are for SQL filters; the ``capabilities`` column holds the whole record's
``to_dict()``, which is what is read back, so every field round-trips.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from fleet_hwmon.capabilities.model import HardwareType, WorkerHardwareCapabilities

_UPSERT = (
    "INSERT INTO hardware_capabilities (worker_id, fingerprint, hostname, os, cpu_count, "
    "total_memory_bytes, hardware_types, detected_at, capabilities) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (worker_id) DO UPDATE SET fingerprint = excluded.fingerprint, hostname = excluded.hostname, "
    "os = excluded.os, cpu_count = excluded.cpu_count, total_memory_bytes = excluded.total_memory_bytes, "
    "hardware_types = excluded.hardware_types, detected_at = excluded.detected_at, "
    "capabilities = excluded.capabilities"
)


class Store(Protocol):
    """What this module needs from :func:`fleet_hwmon.store.open_store`'s result."""

    def write(self, sql: str, params: list | tuple = ()) -> None: ...
    def query(self, sql: str, params: list | tuple = ()) -> list[tuple]: ...


def save(store: Store, caps: WorkerHardwareCapabilities) -> None:
    """Insert or replace the row of ``caps.worker_id``. Raises what the store raises."""
    store.write(_UPSERT, [
        caps.worker_id, caps.hardware_fingerprint, caps.hostname, caps.os_name, caps.cpu_count,
        caps.total_memory_bytes, caps.hardware_types, caps.detected_at,
        json.dumps(caps.to_dict(), allow_nan=False),
    ])


def _decode(value: Any) -> WorkerHardwareCapabilities:
    data = json.loads(value) if isinstance(value, str) else value
    return WorkerHardwareCapabilities.from_dict(data)


def load(store: Store, worker_id: str) -> WorkerHardwareCapabilities | None:
    """The stored record of ``worker_id``; None when there is none."""
    rows = store.query("SELECT capabilities FROM hardware_capabilities WHERE worker_id = ?", [worker_id])
    return _decode(rows[0][0]) if rows else None


def load_all(store: Store) -> list[WorkerHardwareCapabilities]:
    """Every stored record, ordered by worker id."""
    rows = store.query("SELECT capabilities FROM hardware_capabilities ORDER BY worker_id")
    return [_decode(row[0]) for row in rows]


def workers_with_type(store: Store, hardware_type: HardwareType | str) -> list[str]:
    """Worker ids whose usable hardware includes ``hardware_type``, ordered by worker id."""
    value = HardwareType(hardware_type).value
    rows = store.query("SELECT worker_id FROM hardware_capabilities WHERE list_contains(hardware_types, ?) "
                       "ORDER BY worker_id", [value])
    return [row[0] for row in rows]
