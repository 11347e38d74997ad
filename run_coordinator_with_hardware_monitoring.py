"""Demo: a coordinator with several workers runs real test tasks, scheduled hardware-aware.

    python run_coordinator_with_hardware_monitoring.py [--num-workers 3] [--num-tasks 10]
        [--duration 60] [--max-tasks-per-worker 2] [--db-path ./hardware_metrics.duckdb]
        [--report hardware_utilization_report.html] [--export-json PATH] [--seed 0]
        [--monitoring-level standard] [--update-interval 1.0] [--quiet] [--cluster {none,local}]
        [--scheduler-address tcp://HOST:PORT]
        [--metrics-port PORT]

Workers are embedded slices of this machine with different hardware profiles (CPU-only and
GPU ones of different sizes). Each worker's CPU and memory figures are real measurements of
its own tasks' processes; GPU figures of profiles with a GPU this machine lacks are simulated
and labelled ``simulated`` in the database and the report. The run ends when every task has
finished or the duration has passed, and leaves a DuckDB file, an HTML report and (with
``--export-json``) a JSON export. When the duration passes, Ctrl-C is pressed or SIGTERM
arrives, the running tasks are cancelled (their process trees stopped), every task's state is
recorded (``cancelled``, or ``queued`` for those that never started) and the report and export
are still written. Exit status: 0 when the demo ran (whatever the tasks' results, also when the
duration passed), 130 after Ctrl-C and 143 after SIGTERM (the report written), 1 when the Dask
scheduler was lost during the run (the report written), 2 when it could not run at all.

With ``--cluster local`` (``--num-workers`` Dask worker processes on this machine) or
``--scheduler-address tcp://HOST:PORT`` (an existing Dask cluster) the workers are Dask workers
that measure their own hosts and run the tasks themselves; see docs/cluster.md. That needs the
``cluster`` extra: ``pip install '.[cluster]'`` in the project's folder.

With ``--metrics-port PORT`` the coordinator serves Prometheus metrics at
``http://127.0.0.1:PORT/metrics`` while the demo runs (0: a free port; the URL is printed
first). That needs the ``metrics`` extra: ``pip install '.[metrics]'`` in the project's folder.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.coordinator.embedded import EmbeddedWorker
from fleet_hwmon.demo.fleet import build_tasks, build_workers
from fleet_hwmon.durations import MAX_DURATION_S, MAX_INTERVAL_S, seconds_argument
from fleet_hwmon.lifecycle import Terminated, sigterm_interrupts
from fleet_hwmon.metrics import port_argument
from fleet_hwmon.reports.jsonio import unwritable_option
from fleet_hwmon.store import StoreError
from hardware_capability_detector import HardwareCapabilityDetector
from hardware_utilization_monitor import MonitoringLevel

log = logging.getLogger("fleet_hwmon.demo")


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--db-path", default="./hardware_metrics.duckdb", help="DuckDB file to write")
    parser.add_argument("--num-workers", type=int, default=3, help="workers in the fleet")
    parser.add_argument("--num-tasks", type=int, default=10, help="tasks to run")
    parser.add_argument("--duration", type=seconds_argument(MAX_DURATION_S), default=60.0,
                        help="stop after this many seconds")
    parser.add_argument("--max-tasks-per-worker", type=int, default=2, help="tasks a worker runs at once")
    parser.add_argument("--report", default="hardware_utilization_report.html", help="HTML report to write")
    parser.add_argument("--export-json", default=None, metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--seed", type=int, default=0, help="seed of the workload and of tie-breaking")
    parser.add_argument("--monitoring-level", default="standard", choices=[lv.value for lv in MonitoringLevel])
    parser.add_argument("--update-interval", type=seconds_argument(MAX_INTERVAL_S), default=1.0,
                        help="seconds between worker samples")
    parser.add_argument("--quiet", action="store_true", help="no live view; print only where results are")
    parser.add_argument("--cluster", choices=["none", "local"], default="none",
                        help="local: run the workers as a Dask LocalCluster of --num-workers processes")
    parser.add_argument("--scheduler-address", default=None, metavar="tcp://HOST:PORT",
                        help="use the Dask cluster of this scheduler (waits for --num-workers workers)")
    parser.add_argument("--metrics-port", type=port_argument, default=None, metavar="PORT",
                        help="serve Prometheus metrics on 127.0.0.1:PORT while the demo runs (0: any free port)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    for name in ("num_workers", "num_tasks", "max_tasks_per_worker"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.scheduler_address is not None and not args.scheduler_address.strip():
        parser.error("--scheduler-address is empty: name a scheduler (tcp://HOST:PORT) or leave it out")
    problem = unwritable_option([("--report", args.report), ("--export-json", args.export_json)])
    if problem:  # found now, not after the run
        parser.error(problem)
    return args


def register_fleet(coordinator: Coordinator, workers: list[EmbeddedWorker]) -> None:
    """Register each worker with capabilities detected on this host, limited to its profile."""
    detector = HardwareCapabilityDetector(worker_id="demo-host")
    host = detector.detect_all_capabilities()
    for worker in workers:
        record = worker.hardware_capabilities(host)
        capabilities = detector.to_coordinator_capabilities(record)
        simulated = worker.capabilities()["simulated"]
        for gpu in capabilities.get("gpus", []):
            gpu["simulated"] = True
        capabilities.update(profile=worker.profile.name, simulated=simulated)
        coordinator.register_worker(worker.worker_id, capabilities, hardware_capabilities=record)


def hook_workers(coordinator: Coordinator, workers: dict[str, EmbeddedWorker]) -> None:
    """Feed each embedded worker the measurements of its own tasks' process trees."""
    coordinator.register_task_callback("task_started", lambda task, w: workers[w].task_started(task))
    coordinator.register_task_callback("task_sample", lambda task, w, s: workers[w].task_sample(task["task_id"], s))
    coordinator.register_task_callback("task_finished", lambda task, w, _o: workers[w].task_finished(task["task_id"]))


