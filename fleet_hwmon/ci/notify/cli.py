"""Command line of ``ci_notification.py``: read the run's outcome, send (or show) the digests.

Exit status: 0 when every chosen channel delivered (or was skipped by its ``notify_on``, or the run
was a dry run), 1 when any failed, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ...reports.jsonio import unwritable_option
from .. import ci_env
from ..report import STATUSES, RunReport, load_report
from ..results_db import ResultsDatabaseError
from .config import ConfigError, channel_sections, load_config, resolve
from .dispatch import plan_channels, send_notifications
from .redact import Redactor

DEFAULT_CONFIG = "notification_config.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ci_notification.py",
        description="Send one digest notification per channel (email, Slack, GitHub, webhook, Apprise) "
                    "about a test run.")
    parser.add_argument("--test-status", choices=STATUSES, help="the run's outcome (default: from the report)")
    parser.add_argument("--test-report", metavar="PATH",
                        help="JUnit XML (.xml), runner summary (.json) or results database (other)")
    parser.add_argument("--run-id", help="with a results database: the run to report (default: latest)")
    parser.add_argument("--notification-config", metavar="PATH",
                        default=os.environ.get("HWMON_NOTIFICATION_CONFIG") or DEFAULT_CONFIG,
                        help="channel configuration (default: $HWMON_NOTIFICATION_CONFIG or %(default)s)")
    parser.add_argument("--channels", help="comma-separated channel sections to use, even if disabled "
                        "(default: the enabled ones)")
    parser.add_argument("--dry-run", action="store_true", help="print exactly what would be sent; send nothing")
    parser.add_argument("--verbose", action="store_true", help="say which channels are used and how each went")
    parser.add_argument("--run-url", help="link to the CI run (default: from GitHub Actions variables)")
    parser.add_argument("--report-url", help="link to the test report")
    parser.add_argument("--commit", help="commit SHA (default: the report's, GITHUB_SHA or git)")
    parser.add_argument("--branch", help="branch name")
    parser.add_argument("--repository", help="owner/name (default: GITHUB_REPOSITORY)")
    parser.add_argument("--pull-request", type=int, help="pull request number (default: from GITHUB_REF)")
    parser.add_argument("--result-json", metavar="PATH", help="write each channel's result as JSON")
    return parser


def build_report(ns: argparse.Namespace) -> RunReport:
    """The report from ``--test-report`` (or an empty one), with explicit options and CI variables
    filling what the report lacks. Raises ``ValueError`` / ``ResultsDatabaseError``."""
    if ns.test_report:
        report = load_report(ns.test_report, ns.run_id)
    elif ns.test_status:
        report = RunReport(status=ns.test_status)
    else:
        raise ValueError("give --test-status, --test-report or both")
    ci = ci_env.github_actions_metadata()
    variables = ci.get("variables", {})
    report = report.with_overrides(status=ns.test_status, run_url=ns.run_url, report_url=ns.report_url,
                                   commit=ns.commit, branch=ns.branch, repository=ns.repository,
                                   pull_request=ns.pull_request)
    return report.with_overrides(
        run_url=None if report.run_url else ci.get("run_url"),
        commit=None if report.commit else ci_env.current_commit(),
        branch=None if report.branch else ci_env.current_branch(),
        repository=None if report.repository else variables.get("GITHUB_REPOSITORY"),
        pull_request=None if report.pull_request else ci.get("pull_request"))


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    problem = unwritable_option([("--result-json", ns.result_json)])
    if problem:  # found now, not after sending (the channels' results would be lost)
        print(f"ci_notification: {problem}; nothing was sent", file=sys.stderr)
        return 2
    redactor = Redactor.from_environ(os.environ)
    try:
        config = load_config(ns.notification_config)
        report = build_report(ns)
        requested = [c.strip() for c in ns.channels.split(",") if c.strip()] if ns.channels else None
        if ns.verbose:
            plan = plan_channels(config, requested)
            print(f"config {ns.notification_config}: channels {', '.join(plan.names) or 'none'}"
                  f"{' (requested)' if plan.explicit else ''}; run status {report.status}, "
                  f"{len(report.failed_tests)} failed test(s)")
            for name in plan.names:
                shown = resolve(channel_sections(config)[name], os.environ, redactor, [], keep_unresolved=True)
                print(f"  {name}: " + redactor.redact(json.dumps(shown, sort_keys=True)))
        deliveries = send_notifications(report, config, channels=requested, dry_run=ns.dry_run,
                                        config_dir=Path(ns.notification_config).parent, redactor=redactor)
    except (ConfigError, ValueError, ResultsDatabaseError) as err:
        print(f"ci_notification: {redactor.redact(err)}", file=sys.stderr)
        return 2
    for delivery in deliveries:
        state = "ok" if delivery.ok else "FAILED"
        line = f"{delivery.channel}: {state}: {delivery.detail}"
        if ns.verbose or not delivery.ok:
            line += f" ({delivery.attempts} attempt(s), {delivery.elapsed_s:.1f} s)"
        print(line, file=sys.stdout if delivery.ok else sys.stderr)
    if ns.result_json:
        Path(ns.result_json).parent.mkdir(parents=True, exist_ok=True)
        results = [{"channel": d.channel, "ok": d.ok, "skipped": d.skipped, "detail": d.detail,
                    "attempts": d.attempts, "elapsed_s": round(d.elapsed_s, 3)} for d in deliveries]
        Path(ns.result_json).write_text(json.dumps(redactor.redact_data(results), indent=2, allow_nan=False) + "\n",
                                        encoding="utf-8")
    return 0 if all(d.ok for d in deliveries) else 1
