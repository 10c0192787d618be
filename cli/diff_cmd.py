"""``mgx diff weights A B``: two checkpoints, or two snapshots of a recorded run (RUN@STEP)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich.text import Text

from cli.output import console, fail, info
from viz.diff import WeightsDiff, WeightsSide, diff_weights, matrices_of
from viz.style import counted

_SNAPSHOT = re.compile(r"^(?P<run>.+)@(?P<step>\d+)$")


def _side(arg: str, runs_path: Path) -> WeightsSide:
    """A checkpoint file, or RUN@STEP: a snapshot in the runs database."""
    path = Path(arg)
    if path.is_file():
        from microgpt import checkpoint as ckpt_io
        from microgpt.model import weight_shapes

        ckpt = ckpt_io.load(path)
        shapes = weight_shapes(ckpt.model.config)
        m = matrices_of(ckpt.state.m, shapes) if ckpt.state.m else None
        v = matrices_of(ckpt.state.v, shapes) if ckpt.state.v else None
        return WeightsSide(arg, ckpt.model.weight_data(), ckpt.state.step, m, v)
    match = _SNAPSHOT.match(arg)
    if match is None:
        fail(f"{arg} is neither a checkpoint file nor RUN@STEP (a snapshot of a recorded run, e.g. model@100)")
    from viz.runs import find_run, list_runs, read_snapshot

    run = find_run(list_runs(runs_path), match["run"])
    step = int(match["step"])
    snapshot = read_snapshot(runs_path, run.id, step)
    kinds = {kind: {name: parts[kind] for name, parts in snapshot.items() if kind in parts} for kind in ("m", "v")}
    weights = {name: parts["data"] for name, parts in snapshot.items()}
    return WeightsSide(f"{run.name}@{step}", weights, step, kinds["m"] or None, kinds["v"] or None)


def _num(x: float) -> str:
    return f"{x:.4g}"


def _table(*columns: str):
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if i else "left", no_wrap=True)
    return table


def run_diff_weights(*, a: str, b: str, pattern: str | None, top: int, runs_path: Path, as_json: bool) -> None:
    if top < 0:
        fail(f"--top must be 0 or more, got {top}")
    diff = diff_weights(_side(a, runs_path), _side(b, runs_path), pattern, top)
    if as_json:
        console.print_json(json.dumps(diff.to_json(), allow_nan=False))
        return
    _print(diff)


def _step(step: int | None) -> str:
    return "" if step is None else f" (step {step})"


def _print(diff: WeightsDiff) -> None:
    console.print(Text(f"A {diff.a}{_step(diff.step_a)}  →  B {diff.b}{_step(diff.step_b)}"))
    if diff.identical:
        console.print(Text("no weight differs: every selected element is equal on both sides", style="green"))
        return
    table = _table("matrix", "shape", "‖A‖", "‖B‖", "‖B−A‖", "changed")
    adam = _table("Adam's moments", "‖m‖ A", "‖m‖ B", "‖v‖ A", "‖v‖ B")
    for m in diff.matrices:
        if not m.comparable:
            where = "only in B" if m.shape_a is None else "only in A" if m.shape_b is None else "shapes differ"
            shapes = " vs ".join("-" if s is None else f"{s[0]}×{s[1]}" for s in (m.shape_a, m.shape_b))
            table.add_row(Text(m.name), shapes, "", "", "", where)
            continue
        shape = f"{m.shape_a[0]}×{m.shape_a[1]}"
        table.add_row(
            Text(m.name), shape, _num(m.norm_a), _num(m.norm_b), _num(m.norm_change), f"{m.changed}/{m.elements}"
        )
        if len(m.moments) == 2:
            adam.add_row(Text(m.name), *(_num(x) for kind in ("m", "v") for x in m.moments[kind]))
    console.print(table)
    if adam.row_count:
        console.print(adam)
    if diff.largest:
        console.print(Text(f"largest changes ({counted(len(diff.largest), 'element')}):", style="bold"))
        width = max(len(c.tag) for c in diff.largest)
        for c in diff.largest:
            console.print(Text(f"  {c.tag:<{width}}  {_num(c.a):>10} → {_num(c.b):<10} ({c.delta:+.4g})"))
    info("norms are 2-norms over the selected elements; --json has every number")
