"""Fleet report: values from a real DuckDB file, XSS (C24), NaN / inf (C23), simulated labels,
offline HTML, bucket limits, and a headless Chromium screenshot of the rendered page."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fleet_hwmon.alerts.rules import AlertSeverity, AlertState, HardwareAlert
from fleet_hwmon.reports.fleet_data import MAX_DECISION_ROWS, choose_bucket_seconds
from fleet_hwmon.reports.fleet_report import build_report_data, export_report_json, render_fleet_report
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization
from fleet_hwmon.scoring.decide import CandidateScore, Exclusion, SchedulingDecision
from fleet_hwmon.store import close_store, open_store
from fleet_hwmon.tasks import TaskResourceUsage
from tests.browser import decode_png, headless_chromium, ink_fraction, needs_chromium

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)  # midnight: every "nice" bucket divides a day
XSS_WORKER = "<script>alert(1)</script>"
XSS_TASK = '"><img src=x onerror=alert(1)>'
XSS_ERROR = "AssertionError: boom </script><script>alert(2)</script> end"
CPU_VALUES = [10.0, 20.0, 30.0, None, 40.0, 50.0]  # w-cpu, one sample every 10 s
GPU_POWER = [120.0, float("nan"), float("inf"), 80.0]  # C23, w-gpu's first four samples


def strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"non-strict JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def gpu(utilization, power, simulated=True):
    return GpuUtilization(index=0, uuid="GPU-sim-0", name="Tesla <T4> & co", utilization_percent=utilization,
                          memory_used_bytes=2 * 2**30, memory_total_bytes=16 * 2**30, power_watts=power,
                          simulated=simulated)


def write_capabilities(store, worker_id, caps, cpu_count=8, memory=32 * 2**30):
    store.write("INSERT INTO hardware_capabilities (worker_id, hostname, os, cpu_count, total_memory_bytes, "
                "hardware_types, detected_at, capabilities) VALUES (?, ?, 'Linux', ?, ?, ?, ?, ?)",
                [worker_id, f"host-{worker_id}", cpu_count, memory, caps["hardware"], T0, json.dumps(caps)])


def populate(store):
    """Three workers, their samples, tasks, alerts and scheduling decisions."""
    store.ensure_table("resource_utilization", ResourceUtilization)
    store.ensure_table("task_resource_usage", TaskResourceUsage)
    store.ensure_table("hardware_alerts", HardwareAlert)
    store.ensure_table("scheduling_decisions", SchedulingDecision)
    write_capabilities(store, "w-cpu", {"hardware": ["cpu"], "memory": {"total_gb": 32.0},
                                        "cpu": {"cores_effective": 8}})
    write_capabilities(store, "w-gpu", {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 64.0},
                                        "gpu": {"name": "Tesla <T4> & co", "cuda_compute": 7.5, "memory_gb": 16},
                                        "gpus": [{"name": "Tesla <T4> & co", "cuda_compute": 7.5, "memory_gb": 16}]})
    write_capabilities(store, XSS_WORKER, {"hardware": ["cpu"], "memory": {"total_gb": 8.0}})
    for i, cpu in enumerate(CPU_VALUES):
        store.append("resource_utilization", ResourceUtilization(
            worker_id="w-cpu", timestamp=T0 + timedelta(seconds=10 * i), cpu_percent=cpu,
            memory_percent=None, memory_used_bytes=None, net_recv_bytes_per_s=None))
    for i, power in enumerate(GPU_POWER + [100.0, 100.0]):
        store.append("resource_utilization", ResourceUtilization(
            worker_id="w-gpu", timestamp=T0 + timedelta(seconds=10 * i), cpu_percent=95.0, memory_percent=75.0,
            memory_used_bytes=48 * 2**30, memory_total_bytes=64 * 2**30,
            gpus=(gpu(50.0 + i, power if i < 4 else None),), simulated_fields=("gpus",),
            net_recv_bytes_per_s=None))
    for i in range(6):
        store.append("resource_utilization", ResourceUtilization(
            worker_id=XSS_WORKER, timestamp=T0 + timedelta(seconds=10 * i), cpu_percent=5.0, memory_percent=20.0))
    store.append("task_resource_usage", TaskResourceUsage(
        task_id="task-ok", worker_id="w-cpu", start_time=T0, end_time=T0 + timedelta(seconds=30), duration_s=30.0,
        success=True, task_type="unit", sample_count=3, peak_cpu_percent=30.0, mean_cpu_percent=20.0,
        process_cpu_seconds=12.5, process_peak_rss_bytes=300 * 2**20, process_read_bytes=2**20,
        process_write_bytes=3 * 2**20))
    store.append("task_resource_usage", TaskResourceUsage(
        task_id=XSS_TASK, worker_id="w-gpu", start_time=T0 + timedelta(seconds=5),
        end_time=T0 + timedelta(seconds=45), duration_s=40.0, success=False, error=XSS_ERROR, task_type="gpu-train",
        sample_count=4, peak_cpu_percent=95.0, mean_cpu_percent=95.0, peak_gpu_utilization_percent=53.0,
        mean_gpu_utilization_percent=51.5, process_gpu_memory_peak_bytes=2 * 2**30, simulated_fields=("gpus",)))
    store.append("hardware_alerts", HardwareAlert(
        alert_id="a1", worker_id="w-gpu", resource="cpu", severity=AlertSeverity.CRITICAL, state=AlertState.FIRING,
        value=95.0, threshold=95.0, timestamp=T0 + timedelta(seconds=10), task_id=XSS_TASK,
        message="cpu at 95% on w-gpu"))
    candidate = CandidateScore("w-cpu", 1.0, 0.8, 40.0, None, None, 0.0, 0.0, 0.0, 0.1, 0.1, 0)
    store.append("scheduling_decisions", SchedulingDecision(
        decision_id="d1", timestamp=T0 + timedelta(seconds=5), task_id=XSS_TASK, task_type="gpu-train",
        chosen_worker_id="w-cpu", chosen_score=0.8, original_worker_id="w-gpu", original_score=1.0,
        candidate_count=1, candidates=(candidate,),
        exclusions=(Exclusion.critical("w-gpu", "cpu", 95.0, 95.0),
                    Exclusion.stale(XSS_WORKER, 31.0, 15.0, never_sampled=False)),
        explanation="chose w-cpu; original choice w-gpu excluded"))
    store.flush()


@pytest.fixture
def store(db_path):
    handle = open_store(db_path)
    try:
        yield handle
    finally:
        close_store(handle)


@pytest.fixture
def report(store, tmp_path):
    populate(store)
    data = build_report_data(store, title="Fleet <b>report</b>", max_points=100,
                             scheduler_stats={"decisions": 1, "alternatives_chosen": 1,
                                              "exclusions_by_reason": {"critical load": 1, "stale": 1},
                                              "tasks_per_worker": {"w-cpu": 1}},
                             scoring_factors={"cpu_threshold_percent": 70.0, "cpu_penalty_weight": 0.6},
                             history=[{"worker_id": "w-cpu", "task_type": "unit", "runs": 3, "failures": 0,
                                       "duration_s": 30.0, "memory_bytes": None}])
    html_path = render_fleet_report(data, tmp_path / "report.html")
    json_path = export_report_json(data, tmp_path / "report.json")
    return data, html_path.read_text(encoding="utf-8"), json_path.read_text(encoding="utf-8")


def worker(data, worker_id):
    return next(w for w in data["workers"] if w["worker_id"] == worker_id)


class Tables(HTMLParser):
    """Every element's tags and attributes, the text, and the tables of each <section> as rows of
    cells ``(text, has_simulated_label)``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.sections: dict[str, list[list[tuple[str, bool]]]] = {}
        self._section = None
        self._row = None
        self._cell = None
        self._sim_depth = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))
        attrs_d = dict(attrs)
        if tag == "section":
            self._section = attrs_d.get("id")
        elif tag == "tr":
            self._row = []
            self.sections.setdefault(self._section, []).append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ["", False]
            self._row.append(self._cell)
        elif tag == "span" and "sim" in (attrs_d.get("class") or "").split() and self._cell is not None:
            self._cell[1] = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell[0] += data


