"""``mgx runs``: the runs recorded in a runs database, as a table or JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.text import Text

from cli.output import console, plural
from viz.runs import RunInfo, list_runs


def _config_text(config: dict) -> str:
    """``1L 16w 4h 16ctx``: layers, width, heads, context."""
    keys = (("n_layer", "L"), ("n_embd", "w"), ("n_head", "h"), ("block_size", "ctx"))
    return " ".join(f"{config[key]}{unit}" for key, unit in keys if key in config)


def _loss_text(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def _started_text(run: RunInfo) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(run.started))


def run_runs(*, runs_path: Path, as_json: bool) -> None:
    runs = list_runs(runs_path)
    if as_json:
        console.print_json(json.dumps([run.to_json() for run in runs], allow_nan=False))
        return
    from rich import box
    from rich.table import Table

    table = Table(caption=Text("losses: the last step's and the lowest; mgx plot loss --run NAME draws them"), title=Text(f"{plural(len(runs), 'run')} in {runs_path}"), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("name", "status", "steps", "final", "best", "data", "config", "started"):
        numeric = column in ("steps", "final", "best")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True, min_width=len(column))
    for run in runs:
        table.add_row(
            run.name,
            run.status,
            f"{run.done}/{run.steps}",
            _loss_text(run.final_loss),
            _loss_text(run.best_loss),
            Path(run.data).name if run.data else "",
            _config_text(run.config),
            _started_text(run),
        )
    console.print(table)
