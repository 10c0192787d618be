"""``mgx diff weights A B``: two checkpoints, or two snapshots of a recorded run (RUN@STEP)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich.text import Text

from cli.output import console, fail, info
from viz.diff import WeightsDiff, WeightsSide, diff_weights
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
        m = ckpt_io.named_matrices(ckpt.state.m, shapes) if ckpt.state.m else None
        v = ckpt_io.named_matrices(ckpt.state.v, shapes) if ckpt.state.v else None
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


def _edit_of(text: str):
    """``--patch-b``: mgx patch's edits written kind:...: set:PATTERN=VALUE, scale:PATTERN=FACTOR,
    mean:PATTERN (over 50 documents) or from:WORD:PATTERN."""
    from viz.patch import Edit

    kind, sep, rest = text.partition(":")
    word, sep_word, pattern = rest.partition(":")
    if (
        not sep
        or kind not in ("set", "scale", "mean", "from")
        or (kind == "from" and not (sep_word and word and pattern))
    ):
        fail(
            f"--patch-b {text!r} is not an edit: write set:PATTERN=VALUE, scale:PATTERN=FACTOR, mean:PATTERN or "
            "from:WORD:PATTERN (e.g. set:layer0.attn.h2.out=0)"
        )
    if kind in ("set", "scale"):
        return Edit.assignment(kind, rest)
    return Edit("mean", rest) if kind == "mean" else Edit("from", pattern, word=word)


def _columns(trace) -> tuple[list[str], list[float], list[float]]:
    """Ids, data and grads, read at once: a later graph of the same model zeroes its weights' grads."""
    return list(trace.ids), [n.data for n in trace.nodes], [n.grad for n in trace.nodes]


def run_diff_graph(
    *, choice, b: dict, patch_b: str | None, tolerance: float, top: int, as_json: bool, out: Path | None = None
) -> None:
    from dataclasses import replace

    from cli.common import build_token_graph
    from viz.diff import diff_graphs

    if tolerance < 0:
        fail(f"--tolerance must be 0 or more, got {tolerance}")
    given_b = {key: value for key, value in b.items() if value is not None}
    if patch_b is not None and given_b:
        fail("--patch-b compares a graph with its own patched replay: give it without other -b options")
    if patch_b is None and not given_b:
        fail("side B is side A: give --checkpoint-b, --word-b, --pos-b, --token-b, --target-b or --patch-b")
    edit = None if patch_b is None else _edit_of(patch_b)
    if out is not None:
        from cli.view_cmd import check_page_out

        check_page_out(out, "mgx diff graph -o writes the viewer coloured by the difference", "diff.html")
    built_a = build_token_graph(choice)
    trace_a = built_a.trace
    ids_a, data_a, grad_a = _columns(trace_a)
    groups_a = [trace_a.group_of(i) for i in range(len(ids_a))]
    label_a = _label(built_a)
    if edit is not None:
        from cli.patch_cmd import edit_values
        from viz.patch import apply_edits

        notes: list[str] = []
        result = apply_edits(trace_a, [edit], edit_values(built_a, choice.data, 50, notes), backward=True)
        for note in notes:
            info(note)
        ids_b, data_b, grad_b, label_b = ids_a, result.after, result.grads_after, f"{label_a} with {edit}"
    else:
        choice_b = replace(choice, **given_b)
        built_b = build_token_graph(choice_b)
        ids_b, data_b, grad_b = _columns(built_b.trace)
        label_b = _label(built_b)
    diff = diff_graphs(label_a, label_b, ids_a, ids_b, groups_a, data_a, data_b, grad_a, grad_b, tolerance)
    if as_json:
        console.print_json(json.dumps(diff.to_json(), allow_nan=False))
    else:
        _print_graph_diff(diff, top)
    if out is not None:
        from cli.graph_cmd import token_built
        from cli.view_cmd import write_html
        from viz.page import Comparison

        compare = Comparison.of(label_b, ids_a, ids_b, data_b, grad_b)
        write_html(out, choice, "block", None, None, compare, token_built(built_a))


def _within(group: str, node: str) -> str:
    """A node's id as seen from inside its group: ``[3]`` for ``layer0.attn.h0.q[3]@pos2``."""
    path, _, pos = group.partition("@")
    if node.startswith(path):
        rest = node[len(path) :]
        return rest.replace(f"@{pos}", "") if pos else rest
    return node


def _label(built) -> str:
    spec = built.spec
    return f"{built.loaded.description}, {spec.word!r} at position {spec.pos}"


def _print_graph_diff(diff, top: int) -> None:
    console.print(Text(f"A {diff.a}"))
    console.print(Text(f"B {diff.b}"))
    console.print(Text(f"{diff.matched:,} nodes matched by id"))
    for side, nodes in (("A", diff.only_a), ("B", diff.only_b)):
        if nodes:
            shown = ", ".join(nodes[:5]) + (f" … ({len(nodes):,} in all)" if len(nodes) > 5 else "")
            console.print(Text(f"only in {side}: {shown}", style="yellow"))
    if diff.identical:
        console.print(Text("no node differs: every matched node has the same data and grad", style="green"))
        return
    if diff.first is not None:
        f = diff.first
        console.print(Text(f"first difference (graph order): {f.node}  {_num(f.a)} → {_num(f.b)}", style="bold"))
    table = _table("tensor", "nodes", "max |Δdata|", "where", "max |Δgrad|", "where")
    for g in diff.groups[:top]:
        cells = []
        for change in (g.data, g.grad):
            cells += ["", ""] if change is None else [_num(change.size), Text(_within(g.group, change.node))]
        table.add_row(Text(g.group), str(g.nodes), *cells)
    console.print(table)
    if len(diff.groups) > top:
        info(f"{len(diff.groups) - top} more tensors differ: --top N shows more, --json all")