def parse(html: str) -> Tables:
    parser = Tables()
    parser.feed(html)
    parser.close()
    return parser


# -- values ------------------------------------------------------------------------------------------

def test_per_worker_numbers_equal_what_was_inserted(report):
    data, html, text = report
    known = [v for v in CPU_VALUES if v is not None]
    cpu = worker(data, "w-cpu")
    assert cpu["samples"] == len(CPU_VALUES)
    assert cpu["resources"]["cpu"]["mean"] == pytest.approx(statistics.mean(known))
    assert cpu["resources"]["cpu"]["max"] == 50.0 and cpu["resources"]["cpu"]["min"] == 10.0
    assert cpu["current"]["cpu_percent"] == 50.0
    assert cpu["resources"]["memory"]["mean"] is None and cpu["current"]["memory_percent"] is None  # NULL, not 0
    assert cpu["resources"]["gpu"]["mean"] is None
    assert cpu["hardware"]["cpu_cores"] == 8 and cpu["hardware"]["memory_bytes"] == 32 * 2**30
    g = worker(data, "w-gpu")
    assert g["resources"]["gpu"]["mean"] == pytest.approx(statistics.mean(50.0 + i for i in range(6)))
    assert g["hardware"]["gpus"][0]["name"] == "Tesla <T4> & co"

    exported = strict_loads(text)
    cpu_json = next(w for w in exported["workers"] if w["worker_id"] == "w-cpu")
    assert cpu_json["resources"]["cpu"]["mean"] == pytest.approx(30.0)
    assert cpu_json["resources"]["memory"]["mean"] is None
    assert cpu_json["last_sample"] == (T0 + timedelta(seconds=50)).isoformat()

    rows = {r[0][0].strip(): r for r in parse(html).sections["workers"] if r and r[0][0].strip()}
    header = [c[0].strip() for c in rows["Worker"]]
    cells = {name: rows["w-cpu"][header.index(name)][0] for name in ("CPU now", "Memory now", "GPU now")}
    assert cells["CPU now"].split()[0] == "50.0%"
    assert "mean 30.0%" in cells["CPU now"] and "max 50.0%" in cells["CPU now"]
    assert cells["Memory now"].split()[0] == "n/a" and "mean n/a" in cells["Memory now"]
    assert cells["GPU now"].split()[0] == "n/a"
    assert 'class="num now load-high"' in html  # w-gpu's CPU at 95 %


