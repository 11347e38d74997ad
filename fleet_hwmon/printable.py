"""Text from samples and runs made safe to show: control characters removed where it is rendered.

Names in samples (worker ids, GPU names, mount paths, NIC names, process names, task ids) come
from other machines, and test names and error messages from the code under test. Undecodable
bytes in a sample's text are already U+FFFD (``fleet_hwmon.domains``); the text is stored as
it came. Where it is shown (a terminal, a log line, an HTML page, an SVG badge, a notification)
a control character could recolour, move or clear a terminal (an ANSI escape sequence starts
with ESC), ring its bell, forge a line, or make an SVG invalid XML. :func:`printable` removes
them, and an escape sequence as a whole: ``"\\x1b[31mGPU\\x07"`` shows as ``GPU``.

The boundaries that call it: the Jinja2 environments (reports, badges, notifications) through
:func:`template_value`, the demo's terminal view, and the log records of the ``fleet_hwmon``
loggers (:func:`clean_log_records`, installed when the package is imported).
"""

from __future__ import annotations

import logging
import re
from typing import Any

# ESC followed by a CSI sequence (ESC [ ... final byte), an OSC / DCS / APC / PM / SOS string
# ended by BEL or ESC \ (unended, only its start goes), or one character; the C1 forms too.
_ESCAPE = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
                     r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
                     r"|\x1b[ -~]?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1 (Unicode category Cc)
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # the same, keeping tab and newline
_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")  # lone surrogates and U+FFFE/U+FFFF: no XML may hold them


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` without escape sequences and control characters (C0, DEL, C1), on one line
    (a tab or newline becomes a space); with ``multiline`` tab and newline stay (an error
    message, a traceback). A lone surrogate, U+FFFE or U+FFFF (which no XML, SVG included, can
    hold) becomes U+FFFD; anything else is kept. Not a ``str``: ``TypeError``."""
    if text.isprintable():  # the common case: nothing to remove (and no newline or tab)
        return text
    text = _NOT_XML.sub("\ufffd", _ESCAPE.sub("", text))
    if multiline:
        return _CONTROL_BUT_LINES.sub("", text)
    return _CONTROL.sub("", text.replace("\t", " ").replace("\n", " "))


def template_value(value: Any) -> Any:
    """Jinja2's ``finalize`` hook: every ``{{ ... }}`` that is text is shown through
    :func:`printable` (multi-line), keeping its type (autoescaped ``Markup`` stays ``Markup``)."""
    if isinstance(value, str) and not value.isprintable():
        return type(value)(printable(value, multiline=True))
    return value


_OURS = "fleet_hwmon"


def clean_log_records() -> None:
    """Make every log record of a ``fleet_hwmon`` logger printable (multi-line): its message
    is formatted with its arguments at once and cleaned. Other loggers' records are left
    alone. Chains to the record factory in place; installing twice does nothing."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_printable", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.startswith(_OURS) and (record.name == _OURS or record.name[len(_OURS)] == "."):
            try:
                message = record.getMessage()
            except Exception:  # a bad format: the handler reports it as logging always does
                return record
            clean = printable(message, multiline=True)
            if clean != message:
                record.msg, record.args = clean, ()
        return record

    make_record._printable = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)
