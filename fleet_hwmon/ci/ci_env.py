"""What the run knows about its CI and its commit: GitHub Actions variables, git, the platform."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GITHUB_VARIABLES = ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_RUN_NUMBER", "GITHUB_RUN_ATTEMPT",
                    "GITHUB_WORKFLOW", "GITHUB_JOB", "GITHUB_SHA", "GITHUB_REF", "GITHUB_REF_NAME",
                    "GITHUB_HEAD_REF", "GITHUB_BASE_REF", "GITHUB_EVENT_NAME", "GITHUB_ACTOR",
                    "GITHUB_SERVER_URL", "RUNNER_OS", "RUNNER_ARCH")


def github_actions_metadata(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """CI metadata from the GitHub Actions variables that are set (an empty dict outside Actions).

    Returns ``{"provider": "github-actions", "run_id", "run_url", "pull_request" (int or None),
    "variables": {name: value}}``. No secret is read: only the documented ``GITHUB_*`` /
    ``RUNNER_*`` context variables listed in :data:`GITHUB_VARIABLES`.
    """
    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTIONS") != "true" and not env.get("GITHUB_RUN_ID"):
        return {}
    variables = {name: env[name] for name in GITHUB_VARIABLES if env.get(name)}
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    run_url = None
    if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
        run_url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return {"provider": "github-actions", "run_id": env.get("GITHUB_RUN_ID"), "run_url": run_url,
            "pull_request": pull_request_number(env.get("GITHUB_REF")), "variables": variables}


def pull_request_number(ref: str | None) -> int | None:
    """The PR number in a ``refs/pull/<n>/merge`` (or ``/head``) ref, else ``None``."""
    match = re.fullmatch(r"refs/pull/(\d+)/(?:merge|head)", ref or "")
    return int(match.group(1)) if match else None


def _git(*args: str, cwd: str | None = None) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value else None


def pull_request_head_sha(environ: Mapping[str, str] | None = None) -> str | None:
    """The head commit of the pull request a GitHub Actions run is for: ``pull_request.head.sha`` in
    the event payload (the file ``GITHUB_EVENT_PATH`` names); ``None`` outside a pull-request event
    or when the payload cannot be read. On a pull request ``GITHUB_SHA`` is GitHub's test-merge
    commit, which the pull request never shows; statuses belong on this one."""
    env = os.environ if environ is None else environ
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    head = ((payload.get("pull_request") or {}).get("head") or {}) if isinstance(payload, dict) else {}
    sha = head.get("sha") if isinstance(head, dict) else None
    return sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}", sha) else None


def current_commit(cwd: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The commit a run tests: a pull request's head commit (:func:`pull_request_head_sha`), else
    ``GITHUB_SHA`` when set, else ``git rev-parse HEAD`` in ``cwd``, else ``None``."""
    env = os.environ if environ is None else environ
    return pull_request_head_sha(env) or env.get("GITHUB_SHA") or _git("rev-parse", "HEAD", cwd=cwd)


def current_branch(cwd: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """``GITHUB_HEAD_REF`` / ``GITHUB_REF_NAME`` when set, else the checked-out git branch."""
    env = os.environ if environ is None else environ
    return env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or _git(
        "rev-parse", "--abbrev-ref", "HEAD", cwd=cwd)
