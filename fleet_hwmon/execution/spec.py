"""What to run: an immutable, validated description of one test task.

A `TaskSpec` names exactly one kind of work:

- ``command``: an argument list (run without a shell) or a string (run through the shell);
- ``python_callable``: ``"package.module:function"``, called in a fresh ``python -c``
  subprocess of the current interpreter with JSON-serialisable ``args`` / ``kwargs``;
- ``pytest_node_id``: run as ``sys.executable -m pytest -q <node id>``; pytest's exit code
  decides success.

`launch_args()` turns a spec into what `subprocess.Popen` needs; running it and measuring
the process tree is `fleet_hwmon.execution.runner`'s job.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys
import sysconfig
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KINDS: tuple[str, ...] = ("command", "python_callable", "pytest_node_id")
_KEYS = frozenset(KINDS) | {"args", "kwargs", "timeout_s", "env", "cwd"}
_CALLABLE_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")

# Runs in the child. The target and its arguments arrive in argv, never spliced into code,
# so no quoting of user data is ever needed. The return value is ignored: exit 0 is success,
# an exception prints its traceback and exits 1, SystemExit keeps its own code.
_BOOTSTRAP = (
    "import importlib, json, sys\n"
    "_mod, _attr = sys.argv[1].split(':', 1)\n"
    "_target = importlib.import_module(_mod)\n"
    "for _part in _attr.split('.'):\n"
    "    _target = getattr(_target, _part)\n"
    "_target(*json.loads(sys.argv[2]), **json.loads(sys.argv[3]))\n"
)


@dataclass(frozen=True)
class TaskSpec:
    """One task to run as a subprocess tree.

    Exactly one of ``command``, ``python_callable`` and ``pytest_node_id`` is set.

    - ``command``: a non-empty sequence of ``str`` (stored as a tuple, run with ``shell=False``)
      or a non-empty ``str`` (run with ``shell=True``).
    - ``python_callable``: ``"package.module:function"`` (``function`` may be a dotted
      attribute path such as ``Class.method``); ``args`` (sequence) and ``kwargs`` (mapping with
      ``str`` keys) must be JSON-serialisable and are only allowed with this kind.
    - ``pytest_node_id``: e.g. ``"tests/test_x.py::test_y"``, resolved against ``cwd``.
    - ``timeout_s``: positive, finite seconds of wall-clock time, or ``None`` for no limit.
    - ``env``: ``str -> str``, merged over ``os.environ`` for the child (stored read-only).
    - ``cwd``: the child's working directory, or ``None`` for the caller's.

    Raises ``ValueError`` (construction or `from_dict`) for anything malformed, wrong types
    included, so a caller validating an untrusted dict needs one ``except`` clause.

    Example::

        TaskSpec(command=["python", "-c", "print(1)"], timeout_s=10.0)
    """

    command: tuple[str, ...] | str | None = None
    python_callable: str | None = None
    pytest_node_id: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    env: Mapping[str, str] | None = None
    cwd: str | None = None

    def __post_init__(self) -> None:
        chosen = [k for k in KINDS if getattr(self, k) is not None]
        if len(chosen) != 1:
            got = "none" if not chosen else f"{len(chosen)}: " + ", ".join(repr(k) for k in chosen)
            raise ValueError(
                "a TaskSpec needs exactly one of 'command', 'python_callable' or "
                f"'pytest_node_id'; got {got}"
            )
        self._check_command()
        self._check_callable()
        if self.pytest_node_id is not None and (
            not isinstance(self.pytest_node_id, str) or not self.pytest_node_id.strip()
        ):
            raise ValueError(f"'pytest_node_id' must be a non-empty string, not {self.pytest_node_id!r}")
        self._check_timeout()
        self._check_env_cwd()

    # -- validation -------------------------------------------------------------------------
    def _check_command(self) -> None:
        command = self.command
        if command is None:
            return
        if isinstance(command, str):
            if not command.strip():
                raise ValueError("'command' must not be an empty string")
            return
        if isinstance(command, (bytes, bytearray)) or not isinstance(command, Sequence):
            raise ValueError(  # noqa: TRY004
                f"'command' must be a list of strings or a string, not {type(command).__name__}"
            )
        if not command:
            raise ValueError("'command' must not be an empty list")
        bad = [part for part in command if not isinstance(part, str)]
        if bad:
            raise ValueError(f"every element of 'command' must be a string; got {bad[0]!r}")
        object.__setattr__(self, "command", tuple(command))

    def _check_callable(self) -> None:
        if self.python_callable is None:
            if self.args or self.kwargs:
                raise ValueError("'args' and 'kwargs' are only allowed with 'python_callable'")
            return
        if not isinstance(self.python_callable, str) or not _CALLABLE_RE.match(self.python_callable):
            raise ValueError(
                "'python_callable' must look like 'package.module:function', "
                f"not {self.python_callable!r}"
            )
        if isinstance(self.args, (str, bytes)) or not isinstance(self.args, Sequence):
            raise ValueError(f"'args' must be a list, not {type(self.args).__name__}")  # noqa: TRY004
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise ValueError("'kwargs' must be a mapping with string keys")
        try:
            json.dumps([list(self.args), dict(self.kwargs)], allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"'args' and 'kwargs' must be JSON-serialisable: {err}") from err
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", types.MappingProxyType(dict(self.kwargs)))

    def _check_timeout(self) -> None:
        timeout = self.timeout_s
        if timeout is None:
            return
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ValueError(f"'timeout_s' must be a number of seconds or None, not {timeout!r}")  # noqa: TRY004
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"'timeout_s' must be a positive, finite number of seconds, not {timeout!r}")
        object.__setattr__(self, "timeout_s", float(timeout))

    def _check_env_cwd(self) -> None:
        if self.env is not None:
            if not isinstance(self.env, Mapping):
                raise ValueError(f"'env' must be a mapping of strings, not {type(self.env).__name__}")
            bad = [(k, v) for k, v in self.env.items() if not isinstance(k, str) or not isinstance(v, str)]
            if bad:
                raise ValueError(f"'env' keys and values must be strings; got {bad[0]!r}")
            object.__setattr__(self, "env", types.MappingProxyType(dict(self.env)))
        if self.cwd is not None:
            if isinstance(self.cwd, os.PathLike):
                object.__setattr__(self, "cwd", os.fspath(self.cwd))
            if not isinstance(self.cwd, str) or not self.cwd:
                raise ValueError(f"'cwd' must be a non-empty path string or None, not {self.cwd!r}")

    # -- views ------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``"command"``, ``"python_callable"`` or ``"pytest_node_id"``."""
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def description(self) -> str:
        """A short human-readable label, e.g. for log lines and error messages."""
        if self.python_callable is not None:
            return f"python callable {self.python_callable}"
        if self.pytest_node_id is not None:
            return f"pytest {self.pytest_node_id}"
        text = self.command if isinstance(self.command, str) else " ".join(self.command)  # type: ignore[arg-type]
        text = " ".join(text.split())  # one line, even for a multi-line -c snippet
        if len(text) > 80:
            text = text[:77] + "..."
        return f"{'shell command' if isinstance(self.command, str) else 'command'} {text!r}"

    def launch_args(self) -> tuple[list[str] | str, bool, dict[str, str]]:
        """``(args, shell, env)`` for `subprocess.Popen`: the child's argv (or shell string),
        whether to use a shell, and the full environment (``os.environ`` overlaid with ``env``).

        For ``python_callable`` the child also gets, in front of ``PYTHONPATH``, the folder
        the caller imports the target's top-level package from, so a source checkout behaves
        like an installed package whatever ``cwd`` is.
        """
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        if self.python_callable is not None:
            _prepend_import_root(env, self.python_callable.split(":", 1)[0].split(".", 1)[0])
            argv = [sys.executable, "-c", _BOOTSTRAP, self.python_callable,
                    json.dumps(list(self.args)), json.dumps(dict(self.kwargs))]
            return argv, False, env
        if self.pytest_node_id is not None:
            return [sys.executable, "-m", "pytest", "-q", self.pytest_node_id], False, env
        if isinstance(self.command, str):
            return self.command, True, env
        return list(self.command), False, env  # type: ignore[arg-type]

    # -- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; ``from_dict(spec.to_dict()) == spec``. Unset kinds are omitted."""
        out: dict[str, Any] = {self.kind: list(self.command) if isinstance(self.command, tuple)
                               else getattr(self, self.kind)}
        if self.python_callable is not None:
            out["args"] = list(self.args)
            out["kwargs"] = dict(self.kwargs)
        out["timeout_s"] = self.timeout_s
        out["env"] = None if self.env is None else dict(self.env)
        out["cwd"] = self.cwd
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        """Build a spec from a dict such as `to_dict` returns.

        Raises ``ValueError`` when ``data`` is not a mapping, has unknown keys (a typo such as
        ``"timeout"`` must not silently mean "no timeout"), or fails validation.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a task spec must be a mapping, not {type(data).__name__}")  # noqa: TRY004
        unknown = sorted(str(k) for k in data if k not in _KEYS)
        if unknown:
            raise ValueError(f"unknown task spec key(s): {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
        kwargs = dict(data)
        if kwargs.get("args") is None:
            kwargs.pop("args", None)
        if kwargs.get("kwargs") is None:
            kwargs.pop("kwargs", None)
        return cls(**kwargs)


def _prepend_import_root(env: dict[str, str], top_level: str) -> None:
    try:
        found = importlib.util.find_spec(top_level)
    except (ImportError, ValueError):
        return
    if found is None or not found.origin or found.origin in ("built-in", "frozen"):
        return
    # A package's origin is .../pkg/__init__.py, a module's is .../mod.py: step up to sys.path level.
    root = os.path.dirname(found.origin)
    if found.submodule_search_locations:
        root = os.path.dirname(root)
    # The interpreter already searches its own library folders; only add a checkout's folder.
    if root in {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}:
        return
    parts = [root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join(parts)
