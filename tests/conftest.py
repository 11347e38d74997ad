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
    """A DuckDB path for one test: under ``--db-path``'s folder when given, else in tmp_path."""
    base = request.config.getoption("--db-path")
    if base:
        from pathlib import Path

        folder = Path(base).parent
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / f"{Path(base).stem}-{request.node.name[:60]}.duckdb".replace("/", "_"))
    return str(tmp_path / "metrics.duckdb")
