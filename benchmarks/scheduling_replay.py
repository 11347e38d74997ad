"""Scheduling replay: the same seeded workloads under each scheduling policy, side by side.

A discrete-event simulation of a heterogeneous fleet (CPU, memory, GPUs of different sizes and
CUDA compute, time-varying background load, samples delivered late, monitors that stop; memory
that ramps up and an OOM killer, timeouts, retries until success) drives the REAL scheduling
code: the reference ``TaskScheduler`` patched by ``CoordinatorHardwareMonitoringIntegration``
(scoring, views, history, DuckDB store). See ``docs/scheduling.md`` for the model and findings.

Run: ``python benchmarks/scheduling_replay.py [--quick] [--workloads a,b] [--workers N]
[--tasks N] [--seeds N] [--load F] [--policies a,b] [--factors JSON] [--plot PATH]``. Prints a
table per workload and the goal check of hardware-aware against least-loaded, writes an
SVG-in-HTML comparison (``--plot``, default ``scheduling_replay_report.html``) and prints JSON
as the last line: ``{"config", "workloads": {name: {"policies": {name: mean outcomes},
"per_seed", "goal"}}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet_hwmon.replay import METRICS, POLICY_NAMES, WORKLOADS, ReplayConfig, make_policy, mean_outcomes, simulate

BASELINE = "least_loaded"
CANDIDATE = "hardware_aware"


def _run_one(args: tuple[ReplayConfig, str, dict]) -> tuple[str, str, int, dict[str, Any]]:
    config, policy, factors = args
    result = simulate(config, make_policy(policy, config.seed, factors, config.sample_interval_s))
    return config.name, policy, config.seed, result.outcomes


def run_replay(configs: list[ReplayConfig], seeds: list[int], policies: tuple[str, ...] = POLICY_NAMES,
               factors: dict | None = None, jobs: int = 1) -> dict[str, dict[str, Any]]:
    """Every policy on every seed of every workload; per workload, per-seed outcomes and their
    means per policy."""
    work = [(replace(config, seed=seed), policy, dict(factors or {}))
            for config in configs for seed in seeds for policy in policies]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = list(pool.map(_run_one, work))
    else:
        results = [_run_one(item) for item in work]
    report: dict[str, dict[str, Any]] = {c.name: {"per_seed": {p: {} for p in policies}} for c in configs}
    for name, policy, seed, outcomes in results:
        report[name]["per_seed"][policy][seed] = outcomes
    for entry in report.values():
        entry["policies"] = {p: mean_outcomes([entry["per_seed"][p][s] for s in seeds]) for p in policies}
        entry["goal"] = goal_check(entry["policies"])
    return report


def goal_check(means: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Hardware-aware against least-loaded on one workload (means over seeds): every run
    finished, no placement lacking hardware, makespan <= 1.02x, failed attempts <= 20 %, p95
    wait <= 1.5x, time above 95 % <= 70 %, idle-while-waiting <= 2 % of the fleet's core-time,
    <= 20 decisions per placed task, quiet / exclusive tasks under the threshold in >= 99 % of
    their samples (when the workload has them). Each check gives its figures and whether it
    is met; ``met``: all of them.

    The makespan check also says whether any policy that does all the work could meet it:
    ``bound_ratio`` is the workload's makespan lower bound over least-loaded's makespan, and
    ``reachable`` is false when that bound is above 1.02x (least-loaded then ends sooner only
    by giving up on tasks after their last attempt). With the ``clairvoyant`` reference among
    the policies, the time-above-95 % check gives its ratio too (``clairvoyant_ratio``): how far
    placement alone, knowing the true load, takes it."""
    if CANDIDATE not in means or BASELINE not in means:
        return {}
    ha, ll = means[CANDIDATE], means[BASELINE]

    def ratio(key: str) -> float | None:
        return round(ha[key] / ll[key], 3) if ll[key] else None

    checks = {
        "finished": (ha["finished"], ha["finished"]),
        "no_incompatible_placement": (ha["incompatible_placements"], ha["incompatible_placements"] == 0),
        "makespan_ratio": (ratio("makespan_s"), ha["makespan_s"] <= 1.02 * ll["makespan_s"]),
        "failures_ratio": (ratio("failures"), ha["failures"] <= 0.2 * ll["failures"]),
        "p95_wait_ratio": (ratio("p95_wait_s"), ha["p95_wait_s"] <= 1.5 * ll["p95_wait_s"]),
        "overload_ratio": (ratio("overload_worker_s"), ha["overload_worker_s"] <= 0.7 * ll["overload_worker_s"]),
        "idle_while_waiting_percent": (round(ha["idle_while_waiting_percent"], 2),
                                       ha["idle_while_waiting_percent"] <= 2.0),
        "decisions_per_placed_task": (round(ha["decisions_per_placed_task"], 1), ha["decisions_per_placed_task"] <= 20),
    }
    if ha.get("isolation_quiet_percent") is not None:
        quiet = ha["isolation_quiet_percent"]
        checks["isolation_quiet_percent"] = (round(quiet, 1), quiet >= 99)
    out: dict[str, Any] = {name: {"value": value, "met": bool(met)} for name, (value, met) in checks.items()}
    bound_s = ll.get("makespan_lower_bound_s")
    if bound_s and ll["makespan_s"]:
        out["makespan_ratio"]["bound_ratio"] = round(bound_s / ll["makespan_s"], 3)
        out["makespan_ratio"]["reachable"] = bound_s <= 1.02 * ll["makespan_s"]
    reference = means.get("clairvoyant")
    if reference is not None and ll["overload_worker_s"]:
        out["overload_ratio"]["clairvoyant_ratio"] = round(reference["overload_worker_s"] / ll["overload_worker_s"], 3)
    out["met"] = all(c["met"] for c in out.values())
    return out