def test_tasks_alerts_and_decisions(report):
    data, html, _ = report
    tasks = data["tasks"]
    assert (tasks["total"], tasks["passed"], tasks["failed"]) == (2, 1, 1)
    assert tasks["totals"]["process_cpu_seconds"] == 12.5 and tasks["totals"]["duration_s"] == 70.0
    ok = next(t for t in tasks["rows"] if t["task_id"] == "task-ok")
    assert ok["process_peak_rss_bytes"] == 300 * 2**20 and ok["peak_memory_percent"] is None
    assert data["alerts"]["firing"] == 1 and data["alerts"]["by_severity"] == {"critical": 1}
    decisions = data["scheduler"]["decisions"]
    assert (decisions["total"], decisions["alternatives"], decisions["exclusions"]) == (1, 1, 2)
    assert {r["reason"] for r in decisions["exclusions_by_reason"]} == {"cpu at #% > critical #%",
                                                                      "stale: last sample # s ago (limit # s)"}
    row = decisions["rows"][0]
    assert row["top_candidates"][0]["total_penalty"] == pytest.approx(0.2)
    tables = parse(html)
    failed_rows = [r for r in tables.sections["tasks"] if r and r[0][0] == XSS_TASK]
    assert failed_rows and 'class="failed"' in html
    assert "300.0 MiB" in html and "12.50 s" in html
    assert data["summary"]["tasks_failed"] == 1 and data["summary"]["decisions_alternative"] == 1


def test_many_decisions_show_the_latest_and_count_all(store, tmp_path):
    store.ensure_table("scheduling_decisions", SchedulingDecision)
    for i in range(MAX_DECISION_ROWS + 50):
        store.append("scheduling_decisions", SchedulingDecision(
            decision_id=f"d{i}", timestamp=T0 + timedelta(seconds=i), task_id=f"t{i}", task_type="x",
            chosen_worker_id="a" if i % 5 else "b", chosen_score=1.0, original_worker_id="a", original_score=1.0,
            candidate_count=0, candidates=(), exclusions=(Exclusion.critical("c", "memory", 90 + i % 5, 95.0),),
            explanation=""))
    data = build_report_data(store)
    decisions = data["scheduler"]["decisions"]
    assert decisions["total"] == MAX_DECISION_ROWS + 50 and decisions["shown"] == MAX_DECISION_ROWS
    assert decisions["alternatives"] == (MAX_DECISION_ROWS + 50 + 4) // 5
    assert decisions["rows"][0]["task_id"] == f"t{MAX_DECISION_ROWS + 49}"
    assert decisions["exclusions_by_reason"] == [
        {"reason": "memory at #% > critical #%", "exclusions": 250, "workers": 1}]
    render_fleet_report(data, tmp_path / "r.html")


def test_repeated_refusals_of_a_task_fold_into_one_row(store, tmp_path):
    """A task refused 240 times for the same reason (its numbers changing) is one row with the count
    and the first and last time; a different reason, a different task or a placement stays apart."""
    store.ensure_table("scheduling_decisions", SchedulingDecision)

    def decision(i, task_id, chosen, explanation):
        return SchedulingDecision(
            decision_id=f"d{i}", timestamp=T0 + timedelta(seconds=i), task_id=task_id, task_type="x",
            chosen_worker_id=chosen, chosen_score=1.0 if chosen else None, original_worker_id="a",
            original_score=1.0, candidate_count=0, candidates=(), exclusions=(), explanation=explanation)

    rows = [decision(i, "waits", None, f"no worker: predicted cpu {100 + i % 7}% > 100%") for i in range(240)]
    rows += [decision(300, "waits", None, "no worker: memory needed 8 GiB > free 2 GiB"),
             decision(301, "other", None, "no worker: predicted cpu 104% > 100%"),
             decision(302, "waits", "a", "placed on a"), decision(303, "runs", "a", "placed on a")]
    store.append_many("scheduling_decisions", rows)
    data = build_report_data(store)
    decisions = data["scheduler"]["decisions"]
    assert decisions["total"] == 244 and decisions["unassigned"] == 242
    folded = {(r["task_id"], r["decision_id"]): r for r in decisions["rows"]}
    assert sorted(folded) == [("other", "d301"), ("runs", "d303"), ("waits", "d239"), ("waits", "d300"),
                              ("waits", "d302")]
    cpu = folded[("waits", "d239")]
    assert cpu["repeats"] == 240 and cpu["first_timestamp"] == T0 and cpu["timestamp"] == T0 + timedelta(seconds=239)
    assert cpu["explanation"] == f"no worker: predicted cpu {100 + 239 % 7}% > 100%"  # the latest numbers
    assert all(r["repeats"] == 1 for k, r in folded.items() if k != ("waits", "d239"))
    html = render_fleet_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "\u00d7240 since" in html.replace("&times;", "\u00d7") and html.count("predicted cpu 1") == 2


