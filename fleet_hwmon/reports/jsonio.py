"""Strict JSON: no NaN or infinity ever written, times as ISO 8601 UTC, written atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Iterable

from fleet_hwmon.printable import printable


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from records, enums, datetimes and containers; non-finite floats -> None."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return to_jsonable(float(value))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if dataclasses.is_dataclass(value):
        return to_jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`to_jsonable` with ``allow_nan=False`` (strict parsers accept it)."""
    return json.dumps(to_jsonable(value), allow_nan=False, **kwargs)


def unwritable_reason(path: str | os.PathLike, *, folder: bool = False) -> str | None:
    """Why ``path`` cannot be written (``None``: it can), for a command to check its output paths
    before a long run rather than fail after it: a file's path is a folder, a part of the way
    is a file, or the nearest folder that exists cannot be written in (permissions, a read-only
    file system; the writers create the missing ones there). ``folder``: ``path`` is a folder to
    write files in. Nothing is left behind."""
    target = Path(path).absolute()
    where = target if folder else target.parent
    if not folder and target.is_dir():
        return f"{path} is a folder"
    existing = next(p for p in (where, *where.parents) if p.exists())  # the root always exists
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return f"cannot write in {existing}: {err.strerror or err}"
    if not folder and target.exists() and not os.access(target, os.W_OK):
        return f"{path} is not writable"
    return None


def unwritable_option(files: Iterable[tuple[str, Any]] = (), folders: Iterable[tuple[str, Any]] = ()) -> str | None:
    """``"OPTION: why"`` for the first of a command's output options (``(option, path)`` pairs;
    ``None`` paths are not given) that :func:`unwritable_reason` refuses, shown printable;
    ``None`` when every one can be written. For each command to check before any work."""
    checks = [(option, path, False) for option, path in files] + [(option, path, True) for option, path in folders]
    for option, path, folder in checks:
        problem = unwritable_reason(path, folder=folder) if path else None
        if problem:
            return f"{option}: {printable(problem)}"
    return None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file renamed over it, so a reader never
    sees half a file; the file gets the usual permissions (0666 less the umask)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):  # (where the file could not be made, neither can it be removed)
            tmp.unlink(missing_ok=True)
        raise
    return target


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write strict JSON to ``path`` atomically; returns the path."""
    return atomic_write_text(path, dumps(value, indent=2, sort_keys=False))
