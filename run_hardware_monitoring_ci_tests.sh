#!/usr/bin/env bash
# Run the hardware-monitoring test suite the way CI does, locally or in CI.
#
# Every artifact of a run lands in ci_artifacts/<run id>/ with a manifest.json
# (file, kind, size, sha256); the newest N runs are kept.
# Exit status: 0 passed, 1 a test failed or a check (shellcheck, actionlint, ruff) found something,
# 2 usage error (nothing run, nothing recorded), 3 setup failure (Python, venv, install, a missing
# check tool, the results database), 5 no test collected, 130 interrupted (no badge, no notification).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: run_hardware_monitoring_ci_tests.sh [options] [-- pytest args]

Options:
  --mode MODE                quick: the default suite without the long, browser and cluster
                             tests; standard: the default suite (long tests skipped), with
                             JUnit XML and summary.json; full: standard plus verbose output and
                             the HTML test report; long: full plus the long end-to-end tests;
                             comprehensive: the same tests as long. Default: standard.
  --quick, --comprehensive   Same as --mode quick / --mode comprehensive.
  --python CMD               Python (3.11 or newer) used to create the virtual environment (or
                             to run the tests with --no-venv). Default: python3.
  --no-venv                  Use CMD as it is: no virtual environment, no install.
  --no-checks                Skip shellcheck, actionlint and ruff.
  --ci-integration           Record CI metadata (GitHub Actions variables) with the run.
  --generate-badge           Write SVG badges and status.json from the results database.
  --send-notifications       Run ci_notification.py for the run's outcome (a dry run when no
                             channel is enabled, and it says so).
  --notify-channels LIST     Channels to notify (comma-separated; default: enabled ones).
  --keep-runs N              Keep the newest N run folders (default: 10).
  --artifacts-dir DIR        Where run folders go (default: ci_artifacts).
  -h, --help                 Show this help.
  -- ARGS                    Passed to pytest (e.g. -k EXPR or a test path).

Relative paths (options, variables, test paths after --) are relative to the current folder.

Environment:
  BENCHMARK_DB_PATH          Results database (default: <artifacts dir>/test_results.duckdb;
                             run_hardware_monitoring_tests.py alone defaults to
                             hardware_monitoring_test_results.duckdb).
  HWMON_CI_VENV_DIR          Virtual environment folder (default: .venv-ci in the repository).
  HWMON_CI_ARTIFACTS_DIR     Same as --artifacts-dir.
  HWMON_CI_KEEP_RUNS         Same as --keep-runs.
  HWMON_NOTIFICATION_CONFIG  Notification config (default: notification_config.json).
  HWMON_NOTIFY_CHANNELS      Same as --notify-channels.
EOF
}

die() {  # usage error
    printf 'run_hardware_monitoring_ci_tests.sh: %s\n' "$1" >&2
    exit 2
}

setup_failed() {  # the machine or the environment, not the tests
    printf 'run_hardware_monitoring_ci_tests.sh: setup failed: %s\n' "$1" >&2
    exit 3
}

absolute() {  # a path against the folder the script was started from
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$START_DIR/$1" ;;
    esac
}

START_DIR="$(pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODE="standard"
PYTHON_CMD="python3"
USE_VENV=1
RUN_CHECKS=1
CI_INTEGRATION=0
GENERATE_BADGE=0
SEND_NOTIFICATIONS=0
NOTIFY_CHANNELS="${HWMON_NOTIFY_CHANNELS:-}"
KEEP_RUNS="${HWMON_CI_KEEP_RUNS:-10}"
ARTIFACTS_ROOT="${HWMON_CI_ARTIFACTS_DIR:-$ROOT/ci_artifacts}"
PYTEST_ARGS=()

# An option's value is the next word, unless that is another option (`--mode --no-checks`).
needs_value() { [[ $# -ge 2 && "$2" != --* ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --mode) needs_value "$@"; MODE="$2"; shift 2 ;;
        --mode=*) MODE="${1#*=}"; shift ;;
        --quick) MODE="quick"; shift ;;
        --comprehensive) MODE="comprehensive"; shift ;;
        --python) needs_value "$@"; PYTHON_CMD="$2"; shift 2 ;;
        --python=*) PYTHON_CMD="${1#*=}"; shift ;;
        --no-venv) USE_VENV=0; shift ;;
        --no-checks) RUN_CHECKS=0; shift ;;
        --ci-integration) CI_INTEGRATION=1; shift ;;
        --generate-badge) GENERATE_BADGE=1; shift ;;
        --send-notifications) SEND_NOTIFICATIONS=1; shift ;;
        --notify-channels) needs_value "$@"; NOTIFY_CHANNELS="$2"; shift 2 ;;
        --keep-runs) needs_value "$@"; KEEP_RUNS="$2"; shift 2 ;;
        --artifacts-dir) needs_value "$@"; ARTIFACTS_ROOT="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

