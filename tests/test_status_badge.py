"""Badges: every style is valid XML, text is escaped (C25), width follows the raw text, colours,
status from a real DuckDB file, the CLI, and a real render in headless Chromium."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import jsonschema
import pytest

from fleet_hwmon.ci.badges import STYLES, badge_upper, generate_badge_svg, text_width_px, threshold_color
from fleet_hwmon.ci.results_db import TestResult, TestRun, record_run
from fleet_hwmon.ci.status import endpoint_json, get_test_status, metric_badge
from tests.browser import decode_png, headless_chromium, needs_chromium

ROOT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"
LABEL, MESSAGE = "R&D <gpu>", 'p95 < 80% "ok"'


def width_of(svg: str) -> float:
    return float(ET.fromstring(svg).get("width"))


@pytest.mark.parametrize("style", STYLES)
def test_every_style_is_valid_xml_with_escaped_text(style):
    svg = generate_badge_svg(LABEL, MESSAGE, "brightgreen", style=style)
    root = ET.fromstring(svg)  # raises on malformed XML
    assert root.tag == f"{SVG}svg"
    title = f"{LABEL}: {MESSAGE}"
    assert root.get("aria-label") == title
    assert root.find(f"{SVG}title").text == title
    texts = [t.text for t in root.iter(f"{SVG}text")]
    shown_label = LABEL.upper() if style == "for-the-badge" else LABEL
    shown_message = MESSAGE.upper() if style == "for-the-badge" else MESSAGE
    assert shown_label in texts and shown_message in texts
    assert set(texts) == {shown_label, shown_message}
    assert "&amp;" in svg and "&lt;gpu&gt;" in svg


@pytest.mark.parametrize("style", STYLES)
def test_width_grows_with_the_text(style):
    widths = [width_of(generate_badge_svg("tests", message, "blue", style))
              for message in ("ok", "ok ok", "ok ok ok ok")]
    assert widths[0] < widths[1] < widths[2]


def test_width_is_measured_on_the_raw_text_not_the_entities():
    raw = generate_badge_svg(LABEL, MESSAGE, "blue")
    entity_text = generate_badge_svg("R&amp;D &lt;gpu&gt;", "p95 &lt; 80% &quot;ok&quot;", "blue")
    assert width_of(raw) < width_of(entity_text)
    expected = round(text_width_px(LABEL) + 10, 1) + round(text_width_px(MESSAGE) + 10, 1)
    assert width_of(raw) == pytest.approx(expected, abs=0.11)
    rects = ET.fromstring(raw).findall(f"{SVG}g/{SVG}rect")
    assert float(rects[0].get("width")) == pytest.approx(text_width_px(LABEL) + 10, abs=0.06)


@pytest.mark.parametrize(("text", "shown"), [
    ("12.3s", "12.3s"), ("4.2 s", "4.2 s"), ("test duration", "TEST DURATION"),
    ("5ms, 2 MiB, 3 GHz", "5ms, 2 MiB, 3 GHz"),
    ("runs (7 d)", "RUNS (7 d)"), ("3 passed, 1 skipped", "3 PASSED, 1 SKIPPED"), ("10 minutes", "10 MINUTES"),
    ("12 min", "12 min"), ("87.5%", "87.5%"), ("1sec", "1SEC"), ("passing", "PASSING")])
def test_for_the_badge_upper_cases_words_but_not_units(text, shown):
    assert badge_upper(text) == shown


def test_for_the_badge_keeps_the_seconds_unit_in_the_drawn_text():
    svg = generate_badge_svg("test duration", "12.3s", "blue", style="for-the-badge")
    root = ET.fromstring(svg)
    assert {t.text for t in root.iter(f"{SVG}text")} == {"TEST DURATION", "12.3s"}
    assert root.get("aria-label") == "test duration: 12.3s"


def test_colours_from_status_and_thresholds():
    assert 'fill="#4c1"' in generate_badge_svg("tests", "passing")
    assert 'fill="#e05d44"' in generate_badge_svg("tests", "failing")
    assert 'fill="#9f9f9f"' in generate_badge_svg("tests", "unknown")
    assert 'fill="#abcdef"' in generate_badge_svg("x", "y", "ABCDEF")
    assert [threshold_color(v) for v in (100, 96, 91, 85, 75, 55, 10, None)] == [
        "brightgreen", "brightgreen", "green", "yellowgreen", "yellow", "orange", "red", "lightgrey"]
    assert threshold_color(85, [(80, "green")], below="orange") == "green"
    with pytest.raises(ValueError, match="unknown badge colour"):
        generate_badge_svg("x", "y", 'red" onload="alert(1)')
    with pytest.raises(ValueError, match="unknown badge style"):
        generate_badge_svg("x", "y", style="bubbly")


def _run(run_id: str, started: datetime, outcomes: list[str], status: str) -> TestRun:
    results = [TestResult(f"t.py::t{i}", outcome, 0.1) for i, outcome in enumerate(outcomes)]
    return TestRun(run_id=run_id, started_at=started, finished_at=started + timedelta(seconds=4.25),
                   mode="standard", python_version="3.11.7", exit_code=0 if status == "passed" else 1,
                   status=status, results=results, commit_sha="abc123")


@pytest.fixture
def results_db(tmp_path) -> Path:
    path = tmp_path / "results.duckdb"
    now = datetime.now(timezone.utc)
    record_run(path, _run("old", now - timedelta(days=3), ["failed"] * 5, "failed"))
    record_run(path, _run("a", now - timedelta(hours=5), ["passed"] * 8 + ["failed", "error"], "failed"))
    record_run(path, _run("b", now - timedelta(hours=1), ["passed"] * 10 + ["skipped"], "passed"))
    return path


def test_status_from_the_results_database(results_db):
    status = get_test_status(results_db, days=1)
    assert status["status"] == "passing"
    assert status["latest_run"]["run_id"] == "b"
    assert status["latest_run"]["passed"] == 10 and status["latest_run"]["skipped"] == 1
    window = status["window"]
    assert (window["runs"], window["passing_runs"], window["passed"], window["failed"], window["errors"]) == (
        2, 1, 18, 1, 1)
    assert window["pass_rate_percent"] == 90.0
    assert metric_badge(status, "pass_rate") == ("pass rate", "90%", "green")
    assert metric_badge(status, "tests") == ("tests", "10 passed, 1 skipped", "brightgreen")
    assert metric_badge(status, "duration") == ("test duration", "4.2 s", "blue")
    assert get_test_status(results_db, days=7)["window"]["pass_rate_percent"] == pytest.approx(100 * 18 / 25)
    document = endpoint_json(status)
    assert {k: document[k] for k in ("schemaVersion", "label", "message", "color")} == {
        "schemaVersion": 1, "label": "tests", "message": "passing", "color": "brightgreen"}
    json.dumps(document, allow_nan=False)


def test_unknown_status_without_a_database(tmp_path):
    status = get_test_status(tmp_path / "none.duckdb")
    assert status["status"] == "unknown" and status["latest_run"] is None
    assert metric_badge(status, "status") == ("tests", "unknown", "lightgrey")
    assert metric_badge(status, "pass_rate") == ("pass rate", "unknown", "lightgrey")


def test_cli_writes_badges_and_endpoint_json(results_db, tmp_path):
    out = tmp_path / "badges"
    done = subprocess.run([sys.executable, str(ROOT / "generate_status_badge.py"), "--db", str(results_db),
                           "--output-dir", str(out), "--metric", "status", "--metric", "pass_rate",
                           "--style", "flat-square", "--json", str(tmp_path / "status.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["pass_rate.svg", "status.svg"]
    root = ET.fromstring((out / "pass_rate.svg").read_text())
    assert root.get("aria-label") == "pass rate: 90%"
    document = json.loads((tmp_path / "status.json").read_text())
    assert document == {"schemaVersion": 1, "label": "tests", "message": "passing", "color": "brightgreen"}
    single = subprocess.run([sys.executable, str(ROOT / "generate_status_badge.py"), "--label", LABEL,
                             "--value", "87.5"], capture_output=True, text=True, timeout=60)
    assert single.returncode == 0
    assert ET.fromstring(single.stdout).get("aria-label") == f"{LABEL}: 87.5%"
    assert 'fill="#a4a61d"' in single.stdout  # yellowgreen for 87.5 %


def test_cli_missing_database_is_an_error_unless_allowed(tmp_path):
    missing = tmp_path / "typo.duckdb"
    out = tmp_path / "badges"
    command = [sys.executable, str(ROOT / "generate_status_badge.py"), "--db", str(missing), "--output-dir", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (f"generate_status_badge: results database {str(missing)!r}: no such file; check --db / "
                           "BENCHMARK_DB_PATH, or pass --allow-missing to write 'unknown' badges\n")
    assert not out.exists() and not missing.exists()
    allowed = subprocess.run(command + ["--allow-missing"], capture_output=True, text=True, timeout=60)
    assert allowed.returncode == 0, allowed.stderr
    assert ET.fromstring((out / "status.svg").read_text()).get("aria-label") == "tests: unknown"
    assert f"status: unknown (no results database at {missing})" in allowed.stdout


def test_cli_a_database_of_another_kind_is_an_error_not_no_run_yet(tmp_path):
    # The metrics database given by mistake: it has tables, none of them test runs.
    metrics = tmp_path / "hardware_metrics.duckdb"
    with duckdb.connect(str(metrics)) as con:
        con.execute("CREATE TABLE resource_utilization (worker_id VARCHAR)")
    out = tmp_path / "badges"
    done = subprocess.run([sys.executable, str(ROOT / "generate_status_badge.py"), "--db", str(metrics),
                           "--output-dir", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (f"generate_status_badge: results database {str(metrics)!r}: not a test results "
                           "database: it has no test_runs table (its tables: resource_utilization)\n")
    assert not out.exists()
    empty = tmp_path / "empty.duckdb"  # a database with no table at all is still "no run yet"
    duckdb.connect(str(empty)).close()
    assert get_test_status(empty)["reason"] == "no run recorded yet"


# --- headless Chromium -----------------------------------------------------------------------
@pytest.mark.browser
@needs_chromium
def test_badges_render_in_headless_chromium(tmp_path):
    images = "".join(
        f'<p><img id="{style}" src="data:image/svg+xml;base64,'
        f'{base64.b64encode(generate_badge_svg(LABEL, MESSAGE, "red", style).encode()).decode()}"></p>'
        for style in STYLES)
    page = tmp_path / "badges.html"
    page.write_text(f"<!doctype html><html><body style='margin:0;background:#fff'>{images}</body></html>")
    with headless_chromium(tmp_path, window_size=(900, 400), extra_flags=["--force-device-scale-factor=1"]) as driver:
        driver.get(page.as_uri())
        sizes = driver.execute_script(
            "return Array.from(document.images).map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight]);")
        png = driver.get_screenshot_as_png()
    for style, complete, natural_width, natural_height in sizes:
        expected_width = width_of(generate_badge_svg(LABEL, MESSAGE, "red", style))
        assert complete and natural_width == pytest.approx(expected_width, abs=1), style
        assert natural_height == {"plastic": 18, "for-the-badge": 28}.get(style, 20)
    pixels = [row[x:x + 3] for row in decode_png(png).pixels for x in range(0, len(row), 3)]
    non_white = sum(1 for pixel in pixels if pixel != b"\xff\xff\xff")
    red = sum(1 for r, g, b in pixels if r > 180 and g < 120 and b < 110)
    assert non_white > 5 * 150 * 18 * 0.5  # five badges of at least ~150 x 18 px, mostly coloured
    assert red > 1000  # the red message halves were drawn


# The endpoint badge's schema as shields documents it (https://shields.io/badges/endpoint-badge):
# shields rejects any other key ("invalid response data").
SHIELDS_ENDPOINT_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["schemaVersion", "label", "message"],
    "properties": {
        "schemaVersion": {"const": 1}, "label": {"type": "string"}, "message": {"type": "string"},
        "color": {"type": "string"}, "labelColor": {"type": "string"}, "isError": {"type": "boolean"},
        "namedLogo": {"type": "string"}, "logoSvg": {"type": "string"}, "logoColor": {"type": "string"},
        "logoWidth": {"type": "number"}, "style": {"type": "string"}, "cacheSeconds": {"type": "integer", "minimum": 0},
    },
}


def _flaky_run(run_id: str, started: datetime, flaky: bool) -> TestRun:
    results = [TestResult("t.py::steady", "passed", 0.1),
               TestResult("t.py::timing", "flaky" if flaky else "passed", 0.3, "passed on rerun" if flaky else None)]
    return TestRun(run_id=run_id, started_at=started, finished_at=started + timedelta(seconds=10 + len(run_id)),
                   mode="standard", python_version="3.11.7", exit_code=0, status="passed", results=results)


def test_status_json_is_exactly_the_shields_endpoint_schema_and_details_go_elsewhere(results_db, tmp_path):
    now = datetime.now(timezone.utc)
    for i, flaky in enumerate([True, False, True]):
        record_run(results_db, _flaky_run(f"f{i}", now - timedelta(minutes=30 - i), flaky))
    done = subprocess.run([sys.executable, str(ROOT / "generate_status_badge.py"), "--db", str(results_db),
                           "--output-dir", str(tmp_path / "badges"), "--json", str(tmp_path / "status.json"),
                           "--json-metric", "pass_rate", "--detail-json", str(tmp_path / "status_detail.json"),
                           "--trend-dir", str(tmp_path / "badges"), "--flaky-window", "4"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for metric in ("status", "pass_rate", "tests", "duration", "runs"):
        jsonschema.validate(endpoint_json(get_test_status(results_db), metric), SHIELDS_ENDPOINT_SCHEMA)
    document = json.loads((tmp_path / "status.json").read_text())
    jsonschema.validate(document, SHIELDS_ENDPOINT_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):  # the schema really is strict: a "detail" key fails it
        jsonschema.validate({**document, "detail": {}}, SHIELDS_ENDPOINT_SCHEMA)
    # window of 1 day: runs a, b and f0-f2; 18 + 6 passed and flaky of 26 judged
    assert document["message"] == f"{round(100 * 24 / 26, 2):g}%"
    detail = json.loads((tmp_path / "status_detail.json").read_text())
    assert detail["latest_run"]["run_id"] == "f2" and detail["window"]["flaky"] == 2
    assert [(t["nodeid"], t["flaky_runs"], t["runs"]) for t in detail["flaky_tests"]] == [("t.py::timing", 2, 3)]


def test_trend_charts_draw_every_run_from_the_history(results_db, tmp_path):
    now = datetime.now(timezone.utc)
    for i in range(4):
        record_run(results_db, _flaky_run(f"t{i}", now - timedelta(minutes=10 - i), flaky=False))
    from fleet_hwmon.ci.trend import pass_rate_percent, trend_charts

    charts = trend_charts(results_db, runs=5)
    assert sorted(charts) == ["duration_trend.svg", "pass_rate_trend.svg"]
    for name, svg in charts.items():
        root = ET.fromstring(svg)
        assert "<script" not in svg
        texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("}text") or t.tag == "text")
        assert "last 5 runs" in texts, name
    # run "b" (10 passed, 1 skipped) then four runs of 2 passed: a flat 100 % line of 5 points
    assert pass_rate_percent({"passed": 8, "flaky": 0, "failed": 1, "errors": 1}) == 80.0
    assert pass_rate_percent({"passed": 0, "flaky": 0, "failed": 0, "errors": 0}) is None
