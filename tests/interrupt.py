"""Ctrl-C for a demo run: start it, wait until it says its tasks are dispatched, interrupt it."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def interrupt_after_dispatch(command: list[str], first_line: str, **popen: Any) -> tuple[int, str, str]:
    """Run ``command``, send SIGINT once its first stdout line starts with ``first_line``
    (asserted), and return (exit status, the rest of stdout, stderr). Killed if it outlives 180 s."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        assert proc.stdout.readline().startswith(first_line)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    return proc.returncode, out, err
