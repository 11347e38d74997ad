"""Shared pytest options: long tests are opt-in, and the tests' database path is configurable."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-long-tests", action="store_true", default=False,
                     help="also run tests marked 'long' (end-to-end runs of the demo)")
    parser.addoption("--db-path", action="store", default=None,
                     help="DuckDB file the tests write to (default: a file in a temporary folder)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-long-tests"):
        return
    skip_long = pytest.mark.skip(reason="long test: run with --run-long-tests")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip_long)


@pytest.fixture
def db_path(request: pytest.FixtureRequest, tmp_path) -> str:
    """A DuckDB path for one test: exactly the ``--db-path`` file when given (each test starts it
    afresh, so after the run it holds the last test's data), else a file in tmp_path."""
    base = request.config.getoption("--db-path")
    if not base:
        return str(tmp_path / "metrics.duckdb")
    from pathlib import Path

    path = Path(base)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    return str(path)


@pytest.fixture(autouse=True)
def _fail_on_reader_bugs(request: pytest.FixtureRequest):
    """A TypeError, AttributeError or KeyError from our own metric readers is a bug: the sampler
    logs it and goes on, and the test that caused it fails (tests of that very handling carry
    ``@pytest.mark.reader_bug``)."""
    from fleet_hwmon.sampling.sampler import reader_bug_count

    before = reader_bug_count()
    yield
    if "reader_bug" not in request.keywords and reader_bug_count() != before:
        pytest.fail("a metric reader raised a programming error (TypeError, AttributeError or KeyError); "
                    "see the ERROR log with its traceback")


@pytest.fixture(autouse=True)
def _no_notification_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the notification secrets of the shell that runs them (a CI job's token, a
    webhook): every notification variable is unset; a test sets the ones it needs itself."""
    from fleet_hwmon.ci.notify.redact import NOTIFICATION_ENV_VARS

    for name in NOTIFICATION_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