def test_outcomes_count_every_task_and_list_those_that_did_not_finish(store, tmp_path):
    """The issue's run: 4 completed, 2 failed (one never placed), 4 never started, plus one cancelled
    mid-run: the summary counts tasks, not attempts, and the unfinished ones show with their reason."""
    from fleet_hwmon.tasks import TaskOutcome

    store.ensure_table("task_resource_usage", TaskResourceUsage)
    store.ensure_table("task_outcomes", TaskOutcome)
    attempts = [TaskResourceUsage(f"done-{i}", "w1", T0, T0 + timedelta(seconds=5), 5.0, True) for i in range(4)]
    attempts += [TaskResourceUsage("broke", "w1", T0, T0 + timedelta(seconds=5), 5.0, False, "exit 1"),
                 TaskResourceUsage("stopped", "w2", T0, T0 + timedelta(seconds=9), 9.0, False,
                                   "cancelled: the coordinator stopped")]
    store.append_many("task_resource_usage", attempts)
    end = T0 + timedelta(seconds=60)
    outcomes = [TaskOutcome(f"done-{i}", "completed", end, "unit", "w1", 1) for i in range(4)]
    outcomes += [TaskOutcome("broke", "failed", end, "unit", "w1", 1, "exit 1"),
                 TaskOutcome("gpu-task", "failed", end, "training", None, 0,
                             "no registered worker has the hardware this task requires"),
                 TaskOutcome("stopped", "cancelled", end, "unit", "w2", 1, "cancelled: the coordinator stopped")]
    outcomes += [TaskOutcome(f"waiting-{i}", "queued", end, "memory", None, 0,
                             "no worker: memory needed 8 GiB > free 2 GiB", submitted_at=T0) for i in range(4)]
    store.append_many("task_outcomes", outcomes)
    data = build_report_data(store)
    summary = data["summary"]
    assert (summary["tasks"], summary["tasks_passed"], summary["tasks_failed"], summary["tasks_cancelled"],
            summary["tasks_never_started"]) == (11, 4, 2, 1, 4)
    unfinished = data["tasks"]["outcomes"]["rows"]
    assert sorted((r["task_id"], r["state"]) for r in unfinished) == [
        ("stopped", "cancelled"), *[(f"waiting-{i}", "queued") for i in range(4)]]
    assert data["tasks"]["total"] == 6  # the attempts that ran, as before
    html = render_fleet_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    rows = [[c[0] for c in r] for r in parse(html).sections["tasks"]
            if r and r[0][0].startswith(("waiting", "stopped"))]
    assert any(r[:5] == ["waiting-0", "memory", "never started", "none", "0"] for r in rows)
    assert any(r[:4] == ["stopped", "unit", "cancelled", "w2"] for r in rows)
    assert html.count("no worker: memory needed 8 GiB &gt; free 2 GiB") == 4
    exported = strict_loads(export_report_json(data, tmp_path / "r.json").read_text(encoding="utf-8"))
    assert exported["summary"]["tasks_never_started"] == 4


def test_series_have_at_most_max_points_and_right_bucket_means(store):
    store.ensure_table("resource_utilization", ResourceUtilization)
    values = [float(i % 97) for i in range(5000)]
    store.append_many("resource_utilization", [
        ResourceUtilization(worker_id="long", timestamp=T0 + timedelta(seconds=i), cpu_percent=v)
        for i, v in enumerate(values)])
    data = build_report_data(store, max_points=50)
    series = data["series"]
    bucket = series["bucket_seconds"]
    assert bucket == choose_bucket_seconds(4999, 50) == 120.0
    assert 0 < len(series["times"]) <= 50
    cpu = series["workers"]["long"]["cpu"]
    assert len(cpu["mean"]) == len(cpu["max"]) == len(series["times"])
    for index in (0, 7, len(series["times"]) - 1):
        chunk = values[int(index * bucket):int((index + 1) * bucket)]
        assert cpu["mean"][index] == pytest.approx(statistics.mean(chunk))
        assert cpu["max"][index] == max(chunk)
    assert series["times"][0] == T0
    assert series["fleet"]["cpu"]["mean"] == pytest.approx(cpu["mean"])
    assert all(v is None for v in series["workers"]["long"]["gpu"]["mean"])
    # A requested bucket too small for max_points is widened; a wide enough one is kept.
    assert build_report_data(store, max_points=50, bucket_seconds=1)["series"]["bucket_seconds"] == 120.0
    assert build_report_data(store, max_points=50, bucket_seconds=250)["series"]["bucket_seconds"] == 250.0
    assert len(build_report_data(store, max_points=2)["series"]["times"]) <= 2