class WorkerSampling:
    """Pushes every worker's sample to the integration each interval, as a remote worker would."""

    def __init__(self, integration: CoordinatorHardwareMonitoringIntegration, workers: list[EmbeddedWorker],
                 interval_s: float) -> None:
        self._integration = integration
        self._workers = workers
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-worker-sampling", daemon=True)

    def push_all(self) -> None:
        for worker in self._workers:
            try:
                self._integration.update_worker_utilization(worker.worker_id, worker.sample())
            except Exception as err:  # one worker's fault must not stop the others' samples
                log.warning("sample of %s failed: %s", worker.worker_id, err)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.push_all()

    def start(self) -> None:
        self.push_all()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.push_all()


def _connect_wait() -> str:
    """How long Dask waits for a scheduler (``distributed.comm.timeouts.connect``), in words."""
    try:
        import dask
        import distributed  # noqa: F401  (its defaults join Dask's configuration on import)
        from dask.utils import parse_timedelta

        return f"Dask waits up to {parse_timedelta(dask.config.get('distributed.comm.timeouts.connect'), 's'):g} s"
    except (ImportError, KeyError, TypeError, ValueError):  # no Dask (said next), or a setting it cannot read
        return "Dask waits up to its connect timeout"


def run(args: argparse.Namespace) -> int:
    use_cluster = args.cluster != "none" or args.scheduler_address is not None
    if use_cluster:
        try:
            from fleet_hwmon.cluster.demo import build_cluster_coordinator

            if args.scheduler_address:
                address = args.scheduler_address.strip()
                # A port out of range is found now, not after Dask's connect timeout.
                _ = urlsplit(address if "://" in address else f"tcp://{address}").port
                if not args.quiet:
                    print(f"connecting to the Dask scheduler at {address} ({_connect_wait()}) ...",
                          file=sys.stderr, flush=True)
            coordinator = build_cluster_coordinator(args)
        except (ImportError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except ValueError as err:  # Dask's reading of a malformed address
            print(f"error: --scheduler-address {args.scheduler_address!r}: {err}", file=sys.stderr)
            return 2
    else:
        coordinator = Coordinator(max_tasks_per_worker=args.max_tasks_per_worker, seed=args.seed)
    integration = CoordinatorHardwareMonitoringIntegration(
        coordinator, db_path=args.db_path, monitoring_level=args.monitoring_level,
        update_interval_seconds=args.update_interval, seed=args.seed)
    try:
        integration.initialize()
        if args.metrics_port is not None:
            print(f"metrics:  {integration.start_metrics_server(args.metrics_port).url}", flush=True)
    except (StoreError, ImportError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        integration.shutdown()
        if use_cluster:
            coordinator.close()
        return 2
    if use_cluster:
        from fleet_hwmon.cluster.demo import ClusterFleet

        sampling = ClusterFleet(coordinator, integration, args)
    else:
        workers = build_workers(args.num_workers, args.seed)
        sampling = WorkerSampling(integration, workers, args.update_interval)
    interrupted = timed_out = False
    signum = signal.SIGINT
    try:
        if use_cluster:
            sampling.start()  # connect and wait for the workers before any task is dispatched
        else:
            register_fleet(coordinator, workers)
            hook_workers(coordinator, {w.worker_id: w for w in workers})
        tasks = build_tasks(args.num_tasks, args.seed)
        for task in tasks:
            coordinator.submit_task(task)
        if not use_cluster:
            sampling.start()
        ctrl_c = threading.Event()
        try:
            with _ctrl_c_sets(ctrl_c):
                coordinator.start()
                if not args.quiet:
                    print(f"running {len(tasks)} tasks on {len(coordinator.workers)} workers for at most "
                          f"{args.duration:g} s (Ctrl-C stops them and still writes the report)", flush=True)
                done = _wait(coordinator, integration, args, len(tasks), sampling.push_all, ctrl_c)
            lost = getattr(coordinator, "scheduler_lost", None)
            interrupted, timed_out = ctrl_c.is_set(), not done and not ctrl_c.is_set() and not lost
            signum = getattr(ctrl_c, "signum", signum)
        except KeyboardInterrupt as stopped:  # a second Ctrl-C while ending skips the report (main: 130)
            interrupted = True
            signum = signal.SIGTERM if isinstance(stopped, Terminated) else signal.SIGINT
        if interrupted:
            print(f"{'terminated' if signum == signal.SIGTERM else 'interrupted'}: stopping the tasks, then writing "
                  "the report", file=sys.stderr)
        coordinator.stop(cancel_running=True)
        sampling.stop()
        integration.record_task_outcomes(coordinator.task_outcomes())
        report = integration.generate_html_report(args.report)
        exported = integration.export_json(args.export_json) if args.export_json else None
        stats = integration.scheduler_statistics()
    finally:
        # The coordinator first: its last results and samples still go to the integration.
        if use_cluster:
            coordinator.close()
        integration.shutdown()
    counts = coordinator.counts()
    lost = getattr(coordinator, "scheduler_lost", None)
    stopped_by = "terminated" if signum == signal.SIGTERM else "interrupted"
    ended = (f"{stopped_by} with {counts['queued']} never started" if interrupted else
             f"the Dask scheduler lost with {counts['queued']} never started" if lost else
             f"stopped after {args.duration:g} s with {counts['queued']} never started" if timed_out else "")
    print(f"{counts['completed']} tasks completed, {counts['failed']} failed"
          + (f", {counts['cancelled']} cancelled" if counts["cancelled"] else "") + (f", {ended}" if ended else "")
          + f"; {stats['decisions']} scheduling decisions, {stats['alternatives_chosen']} moved off the "
          "original choice")
    print(f"database: {Path(args.db_path).resolve()}")
    print(f"report:   {Path(report).resolve()}")
    if exported:
        print(f"json:     {Path(exported).resolve()}")
    if lost:
        print(f"error: {lost}", file=sys.stderr)
        return 1
    return 128 + signum if interrupted else 0


@contextlib.contextmanager
def _ctrl_c_sets(event: threading.Event) -> Iterator[None]:
    """While the block runs, the first Ctrl-C or SIGTERM sets ``event`` (and ``event.signum``)
    instead of raising. A KeyboardInterrupt raised in the main thread while it runs a library's
    callback (Dask's garbage-collection hook, a ``__del__``) is swallowed there and the Ctrl-C
    lost. A second one raises as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return

    def first(signum: int, frame: object) -> None:
        event.signum = signum  # type: ignore[attr-defined]
        event.set()
        for number, handler in restore.items():
            signal.signal(number, handler)

    restore = {}
    for number, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        previous = signal.signal(number, first)
        restore[number] = default if previous is None else previous  # None: set outside Python
    try:
        yield
    finally:
        for number, handler in restore.items():
            signal.signal(number, handler)


def _wait(coordinator: Coordinator, integration: CoordinatorHardwareMonitoringIntegration,
          args: argparse.Namespace, total: int, refresh: Callable[[], None] = lambda: None,
          interrupted: threading.Event | None = None) -> bool:
    """Wait for every task, the duration or ``interrupted``, showing the live view unless
    ``--quiet``. Returns whether every task is done."""
    deadline = time.monotonic() + args.duration
    interrupted = interrupted or threading.Event()

    def waiting() -> bool:
        return (not coordinator.all_done() and time.monotonic() < deadline and not interrupted.is_set()
                and not getattr(coordinator, "scheduler_lost", None))

    if args.quiet:
        while waiting():
            time.sleep(0.2)
        return coordinator.all_done()
    from rich.live import Live

    from fleet_hwmon.demo.live import LiveView

    view = LiveView(total)

    def frame():
        running: dict[str, list[str]] = {}
        for task_id, record in list(coordinator.tasks.items()):
            if record.status == "running" and record.worker_id:
                running.setdefault(record.worker_id, []).append(task_id)
        alerts = sum(len(m.get_alerts()) for m in list(integration.worker_monitors.values()))
        return view.frame(integration._worker_snapshot(), coordinator.counts(), alerts, running)

    with Live(frame(), refresh_per_second=4, transient=False) as live:
        while waiting():
            time.sleep(0.25)
            live.update(frame())
        refresh()  # the last frame shows the workers as they are now, not as of the last interval
        live.update(frame())
    if not live.console.is_terminal:
        live.console.line()  # the last frame ends without a newline when output is not a terminal
    return coordinator.all_done()


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with sigterm_interrupts():
            return run(args)
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
