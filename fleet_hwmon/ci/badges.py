"""SVG status badges in the shields.io styles: flat, flat-square, plastic, for-the-badge, social.

pybadges provides what it does well: text widths (its precalculated per-character widths of the
badge font at 11 px) and the shields colour names. Our own Jinja2 templates (autoescaped) draw
every style, so all of them share one escaping path and carry ``role="img"``, ``aria-label`` and
``<title>`` (pybadges renders only the flat style, without ``aria-label``).

Widths are measured on the raw text, never on its escaped form; label and message are escaped
wherever they appear (visible text, ``<title>``, ``aria-label``), so ``R&D <gpu>`` yields valid XML.

The ``for-the-badge`` style upper-cases label and message as shields.io does, except a unit right
after a number (:func:`badge_upper`): ``12.3s`` stays ``12.3s`` (shields would show ``12.3S``).

Example::

    svg = generate_badge_svg("tests", "passing")            # green flat badge
    svg = generate_badge_svg("pass rate", "87.5%", threshold_color(87.5), style="for-the-badge")
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import jinja2

from fleet_hwmon.printable import template_value

with warnings.catch_warnings():  # pybadges imports the deprecated imghdr (gone in 3.13: standard-imghdr)
    warnings.simplefilter("ignore", DeprecationWarning)  # and pkg_resources (a UserWarning from setuptools 81)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    import pybadges
    from pybadges.precalculated_text_measurer import PrecalculatedTextMeasurer

STYLES = ("flat", "flat-square", "plastic", "for-the-badge", "social")

#: shields' named colours (pybadges' table) plus the aliases shields accepts.
COLOR_NAMES: dict[str, str] = {**pybadges._NAME_TO_COLOR, "lightgrey": "#9f9f9f", "lightgray": "#9f9f9f"}

STATUS_COLORS = {"passing": "brightgreen", "passed": "brightgreen", "success": "brightgreen",
                 "failing": "red", "failed": "red", "failure": "red", "error": "red",
                 "unknown": "lightgrey", "no tests": "lightgrey", "no_tests": "lightgrey",
                 "interrupted": "orange"}

#: ``(minimum value, colour)`` from best to worst; below the last minimum the colour is red.
DEFAULT_PERCENT_THRESHOLDS: tuple[tuple[float, str], ...] = (
    (95.0, "brightgreen"), (90.0, "green"), (80.0, "yellowgreen"), (70.0, "yellow"), (50.0, "orange"))

_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_NUMBER = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*%?\s*")

#: Units kept as written after a number in the ``for-the-badge`` style: upper-casing them would change
#: their meaning (``12.3s`` seconds -> ``12.3S`` siemens, ``5 ms`` -> ``5 MS``, ``2 MiB`` -> ``2 MIB``).
UNITS_KEPT_AS_WRITTEN = ("s", "ms", "us", "µs", "ns", "min", "h", "d", "B", "kB", "KiB", "MB", "MiB", "GB", "GiB",
                         "TB", "TiB", "W", "kW", "mW", "Hz", "kHz", "MHz", "GHz", "°C")
_NUMBER_UNIT = re.compile(r"\d\s?(" + "|".join(re.escape(u) for u in sorted(UNITS_KEPT_AS_WRITTEN, key=len,
                                                                               reverse=True)) + r")(?![^\W\d_])")


def badge_upper(text: str) -> str:
    """``text`` upper-cased as the ``for-the-badge`` style shows it, except a unit right after a
    number (:data:`UNITS_KEPT_AS_WRITTEN`), which keeps its case: ``test duration`` / ``12.3 s`` ->
    ``TEST DURATION`` / ``12.3 s``; ``3 passed, 1 skipped`` -> ``3 PASSED, 1 SKIPPED``."""
    parts: list[str] = []
    position = 0
    for match in _NUMBER_UNIT.finditer(text):
        parts += [text[position:match.start(1)].upper(), match.group(1)]
        position = match.end(1)
    parts.append(text[position:].upper())
    return "".join(parts)


_ENV = jinja2.Environment(loader=jinja2.PackageLoader("fleet_hwmon.ci", "templates"),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True,
                          undefined=jinja2.StrictUndefined, finalize=template_value)


def resolve_color(color: str) -> str:
    """A CSS colour for a shields name (``brightgreen``) or hex (``4c1`` / ``#4c1``).

    Raises ``ValueError`` for anything else, so no free text reaches a ``fill`` attribute.
    """
    name = color.strip().lower()
    if name in COLOR_NAMES:
        return COLOR_NAMES[name]
    if _HEX.fullmatch(color.strip()):
        return "#" + color.strip().lstrip("#").lower()
    raise ValueError(f"unknown badge colour {color!r}: use a shields name ({', '.join(sorted(COLOR_NAMES))}) "
                     "or a hex colour")


def status_color(status: str) -> str:
    """The colour name for a status word: passing -> brightgreen, failing -> red, else lightgrey."""
    return STATUS_COLORS.get(status.strip().lower(), "lightgrey")


def threshold_color(value: float | None,
                    thresholds: Sequence[tuple[float, str]] = DEFAULT_PERCENT_THRESHOLDS,
                    below: str = "red") -> str:
    """The colour of the first ``(minimum, colour)`` whose minimum ``value`` reaches; ``below``
    when none does; ``lightgrey`` for an unknown (``None``) value. Thresholds are sorted best first."""
    if value is None:
        return "lightgrey"
    for minimum, color in sorted(thresholds, key=lambda item: item[0], reverse=True):
        if value >= minimum:
            return color
    return below


def auto_color(message: str) -> str:
    """Colour for a message without an explicit one: a status word, or thresholds for a percentage."""
    if message.strip().lower() in STATUS_COLORS:
        return status_color(message)
    number = _NUMBER.fullmatch(message)
    if number:
        return threshold_color(float(number.group(1)))
    return "blue"


@lru_cache(maxsize=1)
def _measurer() -> PrecalculatedTextMeasurer:
    return PrecalculatedTextMeasurer.default()


def text_width_px(text: str, font_px: float = 11.0, bold: bool = False, letter_spacing_px: float = 0.0) -> float:
    """Rendered width of ``text`` in pixels, from pybadges' precalculated widths at 11 px.

    Scales to ``font_px``; bold adds about 10 %; ``letter_spacing_px`` is added per character.
    """
    width = _measurer().text_width(text) / 10.0 * (font_px / 11.0)
    if bold:
        width *= 1.1
    return width + letter_spacing_px * len(text)


def _r(value: float) -> float:
    return round(value, 1)


@dataclass(frozen=True, slots=True)
class BadgeLayout:
    """Geometry and raw (unescaped) text of one badge; the template escapes on output.

    Widths are pixels; ``*_x10`` / ``*_len10`` are the text centre and length in the template's
    ``scale(.1)`` coordinates.
    """

    label: str
    message: str
    label_shown: str
    message_shown: str
    title: str
    color: str
    label_color: str
    left_width: float
    right_width: float
    width: float
    left_x10: float
    right_x10: float
    left_len10: float
    right_len10: float
    bubble_x: float
    uid: str


def layout_badge(label: str, message: str, color: str, label_color: str, style: str) -> BadgeLayout:
    """Compute a :class:`BadgeLayout` for one style (see :data:`STYLES`)."""
    label_shown, message_shown = label, message
    gap = bubble_x = 0.0
    if style == "for-the-badge":
        label_shown, message_shown = badge_upper(label), badge_upper(message)
        left_text = text_width_px(label_shown, 10, bold=True, letter_spacing_px=1.25)
        right_text = text_width_px(message_shown, 10, bold=True, letter_spacing_px=1.25)
        padding = 12.0
    elif style == "social":
        label_shown = label[:1].upper() + label[1:]
        left_text = text_width_px(label_shown)  # Helvetica bold is about as wide as the measured font
        right_text = text_width_px(message)
        padding, gap = 6.0, 6.0
    else:
        left_text, right_text = text_width_px(label), text_width_px(message)
        padding = 5.0
    left_width = _r(left_text + 2 * padding) if label else 0.0
    right_width = _r(right_text + 2 * padding)
    if style == "social":
        bubble_x = _r(left_width + gap + 0.5)
        width = _r(bubble_x + right_width + 0.5)
        right_x = bubble_x + right_width / 2
        left_x = 0.5 + left_width / 2
    else:
        width = _r(left_width + right_width)
        left_x, right_x = left_width / 2, left_width + right_width / 2
    title = f"{label}: {message}" if label else message
    uid = hashlib.sha1(f"{style}\0{title}\0{color}".encode()).hexdigest()[:8]
    return BadgeLayout(label=label, message=message, label_shown=label_shown, message_shown=message_shown,
                       title=title, color=color, label_color=label_color, left_width=left_width,
                       right_width=right_width, width=width, left_x10=_r(left_x * 10), right_x10=_r(right_x * 10),
                       left_len10=_r(left_text * 10), right_len10=_r(right_text * 10), bubble_x=bubble_x, uid=uid)


def generate_badge_svg(label: str, message: str, color: str | None = None, style: str = "flat",
                       label_color: str = "grey") -> str:
    """Render one badge as an SVG document (a ``str``, valid XML, no XML declaration).

    ``label`` is the left text, ``message`` the right; both may hold any characters (they are
    XML-escaped). ``color`` is a shields colour name or hex; ``None`` derives it from the
    message (:func:`auto_color`). ``style`` is one of :data:`STYLES`.

    Raises ``ValueError`` for an unknown style or colour.
    """
    if style not in STYLES:
        raise ValueError(f"unknown badge style {style!r}; choose one of {', '.join(STYLES)}")
    color_css = resolve_color(color if color is not None else auto_color(message))
    layout = layout_badge(str(label), str(message), color_css, resolve_color(label_color), style)
    return _ENV.get_template(f"badge_{style}.svg").render(b=layout).strip() + "\n"