def test_choose_bucket_seconds():
    assert choose_bucket_seconds(0, 240) == 1.0
    assert choose_bucket_seconds(86400, 240) == 600.0
    assert choose_bucket_seconds(30 * 86400, 10) == 4 * 86400.0
    with pytest.raises(ValueError):
        choose_bucket_seconds(10, 1)


# -- C24, C23, simulated labels, offline ------------------------------------------------------------

def test_c24_untrusted_text_renders_as_literal_text(report):
    data, html, text = report
    tables = parse(html)
    assert [tag for tag, _ in tables.tags if tag == "script"] == []
    assert not [(tag, name) for tag, attrs in tables.tags for name, _ in attrs if name.lower().startswith("on")]
    assert not [tag for tag, _ in tables.tags if tag in ("img", "iframe", "object", "embed", "b")]
    page_text = "".join(tables.text)
    for value in (XSS_WORKER, XSS_TASK, XSS_ERROR, "Tesla <T4> & co", "Fleet <b>report</b>"):
        assert value in page_text
    assert "alert(2)" not in html.replace("&lt;/script&gt;&lt;script&gt;alert(2)", "")
    exported = strict_loads(text)
    assert XSS_WORKER in {w["worker_id"] for w in exported["workers"]}
    assert XSS_ERROR in {t["error"] for t in exported["tasks"]["rows"]}
    # The worker id also goes into the chart legends (pygal SVG): escaped there too.
    svg_titles = re.findall(r"<svg[^>]*>.*?</svg>", html, flags=re.S)
    assert any("&lt;script&gt;alert(1)&lt;/script&gt;" in svg for svg in svg_titles)


def test_c23_non_finite_values_become_n_a(report):
    data, html, text = report
    power = worker(data, "w-gpu")["metrics"]["gpu_power_watts"]
    assert power["max"] == 120.0 and power["mean"] == pytest.approx(100.0)
    assert power["stddev"] == pytest.approx(statistics.stdev([120.0, 80.0]))
    fleet_power = next(m for m in data["metrics"] if m["name"] == "gpu_power_watts")
    assert fleet_power["max"] == 120.0 and fleet_power["workers"] == 1
    net = next(m for m in data["metrics"] if m["name"] == "net_recv_bytes_per_s")
    assert net["mean"] is None and net["workers"] == 0
    assert worker(data, "w-cpu")["metrics"]["net_recv_bytes_per_s"]["mean"] is None
    exported = strict_loads(text)  # raises on NaN / Infinity
    assert next(m for m in exported["metrics"] if m["name"] == "net_recv_bytes_per_s")["max"] is None
    assert not re.search(r"\b(nan|inf|NaN|Infinity)\b", text)
    assert not re.search(r">\s*-?(nan|inf)%?\s*<", html, flags=re.I)
    assert "120.0 W" in html and "net_recv_bytes_per_s" in html  # listed as never known


def test_simulated_label_only_where_simulated_fields_say_so(report):
    data, html, _ = report
    assert worker(data, "w-gpu")["simulated"] == {"cpu": False, "memory": False, "gpu": True}
    assert worker(data, "w-cpu")["simulated_fields"] == []
    tables = parse(html)
    labelled = []
    for section, rows in tables.sections.items():
        header = None
        for row in rows:
            if row and row[0][0].strip() in ("Worker", "Task", "Metric"):
                header = [c[0].strip() for c in row]
                continue
            for index, (_text, has_sim) in enumerate(row):
                if has_sim:
                    labelled.append((section, row[0][0].strip(), header[index] if header else None))
    workers_labels = {(first, column) for section, first, column in labelled if section == "workers"}
    assert workers_labels == {("w-gpu", "Hardware"), ("w-gpu", "GPU now")}
    task_labels = {(first, column) for section, first, column in labelled if section == "tasks"}
    # Its process GPU memory was simulated; its process GPU utilization is unknown (n/a), not simulated.
    assert task_labels == {(XSS_TASK, "GPU peak / mean"), (XSS_TASK, "Process GPU memory")}
    metric_labels = {first for section, first, _ in labelled if section == "metrics"}
    assert metric_labels and all(label.startswith("GPU") for label in metric_labels)
    assert html.count(">simulated<") == len(labelled)


def svg_of(html: str, title_start: str) -> str:
    """The chart SVG whose title starts with ``title_start``."""
    for svg in re.findall(r"<svg[^>]*>.*?</svg>", html, flags=re.S):
        if re.search(r"<title>\s*" + re.escape(title_start), svg) or f">{title_start}" in svg:
            return svg
    raise AssertionError(f"no chart titled {title_start!r}")


