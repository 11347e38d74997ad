"""The one Jinja2 environment of the reports: autoescaped, with formatting filters that show
an unknown value as "n/a" (never as 0)."""

from __future__ import annotations

import os
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from fleet_hwmon.printable import template_value
from fleet_hwmon.reports.jsonio import atomic_write_text, to_jsonable


def fmt_percent(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}%"


def fmt_number(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{float(value):,.{digits}f}"


def fmt_bytes(value: Any) -> str:
    if value is None:
        return "n/a"
    number = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(number) < 1024 or unit == "TiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return f"{number:.1f} TiB"


def fmt_time(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def load_class(value: Any) -> str:
    """CSS class for a utilization percent: ``load-high`` (>= 90), ``load-mid`` (>= 70), ``load-low``."""
    if value is None:
        return "load-unknown"
    return "load-high" if value >= 90 else "load-mid" if value >= 70 else "load-low"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fleet_hwmon", "reports/templates"),
        autoescape=True,  # every worker name, task id and error message is untrusted text
        finalize=template_value,  # ... and may hold control characters
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(percent=fmt_percent, number=fmt_number, bytes=fmt_bytes, time=fmt_time,
                       load_class=load_class, jsonable=to_jsonable)
    return env


def render_to_file(template: str, path: str | os.PathLike, **context: Any) -> Path:
    """Render ``template`` with ``context`` into ``path`` atomically; returns the path."""
    return atomic_write_text(path, environment().get_template(template).render(**context))
