"""At interpreter exit the monitors stop (threads joined, last samples written) before NVML is
shut down, and NVML's init and shutdown stay balanced with the host application's own calls.
A real child process that exits without stopping anything; the GPU is the NVML fake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import atexit, json, sys, time
import duckdb
from tests.fakes.nvml import make_fake_nvml, rtx_3060

fake = make_fake_nvml([rtx_3060()])
refs = {"inits": 0, "shutdowns": 0, "open": 0}
plain_init, plain_shutdown = fake.nvmlInit, fake.nvmlShutdown

def counted_init():  # NVML counts its users: each init needs its own shutdown
    plain_init()
    refs["inits"] += 1
    refs["open"] += 1

def counted_shutdown():
    refs["shutdowns"] += 1
    refs["open"] -= 1
    if refs["open"] == 0:
        plain_shutdown()
    time.sleep(0.2)  # a slow shutdown: a sampler still running meanwhile would read no GPU

fake.nvmlInit, fake.nvmlShutdown = counted_init, counted_shutdown
db_path = sys.argv[1]

def report():  # registered first, so it runs after every other exit hook
    with duckdb.connect(db_path) as con:
        gpus = [r[0] for r in con.execute("SELECT len(gpus) FROM resource_utilization ORDER BY timestamp").fetchall()]
    print(json.dumps({**refs, "gpus_per_sample": gpus}))

atexit.register(report)
fake.nvmlInit()  # the host application's own NVML session, closed at its exit
atexit.register(fake.nvmlShutdown)

from fleet_hwmon.sampling.nvml import NvmlGateway
from hardware_utilization_monitor import HardwareUtilizationMonitor

monitor = HardwareUtilizationMonitor("w", db_path, interval_seconds=0.005, nvml=NvmlGateway(module=fake))
monitor.start_monitoring()
time.sleep(0.3)
sys.exit(0)  # no stop: the exit hooks do it
"""


def test_monitors_stop_before_nvml_shuts_down_and_init_stays_balanced(db_path):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), db_path], capture_output=True,
                            text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert (outcome["inits"], outcome["shutdowns"], outcome["open"]) == (2, 2, 0)
    gpus = outcome["gpus_per_sample"]
    assert len(gpus) >= 5 and set(gpus) == {1}  # every sample, the last ones included, read its GPU
