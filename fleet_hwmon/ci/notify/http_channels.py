"""Channels over HTTP: Slack (and Slack-compatible incoming webhooks) and a generic JSON webhook."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from ..report import RunReport
from . import http
from .base import Delivery, Outgoing
from .render import render, template_context

MAX_SLACK_TEXT_CHARS = 35000


def slack_accepted(response: requests.Response) -> bool:
    """Slack's own word for success: HTTP 200 with body ``ok`` or JSON ``{"ok": true}``."""
    if response.status_code != 200:
        return False
    body = response.text.strip()
    if body == "ok":
        return True
    try:
        return json.loads(body).get("ok") is True
    except (ValueError, AttributeError):
        return False


class SlackChannel:
    """Slack incoming webhook (``webhook_url``); optional ``username``, ``channel``, ``icon_emoji``.

    One digest message per run. Also fits Slack-compatible hooks (Mattermost, Discord's
    ``/slack`` endpoint) that answer ``ok``.
    """

    def __init__(self, name: str, section: dict[str, Any], env: Any, max_failures_listed: int) -> None:
        self.name = name
        self.url = section.get("webhook_url") or ""
        self.extras = {k: section[k] for k in ("username", "channel", "icon_emoji") if section.get(k)}
        self.policy = http.HttpPolicy.from_section(section)
        self.env = env
        self.max_failures_listed = max_failures_listed

    def payload(self, report: RunReport) -> dict[str, Any]:
        text = render(self.env, "notify_slack.txt", template_context(report, self.max_failures_listed))
        if len(text) > MAX_SLACK_TEXT_CHARS:
            text = text[:MAX_SLACK_TEXT_CHARS] + "\n…"
        return {"text": text, **self.extras}

    def prepare(self, report: RunReport) -> list[Outgoing]:
        return [Outgoing(self.name, f"POST {self.url}", self.payload(report))]

    def send(self, report: RunReport) -> Delivery:
        started = time.monotonic()
        if not self.url:
            return Delivery(self.name, False, "no webhook_url configured")
        try:
            response = http.request(self.policy, "POST", self.url, json=self.payload(report))
        except requests.RequestException as err:
            return Delivery(self.name, False, f"request failed: {type(err).__name__}: {err}",
                            http.failed_attempts(err), time.monotonic() - started)
        ok = slack_accepted(response)
        detail = "delivered" if ok else f"not accepted: {http.answer(self.policy, response)}"
        return Delivery(self.name, ok, detail, http.attempts(response), time.monotonic() - started)


class WebhookChannel:
    """A generic JSON webhook: POSTs the run summary to ``url`` with optional ``headers``; any 2xx
    answer is success."""

    def __init__(self, name: str, section: dict[str, Any], env: Any, max_failures_listed: int) -> None:
        self.name = name
        self.url = section.get("url") or ""
        self.headers = {str(k): str(v) for k, v in (section.get("headers") or {}).items()}
        self.policy = http.HttpPolicy.from_section(section)
        self.env = env
        self.max_failures_listed = max_failures_listed

    def payload(self, report: RunReport) -> dict[str, Any]:
        context = template_context(report, self.max_failures_listed)
        keys = ("status", "counts", "total", "failed_tests", "more_failures", "commit", "branch", "repository",
                "run_id", "run_url", "report_url", "duration_s", "mode")
        return {"title": render(self.env, "notify_webhook_title.txt", context), **{k: context[k] for k in keys}}

    def prepare(self, report: RunReport) -> list[Outgoing]:
        return [Outgoing(self.name, f"POST {self.url}", self.payload(report), dict(self.headers))]

    def send(self, report: RunReport) -> Delivery:
        started = time.monotonic()
        if not self.url:
            return Delivery(self.name, False, "no url configured")
        try:
            response = http.request(self.policy, "POST", self.url, json=self.payload(report), headers=self.headers)
        except requests.RequestException as err:
            return Delivery(self.name, False, f"request failed: {type(err).__name__}: {err}",
                            http.failed_attempts(err), time.monotonic() - started)
        ok = 200 <= response.status_code < 300
        detail = "delivered" if ok else http.answer(self.policy, response)
        return Delivery(self.name, ok, detail, http.attempts(response), time.monotonic() - started)
