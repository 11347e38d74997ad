"""Print pip constraints that pin every dependency of the project and its test extras to the
lowest version pyproject.toml allows (``name>=X`` becomes ``name==X``), so CI can check that the
declared lower bounds still hold. Usage: ``python .ci/lowest_bounds.py [pyproject.toml]``."""

from __future__ import annotations

import re
import sys
import tomllib

_LOWER = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(?:,|;|$)")


def lowest_pins(pyproject: dict) -> list[str]:
    """``name==X`` for each requirement of the project and its ``test`` extra with a ``>=X``
    bound (the first one per name); requirements without a lower bound are left free."""
    project = pyproject["project"]
    pins: dict[str, str] = {}
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        found = _LOWER.match(requirement)
        if found:
            pins.setdefault(found.group(1).lower(), found.group(2))
    return [f"{name}=={version}" for name, version in pins.items()]


if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml", "rb") as handle:
        print("\n".join(lowest_pins(tomllib.load(handle))))
