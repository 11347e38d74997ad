"""Scheduling replay: the same seeded workload under each scheduling policy, side by side.

A discrete-event simulation of a heterogeneous fleet (CPU, memory, GPUs of different sizes and
CUDA compute, time-varying background load, samples delivered late) drives the REAL scheduling
code: the reference ``TaskScheduler`` patched by ``CoordinatorHardwareMonitoringIntegration``
(scoring, views, history, DuckDB store). See ``docs/scheduling.md`` for the model and findings.

Run: ``python benchmarks/scheduling_replay.py [--quick] [--workers N] [--tasks N] [--seeds N]
[--load F] [--factors JSON] [--plot PATH]``. Prints a table, writes an SVG-in-HTML comparison
(``--plot``, default ``scheduling_replay_report.html``) and prints JSON as the last line:
``{"config", "policies": {name: mean outcomes}, "per_seed", "goal"}``.
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

from fleet_hwmon.replay import (METRICS, POLICY_NAMES, ReplayConfig, make_policy, makespan_lower_bound_s,
                                mean_outcomes, simulate)

BASELINE = "least_loaded"
CANDIDATE = "hardware_aware"


def _run_one(args: tuple[ReplayConfig, str, dict]) -> tuple[str, int, dict[str, Any]]:
    config, policy, factors = args
    result = simulate(config, make_policy(policy, config.seed, factors, config.sample_interval_s))
    return policy, config.seed, result.outcomes


def run_replay(config: ReplayConfig, seeds: list[int], policies: tuple[str, ...] = POLICY_NAMES,
               factors: dict | None = None, jobs: int = 1) -> dict[str, Any]:
    """Every policy on every seed; returns per-seed outcomes and their means per policy."""
    work = [(replace(config, seed=seed), policy, dict(factors or {})) for seed in seeds for policy in policies]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = list(pool.map(_run_one, work))
    else:
        results = [_run_one(item) for item in work]
    per_seed: dict[str, dict[int, dict]] = {p: {} for p in policies}
    for policy, seed, outcomes in results:
        per_seed[policy][seed] = outcomes
    means = {p: mean_outcomes([per_seed[p][s] for s in seeds]) for p in policies}
    return {"per_seed": per_seed, "policies": means}


def goal_check(means: dict[str, dict[str, float]], makespan_bound_s: float | None = None) -> dict[str, Any]:
    """The goal: against least-loaded, time above 95 % at most half and makespan at least 10 %
    shorter, with no more failures than any other policy. ``makespan_bound_s`` (the workload's
    lower bound on makespan, mean over the seeds) adds the largest makespan cut any policy could
    reach."""
    if CANDIDATE not in means or BASELINE not in means:
        return {}
    ha, ll = means[CANDIDATE], means[BASELINE]
    overload_cut = 1 - ha["overload_worker_s"] / ll["overload_worker_s"] if ll["overload_worker_s"] else 0.0
    makespan_cut = 1 - ha["makespan_s"] / ll["makespan_s"] if ll["makespan_s"] else 0.0
    fewest_failures = min(m["failures"] for p, m in means.items() if p != CANDIDATE)
    out = {"overload_cut": round(overload_cut, 4), "makespan_cut": round(makespan_cut, 4),
           "failures": ha["failures"], "fewest_failures_of_others": fewest_failures,
           "overload_cut_met": overload_cut >= 0.5, "makespan_cut_met": makespan_cut >= 0.10,
           "failures_met": ha["failures"] <= fewest_failures}
    out["met"] = out["overload_cut_met"] and out["makespan_cut_met"] and out["failures_met"]
    if makespan_bound_s is not None and ll["makespan_s"]:
        out["makespan_lower_bound_s"] = round(makespan_bound_s, 1)
        out["makespan_cut_possible"] = round(1 - makespan_bound_s / ll["makespan_s"], 4)
    return out


def print_table(means: dict[str, dict[str, float]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("policy", no_wrap=True)
    for _, label, unit in METRICS:
        table.add_column(f"{label}\n({unit})" if unit else label, justify="right")
    for policy, m in means.items():
        table.add_row(policy, *[_fmt(m[key]) for key, _, _ in METRICS])
    Console(width=max(140, Console().width)).print(table)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def write_plot(means: dict[str, dict[str, float]], path: str, title: str) -> Path:
    """One HTML page of pygal bar charts (inline SVG): each outcome, relative to least-loaded,
    plus the absolute figures. Policy names are escaped by pygal."""
    import html

    import pygal
    from pygal.style import Style

    style = Style(background="white", plot_background="white", font_family="sans-serif")
    charts = []
    keys = [("makespan_s", "Makespan (s)"), ("mean_wait_s", "Mean wait (s)"), ("p95_wait_s", "p95 wait (s)"),
            ("failures", "Task failures"), ("overload_worker_s", "Time above 95 % (worker-s)"),
            ("utilization_cv", "Utilization imbalance (CV)")]
    relative = pygal.HorizontalBar(style=style, width=900, height=420, legend_at_bottom=True,
                                   title="Outcome relative to least-loaded (1.0 = same, lower is better)")
    relative.x_labels = [label for _, label in keys]
    base = means.get(BASELINE)
    if base:
        for policy, m in means.items():
            relative.add(policy, [round(m[k] / base[k], 3) if base[k] else None for k, _ in keys])
        charts.append(relative.render(is_unicode=True))
    for key, label in keys:
        chart = pygal.Bar(style=style, width=440, height=300, show_legend=False, title=label)
        chart.x_labels = list(means)
        chart.add(label, [round(m[key], 2) for m in means.values()])
        charts.append(chart.render(is_unicode=True))
    body = "\n".join(f'<div style="display:inline-block">{svg}</div>' for svg in charts)
    out = Path(path)
    out.write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
                   f"<h1>{html.escape(title)}</h1>\n{body}\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 workers, 300 tasks, 1 seed")
    parser.add_argument("--workers", type=int, default=None, help="workers (default 24)")
    parser.add_argument("--tasks", type=int, default=None, help="tasks (default 2000)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--load", type=float, default=None, help="offered CPU load over the arrival window")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES), help="comma-separated policy names")
    parser.add_argument("--factors", default=None, help="JSON overrides of hardware_scoring_factors")
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 8), help="processes")
    parser.add_argument("--plot", default="scheduling_replay_report.html", help="HTML page with the charts")
    args = parser.parse_args(argv)

    config = ReplayConfig(workers=8, tasks=300) if args.quick else ReplayConfig()
    if args.workers is not None:
        config = replace(config, workers=args.workers)
    if args.tasks is not None:
        config = replace(config, tasks=args.tasks)
    if args.load is not None:
        config = replace(config, load=args.load)
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    factors = json.loads(args.factors) if args.factors else {}

    started = time.perf_counter()
    report = run_replay(config, seeds, policies, factors, jobs=args.jobs)
    wall_s = time.perf_counter() - started
    means = report["policies"]
    title = (f"Scheduling replay: {config.workers} workers, {config.tasks} tasks, load {config.load:g}, "
             f"seeds {seeds[0]}..{seeds[-1]} (mean)")
    print_table(means, title)
    bound_s = sum(makespan_lower_bound_s(replace(config, seed=seed)) for seed in seeds) / len(seeds)
    goal = goal_check(means, bound_s)
    if goal:
        print(f"hardware_aware vs least_loaded: time above 95 % cut {goal['overload_cut']:.0%} (goal 50 %), "
              f"makespan cut {goal['makespan_cut']:.1%} (goal 10 %), failures {goal['failures']:.1f} "
              f"(fewest of the others {goal['fewest_failures_of_others']:.1f}); goal met: {goal['met']}")
        print(f"makespan lower bound of the workload {bound_s:,.0f} s (each task alone on its fastest worker "
              f"from its arrival): no policy can cut least_loaded's makespan by more than "
              f"{goal['makespan_cut_possible']:.1%}")
    if args.plot:
        print(f"wrote {write_plot(means, args.plot, title)} in {wall_s:.1f} s")
    print(json.dumps({"config": {"workers": config.workers, "tasks": config.tasks, "load": config.load,
                                 "seeds": seeds, "factors": factors, "wall_s": round(wall_s, 2)},
                      "policies": {p: {k: round(v, 3) for k, v in m.items()} for p, m in means.items()},
                      "per_seed": {p: {str(s): {k: v for k, v in o.items() if isinstance(v, (int, float))}
                                       for s, o in by_seed.items()} for p, by_seed in report["per_seed"].items()},
                      "goal": goal}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
