"""A CI run's artifact folder: ``manifest.json`` (file, kind, size, sha256) and keeping the last N runs.

Command line (used by ``run_hardware_monitoring_ci_tests.sh``)::

    python -m fleet_hwmon.ci.artifacts manifest RUN_DIR [--run-id ID]
    python -m fleet_hwmon.ci.artifacts prune ARTIFACTS_ROOT --keep N
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"

_KINDS = {".xml": "junit-xml", ".html": "html-report", ".svg": "badge", ".log": "log", ".duckdb": "database"}
_JSON_KINDS = {"status.json": "status-json", "status_detail.json": "status-detail", "summary.json": "run-summary",
               "ci_metadata.json": "ci-metadata", "notification.json": "notification-result"}


def artifact_kind(path: Path) -> str:
    """A short kind for a file name: ``junit-xml``, ``html-report``, ``badge``, ``status-json``, ..."""
    if path.name in _JSON_KINDS:
        return _JSON_KINDS[path.name]
    return _KINDS.get(path.suffix, "json" if path.suffix == ".json" else "file")


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks of ``chunk_bytes``."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(run_dir: str | Path, run_id: str | None = None) -> dict[str, Any]:
    """Describe every file under ``run_dir`` (except the manifest) in ``run_dir/manifest.json``.

    Returns the manifest: ``{"run_id", "created_at" (UTC ISO), "files": [{"file" (relative, POSIX),
    "kind", "size_bytes", "sha256"}]}``, files sorted by path.
    """
    root = Path(run_dir)
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        files.append({"file": path.relative_to(root).as_posix(), "kind": artifact_kind(path),
                      "size_bytes": path.stat().st_size, "sha256": sha256_of(path)})
    manifest = {"run_id": run_id or root.name, "created_at": datetime.now(timezone.utc).isoformat(),
                "files": files}
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return manifest


def prune_runs(artifacts_root: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` run folders under ``artifacts_root``; return those removed.

    Run folders are the sub-folders whose name starts with a digit (run ids start with the UTC
    time, so name order is time order). Other files and folders are left alone. ``keep`` < 1
    raises ``ValueError``.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    root = Path(artifacts_root)
    if not root.is_dir():
        return []
    runs = sorted(p for p in root.iterdir() if p.is_dir() and p.name[:1].isdigit())
    doomed = runs[:-keep]
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet_hwmon.ci.artifacts")
    sub = parser.add_subparsers(dest="command", required=True)
    manifest = sub.add_parser("manifest", help="write RUN_DIR/manifest.json")
    manifest.add_argument("run_dir")
    manifest.add_argument("--run-id")
    prune = sub.add_parser("prune", help="keep only the newest N run folders")
    prune.add_argument("artifacts_root")
    prune.add_argument("--keep", type=int, default=10)
    ns = parser.parse_args(argv)
    if ns.command == "manifest":
        result = write_manifest(ns.run_dir, ns.run_id)
        print(f"manifest: {Path(ns.run_dir) / MANIFEST_NAME} ({len(result['files'])} files)")
    else:
        for path in prune_runs(ns.artifacts_root, ns.keep):
            print(f"removed old run {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
