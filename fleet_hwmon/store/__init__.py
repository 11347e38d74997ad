"""DuckDB storage: schema derived from the typed records, and the single writer per file."""

from fleet_hwmon.store.writer import (
    MetricsStore,
    StoreError,
    StoreLockedError,
    StoreStats,
    close_store,
    open_store,
)

__all__ = ["MetricsStore", "StoreError", "StoreLockedError", "StoreStats", "close_store", "open_store"]
