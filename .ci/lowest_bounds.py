"""Print pip constraints that pin every dependency of the project and its test extras to the
lowest version pyproject.toml allows, so CI can check that the declared lower bounds still hold.
Usage: ``python .ci/lowest_bounds.py [pyproject.toml]`` (needs ``packaging``, which pip's
environments have beside pytest)."""

from __future__ import annotations

import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

_FLOORS = (">=", "~=", "==")  # the operators that set the lowest version allowed


def lowest_pins(pyproject: dict) -> list[str]:
    """``name==X`` for each requirement of the project and its ``test`` extra that bounds its
    version from below (``>=X``, ``~=X``, ``==X``); X is the highest such bound over all the
    requirements of that name, since every one of them applies. Names are canonical
    (``prometheus_client`` is ``prometheus-client``); requirements without a lower bound are
    left free."""
    project = pyproject["project"]
    floors: dict[str, Version] = {}
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        for specifier in requirement.specifier:
            if specifier.operator in _FLOORS:
                floor = Version(specifier.version)
                floors[name] = max(floors.get(name, floor), floor)
    return [f"{name}=={version}" for name, version in floors.items()]


if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml", "rb") as handle:
        print("\n".join(lowest_pins(tomllib.load(handle))))