def print_table(means: dict[str, dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("policy", no_wrap=True)
    for _, label, unit in METRICS:
        table.add_column(f"{label}\n({unit})" if unit else label, justify="right")
    table.add_column("quiet\n(% samples)", justify="right")
    table.add_column("finished")
    for policy, m in means.items():
        table.add_row(policy, *[_fmt(m[key]) for key, _, _ in METRICS], _fmt(m["isolation_quiet_percent"]),
                      "yes" if m["finished"] else "NO")
    Console(width=max(160, Console().width)).print(table)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def write_plot(report: dict[str, dict[str, Any]], path: str, title: str) -> Path:
    """One HTML page of pygal bar charts (inline SVG): per workload, each outcome relative to
    least-loaded. Names are escaped by pygal."""
    import html

    import pygal
    from pygal.style import Style

    style = Style(background="white", plot_background="white", font_family="sans-serif")
    keys = [("makespan_s", "makespan"), ("p95_wait_s", "p95 wait"), ("failures", "failed attempts"),
            ("overload_worker_s", "time above 95 %"), ("tenant_cpu_taken_percent", "tenant CPU taken")]
    charts = []
    for name, entry in report.items():
        means = entry["policies"]
        base = means.get(BASELINE)
        if not base:
            continue
        chart = pygal.HorizontalBar(style=style, width=900, height=380, legend_at_bottom=True,
                                    title=f"{name}: outcome relative to least-loaded (1.0 = same, lower is better)")
        chart.x_labels = [label for _, label in keys]
        for policy, m in means.items():
            chart.add(policy, [round(m[k] / base[k], 3) if base[k] else None for k, _ in keys])
        charts.append(chart.render(is_unicode=True))
    body = "\n".join(f"<div>{svg}</div>" for svg in charts)
    out = Path(path)
    out.write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
                   f"<h1>{html.escape(title)}</h1>\n{body}\n", encoding="utf-8")
    return out


def _describe_goal(goal: dict[str, Any]) -> str:
    missed = [name for name, check in goal.items() if name != "met" and not check["met"]]
    figures = ", ".join(f"{name} {check['value']}" for name, check in goal.items() if name != "met")
    out = f"{figures}; {'all goals met' if not missed else 'missed: ' + ', '.join(missed)}"
    makespan = goal.get("makespan_ratio", {})
    if makespan.get("reachable") is False:
        out += (f"; the makespan lower bound is {makespan['bound_ratio']}x {BASELINE}'s makespan, so no policy "
                f"that does all the work reaches 1.02x")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 workers, 300 tasks, 1 seed")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated workload names")
    parser.add_argument("--workers", type=int, default=None, help="workers (default 24)")
    parser.add_argument("--tasks", type=int, default=None, help="tasks (default 2000)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--load", type=float, default=None, help="offered CPU load over the arrival window")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES),
                        help="comma-separated policy names (also 'clairvoyant': a reference that reads the "
                             "simulation's ground truth)")
    parser.add_argument("--factors", default=None, help="JSON overrides of hardware_scoring_factors")
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 8), help="processes")
    parser.add_argument("--plot", default="scheduling_replay_report.html", help="HTML page with the charts")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; expected some of {', '.join(WORKLOADS)}")
    overrides = {k: v for k, v in (("workers", args.workers), ("tasks", args.tasks), ("load", args.load))
                 if v is not None}
    if args.quick:
        overrides = {"workers": 8, "tasks": 300, **overrides}
    configs = [replace(WORKLOADS[n], **overrides) for n in names]
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    factors = json.loads(args.factors) if args.factors else {}

    started = time.perf_counter()
    report = run_replay(configs, seeds, policies, factors, jobs=args.jobs)
    wall_s = time.perf_counter() - started
    for config in configs:
        entry = report[config.name]
        print_table(entry["policies"], f"{config.name}: {config.workers} workers, {config.tasks} tasks, "
                                       f"load {config.load:g}, seeds {seeds[0]}..{seeds[-1]} (mean)")
        bound_s = next(iter(entry["policies"].values()))["makespan_lower_bound_s"]
        print(f"makespan lower bound {bound_s:,.0f} s")
        for policy, means in entry["policies"].items():
            if not means["finished"]:
                reasons = {o["stop_reason"] for o in entry["per_seed"][policy].values() if not o["finished"]}
                print(f"NOT FINISHED: {policy} on {config.name}: {'; '.join(sorted(reasons))}")
        if entry["goal"]:
            print(f"{CANDIDATE} vs {BASELINE}: {_describe_goal(entry['goal'])}")
            by_reason = entry["policies"][CANDIDATE]["idle_while_waiting_by_reason"]
            if by_reason:
                print(f"{CANDIDATE} idle while waiting, by why the waiting task was held off the worker: "
                      + ", ".join(f"{reason} {percent:.2f} %" for reason, percent in by_reason.items()))
    title = f"Scheduling replay, seeds {seeds[0]}..{seeds[-1]} (mean)"
    if args.plot:
        print(f"wrote {write_plot(report, args.plot, title)} in {wall_s:.1f} s")
    numeric = lambda o: {k: v for k, v in o.items() if isinstance(v, (int, float, str, type(None)))}  # noqa: E731
    print(json.dumps({
        "config": {"workloads": names, "overrides": overrides, "seeds": seeds, "factors": factors,
                   "wall_s": round(wall_s, 2)},
        "workloads": {name: {"policies": {p: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in m.items()}
                                          for p, m in entry["policies"].items()},
                             "per_seed": {p: {str(s): numeric(o) for s, o in by_seed.items()}
                                          for p, by_seed in entry["per_seed"].items()},
                             "goal": entry["goal"]}
                      for name, entry in report.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
