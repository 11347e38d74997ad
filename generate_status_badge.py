#!/usr/bin/env python3
"""SVG status badges and shields endpoint JSON for the hardware-monitoring test suite.

From the results database (``--db``, default ``$BENCHMARK_DB_PATH``; a missing file is an error,
exit status 2, unless ``--allow-missing`` asks for grey "unknown" badges)::

    python generate_status_badge.py --output-dir badges --metric status --metric pass_rate \\
        --days 7 --style flat --json status.json --detail-json status_detail.json --trend-dir badges

One badge of your own::

    python generate_status_badge.py --label coverage --value 87.5 --output coverage.svg
    python generate_status_badge.py --label "R&D <gpu>" --message "p95 < 80%" --color blue --output x.svg

Python API: :func:`generate_badge_svg` and :func:`get_test_status` (logic in :mod:`fleet_hwmon.ci`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fleet_hwmon.ci.badges import STYLES, auto_color, generate_badge_svg, threshold_color
from fleet_hwmon.ci.results_db import ResultsDatabaseError
from fleet_hwmon.ci.results_db import DEFAULT_RESULTS_DB
from fleet_hwmon.ci.status import METRICS, endpoint_json, flaky_tests, get_test_status, metric_badge
from fleet_hwmon.ci.trend import trend_charts
from fleet_hwmon.printable import printable
from fleet_hwmon.reports.jsonio import unwritable_option

__all__ = ["generate_badge_svg", "get_test_status", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="generate_status_badge.py", description=__doc__.split("\n")[0])
    parser.add_argument("--db", default=os.environ.get("BENCHMARK_DB_PATH") or DEFAULT_RESULTS_DB,
                        help="results database (default: $BENCHMARK_DB_PATH, else %(default)s); "
                             "a missing file is an error unless --allow-missing")
    parser.add_argument("--allow-missing", action="store_true",
                        help="when --db does not exist, write grey 'unknown' badges instead of failing "
                             "(e.g. to publish placeholders before the first run)")
    parser.add_argument("--days", type=float, default=1.0, help="window for the pass rate, in days")
    parser.add_argument("--metric", action="append", choices=METRICS,
                        help="badge to write (repeatable; default: status and pass_rate)")
    parser.add_argument("--style", choices=STYLES, default="flat")
    parser.add_argument("--output-dir", default="badges", help="folder for <metric>.svg (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="write a shields endpoint JSON (exactly its schema)")
    parser.add_argument("--detail-json", metavar="PATH",
                        help="write the details (latest run, window counts, flaky tests) as JSON")
    parser.add_argument("--trend-dir", metavar="DIR",
                        help="write pass_rate_trend.svg and duration_trend.svg (pygal charts) there")
    parser.add_argument("--trend-runs", type=int, default=30, help="runs in the trend charts (default: 30)")
    parser.add_argument("--flaky-window", type=int, default=20,
                        help="--detail-json lists tests flaky in any of the last M runs (default: 20)")
    parser.add_argument("--json-metric", choices=METRICS, default="status", help="metric of the --json document")
    custom = parser.add_argument_group("a single badge of your own (instead of the database)")
    custom.add_argument("--label", help="left text")
    custom.add_argument("--message", help="right text")
    custom.add_argument("--value", type=float, help="a number (percent) coloured by thresholds")
    custom.add_argument("--color", help="shields colour name or hex (default: from status or thresholds)")
    custom.add_argument("--output", help="SVG file for the single badge (default: stdout)")
    return parser


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")


def _check_options(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> None:
    """Refuse, before anything is read or written, numbers out of range and output paths that
    cannot be written (exit status 2, one line): a badge set is never left half written."""
    if ns.value is not None and not math.isfinite(ns.value):
        parser.error(f"--value must be a finite number, not {ns.value}")
    if not (0 < ns.days <= 36500):
        parser.error(f"--days must be more than 0 and at most 36500, not {ns.days:g}")
    for option, count in (("--trend-runs", ns.trend_runs), ("--flaky-window", ns.flaky_window)):
        if count < 1:
            parser.error(f"{option} must be at least 1, not {count}")
    single = ns.label is not None or ns.message is not None or ns.value is not None
    problem = (unwritable_option([("--output", ns.output)]) if single else
               unwritable_option([("--json", ns.json), ("--detail-json", ns.detail_json)],
                                 [("--output-dir", ns.output_dir), ("--trend-dir", ns.trend_dir)]))
    if problem:
        parser.error(problem)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    ns.db = ns.db or os.environ.get("BENCHMARK_DB_PATH") or DEFAULT_RESULTS_DB  # --db "$UNSET": the default
    _check_options(parser, ns)
    try:
        if ns.label is not None or ns.message is not None or ns.value is not None:
            message = ns.message if ns.message is not None else (f"{ns.value:g}%" if ns.value is not None else "")
            color = ns.color or (threshold_color(ns.value) if ns.value is not None else auto_color(message))
            svg = generate_badge_svg(ns.label or "", message, color, ns.style)
            if ns.output:
                _write(Path(ns.output), svg)
            else:
                sys.stdout.write(svg)
            return 0
        if not ns.allow_missing and not Path(ns.db).exists():
            raise ResultsDatabaseError(ns.db, "no such file; check --db / BENCHMARK_DB_PATH, or pass "
                                       "--allow-missing to write 'unknown' badges")
        status = get_test_status(ns.db, days=ns.days)
        for metric in ns.metric or ["status", "pass_rate"]:
            label, message, color = metric_badge(status, metric)
            _write(Path(ns.output_dir) / f"{metric}.svg", generate_badge_svg(label, message, color, ns.style))
        if ns.json:
            document = endpoint_json(status, ns.json_metric)
            _write(Path(ns.json), json.dumps(document, indent=2, allow_nan=False) + "\n")
        if ns.detail_json:
            detail = {**status, "flaky_tests": flaky_tests(ns.db, ns.flaky_window)}
            _write(Path(ns.detail_json), json.dumps(detail, indent=2, allow_nan=False, default=str) + "\n")
        if ns.trend_dir and Path(ns.db).exists():
            for name, svg in trend_charts(ns.db, ns.trend_runs).items():
                _write(Path(ns.trend_dir) / name, svg)
        print(printable(f"status: {status['status']} "
                        f"({status.get('reason') or 'latest run ' + status['latest_run']['run_id']})"))
    except (ValueError, ResultsDatabaseError) as err:
        print(f"generate_status_badge: {printable(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # written after the checks above: a full disk, a file removed meanwhile
        print(f"generate_status_badge: cannot write: {printable(str(err))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
