"""Text from samples and runs is shown without control characters: in the HTML report, the
terminal view, badges, notifications and log lines (the stored value stays as it came)."""

from __future__ import annotations

import io
import logging
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import duckdb
import pytest
from rich.console import Console

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
from fleet_hwmon.ci.badges import generate_badge_svg
from fleet_hwmon.ci.notify.render import make_environment, render, template_context
from fleet_hwmon.ci.report import FailedTest, RunReport
from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.demo.live import LiveView
from fleet_hwmon.printable import printable, template_value

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # anything but tab and newline
WORKER = "box-\x1b[31m7\x07"  # shown as "box-7"
GPU_NAME = "\x1b[31mGPU\x07"  # shown as "GPU"


@pytest.mark.parametrize("text, shown", [
    ("\x1b[31mGPU\x07", "GPU"),  # colour, then the bell
    ("a\x1b]0;new title\x07b", "ab"),  # a window-title string
    ("\x1b]8;;http://x.test\x1b\\link\x1b]8;;\x1b\\", "link"),  # a hyperlink, ended by ESC \
    ("/mnt/\x1b[2J\x1b[Hdata", "/mnt/data"),  # clear the screen, cursor home
    ("\x9b2Jeth0", "eth0"),  # the one-character (C1) form of CSI
    ("\x1bcpython", "python"),  # a two-character escape (full reset)
    ("gpu\x00\x08\x7f\x85\x9c0", "gpu0"),  # NUL, backspace, DEL, C1 controls
    ("name\rover", "nameover"),  # a carriage return would overwrite the line
    ("two\nlines\tand a tab", "two lines and a tab"),
    ("mount \ufffd \u00e9t\u00e9 GPU-\u00b5", "mount \ufffd \u00e9t\u00e9 GPU-\u00b5"),  # U+FFFD and letters stay
    ("\x1b]0;no end", "0;no end"),  # an unended string: only its start goes
    ("box\uffff-\ufffe-\ud800", "box\ufffd-\ufffd-\ufffd"),  # what no XML can hold becomes U+FFFD
])
def test_printable_removes_escape_sequences_and_control_characters(text, shown):
    assert printable(text) == shown


def test_multiline_keeps_tab_and_newline_and_templates_keep_markup():
    from markupsafe import Markup

    assert printable("Traceback:\n\tline \x1b[1m1\x1b[0m\r\n", multiline=True) == "Traceback:\n\tline 1\n"
    kept = template_value(Markup("<b>\x1b[31mGPU</b>"))
    assert kept == Markup("<b>GPU</b>") and isinstance(kept, Markup)
    assert template_value(3) == 3 and template_value("plain") == "plain"


def test_html_report_shows_names_without_control_characters_and_the_store_keeps_them(tmp_path):
    coordinator = Coordinator()
    coordinator.register_worker(WORKER, {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 16}})
    db = str(tmp_path / "m.duckdb")
    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db, detect_capabilities=False) as integration:
        integration.update_worker_utilization(WORKER, {
            "timestamp": datetime.now(timezone.utc).isoformat(), "cpu_percent": 20.0,
            "gpus": [{"index": 0, "uuid": "GPU-1", "name": GPU_NAME, "utilization_percent": 50.0,
                      "memory_used_bytes": 1, "memory_total_bytes": 2**34}],
            "mounts": [{"mountpoint": "/mnt/\x1b[2Jdata", "usage_percent": 10.0}]})
        path = integration.generate_html_report(str(tmp_path / "report.html"))
    html = path.read_text(encoding="utf-8")
    assert CONTROL.search(html) is None
    assert "box-7" in html and "box-\x1b" not in html
    with duckdb.connect(db, read_only=True) as con:
        stored = con.execute("SELECT worker_id, gpus[1].name FROM resource_utilization").fetchall()
    assert stored == [(WORKER, GPU_NAME)]  # the data stays as it came; only its display is cleaned


def test_terminal_view_shows_names_as_plain_printable_text():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)  # no colours of its own
    frame = LiveView(1).frame({WORKER: {"current": {"cpu_percent": 5.0}, "stale": "no sample for 9 s\x1b[2J"}},
                              {}, 0, {WORKER: ["[bold]t\x1b]0;x\x07-1"]})
    console.print(frame)
    shown = buffer.getvalue()
    assert CONTROL.search(shown) is None  # no escape sequence reaches the terminal
    assert "box-7" in shown and "[bold]t-1" in shown and "no sample for 9 s" in shown  # no rich markup either


def test_chart_is_valid_svg_naming_series_without_control_characters():
    """Names reach pygal clean: lxml (pygal's writer when installed) refuses control characters,
    and ElementTree writes them into SVG that no XML parser reads."""
    from fleet_hwmon.reports.charts import line_chart

    times = [datetime(2026, 1, 1, 12, 0, s, tzinfo=timezone.utc) for s in (0, 5, 10)]
    svg = line_chart(f"CPU of {WORKER}", times, [(WORKER, [1.0, 2.0, 3.0]), (GPU_NAME, [3.0, None, 1.0]),
                                                 ("nic\uffff", [0.0, 1.0, 0.0])], y_title="load \x07%")
    assert CONTROL.search(svg) is None
    texts = {"".join(node.itertext()) for node in ET.fromstring(svg).iter()}
    assert {"CPU of box-7", "box-7", "GPU", "load %", "nic\ufffd"} <= texts


def test_badge_is_valid_svg_without_control_characters():
    svg = generate_badge_svg("tests \x1b[31m", "passing\x07", "brightgreen")
    assert CONTROL.search(svg) is None
    ET.fromstring(svg)  # XML 1.0 refuses control characters; a clean badge parses
    assert "passing" in svg


def test_notification_text_has_no_control_characters():
    report = RunReport(status="failure", counts={"passed": 1, "failed": 1},
                       failed_tests=(FailedTest("tests/test_gpu.py::test_\x1b[2Jname", "failed",
                                                "assert \x1b[31mGPU\x07 == 'x'\nsecond line"),))
    text = render(make_environment(), "notify_slack.txt", template_context(report))
    assert CONTROL.search(text) is None
    assert "test_name" in text and "GPU" in text


def test_log_lines_of_our_loggers_have_no_control_characters(caplog):
    caplog.set_level(logging.WARNING)
    logging.getLogger("fleet_hwmon.integration").warning("worker %s: %s", WORKER, ValueError(GPU_NAME))
    logging.getLogger("fleet_hwmon").warning("mount %r", "/mnt/\x1b[2J")  # the repr already escapes it
    logging.getLogger("elsewhere").warning("left %s", "\x1b[31m")  # another library's records are theirs
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["worker box-7: GPU", "mount '/mnt/\\x1b[2J'", "left \x1b[31m"]
