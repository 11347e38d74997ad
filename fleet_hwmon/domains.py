"""The domain of every sample field, derived from its name and type, and the one check that
every value entering a sample goes through (psutil, NVML, cgroup, a pushed dict, a heartbeat).

Rules, read off the field definitions so a new field is covered without new code:
  - numbers are finite; integers fit DuckDB's BIGINT (64-bit signed);
  - ``*_percent`` is 0-100; ``*_celsius`` is above absolute zero and below 500; an
    ``*offset_s`` may have either sign; every other number (bytes, rates, clocks, watts, cores,
    loads, counts, indexes, monotonic seconds) is >= 0;
  - a part is not larger than its whole: ``memory_used_bytes`` <= ``memory_total_bytes``,
    ``free_bytes`` <= ``total_bytes`` (any ``<prefix>_<word>_bytes`` against ``<prefix>_total_bytes``);
  - a record may name sentinel values of its source (NVML's "not available" 0xFFFFFFFF...);
  - text is valid UTF-8: lone surrogates (psutil's escape of undecodable bytes) become U+FFFD;
  - a timestamp before 2000 or more than a day after receipt is replaced by the receive time.
An out-of-domain number becomes ``None`` (unknown, never 0); every replacement is reported by
field name (``gpus.power_watts`` for a nested one) so the sample can carry it and the monitor
can count it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import re
import time
import types
import typing
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=timezone.utc)
FUTURE_TOLERANCE = timedelta(days=1)
# NVML's "not available" answers: all bits set in a 32- or 64-bit field, and the 32-bit one in
# milliwatts turned into watts.
NVML_SENTINELS = frozenset({2**32 - 1, 2**64 - 1, (2**32 - 1) / 1000, 2**31 - 1})

_EARLIEST_S = EARLIEST_TIMESTAMP.timestamp()
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclasses.dataclass(frozen=True)
class _Checks:
    numbers: tuple[tuple[str, float, float, str | None], ...]  # name, low, high, whole
    number_values: Any  # attrgetter of every number field at once (one C call per record)
    number_lists: tuple[tuple[str, float, float], ...]
    texts: tuple[str, ...]
    text_lists: tuple[str, ...]
    times: tuple[str, ...]
    records: tuple[str, ...]


def _bounds(name: str) -> tuple[float, float]:
    if name.endswith("_percent"):
        return 0.0, 100.0
    if name.endswith("_celsius"):
        return -273.15, 500.0
    if name.endswith("offset_s"):  # a clock may be behind as well as ahead
        return -math.inf, math.inf
    return 0.0, math.inf


def strip_optional(hint: Any) -> Any:
    """``X`` for ``X | None`` (and ``Optional[X]``); any other hint unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _whole_of(name: str, names: set[str]) -> str | None:
    if not name.endswith("_bytes") or name.endswith("total_bytes"):
        return None
    head, _, _ = name[: -len("_bytes")].rpartition("_")
    whole = f"{head}_total_bytes" if head else "total_bytes"
    return whole if whole in names else None


_CHECKS: dict[type, _Checks] = {}


def checks_for(cls: type) -> _Checks:
    """The checks of a record class, computed once from its fields' names and types."""
    found = _CHECKS.get(cls)
    if found is not None:
        return found
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    numbers, number_lists, texts, text_lists, times, records = [], [], [], [], [], []
    for f in dataclasses.fields(cls):
        if f.name == "invalid_fields":
            continue
        hint = strip_optional(hints[f.name])
        if hint in (int, float):
            numbers.append((f.name, *_bounds(f.name), _whole_of(f.name, names)))
        elif hint is str:
            texts.append(f.name)
        elif hint is datetime:
            times.append(f.name)
        elif typing.get_origin(hint) is tuple:
            item = strip_optional(typing.get_args(hint)[0])
            if item in (int, float):
                number_lists.append((f.name, *_bounds(f.name)))
            elif item is str:
                text_lists.append(f.name)
            elif dataclasses.is_dataclass(item):
                records.append(f.name)
    getter = operator.attrgetter(*(n[0] for n in numbers)) if len(numbers) > 1 else (
        (lambda r, name=numbers[0][0]: (getattr(r, name),)) if numbers else (lambda r: ()))
    found = _CHECKS[cls] = _Checks(tuple(numbers), getter, tuple(number_lists), tuple(texts), tuple(text_lists),
                                   tuple(times), tuple(records))
    return found


