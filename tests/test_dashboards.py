"""The Grafana dashboard and the Prometheus rules refer only to what the collector exposes, parse
as PromQL, and the rules mirror the product's thresholds; the README's metric list is the
collector's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleet_hwmon.alerts import DEFAULT_THRESHOLDS
from fleet_hwmon.metrics.catalogue import METRICS, SPECS, exposed_names, markdown_list

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "dashboards" / "fleet_hwmon.json"
RULES = REPO / "dashboards" / "alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: apt install prometheus)")
METRIC = re.compile(r"\bfleet_hwmon_[a-z0-9_]+")
# Grafana's variables, rendered the way Grafana renders them for "All" and a 15 s scrape
VARIABLES = {"$__rate_interval": "1m", "$worker": ".*"}


def render(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def dashboard_queries() -> dict[str, str]:
    """Every query of the dashboard, rendered: panel title/refId -> PromQL."""
    board = json.loads(DASHBOARD.read_text())
    queries = {}
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            queries[f"{panel['title']}/{target['refId']}"] = render(target["expr"])
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"]["query"])
            assert inner, variable
            queries[f"${variable['name']}"] = inner.group(1)  # the metric whose label values it lists
    return queries


def rule_queries() -> dict[str, str]:
    rules = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def label_names(spec_name: str) -> set[str]:
    """The labels a series name carries (a histogram's buckets add ``le``)."""
    for spec in METRICS:
        if spec_name == spec.name or (spec.kind == "histogram" and spec_name.startswith(spec.name + "_")):
            return set(spec.labels) | ({"le"} if spec_name.endswith("_bucket") else set())
    raise KeyError(spec_name)


def check_query(expr: str) -> None:
    used = set(METRIC.findall(expr))
    assert used, f"no fleet_hwmon metric in {expr!r}"
    assert used <= exposed_names(), f"{sorted(used - exposed_names())} not exposed by the collector: {expr!r}"
    for name, matchers in re.findall(r"\b(fleet_hwmon_[a-z0-9_]+)\{([^}]*)\}", expr):
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
            assert label in label_names(name), f"{name} has no label {label!r}: {expr!r}"
    known = set().union(*(label_names(name) for name in used))
    for grouping in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right) ?\(([^)]*)\)", expr):
        for label in filter(None, (g.strip() for g in grouping.split(","))):
            assert label in known, f"no metric of {expr!r} has the label {label!r}"


# -- the dashboard --------------------------------------------------------------------------------
def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    titles = set()
    for panel in board["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        titles.add(panel["title"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"]), panel["title"]
    # what the dashboard is for: load, GPUs, alerts, scheduling outcomes and exclusions, task durations
    assert {"CPU utilization", "GPU utilization", "Alerts firing", "Decisions by outcome", "Exclusions by kind",
            "Task duration p95"} <= titles


@pytest.mark.parametrize("where, expr", sorted(dashboard_queries().items()))
def test_dashboard_queries_use_only_exposed_metrics_and_labels(where: str, expr: str) -> None:
    check_query(expr)


@needs_promtool
def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    # Each query as a recording rule: promtool parses it with Prometheus's own parser.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{n}", "expr": expr} for n, expr in enumerate(dashboard_queries().values())]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# -- the alerting rules ---------------------------------------------------------------------------
@pytest.mark.parametrize("alert, expr", sorted(rule_queries().items()))
def test_rules_use_only_exposed_metrics_and_labels(alert: str, expr: str) -> None:
    check_query(expr)


def test_rules_mirror_the_products_thresholds() -> None:
    rules = yaml.safe_load(RULES.read_text())
    found = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            labels = rule.get("labels", {})
            if "resource" in labels:
                lower = float(re.search(r">= ([0-9.]+)", rule["expr"]).group(1))
                found[(labels["resource"], labels["severity"])] = lower
                upper = re.search(r"< ([0-9.]+)", rule["expr"])
                if labels["severity"] == "warning":  # warning until the critical threshold
                    assert upper and float(upper.group(1)) == pytest.approx(
                        DEFAULT_THRESHOLDS[labels["resource"]].critical_percent / 100), rule
    expected = {}
    for resource, threshold in DEFAULT_THRESHOLDS.items():
        expected[(resource, "warning")] = pytest.approx(threshold.warning_percent / 100)
        expected[(resource, "critical")] = pytest.approx(threshold.critical_percent / 100)
    assert found == expected


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rule_queries())} rules found" in check.stdout
    test = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=RULES.parent, capture_output=True,
                          text=True, timeout=60)
    assert test.returncode == 0, test.stdout + test.stderr


# -- the README -------------------------------------------------------------------------------------
def test_readme_metric_list_is_the_collectors() -> None:
    readme = (REPO / "README.md").read_text()
    listed = re.search(r"<!-- metrics:begin -->\n(.*?)\n<!-- metrics:end -->", readme, re.S)
    assert listed, "README lacks the generated metric list (python -m fleet_hwmon.metrics)"
    assert listed.group(1) == markdown_list()
    assert set(SPECS) == {spec.name for spec in METRICS}


def test_the_readme_command_prints_the_list() -> None:
    import sys

    done = subprocess.run([sys.executable, "-m", "fleet_hwmon.metrics"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == markdown_list() + "\n", done.stderr
    assert done.stderr == ""  # no warning of a module run twice


@pytest.mark.parametrize("expr", [
    "fleet_hwmon_worker_cpu_utilisation_ratio",  # misspelt
    'fleet_hwmon_gpu_power_watts{gpu="GPU-a"}',  # no such label
    "sum by (kind) (fleet_hwmon_tasks_finished_total)",  # grouped by a label it lacks
    # joined on a label neither side has
    "fleet_hwmon_gpu_power_watts * on (worker_id, gpu) group_left (gpu_name) fleet_hwmon_gpu_info",
    "up",  # not ours
])
def test_the_query_check_rejects_what_the_collector_does_not_expose(expr: str) -> None:
    with pytest.raises(AssertionError):
        check_query(expr)
