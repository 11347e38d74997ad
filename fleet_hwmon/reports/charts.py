"""Charts of the fleet report: pygal line charts as inline SVG, and tiny sparklines.

The SVG must work offline and be safe to inline in HTML: pygal's configuration script and its
default tooltip script (loaded from a CDN) are removed, its CSS is inlined by pygal itself, and
every title, label and series name handed to pygal is a plain ``str`` without control characters
(:func:`fleet_hwmon.printable.printable`: lxml, which pygal uses when installed, refuses them, and
XML cannot hold them) that pygal's writer escapes. Callers mark only the output of
:func:`line_chart` as safe markup.
"""

from __future__ import annotations

import colorsys
import math
from datetime import datetime
from typing import Any, Sequence

import pygal
from pygal.style import Style

from fleet_hwmon.printable import printable

# Lines: the first colours follow the report's CSS palette, then distinct hues.
PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#57606a",
           "#fb8500", "#2da44e")

_STYLE = Style(
    background="#ffffff", plot_background="#ffffff", foreground="#1f2328", foreground_strong="#1f2328",
    foreground_subtle="#8c959f", opacity="1", opacity_hover="1", transition="0ms", colors=PALETTE,
    font_family='-apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif',
    title_font_size=15, label_font_size=11, major_label_font_size=11, legend_font_size=12,
    value_font_size=11, tooltip_font_size=11, guide_stroke_color="#d0d7de",
    major_guide_stroke_color="#d0d7de",
)


def worker_colour(index: int) -> str:
    """The colour of the ``index``-th worker (in the report's worker order), the same in every
    chart: the palette first, then hues spread by the golden angle (distinct for any fleet size)."""
    if index < len(PALETTE):
        return PALETTE[index]
    hue = ((index - len(PALETTE)) * 0.381966 + 0.07) % 1.0
    red, green, blue = colorsys.hls_to_rgb(hue, 0.42, 0.75)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def percent_range(series: Sequence[Sequence[float | None]], minimum_top: float = 10.0) -> tuple[float, float]:
    """A 0-based y range for percent series, scaled to the data: the top is the largest value
    rounded up to a step of 5 (10 above 50), at least ``minimum_top`` and at most 100."""
    known = [float(v) for values in series for v in values if v is not None and math.isfinite(v)]
    top = max(known, default=0.0)
    step = 10.0 if top > 50 else 5.0
    return 0.0, min(100.0, max(minimum_top, math.ceil(top * 1.05 / step) * step))


