"""Durations people give: NaN, infinities, negatives and figures past the bounds are refused
with one clear message, by the library and by the command lines."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.durations import MAX_INTERVAL_S, checked_seconds
from hardware_utilization_monitor import HardwareUtilizationMonitor
from hardware_utilization_monitor import main as monitor_main
from run_coordinator_with_hardware_monitoring import parse_args as demo_args

REFUSED = [math.nan, math.inf, -math.inf, -1.0, 1e308, True, "5"]


@pytest.mark.parametrize("value", REFUSED + [0.0])
def test_checked_seconds_refuses_what_is_not_a_usable_interval(value):
    with pytest.raises(ValueError, match="interval_s must be a number of seconds, above 0 and at most 86,400"):
        checked_seconds("interval_s", value, MAX_INTERVAL_S)


def test_checked_seconds_takes_whole_and_fractional_seconds_and_zero_when_allowed():
    assert checked_seconds("x", 5, 10.0) == 5.0 and isinstance(checked_seconds("x", 5, 10.0), float)
    assert checked_seconds("x", 0.25, 10.0) == 0.25 and checked_seconds("x", 10.0, 10.0) == 10.0
    assert checked_seconds("x", 0, 10.0, zero=True) == 0.0
    # Any real number a caller may hold: numpy scalars, fractions.
    np = pytest.importorskip("numpy")
    assert checked_seconds("x", np.int64(5), 10.0) == 5.0 and checked_seconds("x", np.float32(0.5), 10.0) == 0.5
    assert checked_seconds("x", Fraction(1, 4), 10.0) == 0.25


@pytest.mark.parametrize("value", [math.nan, 1e308, 0.0])
def test_the_monitor_and_the_integration_refuse_such_an_interval(tmp_path, value):
    with pytest.raises(ValueError, match="interval_seconds must be a number of seconds"):
        HardwareUtilizationMonitor("w", db_path=None, interval_seconds=value)
    with pytest.raises(ValueError, match="update_interval_seconds must be a number of seconds"):
        CoordinatorHardwareMonitoringIntegration(Coordinator(), db_path=str(tmp_path / "m.duckdb"),
                                                 update_interval_seconds=value)


@pytest.mark.parametrize("argv, message", [
    (["--interval", "nan"], "argument --interval: must be a number of seconds, above 0 and at most 86,400, not nan"),
    (["--interval", "1e308"], "argument --interval: must be a number of seconds"),
    (["--duration", "nan"], "argument --duration: must be a number of seconds, 0 or more"),
    (["--duration", "-1"], "argument --duration: must be a number of seconds, 0 or more"),
    (["--duration", "soon"], "argument --duration: not a number of seconds: 'soon'"),
])
def test_the_monitor_command_line_refuses_them(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        monitor_main([*argv, "--db-path", str(tmp_path / "m.duckdb")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "m.duckdb").exists()  # refused before anything was opened


@pytest.mark.parametrize("argv, message", [
    (["--update-interval", "inf"], "argument --update-interval: must be a number of seconds, above 0"),
    (["--update-interval", "0"], "argument --update-interval: must be a number of seconds, above 0"),
    (["--duration", "nan"], "argument --duration: must be a number of seconds, above 0"),
    (["--duration", "1e308"], "argument --duration: must be a number of seconds, above 0 and at most 31,622,400"),
])
def test_the_demo_command_line_refuses_them(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        demo_args(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