def valid_text(value: str) -> str:
    """``value`` with lone surrogates (undecodable bytes escaped by Python) replaced by U+FFFD."""
    return value if value.isascii() else _SURROGATES.sub("\ufffd", value)


def _in_domain(value: Any, low: float, high: float, sentinels: frozenset) -> bool:
    return (low <= value <= high and (type(value) is not int or INT64_MIN <= value <= INT64_MAX)
            and not (sentinels and value in sentinels))


def repair(record: Any, prefix: str = "", received_at: datetime | None = None) -> list[str]:
    """Bring every field of ``record`` (a frozen dataclass, nested records included) into its
    domain, in place; returns the names of the fields whose values were replaced.

    ``received_at`` (default: now, UTC) replaces a timestamp outside the sane window.
    Raises ``TypeError`` when a text or time field holds another type (a programming error).
    Runs on every sample, so the common case (every value in its domain) is a few C-level calls.
    """
    checks = checks_for(type(record))
    sentinels = getattr(record, "_SENTINELS", None)
    replaced: list[str] = []
    setter = object.__setattr__
    for value, (name, low, high, whole) in zip(checks.number_values(record), checks.numbers):
        if value is None:
            continue
        if not (low <= value <= high and (type(value) is not int or INT64_MIN <= value <= INT64_MAX)
                and not (sentinels and value in sentinels)) or (
                whole is not None and (total := getattr(record, whole)) is not None and value > total):
            setter(record, name, None)
            replaced.append(prefix + name)
    for name, low, high in checks.number_lists:
        values = getattr(record, name)
        if values and not all(v is None or _in_domain(v, low, high, sentinels) for v in values):
            setter(record, name, tuple(v if v is None or _in_domain(v, low, high, sentinels) else None
                                       for v in values))
            replaced.append(prefix + name)
    for name in checks.texts:
        value = getattr(record, name)
        if value is None or (type(value) is str and value.isascii()):
            continue
        if type(value) is not str:
            raise TypeError(f"{type(record).__name__}.{name} must be text, not {type(value).__name__} {value!r}")
        if (clean := valid_text(value)) != value:
            setter(record, name, clean)
            replaced.append(prefix + name)
    for name, allowed in getattr(record, "_CHOICES", {}).items():  # a text field with a closed set of values
        value = getattr(record, name)
        if value is not None and value not in allowed:
            setter(record, name, None)
            replaced.append(prefix + name)
    for name in checks.text_lists:
        values = getattr(record, name)
        if values and not all(v.isascii() for v in values):
            clean = tuple(valid_text(v) for v in values)
            if clean != values:
                setter(record, name, clean)
                replaced.append(prefix + name)
    for name in checks.times:
        value = getattr(record, name)
        if not isinstance(value, datetime):
            raise TypeError(f"{type(record).__name__}.{name} must be a datetime, not {type(value).__name__}")
        if value.tzinfo is None:  # naive times are UTC by the product's convention
            value = value.replace(tzinfo=timezone.utc)
            setter(record, name, value)
        epoch_s = value.timestamp()
        if not _EARLIEST_S <= epoch_s <= time.time() + FUTURE_TOLERANCE.total_seconds():
            setter(record, name, received_at or datetime.now(timezone.utc))
            replaced.append(prefix + name)
    for name in checks.records:
        for item in getattr(record, name) or ():
            replaced.extend(repair(item, f"{prefix}{name}.", received_at))
    return replaced


def _closest(key: str, known: list[str], where: str) -> str:
    """``did you mean 'cpu_percent'?`` for ``cpu``; a far-off key gets the list of fields."""
    starting = sorted((k for k in known if k.startswith(key)), key=len)
    close = starting[:1] or difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    if close:
        return f"did you mean {where + close[0]!r}?"
    return "no known field is close; the fields are " + ", ".join(known)


