"""``mgx runs`` and ``mgx plot``: the runs recorded in a runs database, as a table or JSON,
and their series drawn."""

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

    table = Table(
        caption=Text("losses: the last step's and the lowest; mgx plot loss --run NAME draws them"),
        title=Text(f"{plural(len(runs), 'run')} in {runs_path}"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
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


def _chosen_runs(runs_path: Path, keys: list[str]) -> list[RunInfo]:
    from viz.runs import RunsError, find_run

    runs = list_runs(runs_path)
    if not runs:
        raise RunsError(f"{runs_path} holds no run yet: train one with mgx train")
    return [find_run(runs, key) for key in keys] if keys else [runs[-1]]


def run_plot(
    *, specs: list[str], run_keys: list[str], runs_path: Path, out: Path | None, smooth: int, no_color: bool
) -> None:
    from cli.output import check_writable, fail, info
    from microgpt.files import write_atomic
    from viz.plots import PLOT_SUFFIXES, Line, choose_series, figure_bytes, terminal_plot
    from viz.runs import read_series, series_names

    if smooth < 1:
        fail(f"--smooth must be 1 (no smoothing) or more steps, got {smooth}")
    if out is not None:
        if out.suffix.lower() not in PLOT_SUFFIXES:
            fail(f"cannot draw to {out}: give -o a name ending in .png or .svg (e.g. loss.png)")
        check_writable(out, "-o", "loss.png")
    lines = []
    for run in _chosen_runs(runs_path, run_keys):
        for name in choose_series(series_names(runs_path, run.id), specs or ["loss"]):
            lines.append(Line(run.name, name, *read_series(runs_path, run.id, name)))
    if out is None:
        width, height = console.size
        console.print(
            Text.from_ansi(
                terminal_plot(lines, width=width, height=max(16, height - 4), smooth=smooth, color=not no_color)
            )
        )
        return
    title = ", ".join(dict.fromkeys(line.run for line in lines))
    write_atomic(out, figure_bytes(lines, out.suffix.lower()[1:], smooth=smooth, title=title))
    info(f"wrote {out}: {plural(len(lines), 'series', 'series')} of {title}")
