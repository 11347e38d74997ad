"""Pick the channels, resolve their secrets, and send one digest per channel (or show it: dry run).

Which channels: those named by ``channels`` when given (an explicit request uses a channel even
when its section says ``"enabled": false``), else every section with ``"enabled": true``. A
channel's ``notify_on`` (default ``["failure"]``; GitHub ``["success", "failure"]``) says for which
outcomes it sends; outside it the channel is skipped, which counts as delivered.
A section's kind is its ``type`` or, by default, its name: ``email``, ``slack``, ``github``,
``webhook``, ``apprise``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..report import RunReport
from .apprise_channel import AppriseChannel
from .base import Channel, Delivery, Outgoing
from .config import ConfigError, MissingSecretError, channel_sections, is_enabled, resolve
from .email_channel import EmailChannel
from .github_channel import GitHubChannel
from .http_channels import SlackChannel, WebhookChannel
from .redact import Redactor
from .render import DEFAULT_MAX_FAILURES_LISTED, make_environment

CHANNEL_KINDS: dict[str, Callable[..., Channel]] = {
    "email": EmailChannel, "slack": SlackChannel, "github": GitHubChannel, "webhook": WebhookChannel,
    "apprise": AppriseChannel}
DEFAULT_NOTIFY_ON = {"github": ("success", "failure")}


@dataclass(frozen=True, slots=True)
class Plan:
    """The channels chosen for a run, and why none were when ``reason`` is set."""

    names: tuple[str, ...]
    explicit: bool
    reason: str | None = None


def plan_channels(config: Mapping[str, Any], requested: Sequence[str] | None) -> Plan:
    """Which sections to use. Raises :class:`ConfigError` for a requested name with no section,
    and for a section of an unknown type (any section: a typo is found before anything is sent,
    whatever the run's status)."""
    sections = channel_sections(config)
    for name, section in sections.items():
        _kind(name, section)
    if requested:
        unknown = [name for name in requested if name not in sections]
        if unknown:
            raise ConfigError(f"no section for channel(s) {', '.join(unknown)} in the notification config "
                              f"(sections: {', '.join(sections) or 'none'})")
        return Plan(tuple(requested), explicit=True)
    enabled = tuple(name for name, section in sections.items() if is_enabled(section))
    if not enabled:
        return Plan(tuple(sections), explicit=False, reason="no notification channel is enabled")
    return Plan(enabled, explicit=False)


def _kind(name: str, section: Mapping[str, Any]) -> str:
    kind = str(section.get("type") or name)
    if kind not in CHANNEL_KINDS:
        raise ConfigError(f"channel {name!r}: unknown type {kind!r} (known: {', '.join(CHANNEL_KINDS)})")
    return kind


def build_channel(name: str, raw_section: Mapping[str, Any], config: Mapping[str, Any],
                  environ: Mapping[str, str], redactor: Redactor, config_dir: Path,
                  dry_run: bool) -> Channel:
    """Resolve a section's ``${ENV}`` references and build its channel. Outside a dry run a missing
    variable raises :class:`MissingSecretError` (naming the variable, never a value)."""
    missing: list[str] = []
    section = resolve(dict(raw_section), environ, redactor, missing, keep_unresolved=dry_run)
    if missing and not dry_run:
        raise MissingSecretError(name, sorted(set(missing)))
    defaults = config.get("defaults") or {}
    templates_dir = section.get("templates_dir") or defaults.get("templates_dir")
    if templates_dir and not Path(templates_dir).is_absolute():
        templates_dir = config_dir / templates_dir
    limit = int(section.get("max_failures_listed") or defaults.get("max_failures_listed")
                or DEFAULT_MAX_FAILURES_LISTED)
    return CHANNEL_KINDS[_kind(name, section)](name, section, make_environment(templates_dir), limit)


def notify_on(name: str, section: Mapping[str, Any]) -> tuple[str, ...]:
    value = section.get("notify_on")
    if value is None:
        return DEFAULT_NOTIFY_ON.get(str(section.get("type") or name), ("failure",))
    return tuple([value] if isinstance(value, str) else value)


def describe(outgoing: Outgoing, redactor: Redactor) -> str:
    """The text a dry run prints for one message, secrets masked."""
    body = outgoing.body if isinstance(outgoing.body, str) else json.dumps(
        outgoing.body, indent=2, ensure_ascii=False, allow_nan=False)
    headers = "".join(f"{k}: {v}\n" for k, v in outgoing.headers.items())
    return redactor.redact(f"--- {outgoing.channel}: {outgoing.target}\n{headers}{body}\n")


def send_notifications(report: RunReport, config: Mapping[str, Any], *, channels: Sequence[str] | None = None,
                       dry_run: bool = False, environ: Mapping[str, str] | None = None,
                       config_dir: str | Path = ".", out: Callable[[str], None] = print,
                       redactor: Redactor | None = None) -> list[Delivery]:
    """Send (or, with ``dry_run``, print) one digest per chosen channel; never raises for a
    channel's failure: each comes back as a :class:`Delivery`. With no channel enabled (and none
    requested) it prints that, then shows what every configured channel would send."""
    environ = os.environ if environ is None else environ
    redactor = redactor or Redactor.from_environ(environ)
    plan = plan_channels(config, channels)
    if plan.reason:
        out(f"{plan.reason}; dry run: showing what each configured channel would send")
        dry_run = True
    sections = channel_sections(config)
    deliveries: list[Delivery] = []
    for name in plan.names:
        section = sections[name]
        if report.status not in notify_on(name, section):
            deliveries.append(Delivery(name, True, f"skipped: notify_on does not include {report.status}",
                                       skipped=True))
            continue
        try:
            channel = build_channel(name, section, config, environ, redactor, Path(config_dir), dry_run)
            if dry_run:
                messages = channel.prepare(report)
                for outgoing in messages:
                    out(describe(outgoing, redactor))
                if not messages:
                    out(f"--- {name}: nothing to send (no commit and no pull request)")
                unset: list[str] = []
                resolve(dict(section), environ, redactor, unset, keep_unresolved=True)
                warning = (f"; a real run would fail: environment variable(s) not set: {', '.join(sorted(set(unset)))}"
                           if unset else "")
                deliveries.append(Delivery(name, True, f"dry run: {len(messages)} message(s) shown{warning}",
                                           skipped=True))
                continue
            delivery = channel.send(report)
        except (ConfigError, ValueError) as err:
            delivery = Delivery(name, False, f"configuration: {err}")
        except Exception as err:  # a channel must never break the run: record and go on
            delivery = Delivery(name, False, f"unexpected {type(err).__name__}: {err}")
        deliveries.append(Delivery(delivery.channel, delivery.ok, redactor.redact(delivery.detail),
                                   delivery.attempts, delivery.elapsed_s, delivery.skipped))
    return deliveries
