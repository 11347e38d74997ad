"""Writes ``metrics-schema-v1.duckdb``: a small metrics file in the schema of its day (every table,
nested GPU / disk / NIC / mount lists), kept so that later versions are tested against a file
they did not write. Run from the repository root: ``python tests/data/make_schema_v1_db.py``
(only when the kept file must be made again; its schema is the point, so do not regenerate it
after the record classes change)."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fleet_hwmon.sample import DiskIO, GpuUtilization, MountUsage, NicIO, ResourceUtilization
from hardware_utilization_monitor import HardwareUtilizationMonitor

GIB = 1024**3
T0 = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


def main(path: Path) -> None:
    path.unlink(missing_ok=True)
    with HardwareUtilizationMonitor("old-worker", str(path), push_only=True,
                                    wall_clock=lambda: T0 + timedelta(seconds=30)) as monitor:
        monitor.start_task_monitoring("old-task", "unit")
        for i in range(20):
            monitor.record_sample(ResourceUtilization(
                worker_id="old-worker", timestamp=T0 + timedelta(seconds=i), cpu_percent=10.0 + i,
                memory_percent=50.0, memory_total_bytes=16 * GIB, memory_used_bytes=8 * GIB,
                gpus=(GpuUtilization(0, "GPU-old", "NVIDIA T4", 20.0 + i, 2 * GIB, 16 * GIB, 55.0, 70.0),),
                disks=(DiskIO("sda", 1e6, 2e6),), nics=(NicIO("eth0", 3e3, 4e3),),
                mounts=(MountUsage("/", 40.0, 60 * GIB, 100 * GIB),), task_ids=("old-task",)))
        monitor.stop_task_monitoring("old-task", success=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("metrics-schema-v1.duckdb"))
