"""The demo's live terminal view (rich): workers with their load, task counts, alerts, progress."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from fleet_hwmon.printable import printable


def _plain(text: str) -> Text:
    return Text(printable(text))


def _load(value: float | None, simulated: bool = False) -> Text:
    if value is None:
        return Text("n/a", style="dim")
    style = "bold red" if value >= 90 else "yellow" if value >= 70 else "green"
    text = Text(f"{value:5.1f}%", style=style)
    if simulated:
        text.append(" sim", style="magenta")
    return text


class LiveView:
    """Builds one frame of the live view; the caller refreshes it with ``rich.live.Live``."""

    def __init__(self, total_tasks: int) -> None:
        self.progress = Progress(TextColumn("[bold]tasks"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
        self._bar = self.progress.add_task("tasks", total=total_tasks, detail="")

    def frame(self, workers: Mapping[str, Mapping[str, Any]], counts: Mapping[str, int], alerts: int,
              running: Mapping[str, list[str]]) -> Group:
        table = Table(title="Workers", expand=False, header_style="bold")
        for column in ("worker", "profile", "cpu", "memory", "gpu", "running", "state"):
            # every column keeps its text whole on a narrow terminal; only the task list folds
            table.add_column(column, justify="right" if column in ("cpu", "memory", "gpu") else "left",
                             no_wrap=column != "running", overflow="fold")
        for worker_id, info in workers.items():
            current = info.get("current") or {}
            simulated = "gpus" in (info.get("simulated_fields") or [])
            state = info.get("excluded_reason") or info.get("stale") or "ok"
            # names come from the workers: shown as plain text (no rich markup), printable
            table.add_row(_plain(worker_id), _plain(str((info.get("capabilities") or {}).get("profile", ""))),
                          _load(current.get("cpu_percent")), _load(current.get("memory_percent")),
                          _load(current.get("gpu_percent"), simulated),
                          _plain(", ".join(running.get(worker_id, [])) or "-"),
                          Text(printable(state), style="green" if state == "ok" else "red"))
        done = counts.get("completed", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
        detail = (f"running {counts.get('running', 0)} · queued {counts.get('queued', 0)} · "
                  f"failed {counts.get('failed', 0)} · alerts {alerts}")
        self.progress.update(self._bar, completed=done, detail=detail)
        return Group(table, self.progress)