def test_simulated_label_on_charts_metrics_and_alerts_only_where_simulated(store, tmp_path):
    populate(store)
    # A worker whose GPUs say simulated only in gpus[].simulated (no simulated_fields), and one with a real GPU.
    for i in range(6):
        store.append("resource_utilization", ResourceUtilization(
            worker_id="w-gpu2", timestamp=T0 + timedelta(seconds=10 * i), cpu_percent=10.0, memory_percent=1.0,
            gpus=(gpu(30.0, 50.0),)))
        store.append("resource_utilization", ResourceUtilization(
            worker_id="w-real", timestamp=T0 + timedelta(seconds=10 * i), cpu_percent=12.0, memory_percent=1.5,
            gpus=(gpu(20.0, 60.0, simulated=False),)))
    for alert_id, worker_id, resource, value in (("g1", "w-gpu", "gpu", 99.0), ("g2", "w-gpu2", "gpu_memory", 97.0),
                                                 ("g3", "w-real", "gpu", 98.0)):
        store.append("hardware_alerts", HardwareAlert(
            alert_id=alert_id, worker_id=worker_id, resource=resource, severity=AlertSeverity.CRITICAL,
            state=AlertState.FIRING, value=value, threshold=95.0, timestamp=T0 + timedelta(seconds=20), task_id=None,
            message=f"{resource} at {value:.0f}% on {worker_id}"))
    store.append("scheduling_decisions", SchedulingDecision(
        decision_id="d2", timestamp=T0 + timedelta(seconds=30), task_id="t-2", task_type="x",
        chosen_worker_id="w-cpu", chosen_score=1.0, original_worker_id="w-cpu", original_score=1.0,
        candidate_count=0, candidates=(),
        exclusions=(Exclusion.critical("w-gpu", "gpu", 100.0, 95.0), Exclusion.critical("w-real", "gpu", 98.0, 95.0)),
        explanation="both GPU workers excluded"))
    store.flush()
    data = build_report_data(store)
    assert worker(data, "w-gpu2")["samples_simulated"] == {"cpu": False, "memory": False, "gpu": True}
    assert worker(data, "w-real")["samples_simulated"]["gpu"] is False
    html = render_fleet_report(data, tmp_path / "sim.html").read_text()

    # Charts: the GPU charts (fleet and per worker) say simulated, in the title and per series;
    # the CPU and memory charts, and the real GPU worker's series, do not.
    gpu_fleet, gpu_workers = svg_of(html, "GPU utilization across"), svg_of(html, "GPU: per worker")
    assert "includes simulated" in gpu_fleet and "includes simulated" in gpu_workers
    assert "w-gpu (simulated)" in gpu_workers and "w-gpu2 (simulated)" in gpu_workers
    assert "w-real (simulated)" not in gpu_workers and "w-real" in gpu_workers
    for title in ("CPU utilization across", "CPU: per worker", "Memory utilization across", "Memory: per worker"):
        assert "simulated" not in svg_of(html, title), title

    tables = parse(html)
    # Metrics: the fleet GPU rows are labelled, with how many of the reporting workers are simulated.
    fleet_rows = {r[1][0].strip(): r for r in tables.sections["metrics"] if len(r) == 7}
    assert fleet_rows["gpu_utilization_percent"][0][1] and "2 simulated" in fleet_rows["gpu_utilization_percent"][6][0]
    assert fleet_rows["gpu_memory_used_bytes"][0][1]
    for name in ("cpu_percent", "memory_percent", "memory_used_bytes"):
        assert not any(has_sim for _, has_sim in fleet_rows[name]), name

    # Alerts: GPU values of simulated GPUs are labelled; CPU values and the real GPU's are not.
    alert_rows = [r for r in tables.sections["alerts"] if len(r) == 9 and r[0][0] != "Time"]
    labelled = {(r[1][0], r[2][0]) for r in alert_rows if any(has_sim for _, has_sim in r)}
    assert labelled == {("w-gpu", "gpu"), ("w-gpu2", "gpu_memory")}
    assert {(r[1][0], r[2][0]) for r in alert_rows} >= {("w-gpu", "cpu"), ("w-real", "gpu")}

    # Exclusions quoting a simulated GPU value are labelled too; the real GPU's are not.
    decisions = data["scheduler"]["decisions"]["rows"]
    flags = {(e["worker_id"], e["simulated"]) for e in decisions[0]["exclusions"]}
    assert flags == {("w-gpu", True), ("w-real", False)}
    excluded_cells = [r[5] for r in tables.sections["scheduling"] if len(r) == 6 and "gpu at 100%" in r[5][0]]
    assert excluded_cells and all(has_sim for _, has_sim in excluded_cells)


