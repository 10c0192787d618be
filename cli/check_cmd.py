"""``mgx check grad`` and ``mgx check nan``: is a gradient right, and where was a NaN born?

Both build the graph the other views build (one token, or a whole name with ``--word`` and
no ``--pos``) and read it with viz/check.py: the finite-difference check replays the
recorded graph, so the model is never run again.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from cli.common import TokenChoice
from cli.output import console, err_console, fail, info, plural
from microgpt.numbers import to_json_number

FINDINGS = 4  # the exit code when a check finds a problem (1 is bad input)


def _num(x: float) -> str:
    return f"{x:.6g}"


def _err(x: float) -> str:
    return f"{x:.1e}"


def run_check_grad(
    *,
    choice: TokenChoice,
    pattern: str | None,
    op: str | None,
    step: float,
    atol: float,
    rtol: float,
    limit: int,
    as_json: bool,
) -> None:
    import math

    if not (math.isfinite(step) and step > 0):
        fail(f"--step must be a positive number, got {step}")
    if not (math.isfinite(atol) and atol >= 0) or not (math.isfinite(rtol) and rtol >= 0):
        fail(f"--atol and --rtol must be 0 or more, got {atol} and {rtol}")
    if limit < 0:
        fail(f"--limit must be 0 (show all) or more, got {limit}")
    if pattern is not None:
        from viz.pattern import Pattern

        Pattern.parse(pattern)  # a malformed pattern fails before the model loads

    from cli.graph_cmd import build
    from viz.check import check_gradients
    from viz.pattern import select_or_explain

    built = build(choice)
    trace = built.trace
    if pattern is None:
        selection = [i for i, node in enumerate(trace.nodes) if node.op.name == "param"]
        if op is not None:
            selection = [i for i in selection if trace.nodes[i].op.name == op]
        what = "parameter"
    else:
        selection = select_or_explain(trace, pattern, op)
        what = "node"
    if not selection:
        fail(f"no {what} of this graph matches --op {op!r}: drop --op or choose another op")
    info(built.title)
    info(
        f"checking {plural(len(selection), what)}: central differences, "
        f"step {step:g}; pass where |a − n| ≤ {atol:g} + {rtol:g}·|n|"
    )

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    )  # fmt: skip
    with progress:
        task = progress.add_task("check", total=len(selection))
        results = check_gradients(
            trace, selection, step=step, atol=atol, rtol=rtol,
            on_progress=lambda done, total: progress.update(task, completed=done),
        )  # fmt: skip

    def badness(r) -> float:  # how many tolerances off: above 1 fails
        if math.isnan(r.abs_error):
            return math.inf
        return r.abs_error / (atol + rtol * abs(r.numeric)) if atol + rtol * abs(r.numeric) > 0 else r.abs_error

    ranked = sorted(results, key=lambda r: (not r.failed, r.kink, -badness(r), r.node))
    failures = [r for r in results if r.failed]
    kinks = [r for r in results if r.kink]
    groups: dict[str, list] = defaultdict(list)
    for r in results:
        groups[trace.group_of(r.node)].append(r)
    group_rows = sorted(
        groups.items(), key=lambda kv: (-sum(r.failed for r in kv[1]), -max(badness(r) for r in kv[1]), kv[0])
    )

    if as_json:
        document = {
            "title": built.title,
            "step": step,
            "atol": atol,
            "rtol": rtol,
            "checked": len(results),
            "passed": sum(r.passed and not r.kink for r in results),
            "failed": len(failures),
            "kinks": len(kinks),
            "elements": [_element_json(trace, r) for r in ranked],
            "groups": [
                {
                    "group": name,
                    "count": len(rs),
                    "failed": sum(r.failed for r in rs),
                    "kinks": sum(r.kink for r in rs),
                    "worst": trace.ids[max(rs, key=badness).node],
                }
                for name, rs in group_rows
            ],
        }
        if failures:
            document["why"] = _path_json(trace, ranked[0].node)
        sys.stdout.write(json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    else:
        shown = ranked if limit == 0 else ranked[:limit]
        width = max(len(trace.ids[r.node]) for r in shown)
        console.out(
            f"{'node':<{width}}  {'analytic':>13}  {'numeric':>13}  {'|a−n|':>7}  {'rel':>7}  verdict",
            highlight=False,
        )
        for r in shown:
            verdict = r.verdict if r.kink else f"{r.verdict} ({r.words})"
            console.out(
                f"{trace.ids[r.node]:<{width}}  {_num(r.analytic):>13}  {_num(r.numeric):>13}  "
                f"{_err(r.abs_error):>7}  {_err(r.rel_error):>7}  {verdict}",
                highlight=False,
            )
        if len(shown) < len(ranked):
            console.out(f"… {len(ranked) - len(shown):,} more (--limit 0 shows all)", highlight=False)
        console.out("", highlight=False)
        console.out("per tensor:", highlight=False)
        for name, rs in group_rows:
            worst = max(rs, key=badness)
            console.out(
                f"  {name}  {len(rs):,} checked, {sum(r.failed for r in rs):,} failed, "
                f"{plural(sum(r.kink for r in rs), 'kink')}; "
                f"worst {trace.ids[worst.node]} (rel {_err(worst.rel_error)})",
                highlight=False,
            )
    summary = (
        f"{len(results):,} checked: {len(results) - len(failures) - len(kinks):,} pass, "
        f"{len(failures):,} fail, {plural(len(kinks), 'kink')} (a ReLU input within the step of 0: no verdict)"
    )
    if not failures:
        info(summary)
        return
    worst = ranked[0]
    info(summary)
    for line in _path_lines(trace, worst.node):
        info(line)
    fail(
        f"{len(failures):,} gradients disagree with finite differences; worst {trace.ids[worst.node]}: "
        f"analytic {_num(worst.analytic)}, numeric {_num(worst.numeric)}",
        code=FINDINGS,
    )


def _element_json(trace, r) -> dict:
    return {
        "id": trace.ids[r.node],
        "tag": trace.nodes[r.node].tag,
        "analytic": to_json_number(r.analytic),
        "numeric": to_json_number(r.numeric),
        "abs_error": to_json_number(r.abs_error),
        "rel_error": to_json_number(r.rel_error),
        "verdict": r.verdict,
        "band": r.words,
    }


def _path(trace, i: int, n: int = 3) -> list:
    from viz.tree import provenance

    return provenance(trace, i).contributions[:n]


def _path_lines(trace, i: int) -> list[str]:
    lines = [f"the gradient of {trace.ids[i]} came by (largest contributions first, as mgx inspect --why shows):"]
    for c in _path(trace, i):
        parent = c.edge.parent
        lines.append(
            f"  ← {trace.ids[parent]} ({trace.nodes[parent].op}): local ∂ {_num(c.edge.local_grad)}"
            f" × grad {_num(float(trace.nodes[parent].grad))} = {_num(c.value)}"
        )
    return lines


def _path_json(trace, i: int) -> dict:
    return {
        "id": trace.ids[i],
        "contributions": [
            {
                "consumer": trace.ids[c.edge.parent],
                "op": str(trace.nodes[c.edge.parent].op),
                "local_grad": to_json_number(c.edge.local_grad),
                "consumer_grad": to_json_number(float(trace.nodes[c.edge.parent].grad)),
                "contribution": to_json_number(c.value),
            }
            for c in _path(trace, i)
        ],
    }


def run_check_nan(*, choice: TokenChoice, update: bool, as_json: bool) -> None:
    if update and (choice.word is None or choice.pos is not None or choice.token or choice.target):
        fail("--update checks one training step, a whole name's graph and Adam's update: give --word NAME, no --pos")
    from cli.graph_cmd import build
    from viz.check import backward_origin, forward_origin

    built = build(choice)
    trace = built.trace
    info(built.title)
    forward = forward_origin(trace)
    backward = backward_origin(trace)
    update_problem = _update_problem(built.loaded) if update else None
    if as_json:
        document = {
            "title": built.title,
            "forward": None if forward is None else _forward_json(trace, forward),
            "backward": None if backward is None else _backward_json(trace, backward),
        }
        if update:
            document["update"] = {"finite": update_problem is None, "problem": update_problem}
        sys.stdout.write(json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    else:
        lines = forward_lines(trace, forward) + backward_lines(trace, backward)
        if update:
            lines.append(f"update: {update_problem or 'every weight Adam writes is finite'}")
        for line in lines:
            console.out(line, highlight=False)
    if forward is None and backward is None and update_problem is None:
        info("all finite: every value and every grad of this graph is a finite number")
        return
    fail("non-finite values found (above): the origins are where to look", code=FINDINGS)


def _update_problem(loaded) -> str | None:
    """Adam's update after this graph's backward pass, from the checkpoint's moments and step
    (a fresh model's are zero): None when every weight it writes is finite. The update is
    made in memory only; nothing is saved."""
    from microgpt.train import AdamConfig, Diverged, TrainState, adam_update

    ckpt = loaded.checkpoint
    if ckpt is None:
        state, adam, steps = TrainState(), AdamConfig(), 1000
    else:
        state = TrainState(ckpt.state.step, list(ckpt.state.m), list(ckpt.state.v))
        adam, steps = ckpt.adam, max(ckpt.steps, ckpt.state.step + 1)
    try:
        adam_update(loaded.model, state, adam, state.step, steps)
    except Diverged as e:
        return f"step {e.step}: {e.what}"
    return None


def _inputs_text(trace, i: int) -> str:
    children = trace.nodes[i].children
    if not children:
        return "no inputs (a leaf)"
    shown = ", ".join(_num(c.data) for c in children[:6])
    more = f", … {len(children)} in all" if len(children) > 6 else ""
    return f"inputs {shown}{more}"


def forward_lines(trace, forward) -> list[str]:
    if forward is None:
        return ["forward: all finite"]
    i = forward.node
    node = trace.nodes[i]
    groups = ", ".join(forward.groups[:6]) + (f", … {len(forward.groups)} in all" if len(forward.groups) > 6 else "")
    others = forward.origins - 1
    return [
        f"forward origin: {trace.ids[i]} ({node.op}) = {_num(node.data)}; {_inputs_text(trace, i)}",
        f"  spread: {plural(forward.non_finite, 'non-finite node')} in {plural(len(forward.groups), 'tensor group')}"
        f" ({groups});"
        f" {'it reached the loss' if forward.reached_root else 'the loss is finite'}"
        + (f"; {plural(others, 'other node')} also turned non-finite from finite inputs" if others else ""),
    ]


def backward_lines(trace, backward) -> list[str]:
    if backward is None:
        return ["backward: every grad the chain rule wrote from finite numbers is finite"]
    b = backward
    return [
        f"backward origin: the edge {trace.ids[b.child]} → {trace.ids[b.parent]} ({trace.nodes[b.parent].op}):"
        f" local ∂ {_num(b.local_grad)} × grad {_num(b.upstream)}; {trace.ids[b.child]}.grad {_num(b.before)}"
        f" → {_num(b.after)} ({b.reason})"
    ]


def _forward_json(trace, forward) -> dict:
    i = forward.node
    node = trace.nodes[i]
    return {
        "origin": trace.ids[i],
        "op": str(node.op),
        "data": to_json_number(node.data),
        "inputs": [to_json_number(c.data) for c in node.children],
        "non_finite_nodes": forward.non_finite,
        "other_origins": forward.origins - 1,
        "groups": forward.groups,
        "reached_loss": forward.reached_root,
    }


def _backward_json(trace, b) -> dict:
    return {
        "child": trace.ids[b.child],
        "parent": trace.ids[b.parent],
        "op": str(trace.nodes[b.parent].op),
        "local_grad": to_json_number(b.local_grad),
        "upstream_grad": to_json_number(b.upstream),
        "before": to_json_number(b.before),
        "after": to_json_number(b.after),
        "reason": b.reason,
    }