def _type_problem(name: str, hint: Any, value: Any) -> str | None:
    """Why ``value`` cannot be the pushed value of a field typed ``hint`` (None when it can)."""
    hint = strip_optional(hint)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (int, float):
        ok = number
        expected = "a number"
    elif hint is bool:
        ok, expected = isinstance(value, bool), "true or false"
    elif hint is str:
        ok, expected = isinstance(value, str), "text"
    elif hint is datetime:
        ok, expected = isinstance(value, (datetime, str)) or number, "a datetime, ISO 8601 text or epoch seconds"
    elif typing.get_origin(hint) is tuple:
        item = strip_optional(typing.get_args(hint)[0])
        if not isinstance(value, (list, tuple)):
            return f"{name} must be a list, not {type(value).__name__} {value!r:.60}"
        if item in (int, float):
            bad = [v for v in value if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool))]
            return f"{name} must hold numbers or null, not {bad[0]!r:.60}" if bad else None
        if item is str:
            bad = [v for v in value if not isinstance(v, str)]
            return f"{name} must hold text, not {bad[0]!r:.60}" if bad else None
        bad = [v for v in value if not isinstance(v, Mapping)]
        return f"{name} must hold objects, not {bad[0]!r:.60}" if bad else None
    else:
        return None
    return None if ok else f"{name} must be {expected}, not {type(value).__name__} {value!r:.60}"


class _PushSpec(typing.NamedTuple):
    """How one field of a record is pushed: its hint (``X`` of ``X | None``), whether it is
    required, its nested record class, and the exact value types (and item types of a list)
    that need no further check; any other value goes through :func:`_type_problem`."""

    name: str
    hint: Any
    required: bool
    record_cls: type | None
    plain_types: frozenset
    plain_items: frozenset | None


_NUMBER_TYPES = frozenset({int, float})  # exact types: a bool is not a number here
_PLAIN_TYPES = {int: _NUMBER_TYPES, float: _NUMBER_TYPES, bool: frozenset({bool}), str: frozenset({str}),
                datetime: frozenset({datetime, str, int, float})}
_PUSH_SPECS: dict[type, tuple[frozenset, tuple[_PushSpec, ...]]] = {}


def _push_specs(cls: type) -> tuple[frozenset, tuple[_PushSpec, ...]]:
    """The field names of ``cls`` and a spec per field; computed once per class."""
    specs = _PUSH_SPECS.get(cls)
    if specs is None:
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            hint = strip_optional(hints[f.name])
            item = strip_optional(typing.get_args(hint)[0]) if typing.get_origin(hint) is tuple else None
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            record_cls = item if dataclasses.is_dataclass(item) else None
            if item is None:
                plain, items = _PLAIN_TYPES.get(hint, frozenset()), None
            else:
                plain = frozenset({list, tuple})
                items = frozenset({dict}) if record_cls else (
                    _NUMBER_TYPES | {type(None)} if item in (int, float) else _PLAIN_TYPES.get(item, frozenset()))
            rows.append(_PushSpec(f.name, hint, required, record_cls, plain, items))
        specs = _PUSH_SPECS[cls] = (frozenset(r.name for r in rows), tuple(rows))
    return specs


def pushed_problems(cls: type, data: Mapping[str, Any], where: str = "") -> list[str]:
    """Everything wrong with ``data`` as the dict form of a ``cls`` record: unknown keys (each
    with the closest known field), missing required fields, values of the wrong type; nested
    records are checked too (``gpus[1].name``). Empty when ``data`` can be taken."""
    known, specs = _push_specs(cls)
    problems = [f"unknown field {where + str(key)!r} ({_closest(str(key), sorted(known), where)})"
                for key in data if key not in known]
    for spec in specs:
        value = data.get(spec.name)
        if value is None:
            if spec.required:
                problems.append(f"{where}{spec.name} is required")
            continue
        if type(value) in spec.plain_types and (
                spec.plain_items is None or all(type(v) in spec.plain_items for v in value)):
            problem = None  # the common case, without the full check
        else:
            problem = _type_problem(where + spec.name, spec.hint, value)
        if problem is not None:
            problems.append(problem)
        elif spec.record_cls is not None:
            for index, entry in enumerate(value):
                problems.extend(pushed_problems(spec.record_cls, entry, f"{where}{spec.name}[{index}]."))
    return problems