def test_scheduler_values_read_as_text_and_tasks_per_worker_once(report, store, tmp_path):
    data, html, _ = report
    latency = {"count": 1, "sum": 0.0002, "p50": 0.0002, "p99": 0.0002, "buckets": [["0.0001", 0], ["0.001", 1]]}
    data = build_report_data(store, scheduler_stats={"resource_aware": True, "paused": False, "decisions": 1,
                                                     "tasks_per_worker": {"w-cpu": 1, "w-gone": 2},
                                                     "decision_latency_s": latency})
    html = render_fleet_report(data, tmp_path / "stats.html").read_text()
    # A histogram reads as its figures in a table, not as raw JSON; its buckets stay in the export.
    assert "&#34;buckets&#34;" not in html and '"buckets"' not in html and ">Decision latency s<" in html
    assert data["scheduler"]["stats"]["raw"]["decision_latency_s"]["buckets"] == latency["buckets"]
    tables = parse(html)
    cards = dict(re.findall(r'<div class="label">([^<]*)</div>\s*<div class="value">([^<]*)</div>', html))
    assert cards["resource aware"] == "yes" and cards["paused"] == "no" and cards["decisions"] == "1"
    assert ">True<" not in html and ">False<" not in html
    assert html.count(">Tasks per worker<") == 1
    rows = {r[0][0]: [c[0] for c in r] for r in tables.sections["scheduling"] if r and r[0][0] in ("w-cpu", "w-gone")}
    assert rows == {"w-cpu": ["w-cpu", "1", "1", "1"], "w-gone": ["w-gone", "n/a", "n/a", "2"]}
    # Reason groups read as the exact reason when a group has one: no "#" placeholder.
    assert "cpu at 95% &gt; critical 95%" in html and "critical #" not in html


def test_exclusion_state_says_when_it_was_recorded(store, tmp_path):
    populate(store)
    live = {"w-gpu": {"status": "active", "current": {"cpu_percent": 5.0, "memory_percent": 20.0, "gpu_percent": 0.0},
                      "simulated_fields": ["gpus"], "excluded_reason": "cpu at 95% > critical 95%",
                      "excluded_resource": "cpu"},
            "w-cpu": {"status": "active", "current": None, "excluded_reason": "memory at 99% > critical 95%"}}
    html = render_fleet_report(build_report_data(store, workers=live), tmp_path / "x.html").read_text()
    status = {r[0][0].strip(): r[1][0] for r in parse(html).sections["workers"] if len(r) > 2}
    assert "excluded: cpu at 95% > critical 95%" in status["w-gpu"]
    assert f"at last decision {(T0 + timedelta(seconds=5)):%Y-%m-%d %H:%M:%S} UTC" in status["w-gpu"]
    assert "scheduler state when the report was made" in status["w-cpu"] and "decision" not in status["w-cpu"]
    # Without a live view: the exclusions of the latest recorded decision, with its time.
    html = render_fleet_report(build_report_data(store), tmp_path / "y.html").read_text()
    status = {r[0][0].strip(): r[1][0] for r in parse(html).sections["workers"] if len(r) > 2}
    assert "excluded at last decision (2025-01-01 00:00:05 UTC): cpu at 95% > critical 95%" in status["w-gpu"]
    assert "excluded" not in status["w-cpu"]


def test_live_worker_view_is_shown(store, tmp_path):
    populate(store)
    live = {"w-cpu": {"status": "busy", "capabilities": {"hardware": ["cpu"], "memory": {"total_gb": 16}},
                      "current": {"cpu_percent": 91.0, "memory_percent": None, "gpu_percent": None},
                      "simulated_fields": ["cpu_percent"], "excluded_reason": "cpu at 97% > critical 95%",
                      "excluded_resource": "cpu",
                      "stale": "no sample for 31 s", "overloaded": True},
            "w-new": {"status": "idle", "capabilities": {}, "current": None, "simulated_fields": []}}
    data = build_report_data(store, workers=live)
    ids = [w["worker_id"] for w in data["workers"]]
    assert "w-new" in ids and "w-gpu" in ids  # live workers and the ones with samples
    cpu = worker(data, "w-cpu")
    assert cpu["current"] == {"cpu_percent": 91.0, "memory_percent": None, "gpu_percent": None}
    assert cpu["simulated"]["cpu"] and cpu["hardware"]["memory_bytes"] == 16 * 2**30
    assert cpu["stale"] is True and cpu["stale_reason"] == "no sample for 31 s" and cpu["overloaded"] is True
    assert worker(data, "w-new")["samples"] == 0
    html = render_fleet_report(data, tmp_path / "live.html").read_text()
    assert "excluded: cpu at 97% &gt; critical 95%" in html and ">stale<" in html and ">busy<" in html
    assert "no sample for 31 s" in html and ">overloaded<" in html


