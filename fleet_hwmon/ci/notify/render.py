"""Notification templates: a sandboxed Jinja2 environment and the context every template gets.

Templates live in ``fleet_hwmon/ci/templates/notify_*``; a config's ``templates_dir`` may hold
files of the same names to override them (they run in the sandbox, so a template can read the
context but not reach Python internals). Context keys: ``status`` (``success`` / ``failure``),
``passed`` (bool), ``counts``, ``total``, ``failed_tests`` (at most ``max_failures_listed``, each
with ``nodeid``, ``outcome``, ``message``), ``more_failures`` (how many were left out),
``flaky_tests`` (tests that failed, then passed on their rerun: ``nodeid``, ``message``),
``commit``, ``commit_short``, ``branch``, ``repository``, ``run_id``, ``run_url``, ``report_url``,
``duration_s``, ``mode``, ``marker`` (the hidden GitHub comment marker).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ...printable import template_value
from ..report import RunReport

TEMPLATE_NAMES = ("notify_slack.txt", "notify_email_subject.txt", "notify_email_body.txt",
                  "notify_github_comment.md", "notify_github_status.txt", "notify_webhook_title.txt",
                  "notify_apprise_body.txt")
DEFAULT_MAX_FAILURES_LISTED = 20


def single_line(text: Any, limit_chars: int = 200) -> str:
    """Collapse all whitespace (CR, LF, tabs) into single spaces; cut to ``limit_chars`` with an ellipsis."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit_chars else line[: max(0, limit_chars - 1)].rstrip() + "…"


def shorten(text: Any, limit_chars: int = 500) -> str:
    """``text`` cut to ``limit_chars`` (line breaks kept) with a note of how much was left out."""
    text = "" if text is None else str(text)
    if len(text) <= limit_chars:
        return text
    return text[:limit_chars].rstrip() + f"\n… ({len(text) - limit_chars} more characters)"


def slack_escape(text: Any) -> str:
    """Escape ``&``, ``<`` and ``>`` as Slack's mrkdwn requires (so ``<`` cannot form a link)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: Any) -> str:
    """A URL made safe inside Slack's ``<url|text>``: ``&``, ``<``, ``>`` escaped and ``|`` (the
    separator, after which text could ping ``<!channel>``) percent-encoded."""
    return slack_escape(str(url).replace("|", "%7C"))


def md_fence(text: Any) -> str:
    """``text`` in a Markdown code fence longer than any backtick run inside it."""
    text = "" if text is None else str(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def make_environment(templates_dir: str | Path | None = None) -> SandboxedEnvironment:
    """The sandboxed environment: the user's ``templates_dir`` first, then the packaged templates."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir:
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(jinja2.PackageLoader("fleet_hwmon.ci", "templates"))
    env = SandboxedEnvironment(loader=jinja2.ChoiceLoader(loaders), autoescape=False,
                               undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                               keep_trailing_newline=False, finalize=template_value)
    env.filters.update(single_line=single_line, shorten=shorten, slack_escape=slack_escape, slack_link=slack_link,
                       md_fence=md_fence)
    return env


def template_context(report: RunReport, max_failures_listed: int = DEFAULT_MAX_FAILURES_LISTED,
                     marker: str = "") -> dict[str, Any]:
    """The context of every template (see the module docstring) for one run."""
    listed = report.failed_tests[:max_failures_listed]
    return {
        "status": report.status, "passed": report.status == "success", "counts": dict(report.counts),
        "total": report.total,
        "failed_tests": [{"nodeid": t.nodeid, "outcome": t.outcome, "message": t.message or ""} for t in listed],
        "more_failures": max(0, len(report.failed_tests) - len(listed)),
        "flaky_tests": [{"nodeid": t.nodeid, "message": t.message or ""} for t in report.flaky_tests],
        "commit": report.commit or "", "commit_short": (report.commit or "")[:8], "branch": report.branch or "",
        "repository": report.repository or "", "run_id": report.run_id or "", "run_url": report.run_url or "",
        "report_url": report.report_url or "",
        "duration_s": report.duration_s, "mode": report.mode or "", "marker": marker,
    }


def render(env: SandboxedEnvironment, name: str, context: dict[str, Any]) -> str:
    """Render one template to text (stripped of leading / trailing blank space)."""
    return env.get_template(name).render(**context).strip()
