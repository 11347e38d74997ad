"""The scheduling replay: deterministic per seed, no task lost, outcomes follow from the events."""

from __future__ import annotations

import collections
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from fleet_hwmon.replay import (POLICY_NAMES, ReplayConfig, build_fleet, build_tasks, make_policy,
                                makespan_lower_bound_s, simulate)
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
def test_no_task_lost_and_each_attempt_counted_once(tiny_results, policy):
    result = tiny_results[policy]
    attempts = collections.defaultdict(list)  # task -> [(start, finish, error)], in order
    arrivals = collections.Counter()
    for t, kind, task_id, worker_id, detail in result.events:
        if kind == "arrive":
            arrivals[task_id] += 1
        elif kind == "start":
            attempts[task_id].append([t, worker_id, None, None])
        else:
            attempt = attempts[task_id][-1]
            assert attempt[1] == worker_id and attempt[2] is None and t >= attempt[0]
            attempt[2:] = [t, detail]
    ids = {t.task_id for t in build_tasks(TINY, build_fleet(TINY))}
    assert set(arrivals) == set(attempts) == ids and set(arrivals.values()) == {1}
    for runs in attempts.values():
        assert 1 <= len(runs) <= TINY.max_attempts and all(run[2] is not None for run in runs)
        assert all(run[3] is not None for run in runs[:-1])  # only a failed attempt is retried
        if runs[-1][3] is not None:
            assert len(runs) == TINY.max_attempts  # failed for good only after every attempt
    o = result.outcomes
    assert o["completed"] + o["tasks_failed"] == o["tasks"] == TINY.tasks
    assert o["failures"] == sum(run[3] is not None for runs in attempts.values() for run in runs)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_outcomes_recomputed_from_the_event_log(tiny_results, policy):
    result = tiny_results[policy]
    arrive, waits, ready, last = {}, {}, {}, {}
    for t, kind, task_id, _, _ in result.events:
        if kind == "arrive":
            arrive[task_id] = ready[task_id] = t
            waits[task_id] = 0.0
        elif kind == "start":
            waits[task_id] += t - ready[task_id]
        else:
            last[task_id], ready[task_id] = t, t
    assert result.outcomes["makespan_s"] == pytest.approx(max(last.values()))
    assert result.outcomes["mean_wait_s"] == pytest.approx(sum(waits.values()) / len(waits))
    assert result.outcomes["mean_turnaround_s"] == pytest.approx(
        sum(last[k] - arrive[k] for k in last) / len(last))
    assert all(w >= 0 for w in waits.values())


def test_a_failed_attempt_is_retried_and_its_lost_work_paid_again():
    # Least-loaded ignores memory: on this workload two attempts fail, one task for good.
    busy = ReplayConfig(workers=6, tasks=120, seed=1, load=0.9)
    result = simulate(busy, make_policy("least_loaded", busy.seed))
    assert (result.outcomes["failures"], result.outcomes["tasks_failed"]) == (2, 1)
    retried = [task_id for _, kind, task_id, _, _ in result.events if kind == "start"]
    assert len(retried) == busy.tasks + 1
    once = simulate(replace(busy, max_attempts=1), make_policy("least_loaded", busy.seed))
    assert once.outcomes["tasks_failed"] == once.outcomes["failures"] >= 1  # no retries: every failure is final


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


def test_no_policy_beats_the_makespan_lower_bound(tiny_results):
    bound = makespan_lower_bound_s(TINY)
    specs = build_tasks(TINY, build_fleet(TINY))
    assert bound >= max(t.arrival_s + t.work_s / 1.5 for t in specs)  # no worker is 1.5x faster
    assert all(result.outcomes["makespan_s"] >= bound - 1e-6 for result in tiny_results.values())


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
    assert data["goal"]["makespan_lower_bound_s"] <= data["policies"]["least_loaded"]["makespan_s"]
    assert "<svg" in plot.read_text(encoding="utf-8")
