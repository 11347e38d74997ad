"""The scheduling replay: deterministic per seed, no task lost, outcomes follow from the events."""

from __future__ import annotations

import collections
import importlib.util
import json
from pathlib import Path

import pytest

from fleet_hwmon.replay import POLICY_NAMES, ReplayConfig, build_fleet, build_tasks, make_policy, simulate
from fleet_hwmon.replay.sim import _fits

TINY = ReplayConfig(workers=6, tasks=60, seed=3)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_results():
    return {name: simulate(TINY, make_policy(name, TINY.seed)) for name in POLICY_NAMES}


def test_same_seed_same_outcomes(tiny_results):
    again = simulate(TINY, make_policy("hardware_aware", TINY.seed))
    first = tiny_results["hardware_aware"]
    assert again.events == first.events
    strip = lambda o: {k: v for k, v in o.items() if k != "wall_s"}  # noqa: E731
    assert strip(again.outcomes) == strip(first.outcomes)


def test_every_policy_sees_the_same_workload():
    fleet = build_fleet(TINY)
    assert build_tasks(TINY, fleet) == build_tasks(TINY, build_fleet(TINY))
    assert len({w.worker_id for w in fleet}) == TINY.workers
    assert any(w.gpu for w in fleet) and any(not w.gpu for w in fleet)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_no_task_lost_and_each_counted_once(tiny_results, policy):
    result = tiny_results[policy]
    kinds = collections.defaultdict(collections.Counter)
    for _, kind, task_id, _, _ in result.events:
        kinds[kind][task_id] += 1
    ids = {t.task_id for t in build_tasks(TINY, build_fleet(TINY))}
    for kind in ("arrive", "start", "finish"):
        assert set(kinds[kind]) == ids, kind
        assert set(kinds[kind].values()) == {1}, kind
    o = result.outcomes
    assert o["completed"] + o["failures"] == o["tasks"] == TINY.tasks


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_outcomes_recomputed_from_the_event_log(tiny_results, policy):
    result = tiny_results[policy]
    arrive, start, finish = {}, {}, {}
    for t, kind, task_id, worker_id, detail in result.events:
        {"arrive": arrive, "start": start, "finish": finish}[kind][task_id] = (t, worker_id, detail)
    makespan = max(t for t, _, _ in finish.values())
    failures = sum(1 for _, _, detail in finish.values() if detail is not None)
    waits = sorted(start[k][0] - arrive[k][0] for k in start)
    assert result.outcomes["makespan_s"] == pytest.approx(makespan)
    assert result.outcomes["failures"] == failures
    assert result.outcomes["mean_wait_s"] == pytest.approx(sum(waits) / len(waits))
    assert all(w >= 0 for w in waits)
    assert all(finish[k][0] >= start[k][0] and finish[k][1] == start[k][1] for k in finish)


@pytest.mark.parametrize("policy", ["hardware_aware", "hardware_aware_no_history", "original", "round_robin"])
def test_no_incompatible_placement(tiny_results, policy):
    result = tiny_results[policy]
    fleet = {w.worker_id: w for w in build_fleet(TINY)}
    specs = {t.task_id: t for t in build_tasks(TINY, build_fleet(TINY))}
    placed = [(specs[task_id], fleet[worker_id]) for _, kind, task_id, worker_id, _ in result.events
              if kind == "start"]
    assert placed and all(_fits(spec, worker) for spec, worker in placed)
    assert result.outcomes["incompatible_placements"] == 0
    assert any(spec.needs_gpu for spec, _ in placed)  # the check covers GPU requirements


def test_benchmark_script_quick_run(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("scheduling_replay", ROOT / "benchmarks" / "scheduling_replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plot = tmp_path / "replay_report.html"
    assert module.main(["--workers", "6", "--tasks", "40", "--seeds", "1", "--jobs", "1", "--plot", str(plot)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(last)
    assert set(data["policies"]) == set(POLICY_NAMES)
    assert "makespan_s" in data["policies"]["hardware_aware"]
    assert "<svg" in plot.read_text(encoding="utf-8")
