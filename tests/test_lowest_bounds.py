"""`.ci/lowest_bounds.py`: the constraints that put every dependency at its declared lower bound."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("lowest_bounds", ROOT / ".ci" / "lowest_bounds.py")
lowest_bounds = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(lowest_bounds)


def test_each_lower_bound_becomes_a_pin_the_highest_of_a_name_wins_and_the_rest_stay_free():
    pyproject = {"project": {
        "dependencies": ["duckdb>=2.0.1", "setuptools<82", "standard-imghdr; python_version >= '3.13'",
                         "numpy<3,>=1.24", "rich~=13.2", "prometheus_client>=0.20"],
        "optional-dependencies": {"test": ["pytest>=8", "Requests[socks]>=2.31", "duckdb>=2.1",
                                           "prometheus-client>=0.21", "pyyaml (>=6.0.1)", "ruff==0.5.2"]}}}
    assert lowest_bounds.lowest_pins(pyproject) == [
        "duckdb==2.1", "numpy==1.24", "rich==13.2", "prometheus-client==0.21", "pytest==8", "requests==2.31",
        "pyyaml==6.0.1", "ruff==0.5.2"]


def test_the_projects_own_constraints_pin_every_bounded_dependency():
    done = subprocess.run([sys.executable, str(ROOT / ".ci" / "lowest_bounds.py"), str(ROOT / "pyproject.toml")],
                          capture_output=True, text=True, check=True, timeout=60)
    pins = dict(line.split("==") for line in done.stdout.split())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    bounded = {canonicalize_name(r.name) for r in requirements if any(s.operator == ">=" for s in r.specifier)}
    assert set(pins) == bounded
    assert pins["duckdb"] == "2.0.1"