def _ticks(y_range: tuple[float, float]) -> list[float]:
    """Round axis labels over ``y_range``, at most eight, the top one included when it can be."""
    low, high = y_range
    span = high - low
    step = next((s for s in (1, 2, 5, 10, 15, 20, 25, 50) if span / s <= 7 and span % s == 0),
                next((s for s in (1, 2, 5, 10, 20, 25, 50) if span / s <= 7), 100))
    return [low + i * step for i in range(int((high - low) // step) + 1)]


def _percent_label(value: float) -> str:
    return f"{value:g} %"


_STYLE_FIELDS = ("background", "plot_background", "foreground", "foreground_strong", "foreground_subtle",
                 "opacity", "opacity_hover", "transition", "font_family", "title_font_size", "label_font_size",
                 "major_label_font_size", "legend_font_size", "value_font_size", "tooltip_font_size",
                 "guide_stroke_color", "major_guide_stroke_color")


def _strip_active_content(root: Any) -> Any:
    """pygal xml filter: drop every ``<script>`` (its config JSON and tooltip loader) and comment."""
    for parent in list(root.iter()):
        for child in list(parent):
            tag = child.tag if isinstance(child.tag, str) else ""
            if tag.rsplit("}", 1)[-1] == "script" or not isinstance(child.tag, str):
                parent.remove(child)
    return root


def _time_labels(times: Sequence[datetime]) -> list[str]:
    """Unique labels for the bucket starts (pygal treats equal label texts as one label)."""
    if not times:
        return []
    step = (times[1] - times[0]).total_seconds() if len(times) > 1 else 1.0
    span = (times[-1] - times[0]).total_seconds()
    fmt = "%H:%M:%S" if step < 60 else "%H:%M" if span < 86400 else "%m-%d %H:%M"
    return [t.strftime(fmt) for t in times]


def _major(labels: list[str], count: int = 6) -> list[str]:
    if len(labels) <= count:
        return labels
    every = -(-(len(labels) - 1) // (count - 1))
    return labels[::every]


def line_chart(title: str, times: Sequence[datetime], series: Sequence[tuple[str, Sequence[float | None]]], *,
               y_title: str = "%", y_range: tuple[float, float] | None = (0, 100), width: int = 760,
               height: int = 300, dashed: Sequence[int] = (), colours: Sequence[str] | None = None) -> str:
    """An inline SVG line chart (no script, no external reference) of ``series`` over ``times``.

    ``series``: ``(name, values)`` pairs aligned with ``times``; ``None`` values break the line.
    ``dashed``: indexes of series drawn dashed. ``colours``: one per series (default: the palette
    in order). With ``y_title`` ``"%"`` the axis labels carry the unit (``5 %``). Returns SVG
    markup (a ``str``) that is safe to embed: every text went through pygal's XML escaping.
    """
    labels = _time_labels(times)
    title, y_title = printable(str(title)), printable(str(y_title))
    style = _STYLE
    if colours:
        style = Style(**{**{k: getattr(_STYLE, k) for k in _STYLE_FIELDS}, "colors": tuple(colours)})
    chart = pygal.Line(
        style=style, title=title, width=width, height=height, explicit_size=False,
        show_dots=False, allow_interruptions=True, fill=False, stroke_style={"width": 1.6},
        x_labels=labels, x_labels_major=_major(labels), show_minor_x_labels=False,
        x_label_rotation=0, truncate_label=-1, truncate_legend=44, legend_at_bottom=True,
        legend_at_bottom_columns=max(1, min(4, len(series))), legend_box_size=10, y_title=y_title, range=y_range,
        include_x_axis=y_range is not None, show_x_guides=False, show_y_guides=True,
        js=[], disable_xml_declaration=True, pretty_print=False,
        no_data_text="no data", margin=8, spacing=8, tooltip_border_radius=0,
        **({"value_formatter": _percent_label} if y_title == "%" else {}),
        **({"y_labels": _ticks(y_range)} if y_range is not None else {}),
    )
    chart.add_xml_filter(_strip_active_content)  # (a constructor argument is ignored by pygal)
    for index, (name, values) in enumerate(series):
        clean = [None if v is None or not math.isfinite(v) else round(float(v), 2) for v in values]
        options = {"stroke_style": {"width": 2.0, "dasharray": "6,3"}} if index in dashed else {}
        chart.add(printable(str(name)), clean, **options)
    return chart.render(is_unicode=True)


def sparkline_points(values: Sequence[float | None], *, width: float = 100.0, height: float = 22.0,
                     top: float = 100.0) -> list[str]:
    """Polyline ``points`` strings (one per unbroken run) of a 0-``top`` series in a ``width`` x
    ``height`` box; a lone point becomes a 1-unit tick. Numbers only, so safe in an attribute."""
    if not values:
        return []
    step = width / max(1, len(values) - 1)
    runs: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            if runs[-1]:
                runs.append([])
            continue
        y = height - 1 - (height - 2) * max(0.0, min(top, float(value))) / top
        runs[-1].append(f"{i * step:.1f},{y:.1f}")
    out = []
    for run in runs:
        if len(run) == 1:
            x, y = run[0].split(",")
            run = [run[0], f"{float(x) + 1:.1f},{y}"]
        if run:
            out.append(" ".join(run))
    return out
