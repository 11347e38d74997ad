"""DuckDB tables for test runs: one ``test_runs`` row per run, one ``test_results`` row per test.

The runner writes a finished run in one transaction (one writer, at the end of the run); the
badge and notification tools only read. Times are UTC ``TIMESTAMPTZ``; durations are seconds.

Example::

    with connect("results.duckdb") as con:
        ensure_schema(con)
        latest = latest_run(con)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

#: Where the test runner records runs and the badge and notification tools read them, unless told.
DEFAULT_RESULTS_DB = "hardware_monitoring_test_results.duckdb"

#: ``flaky``: failed, then passed when rerun (pytest-rerunfailures); it does not fail the run.
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "flaky")

SCHEMA = """
CREATE TABLE IF NOT EXISTS test_runs (
    run_id            VARCHAR PRIMARY KEY,
    started_at        TIMESTAMPTZ NOT NULL,
    finished_at       TIMESTAMPTZ NOT NULL,
    mode              VARCHAR NOT NULL,
    python_version    VARCHAR NOT NULL,
    platform          VARCHAR,
    commit_sha        VARCHAR,
    branch            VARCHAR,
    collected         INTEGER NOT NULL,
    passed            INTEGER NOT NULL,
    failed            INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    skipped           INTEGER NOT NULL,
    xfailed           INTEGER NOT NULL,
    xpassed           INTEGER NOT NULL,
    duration_s        DOUBLE NOT NULL,
    exit_code         INTEGER NOT NULL,
    status            VARCHAR NOT NULL,
    pytest_args       VARCHAR,
    ci_provider       VARCHAR,
    ci_run_id         VARCHAR,
    ci_run_url        VARCHAR,
    ci_metadata_json  VARCHAR,
    flaky             INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS test_results (
    run_id      VARCHAR NOT NULL,
    nodeid      VARCHAR NOT NULL,
    outcome     VARCHAR NOT NULL,
    duration_s  DOUBLE NOT NULL,
    message     VARCHAR,
    PRIMARY KEY (run_id, nodeid)
);
ALTER TABLE test_runs ADD COLUMN IF NOT EXISTS flaky INTEGER DEFAULT 0;
"""


class ResultsDatabaseError(RuntimeError):
    """The results database could not be opened or written; the message names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"results database {path!r}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test's final outcome. ``outcome`` is one of :data:`OUTCOMES`; ``duration_s`` sums
    setup, call and teardown; ``message`` is the failure text or skip reason (``None`` on a pass)."""

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: str
    duration_s: float
    message: str | None = None


@dataclass(slots=True)
class TestRun:
    """One run of the suite, as stored in ``test_runs`` (counts are tests, not reports).

    ``status`` is ``"passed"``, ``"failed"``, ``"no_tests"`` or ``"interrupted"``.
    """

    __test__ = False

    run_id: str
    started_at: datetime
    finished_at: datetime
    mode: str
    python_version: str
    exit_code: int
    status: str
    results: Sequence[TestResult] = ()
    platform: str | None = None
    commit_sha: str | None = None
    branch: str | None = None
    pytest_args: Sequence[str] = ()
    ci_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """``{outcome: number of tests}`` for every outcome in :data:`OUTCOMES`."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for result in self.results:
            counts[result.outcome] += 1
        return counts

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


def path_problem(path: str | Path) -> str | None:
    """Why DuckDB cannot take ``path`` whatever the file system says, else ``None``: a name with
    bytes that are not UTF-8 (Python keeps them as lone surrogates; DuckDB takes UTF-8 only)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return "the path has bytes that are not UTF-8, and DuckDB opens UTF-8 paths only: rename it"
    return None


@contextmanager
def connect(path: str | Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the results database; a locked or unreadable file raises :class:`ResultsDatabaseError`
    naming the file and what to do, instead of DuckDB's raw error."""
    path = str(path)
    if not path.strip():
        raise ResultsDatabaseError(path, "the path is empty (an unset variable, say $BENCHMARK_DB_PATH?)")
    problem = path_problem(path)
    if problem:
        raise ResultsDatabaseError(path, problem)
    file = Path(path)
    if read_only and not file.exists():
        raise ResultsDatabaseError(path, "no such file (no run has been recorded there yet)")
    if file.is_file() and file.stat().st_size == 0:  # left by a crash or `touch`: no database yet
        if read_only:
            raise ResultsDatabaseError(path, "an empty file (no run has been recorded there yet)")
        file.unlink()
    if not read_only:
        file.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(path, read_only=read_only)
    except duckdb.Error as err:
        if "lock" in str(err).lower():
            hint = "another process holds it: wait for it to finish"
        elif file.is_dir():
            hint = "it is a folder"
        else:
            hint = "it is not a DuckDB database this version can read, or it is damaged: move it aside"
        raise ResultsDatabaseError(
            path, f"cannot open it ({err}); {hint}, or point BENCHMARK_DB_PATH (or the command's database "
            "option) at another file") from err
    try:
        yield con
    finally:
        con.close()


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``test_runs`` and ``test_results`` when missing, and add the columns a database
    carried over from an older version lacks (idempotent)."""
    con.execute(SCHEMA)


def has_runs_table(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``test_runs`` exists (a read-only connection cannot create it)."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'test_runs'")
                .fetchone()[0])


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def record_run(path: str | Path, run: TestRun) -> None:
    """Write ``run`` and its results in one transaction. Raises :class:`ResultsDatabaseError`."""
    counts = run.counts
    ci = run.ci_metadata or {}
    with connect(path) as con:
        try:
            ensure_schema(con)
            con.execute("BEGIN TRANSACTION")
            row = {"run_id": run.run_id, "started_at": run.started_at, "finished_at": run.finished_at,
                   "mode": run.mode, "python_version": run.python_version, "platform": run.platform,
                   "commit_sha": run.commit_sha, "branch": run.branch, "collected": len(run.results),
                   "passed": counts["passed"], "failed": counts["failed"], "errors": counts["error"],
                   "skipped": counts["skipped"], "xfailed": counts["xfailed"], "xpassed": counts["xpassed"],
                   "flaky": counts["flaky"], "duration_s": _finite(run.duration_s), "exit_code": run.exit_code,
                   "status": run.status, "pytest_args": json.dumps(list(run.pytest_args)),
                   "ci_provider": ci.get("provider"), "ci_run_id": ci.get("run_id"), "ci_run_url": ci.get("run_url"),
                   "ci_metadata_json": json.dumps(ci, allow_nan=False, sort_keys=True) if ci else None}
            con.execute(f"INSERT INTO test_runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values()))
            if run.results:
                con.executemany(
                    "INSERT INTO test_results VALUES (?, ?, ?, ?, ?)",
                    [[run.run_id, r.nodeid, r.outcome, _finite(r.duration_s), r.message] for r in run.results])
            con.execute("COMMIT")
        except duckdb.Error as err:
            raise ResultsDatabaseError(str(path), f"cannot record run {run.run_id}: {err}") from err


RUN_COLUMNS = ("run_id", "started_at", "finished_at", "mode", "python_version", "platform", "commit_sha",
               "branch", "collected", "passed", "failed", "errors", "skipped", "xfailed", "xpassed", "flaky",
               "duration_s", "exit_code", "status", "ci_provider", "ci_run_id", "ci_run_url")


def _row_to_dict(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(RUN_COLUMNS, row, strict=True))
    for key in ("started_at", "finished_at"):
        if isinstance(out[key], datetime):
            out[key] = out[key].astimezone(timezone.utc)
    return out


def latest_run(con: duckdb.DuckDBPyConnection, run_id: str | None = None) -> dict[str, Any] | None:
    """The newest run (or ``run_id``) as a dict of :data:`RUN_COLUMNS`, or ``None`` when none."""
    sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM test_runs"
    if run_id is None:
        row = con.execute(sql + " ORDER BY started_at DESC, run_id DESC LIMIT 1").fetchone()
    else:
        row = con.execute(sql + " WHERE run_id = ?", [run_id]).fetchone()
    return None if row is None else _row_to_dict(row)


def runs_since(con: duckdb.DuckDBPyConnection, since: datetime) -> list[dict[str, Any]]:
    """Runs that started at or after ``since`` (UTC), newest first."""
    rows = con.execute(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM test_runs WHERE started_at >= ? "
        "ORDER BY started_at DESC", [since]).fetchall()
    return [_row_to_dict(r) for r in rows]


def results_of(con: duckdb.DuckDBPyConnection, run_id: str) -> list[TestResult]:
    """The per-test rows of one run, ordered by node id."""
    rows = con.execute("SELECT nodeid, outcome, duration_s, message FROM test_results WHERE run_id = ? "
                       "ORDER BY nodeid", [run_id]).fetchall()
    return [TestResult(*row) for row in rows]


def recent_runs(con: duckdb.DuckDBPyConnection, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` runs that ran (not ``interrupted``), oldest first: the trend's points."""
    rows = con.execute(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM test_runs WHERE status != 'interrupted' "
        "ORDER BY started_at DESC, run_id DESC LIMIT ?", [limit]).fetchall()
    return [_row_to_dict(r) for r in reversed(rows)]


def flaky_history(con: duckdb.DuckDBPyConnection, last_runs: int = 20) -> list[dict[str, Any]]:
    """Tests recorded ``flaky`` in any of the newest ``last_runs`` runs, most often flaky first.

    Each: ``{"nodeid", "flaky_runs" (N), "runs" (M: the runs in the window that ran the test),
    "window_runs" (the runs in the window), "last_flaky_at" (UTC)}``, i.e. "flaky in N of the
    last M runs"."""
    rows = con.execute("""
        WITH window_runs AS (
            SELECT run_id, started_at FROM test_runs ORDER BY started_at DESC, run_id DESC LIMIT ?)
        SELECT r.nodeid, count(*) FILTER (WHERE r.outcome = 'flaky') AS flaky_runs, count(*) AS runs,
               (SELECT count(*) FROM window_runs) AS window_runs,
               max(w.started_at) FILTER (WHERE r.outcome = 'flaky') AS last_flaky_at
        FROM test_results r JOIN window_runs w USING (run_id)
        GROUP BY r.nodeid HAVING count(*) FILTER (WHERE r.outcome = 'flaky') > 0
        ORDER BY flaky_runs DESC, last_flaky_at DESC, r.nodeid""", [last_runs]).fetchall()
    return [{"nodeid": nodeid, "flaky_runs": flaky, "runs": runs, "window_runs": window,
             "last_flaky_at": last.astimezone(timezone.utc) if isinstance(last, datetime) else last}
            for nodeid, flaky, runs, window, last in rows]