case "$MODE" in
    quick|standard|full|long|comprehensive) ;;
    *) die "--mode must be quick, standard, full, long or comprehensive, not '$MODE'" ;;
esac
[[ "$KEEP_RUNS" =~ ^[1-9][0-9]{0,5}$ ]] || die "--keep-runs must be a whole number from 1 to 999999, not '$KEEP_RUNS'"

# Test paths after -- are relative to where the script was started; pytest runs from the repository.
for i in "${!PYTEST_ARGS[@]}"; do
    arg="${PYTEST_ARGS[$i]}"
    if [[ "$arg" != -* && "$arg" != /* && -e "$START_DIR/${arg%%::*}" ]]; then
        PYTEST_ARGS[i]="$START_DIR/$arg"
    fi
done
ARTIFACTS_ROOT="$(absolute "$ARTIFACTS_ROOT")"
NOTIFICATION_CONFIG="$(absolute "${HWMON_NOTIFICATION_CONFIG:-$ROOT/notification_config.json}")"
if [[ -n "${BENCHMARK_DB_PATH:-}" ]]; then
    RESULTS_DB="$(absolute "$BENCHMARK_DB_PATH")"
else
    RESULTS_DB="$ARTIFACTS_ROOT/test_results.duckdb"
fi

# --- the Python that runs the tests ---------------------------------------------------------
command -v "$PYTHON_CMD" >/dev/null 2>&1 || setup_failed "Python command not found: $PYTHON_CMD"
PY_VERSION="$("$PYTHON_CMD" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true)"
if ! [[ "$PY_VERSION" =~ ^3\.(1[1-9]|[2-9][0-9])\.[0-9]+$ ]]; then
    setup_failed "'$PYTHON_CMD' is not a working Python 3.11 or newer (it answered: '${PY_VERSION:-nothing}')"
fi

cd "$ROOT"
if ! mkdir -p "$ARTIFACTS_ROOT" 2>/dev/null || [[ ! -w "$ARTIFACTS_ROOT" ]]; then
    setup_failed "cannot create or write the artifacts folder $ARTIFACTS_ROOT (--artifacts-dir / HWMON_CI_ARTIFACTS_DIR)"
fi
if [[ "$USE_VENV" -eq 1 ]]; then
    VENV_DIR="$(absolute "${HWMON_CI_VENV_DIR:-$ROOT/.venv-ci}")"
    VENV_KEY="$({ cat "$ROOT/pyproject.toml"; printf '%s\n' "$PY_VERSION"; } | sha256sum | cut -d' ' -f1)"
    if [[ -x "$VENV_DIR/bin/python" && -f "$VENV_DIR/.hwmon-ci-key" \
          && "$(cat "$VENV_DIR/.hwmon-ci-key")" == "$VENV_KEY" ]]; then
        echo "Reusing virtual environment $VENV_DIR"
    else
        echo "Creating virtual environment $VENV_DIR with $PYTHON_CMD ($PY_VERSION)"
        rm -rf "$VENV_DIR"
        "$PYTHON_CMD" -m venv "$VENV_DIR" || setup_failed "could not create the virtual environment $VENV_DIR"
        if ! { "$VENV_DIR/bin/python" -m pip install --quiet --upgrade pip \
               && "$VENV_DIR/bin/python" -m pip install --quiet -e '.[test]'; }; then
            setup_failed "installing the project into $VENV_DIR failed (pip's error is above)"
        fi
        printf '%s\n' "$VENV_KEY" > "$VENV_DIR/.hwmon-ci-key"
    fi
    PY="$VENV_DIR/bin/python"
else
    PY="$(command -v "$PYTHON_CMD")"
    echo "Using $PY as it is (--no-venv)"
fi
# The check tools (shellcheck, actionlint, ruff) are installed beside that Python.
PATH="$(dirname "$PY"):$PATH"
export PATH

# --- one run ---------------------------------------------------------------------------------
RUN_ID="$("$PY" -c 'from fleet_hwmon.ci.runner import new_run_id; print(new_run_id())')" \
    || setup_failed "$PY cannot import fleet_hwmon (install the project, or drop --no-venv)"
RUN_DIR="$ARTIFACTS_ROOT/$RUN_ID"
mkdir -p "$RUN_DIR" || setup_failed "cannot create the run folder $RUN_DIR"
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then  # later workflow steps (notifications, uploads) find the run here
    printf 'run_dir=%s\n' "$RUN_DIR" >> "$GITHUB_OUTPUT"
fi

CHECK_STATUS=0
if [[ "$RUN_CHECKS" -eq 1 ]]; then
    for tool in shellcheck actionlint ruff; do
        command -v "$tool" >/dev/null 2>&1 \
            || setup_failed "$tool not found beside $PY (pip install '.[test]', or pass --no-checks)"
    done
    echo "Checks: shellcheck, actionlint, ruff"
    check() {
        "$@" 2>&1 | tee -a "$RUN_DIR/checks.log"
        return "${PIPESTATUS[0]}"
    }
    check shellcheck --severity=style run_hardware_monitoring_ci_tests.sh .ci/run || CHECK_STATUS=1
    check actionlint -no-color .github/workflows/*.yml || CHECK_STATUS=1
    check ruff check --no-cache --output-format concise . || CHECK_STATUS=1
    if [[ "$CHECK_STATUS" -ne 0 ]]; then
        echo "Checks found problems (see $RUN_DIR/checks.log); the tests run anyway" >&2
    fi
fi

RUNNER_ARGS=(--mode "$MODE" --run-id "$RUN_ID" --results-db "$RESULTS_DB" --summary-json "$RUN_DIR/summary.json"
             --junit-xml "$RUN_DIR/junit.xml")
case "$MODE" in
    full|long|comprehensive) RUNNER_ARGS+=(--verbose --html-report "$RUN_DIR/test_report.html") ;;
esac
if [[ "$CI_INTEGRATION" -eq 1 ]]; then
    RUNNER_ARGS+=(--ci-integration)
    "$PY" -c 'import json, sys; from fleet_hwmon.ci.ci_env import github_actions_metadata as m
json.dump(m(), open(sys.argv[1], "w"), indent=2, allow_nan=False)' "$RUN_DIR/ci_metadata.json"
fi

# The tests never see a notification secret: they run without any notification variable.
read -r -a SCRUB <<< "$("$PY" -c 'from fleet_hwmon.ci.notify.redact import NOTIFICATION_ENV_VARS as v
print(" ".join("-u " + name for name in v))')"

echo "Run $RUN_ID: mode $MODE, artifacts in $RUN_DIR"
set +e
# tee -i: a Ctrl-C stops the tests, and the runner still gets to say so and record the run.
env "${SCRUB[@]}" "$PY" "$ROOT/run_hardware_monitoring_tests.py" "${RUNNER_ARGS[@]}" \
    -- ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"} 2>&1 | tee -i "$RUN_DIR/test_output.log"
TEST_STATUS="${PIPESTATUS[0]}"
set -e

if [[ "$TEST_STATUS" -eq 2 ]]; then  # a usage error: nothing ran, nothing is kept
    rm -rf "$RUN_DIR"
    exit 2
fi
if [[ "$TEST_STATUS" -eq 130 ]]; then
    echo "Interrupted: no badge and no notification for this run" >&2
    GENERATE_BADGE=0
    SEND_NOTIFICATIONS=0
fi

if [[ "$GENERATE_BADGE" -eq 1 ]]; then
    "$PY" "$ROOT/generate_status_badge.py" --db "$RESULTS_DB" --output-dir "$RUN_DIR/badges" \
        --metric status --metric pass_rate --metric tests --json "$RUN_DIR/status.json" \
        --detail-json "$RUN_DIR/status_detail.json" --trend-dir "$RUN_DIR/badges" \
        || echo "warning: badge generation failed" >&2
fi

if [[ "$SEND_NOTIFICATIONS" -eq 1 ]]; then
    NOTIFY_ARGS=(--result-json "$RUN_DIR/notification.json" --notification-config "$NOTIFICATION_CONFIG")
    if [[ -f "$RUN_DIR/summary.json" ]]; then
        NOTIFY_ARGS+=(--test-report "$RUN_DIR/summary.json")
    else
        NOTIFY_ARGS+=(--test-status failure)
    fi
    if [[ -n "$NOTIFY_CHANNELS" ]]; then
        NOTIFY_ARGS+=(--channels "$NOTIFY_CHANNELS")
    fi
    if [[ -f "$RUN_DIR/test_report.html" ]]; then
        NOTIFY_ARGS+=(--report-url "file://$RUN_DIR/test_report.html")
    fi
    "$PY" "$ROOT/ci_notification.py" "${NOTIFY_ARGS[@]}" \
        || echo "warning: a notification channel failed (see above); the exit status stays the tests'" >&2
fi

"$PY" -m fleet_hwmon.ci.artifacts manifest "$RUN_DIR" --run-id "$RUN_ID"
"$PY" -m fleet_hwmon.ci.artifacts prune "$ARTIFACTS_ROOT" --keep "$KEEP_RUNS"

echo
echo "Results database: $RESULTS_DB"
echo "Artifacts:        $RUN_DIR"
for artifact in summary.json junit.xml test_report.html test_output.log checks.log status.json \
                status_detail.json badges notification.json; do
    if [[ -e "$RUN_DIR/$artifact" ]]; then
        echo "  $RUN_DIR/$artifact"
    fi
done
echo "Manifest:         $RUN_DIR/manifest.json"
echo "Tests exit status: $TEST_STATUS"
if [[ "$TEST_STATUS" -eq 0 && "$CHECK_STATUS" -ne 0 ]]; then
    echo "Checks failed: exit status 1"
    exit 1
fi
exit "$TEST_STATUS"
