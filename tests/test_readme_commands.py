"""Every command line of the README's ```bash blocks, run as a user would run it.

Each block runs in a fresh copy of the checkout (so ``python run_*.py`` and ``pip install .`` mean
what they mean in the README, and what the commands write stays out of the tree), its commands in
order, each with a bounded lifetime:

- ``pip install SPEC`` must name this project (``.`` or ``.[extra]``, the extras declared in
  ``pyproject.toml`` and their requirements present). With ``--run-long-tests`` it really
  builds and installs the project, without dependencies (they are this environment's), into a folder of the
  block that comes first on ``PYTHONPATH`` (the environment running the tests is never changed),
  and checks that the installed package imports from there with its templates. Otherwise the
  copy's sources stand in for the package.
- ``python run_hardware_monitoring_tests.py`` without arguments runs the whole suite, which
  includes this test: run from here it would recurse (the inner suite runs this test again) and
  at least double the run. The runner is run over one small test file instead, which checks what
  the command adds to the suite: the runner starts, runs pytest and records the run.
- Servers (``SERVERS``) start in the background on 127.0.0.1, on a free port in place of the
  README's, as many copies as the README means (one per worker machine: two), and are stopped when
  their block ends. ``HOST`` is 127.0.0.1.
- Anything else runs in the foreground and must exit 0 within ``COMMAND_TIMEOUT_S``. A command
  added later that is still running then and listens on a TCP port is a server the README runs
  in a terminal of its own: it stays up for the rest of its block and is stopped with it (listing
  it in ``SERVERS`` saves the wait and keeps it on loopback). One that neither ends nor listens
  fails.
- A demo run (``run_coordinator_with_hardware_monitoring.py``) is read back from its DuckDB file:
  every task has an outcome and none was left waiting or cancelled, workers were sampled and
  decisions recorded.

The Dask workers' load is fixed (``$FLEET_HWMON_EXTRA_SOURCE``, ``tests.fakes.fixed_load``) so
that what else runs on the machine never decides whether a task is placed. Blocks in ``LONG``
(the README's first: the full demo and the whole suite) are marked ``long``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import duckdb
import pytest
from packaging.requirements import Requirement  # pytest's own dependency

from fleet_hwmon.cluster.wire import EXTRA_SOURCE_ENV
from tests.fakes import fixed_load

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMMAND_TIMEOUT_S = 300.0
SERVER_READY_TIMEOUT_S = 90.0
LONG = {"pip install . && python run_coordinator_with_hardware_monitoring.py"}
DEMO = "run_coordinator_with_hardware_monitoring.py"
RUNNER = "run_hardware_monitoring_tests.py"
RUNNER_STAND_IN = ["tests/test_cgroup.py", "-q"]


@dataclass(frozen=True)
class Server:
    """How to run one kind of server here: options that keep it on loopback, how many copies, and
    the line in its output that says it is ready (``None``: its port accepts connections)."""

    loopback: tuple[str, ...]
    copies: int = 1
    ready_line: str | None = None


SERVERS = {
    ("dask", "scheduler"): Server(("--host", "127.0.0.1", "--no-dashboard")),
    ("dask", "worker"): Server(("--host", "127.0.0.1", "--no-dashboard"), copies=2, ready_line="Registered to"),
}
_IGNORED_IN_COPY = shutil.ignore_patterns(".git", "__pycache__", ".venv*", "venv", ".ci", "build", "dist", "*.egg-info",
                                          "*.duckdb*", "ci_artifacts", ".pytest_cache", ".ruff_cache", "badges")


# -- reading the README ---------------------------------------------------------------------------
def bash_blocks(text: str) -> list[list[str]]:
    """The command lines of each ```bash block: continuation lines joined, comments and blank
    lines dropped."""
    blocks = []
    for body in re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        joined = re.sub(r"\\\n", " ", body)
        lines = [re.sub(r"(^|\s+)#.*$", "", line).strip() for line in joined.splitlines()]
        blocks.append([re.sub(r"\s+", " ", line) for line in lines if line])
    return blocks


def steps(line: str) -> list[list[str]]:
    """``a && b`` -> ``[a_argv, b_argv]``."""
    out: list[list[str]] = [[]]
    for token in shlex.split(line):
        if token == "&&":
            out.append([])
        else:
            out[-1].append(token)
    return [argv for argv in out if argv]


def _block_param(block: list[str]):
    marks = [pytest.mark.long] if block[0] in LONG else []
    return pytest.param(block, id=block[0][:60], marks=marks)


BLOCKS = bash_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_the_commands_this_test_knows():
    """The first block keeps its two set-up commands verbatim, and the parsing sees every block."""
    assert BLOCKS[0] == ["pip install . && python run_coordinator_with_hardware_monitoring.py",
                         "pip install '.[test]' && python run_hardware_monitoring_tests.py"]
    every_line = [line for block in BLOCKS for line in block]
    assert any("--cluster local" in line for line in every_line)
    assert any("--scheduler-address" in line for line in every_line)
    assert any(line.startswith("dask worker") and "--preload fleet_hwmon.cluster.preload" in line
               for line in every_line)


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_every_benchmark_script_takes_the_quick_flag_the_readme_offers(script):
    """The README's performance section says each script in benchmarks/ takes ``--quick``."""
    assert "`--quick` runs in under a minute" in README.read_text(encoding="utf-8")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout


# -- running a block ------------------------------------------------------------------------------
@dataclass
class Block:
    """One block's run: its copy of the checkout, environment, ports and servers."""

    cwd: Path
    env: dict[str, str]
    install: bool
    ports: dict[str, str] = field(default_factory=dict)
    servers: list[subprocess.Popen] = field(default_factory=list)

    def substitute(self, argv: list[str]) -> list[str]:
        """``HOST`` -> 127.0.0.1 and each port of the README (``--*-port N``, ``127.0.0.1:N``) -> a
        free port of this block, so that runs beside each other never share one."""
        out = []
        for i, token in enumerate(argv):
            token = re.sub(r"\bHOST\b", "127.0.0.1", token)
            if i > 0 and argv[i - 1].endswith("-port") and token.isdigit():  # --port, --metrics-port, ...
                token = self.port(token)
            token = re.sub(r"(?<=127\.0\.0\.1:)(\d+)", lambda m: self.port(m.group(1)), token)
            out.append(token)
        return out

    def port(self, readme_port: str) -> str:
        if readme_port not in self.ports:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.ports[readme_port] = str(probe.getsockname()[1])
        return self.ports[readme_port]

    def run(self, line: str) -> None:
        for argv in steps(line):
            argv = self.substitute(argv)
            server = SERVERS.get(tuple(argv[:2]))
            if argv[:2] == ["pip", "install"]:
                self.pip_install(argv[2:])
            elif server is not None:
                for copy in range(server.copies):
                    self.start_server(argv, server, copy)
            else:
                self.run_foreground(argv, line)

    def pip_install(self, specs: list[str]) -> None:
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
            "optional-dependencies"]
        for spec in specs:
            match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", spec)
            assert match, f"README installs {spec!r}, not this project"
            for extra in filter(None, (match.group(1) or "").split(",")):
                assert extra in extras, f"README installs the extra {extra!r}, which pyproject.toml does not declare"
                for requirement in map(Requirement, extras[extra]):
                    if requirement.marker is None or requirement.marker.evaluate():
                        metadata.distribution(requirement.name)  # PackageNotFoundError: the extra is not met
        if not self.install:
            return
        target = self.cwd.parent / "installed"
        # The build backend comes as for any `pip install .` (pyproject's build-system, fetched
        # into an isolated build environment); the runtime dependencies are this environment's.
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade", "--no-deps",
                               "--target", str(target), str(self.cwd)],
                              cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        assert done.returncode == 0, done.stdout + done.stderr
        self.env["PYTHONPATH"] = os.pathsep.join([str(target), self.env["PYTHONPATH"]])
        where = subprocess.run([sys.executable, "-c", "import fleet_hwmon, run_coordinator_with_hardware_monitoring; "
                                "print(fleet_hwmon.__file__)"], cwd=target.parent, env=self.env,
                               capture_output=True, text=True, timeout=60)
        assert where.returncode == 0 and Path(where.stdout.strip()).is_relative_to(target), where.stderr
        assert (target / "fleet_hwmon" / "reports" / "templates" / "fleet_report.html.j2").is_file()

    def start_server(self, argv: list[str], server: Server, copy: int) -> None:
        log = self.cwd / f"server-{len(self.servers)}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([*argv, *server.loopback], cwd=self.cwd, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.servers.append(proc)
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
        while not self._ready(argv, server, log):
            assert proc.poll() is None, f"{shlex.join(argv)} exited with {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{shlex.join(argv)} not ready after {SERVER_READY_TIMEOUT_S} s"
            time.sleep(0.2)

    def _ready(self, argv: list[str], server: Server, log: Path) -> bool:
        if server.ready_line is not None:
            return server.ready_line in log.read_text(errors="replace")
        port = int(argv[argv.index("--port") + 1])
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    def run_foreground(self, argv: list[str], line: str) -> None:
        if argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        if argv[1:] == [RUNNER]:
            argv = [*argv, *RUNNER_STAND_IN]  # not the whole suite from inside the suite (module docstring)
        log = self.cwd / f"command-{len(self.servers)}-{time.monotonic_ns()}.log"
        with open(log, "w") as out_file:  # a file, not a pipe: a server left running never blocks on it
            proc = subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdout=out_file, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)  # its own group: stopped whole
        try:
            _, err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            if argv[1:2] != [DEMO] and _listens(proc.pid):
                # A server the README runs in the foreground (a terminal of its own): it stays up
                # for the rest of its block, which bounds its lifetime.
                self.servers.append(proc)
                return
            _stop_group(proc)
            raise AssertionError(f"README command {line!r} did not end within {COMMAND_TIMEOUT_S} s and serves "
                                 "no port") from None
        _stop_group(proc)  # anything it left behind
        out = log.read_text(errors="replace")
        assert proc.returncode == 0, f"README command {line!r} exited {proc.returncode}:\n{out}\n{err}"
        if argv[1:2] == [DEMO]:
            check_demo_run(argv[2:], self.cwd, out)
        if argv[1:2] == [RUNNER]:
            assert " passed" in out, out

    def stop_servers(self) -> None:
        for proc in reversed(self.servers):  # workers before their scheduler
            _stop_group(proc)


def _listens(pid: int) -> bool:
    """Whether the process or one of its descendants listens on a TCP port."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    for proc in tree:
        try:
            if any(c.status == psutil.CONN_LISTEN for c in proc.net_connections("tcp")):
                return True
        except psutil.Error:
            continue
    return False


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group (a server's children, a demo's LocalCluster), then SIGKILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if proc.poll() is None:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def check_demo_run(options: list[str], cwd: Path, stdout: str) -> None:
    """The demo run that just ended, read back from its database: every task has an outcome and
    none was left waiting or cancelled, its workers were sampled, decisions were recorded."""
    value = {name: options[options.index(name) + 1] for name in options[:-1] if name.startswith("--")}
    num_tasks = int(value.get("--num-tasks", 10))
    db = cwd / value.get("--db-path", "hardware_metrics.duckdb")
    assert f"database: {db.resolve()}" in stdout, stdout
    with duckdb.connect(str(db), read_only=True) as con:
        states = con.execute("SELECT state, count(*) FROM task_outcomes WHERE recorded_at = "
                             "(SELECT max(recorded_at) FROM task_outcomes) GROUP BY state").fetchall()
        sampled = [w for (w,) in con.execute("SELECT DISTINCT worker_id FROM resource_utilization").fetchall()]
        decisions = con.execute("SELECT count(*) FROM scheduling_decisions "
                                "WHERE chosen_worker_id IS NOT NULL").fetchone()[0]
    states = dict(states)
    assert sum(states.values()) == num_tasks and set(states) <= {"completed", "failed"}, (states, stdout)
    assert states.get("completed", 0) >= 1 and decisions >= states["completed"], (states, decisions)
    workers = int(value.get("--num-workers", 3))
    if "--cluster" in value or "--scheduler-address" in value:
        assert len(sampled) == workers and all(w.startswith("tcp://127.0.0.1:") for w in sampled), sampled
    else:
        assert len(sampled) == workers, sampled


@pytest.mark.parametrize("block", [_block_param(b) for b in BLOCKS])
def test_readme_block(block, tmp_path, request):
    if any(line.startswith(("dask ", "pip install '.[cluster]'")) or "--cluster" in line
           or "--scheduler-address" in line for line in block):
        pytest.importorskip("distributed", reason="the cluster extra is not installed")
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT, copy, ignore=_IGNORED_IN_COPY)
    env = {**os.environ, "PYTHONPATH": str(copy), EXTRA_SOURCE_ENV: fixed_load.ENV_VALUE,
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    for name in ("PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    run = Block(copy, env, install=bool(request.config.getoption("--run-long-tests")))
    try:
        for line in block:
            run.run(line)
    finally:
        run.stop_servers()
