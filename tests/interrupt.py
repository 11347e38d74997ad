"""Ctrl-C (or SIGTERM) for a demo run: start it, wait until it says its tasks are dispatched,
signal it."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def interrupt_after_dispatch(command: list[str], first_line: str, *, signum: int = signal.SIGINT,
                             group: bool = False, **popen: Any) -> tuple[int, str, str]:
    """Run ``command``, send ``signum`` once its first stdout line starts with ``first_line``
    (asserted), and return (exit status, the rest of stdout, stderr). ``group``: the command
    runs in a process group of its own and the signal goes to the whole group, as a terminal's
    Ctrl-C (or a job runner's SIGTERM) does. Killed, with its group, if it outlives 180 s."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=group, **popen)
    try:
        assert proc.stdout.readline().startswith(first_line)
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=180)
    finally:
        if group and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
    return proc.returncode, out, err
