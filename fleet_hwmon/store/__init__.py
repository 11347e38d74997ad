"""DuckDB storage: schema derived from the typed records, and the single writer per file.

The writer (and with it DuckDB and pyarrow) is imported on first use of one of its names, so a
process that never opens a database never loads them; the errors are light and imported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fleet_hwmon.store.errors import StoreError, StoreLockedError

if TYPE_CHECKING:
    from fleet_hwmon.store.writer import MetricsStore, StoreStats, close_store, open_store

_WRITER_NAMES = frozenset({"MetricsStore", "StoreStats", "close_store", "open_store"})

__all__ = ["MetricsStore", "StoreError", "StoreLockedError", "StoreStats", "close_store", "open_store"]


def __getattr__(name: str) -> Any:
    if name in _WRITER_NAMES:
        return getattr(importlib.import_module("fleet_hwmon.store.writer"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
