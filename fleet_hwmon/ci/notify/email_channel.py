"""Email over SMTP (smtplib): SSL or STARTTLS, login, several recipients, one digest per run.

Settings: ``smtp_host``, ``smtp_port`` (default 465 for ``ssl``, 587 for ``starttls``, 25 for
``none``), ``security`` (``starttls`` | ``ssl`` | ``none``), ``username``, ``password``,
``from``, ``to`` (list or comma-separated), ``timeout_s`` (smtplib's socket timeout: bounds a
server that never greets), ``ca_file`` (extra CA bundle for a private server).

Recipients are handled one by one: an address the server cannot take (a non-ASCII address when
it does not offer SMTPUTF8, or one it refuses at ``RCPT TO``) is reported alone, with why, and
every other recipient still gets the message; the delivery then counts as failed. A connection
the server drops (``SMTPServerDisconnected``, reset, broken pipe) is retried once on a fresh
connection; a timeout is not retried. The subject is one line (CR / LF collapsed), so a
multi-line error can never add a header; the full text goes in the body.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from ..report import RunReport
from .base import Delivery, Outgoing
from .render import render, single_line, template_context

DROPPED = (smtplib.SMTPServerDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}
SUBJECT_LIMIT_CHARS = 200


def recipients(value: Any) -> list[str]:
    """``to`` as a list of single-line addresses: accepts a list or a comma-separated string."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    return [single_line(item, 320) for item in items if str(item).strip()]


def readable(msg: EmailMessage) -> str:
    """The message as a person reads it (what a dry run shows): decoded headers, a blank line, the
    decoded text. ``as_string()`` would show the wire form (quoted-printable ``=3D``, soft line breaks)."""
    headers = "".join(f"{name}: {value}\n" for name, value in msg.items()
                      if name.lower() not in ("content-transfer-encoding", "mime-version"))
    return f"{headers}\n{msg.get_content().rstrip()}"


class EmailChannel:
    """See the module docstring for the settings."""

    def __init__(self, name: str, section: dict[str, Any], env: Any, max_failures_listed: int) -> None:
        self.name = name
        self.host = section.get("smtp_host") or ""
        self.security = str(section.get("security") or "starttls").lower()
        if self.security not in DEFAULT_PORTS:
            raise ValueError(f"{name}: security must be starttls, ssl or none, not {self.security!r}")
        port = section.get("smtp_port")
        self.port = int(port) if str(port or "").strip() else DEFAULT_PORTS[self.security]
        self.username = section.get("username") or ""
        self.password = section.get("password") or ""
        self.sender = single_line(section.get("from") or self.username or "hwmon-ci@localhost", 320)
        self.to = recipients(section.get("to"))
        self.timeout_s = float(section.get("timeout_s") or 10.0)
        self.ca_file = section.get("ca_file") or None
        self.env = env
        self.max_failures_listed = max_failures_listed

    def message(self, report: RunReport, to: list[str] | None = None) -> EmailMessage:
        """The message: single-line ``Subject``, ``From``, ``To`` (``to``, default every recipient),
        ``Date``, ``Message-ID``, text body."""
        context = template_context(report, self.max_failures_listed)
        msg = EmailMessage()
        msg["Subject"] = single_line(render(self.env, "notify_email_subject.txt", context), SUBJECT_LIMIT_CHARS)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to if to is None else to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="fleet-hwmon.ci")
        msg.set_content(render(self.env, "notify_email_body.txt", context) + "\n")
        return msg

    def prepare(self, report: RunReport) -> list[Outgoing]:
        return [Outgoing(self.name, f"SMTP {self.host}:{self.port} ({self.security}) to {', '.join(self.to)}",
                         readable(self.message(report)))]

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def _deliver_once(self, report: RunReport) -> dict[str, str]:
        """One SMTP session; returns ``{recipient: why it was not delivered}`` (empty: all delivered)."""
        if self.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                                   context=self._ssl_context())
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        try:
            client.ehlo()
            if self.security == "starttls":
                client.starttls(context=self._ssl_context())
                client.ehlo()
            if self.username:
                client.login(self.username, self.password)
            utf8 = client.has_extn("smtputf8")
            refused = {rcpt: "a non-ASCII address, and the server does not offer SMTPUTF8"
                       for rcpt in self.to if not rcpt.isascii() and not utf8}
            accepted = [rcpt for rcpt in self.to if rcpt not in refused]
            if accepted:
                try:
                    answers = client.send_message(self.message(report, accepted), from_addr=self.sender,
                                                  to_addrs=accepted)
                except smtplib.SMTPRecipientsRefused as err:  # every remaining recipient refused
                    answers = err.recipients
                refused |= {rcpt: f"refused: {code} {_text(text)}" for rcpt, (code, text) in answers.items()}
            return refused
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    def send(self, report: RunReport) -> Delivery:
        started = time.monotonic()
        if not self.host or not self.to:
            return Delivery(self.name, False, "smtp_host and at least one recipient in 'to' are required")
        attempts = 0
        for attempt in (1, 2):
            attempts = attempt
            try:
                refused = self._deliver_once(report)
                delivered = len(self.to) - len(refused)
                detail = f"sent to {delivered} of {len(self.to)} recipient(s)" if refused else \
                    f"sent to {len(self.to)} recipient(s)"
                detail += "".join(f"; not delivered to {rcpt}: {why}" for rcpt, why in refused.items())
                return Delivery(self.name, not refused, detail, attempts, time.monotonic() - started)
            except DROPPED as err:
                if isinstance(err.__context__, TimeoutError):  # smtplib wraps a read timeout as a disconnect
                    return Delivery(self.name, False, f"timed out after {self.timeout_s:g} s: {err}", attempts,
                                    time.monotonic() - started)
                if attempt == 2:
                    return Delivery(self.name, False, f"server dropped the connection twice: {err}", attempts,
                                    time.monotonic() - started)
            except (TimeoutError, socket.timeout) as err:
                return Delivery(self.name, False, f"timed out after {self.timeout_s:g} s: {err}", attempts,
                                time.monotonic() - started)
            except (smtplib.SMTPException, OSError, ssl.SSLError) as err:  # named with the server it concerns
                return Delivery(self.name, False, f"SMTP server {self.host}:{self.port}: {type(err).__name__}: {err}",
                                attempts, time.monotonic() - started)
        raise AssertionError("unreachable")


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