def test_no_external_reference(report):
    _, html, _ = report
    assert not re.search(r"""(?:\bsrc|\bhref|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", html, flags=re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", html, flags=re.I)
    assert "<link rel=\"stylesheet\"" not in html


def test_empty_store_and_old_tables(store, tmp_path):
    data = build_report_data(store)
    assert data["workers"] == [] and data["summary"]["samples"] == 0 and data["series"]["times"] == []
    render_fleet_report(data, tmp_path / "empty.html")
    strict_loads(export_report_json(data, tmp_path / "empty.json").read_text())
    # A task table from an older version, without most columns.
    store.write("CREATE TABLE task_resource_usage (task_id VARCHAR, worker_id VARCHAR, start_time TIMESTAMPTZ, "
                "success BOOLEAN)")
    store.write("INSERT INTO task_resource_usage VALUES ('old', 'w', ?, false)", [T0])
    data = build_report_data(store)
    assert data["tasks"]["failed"] == 1 and data["tasks"]["totals"]["process_cpu_seconds"] is None
    html = render_fleet_report(data, tmp_path / "old.html").read_text()
    assert ">old<" in html


def test_large_fleet_stays_small(store, tmp_path):
    store.ensure_table("resource_utilization", ResourceUtilization)
    samples = [ResourceUtilization(worker_id=f"w{w:03d}", timestamp=T0 + timedelta(seconds=30 * i),
                                   cpu_percent=float((w * 7 + i) % 100), memory_percent=float(w % 100),
                                   gpus=(gpu(float(i % 100), 200.0, simulated=False),) if w < 10 else ())
               for w in range(100) for i in range(300)]
    store.append_many("resource_utilization", samples)
    data = build_report_data(store)
    html = render_fleet_report(data, tmp_path / "big.html").read_text()
    assert len(html.encode()) < 1_500_000
    assert html.count("<svg") >= 6 + 100  # 3 fleet + 3 busiest charts, sparklines per worker
    assert "busiest 8 of 100 workers" in html and "busiest 8 of 10 workers" in html
    assert "simulated" not in html  # real GPUs: no label anywhere
    assert len(data["series"]["times"]) <= 240


# -- headless Chromium -------------------------------------------------------------------------------

@pytest.mark.browser
@needs_chromium
def test_browser_screenshot_is_not_blank_and_has_no_js_errors(report, tmp_path):
    data, html, _ = report
    page = tmp_path / "report.html"
    assert page.exists()
    with headless_chromium(tmp_path, window_size=(1400, 1000), browser_log=True) as driver:
        driver.get(page.as_uri())
        assert driver.title == "Fleet <b>report</b>"
        body_text = driver.execute_script("return document.body.innerText")
        assert XSS_WORKER in body_text and XSS_TASK in body_text and "alert(2)" in body_text
        assert driver.execute_script("return document.scripts.length") == 0
        assert driver.execute_script("return document.querySelectorAll('[onerror]').length") == 0
        assert driver.execute_script("return document.querySelectorAll('figure.chart svg').length") >= 3
        shot = tmp_path / "report.png"
        png = driver.get_screenshot_as_png()
        shot.write_bytes(png)
        errors = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    image = decode_png(png)
    width, height, ink = image.width, image.height, ink_fraction(image)
    assert width >= 1000 and height >= 600
    assert ink > 0.03, f"the screenshot {shot} looks blank ({ink:.1%} of pixels are not white)"
    assert errors == []
    keep = os.environ.get("FLEET_REPORT_SCREENSHOT")
    if keep:  # a copy to look at: FLEET_REPORT_SCREENSHOT=/tmp/report.png pytest -m browser
        Path(keep).write_bytes(png)
    assert not math.isnan(ink)


def test_worker_memory_is_the_measured_bytes_where_the_stated_gib_is_their_rounding():
    from fleet_hwmon.reports.fleet_data import _hardware

    exact = 25_276_194_816  # 23.54 GiB stated by the worker's capabilities, rounded to 2 places
    assert _hardware({"memory": {"total_gb": 23.54}}, {"total_memory_bytes": exact}, {})["memory_bytes"] == exact
    assert _hardware({"memory": {"total_gb": 23.54}}, {}, {"memory_total_bytes": exact})["memory_bytes"] == exact
    # A statement the measurement does not round to stands, in whole bytes; so does one alone.
    assert _hardware({"memory": {"total_gb": 64}}, {"total_memory_bytes": exact}, {})["memory_bytes"] == 64 * 2**30
    assert _hardware({"memory": {"total_gb": 23.54}}, {}, {})["memory_bytes"] == round(23.54 * 2**30)
    assert _hardware({}, {}, {})["memory_bytes"] is None


def test_the_metrics_table_summarises_measurements_only():
    from fleet_hwmon.reports.fleet_metrics import METRICS

    names = {m.name for m in METRICS}
    # Bookkeeping (a clock reading, the clock's correction) and identifiers (a GPU's index, an
    # Xid code) have no meaningful mean or maximum.
    assert not names & {"monotonic_s", "clock_offset_s", "gpu_index", "gpu_last_xid"}
    assert {"cpu_percent", "memory_used_bytes", "net_recv_bytes_per_s", "gpu_xid_count"} <= names
