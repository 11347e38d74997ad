"""Channels over HTTP: Slack (and Slack-compatible incoming webhooks), GitHub, a generic JSON webhook."""

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
GITHUB_MARKER_PREFIX = "<!-- fleet-hwmon-ci-report:"
GITHUB_MAX_COMMENT_PAGES = 10


def _attempts(response: requests.Response) -> int:
    retries = getattr(response.raw, "retries", None)
    return 1 + len(getattr(retries, "history", ()) or ())


def _reply_excerpt(response: requests.Response, limit_chars: int = 200) -> str:
    return " ".join(response.text[:limit_chars].split())


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
                            elapsed_s=time.monotonic() - started)
        ok = slack_accepted(response)
        detail = "delivered" if ok else f"not accepted: HTTP {response.status_code} {_reply_excerpt(response)}"
        return Delivery(self.name, ok, detail, _attempts(response), time.monotonic() - started)


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
                            elapsed_s=time.monotonic() - started)
        ok = 200 <= response.status_code < 300
        detail = "delivered" if ok else f"HTTP {response.status_code} {_reply_excerpt(response)}"
        return Delivery(self.name, ok, detail, _attempts(response), time.monotonic() - started)


class GitHubChannel:
    """GitHub: a commit status on the run's commit and one pull-request comment per context.

    Settings: ``repository`` (``owner/name``), ``token``, ``api_url`` (GitHub Enterprise:
    ``https://HOST/api/v3``), ``context`` (status name), ``commit_status`` / ``pr_comment`` (bools),
    ``pull_request`` (number; default from ``GITHUB_REF``), ``target_url``. The comment carries a
    hidden marker; a later run finds it and PATCHes that comment instead of adding another.
    """

    def __init__(self, name: str, section: dict[str, Any], env: Any, max_failures_listed: int) -> None:
        self.name = name
        self.api_url = (section.get("api_url") or "https://api.github.com").rstrip("/")
        self.repository = section.get("repository") or ""
        self.token = section.get("token") or ""
        self.context_name = section.get("context") or "hardware-monitoring/tests"
        self.commit_status = bool(section.get("commit_status", True))
        self.pr_comment = bool(section.get("pr_comment", True))
        pull = section.get("pull_request")
        self.pull_request = int(pull) if str(pull or "").strip().isdigit() else None
        self.target_url = section.get("target_url") or None
        self.policy = http.HttpPolicy.from_section(section)
        self.env = env
        self.max_failures_listed = max_failures_listed

    @property
    def marker(self) -> str:
        return f"{GITHUB_MARKER_PREFIX} {self.context_name} -->"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _pr(self, report: RunReport) -> int | None:
        return self.pull_request or report.pull_request

    # GitHub serves pull-request conversation comments through its issue-comments endpoints.
    def _comments_url(self, pr: int) -> str:
        return f"{self.api_url}/repos/{self.repository}/issues/{pr}/comments"

    def _comment_url(self, comment_id: int) -> str:
        return f"{self.api_url}/repos/{self.repository}/issues/comments/{comment_id}"

    def status_payload(self, report: RunReport) -> dict[str, Any]:
        context = template_context(report, self.max_failures_listed)
        payload = {"state": "success" if report.status == "success" else "failure",
                   "description": render(self.env, "notify_github_status.txt", context)[:140],
                   "context": self.context_name}
        target = self.target_url or report.run_url or report.report_url
        if target:
            payload["target_url"] = target
        return payload

    def comment_body(self, report: RunReport) -> str:
        context = template_context(report, self.max_failures_listed, marker=self.marker)
        return render(self.env, "notify_github_comment.md", context)

    def prepare(self, report: RunReport) -> list[Outgoing]:
        out = []
        if self.commit_status and report.commit:
            out.append(Outgoing(self.name, f"POST {self.api_url}/repos/{self.repository}/statuses/{report.commit}",
                                self.status_payload(report), self._headers()))
        pr = self._pr(report)
        if self.pr_comment and pr:
            out.append(Outgoing(self.name, f"POST {self._comments_url(pr)} (or PATCH the earlier comment "
                                "that carries the marker)", {"body": self.comment_body(report)}, self._headers()))
        return out

    def _find_comment(self, session: requests.Session, pr: int) -> int | None:
        url: str | None = self._comments_url(pr)
        params: dict[str, Any] | None = {"per_page": 100}
        for _ in range(GITHUB_MAX_COMMENT_PAGES):
            if not url:
                break
            response = http.request(self.policy, "GET", url, session=session, params=params,
                                    headers=self._headers())
            response.raise_for_status()
            for comment in response.json():
                if self.marker in (comment.get("body") or ""):
                    return int(comment["id"])
            url, params = response.links.get("next", {}).get("url"), None
        return None

    def send(self, report: RunReport) -> Delivery:
        started = time.monotonic()
        if not self.repository:
            return Delivery(self.name, False, "no repository configured")
        pr = self._pr(report)
        if not (self.commit_status and report.commit) and not (self.pr_comment and pr):
            return Delivery(self.name, False, "nothing to report to: no commit and no pull request")
        steps: list[str] = []
        attempts = 0
        session = http.make_session(self.policy)
        try:
            if self.commit_status and report.commit:
                response = http.request(self.policy, "POST",
                                        f"{self.api_url}/repos/{self.repository}/statuses/{report.commit}",
                                        session=session, json=self.status_payload(report), headers=self._headers())
                attempts += _attempts(response)
                if response.status_code != 201:
                    return Delivery(self.name, False, f"commit status: HTTP {response.status_code} "
                                    f"{_reply_excerpt(response)}", attempts, time.monotonic() - started)
                steps.append("commit status set")
            if self.pr_comment and pr:
                existing = self._find_comment(session, pr)
                attempts += 1
                body = {"body": self.comment_body(report)}
                if existing is None:
                    response = http.request(self.policy, "POST", self._comments_url(pr), session=session,
                                            json=body, headers=self._headers())
                    expected, what = 201, "comment added"
                else:
                    response = http.request(self.policy, "PATCH", self._comment_url(existing), session=session,
                                            json=body, headers=self._headers())
                    expected, what = 200, f"comment {existing} updated"
                attempts += _attempts(response)
                if response.status_code != expected:
                    return Delivery(self.name, False, f"pull request comment: HTTP {response.status_code} "
                                    f"{_reply_excerpt(response)}", attempts, time.monotonic() - started)
                steps.append(what)
        except requests.RequestException as err:
            return Delivery(self.name, False, f"request failed: {type(err).__name__}: {err}", attempts,
                            time.monotonic() - started)
        finally:
            session.close()
        return Delivery(self.name, True, "; ".join(steps), attempts, time.monotonic() - started)
