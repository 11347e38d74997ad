"""GitHub: a commit status on the run's commit and one pull-request comment per job and mode."""

from __future__ import annotations

import time
from typing import Any

import requests

from ..report import RunReport
from . import http
from .base import Delivery, Outgoing
from .render import render, template_context

GITHUB_MARKER_PREFIX = "<!-- fleet-hwmon-ci-report:"
GITHUB_MAX_COMMENT_PAGES = 10
GITHUB_MAX_COMMENT_CHARS = 65536  # GitHub answers 422 to a longer comment body


class GitHubChannel:
    """GitHub: a commit status on the run's commit and one pull-request comment per context.

    Settings: ``repository`` (``owner/name``), ``token``, ``api_url`` (GitHub Enterprise:
    ``https://HOST/api/v3``), ``context`` (status name), ``job`` (the CI job, e.g. ``${GITHUB_JOB}``),
    ``commit_status`` / ``pr_comment`` (bools), ``pull_request`` (number; default from
    ``GITHUB_REF``), ``target_url``. The status context is ``context/job/mode`` (the parts that are
    known), so each job and mode keeps its own status and its own comment. The comment carries a
    hidden marker naming that context; a later run finds it and PATCHes that comment instead of
    adding another. A comment longer than GitHub's 65,536 characters lists fewer failed tests
    ("...and N more") until it fits.
    """

    def __init__(self, name: str, section: dict[str, Any], env: Any, max_failures_listed: int) -> None:
        self.name = name
        self.api_url = (section.get("api_url") or "https://api.github.com").rstrip("/")
        self.repository = section.get("repository") or ""
        self.token = section.get("token") or ""
        self.context_base = section.get("context") or "hardware-monitoring/tests"
        self.job = str(section.get("job") or "").strip()
        self.commit_status = bool(section.get("commit_status", True))
        self.pr_comment = bool(section.get("pr_comment", True))
        pull = section.get("pull_request")
        self.pull_request = int(pull) if str(pull or "").strip().isdigit() else None
        self.target_url = section.get("target_url") or None
        self.policy = http.HttpPolicy.from_section(section)
        self.env = env
        self.max_failures_listed = max_failures_listed

    def context_name(self, report: RunReport) -> str:
        """The status context: ``context/job/mode`` with the parts that are set."""
        return "/".join(part for part in (self.context_base, self.job, report.mode or "") if part)

    def marker(self, report: RunReport) -> str:
        return f"{GITHUB_MARKER_PREFIX} {self.context_name(report)} -->"

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
                   "context": self.context_name(report)}
        target = self.target_url or report.run_url or report.report_url
        if target:
            payload["target_url"] = target
        return payload

    def comment_body(self, report: RunReport) -> str:
        """The comment's Markdown, at most :data:`GITHUB_MAX_COMMENT_CHARS` long: fewer failed tests
        are listed (the rest counted as "...and N more") until it fits."""
        listed = min(self.max_failures_listed, len(report.failed_tests))
        while True:
            context = template_context(report, listed, marker=self.marker(report))
            body = render(self.env, "notify_github_comment.md", context)
            if len(body) <= GITHUB_MAX_COMMENT_CHARS or listed == 0:
                return body[:GITHUB_MAX_COMMENT_CHARS]
            listed = min(listed - 1, int(listed * GITHUB_MAX_COMMENT_CHARS / len(body)))

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

    def _find_comment(self, session: requests.Session, pr: int, marker: str) -> int | None:
        url: str | None = self._comments_url(pr)
        params: dict[str, Any] | None = {"per_page": 100}
        for _ in range(GITHUB_MAX_COMMENT_PAGES):
            if not url:
                break
            response = http.request(self.policy, "GET", url, session=session, params=params,
                                    headers=self._headers())
            response.raise_for_status()
            for comment in response.json():
                if marker in (comment.get("body") or ""):
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
                attempts += http.attempts(response)
                if response.status_code != 201:
                    return Delivery(self.name, False, f"commit status: {http.answer(self.policy, response)}",
                                    attempts, time.monotonic() - started)
                steps.append("commit status set")
            if self.pr_comment and pr:
                existing = self._find_comment(session, pr, self.marker(report))
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
                attempts += http.attempts(response)
                if response.status_code != expected:
                    return Delivery(self.name, False, f"pull request comment: {http.answer(self.policy, response)}",
                                    attempts, time.monotonic() - started)
                steps.append(what)
        except requests.RequestException as err:
            return Delivery(self.name, False, f"request failed: {type(err).__name__}: {err}",
                            attempts + http.failed_attempts(err), time.monotonic() - started)
        finally:
            session.close()
        return Delivery(self.name, True, "; ".join(steps), attempts, time.monotonic() - started)
