"""``mgx patch``: replay the graph of one token with edits, and show what they changed."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.text import Text

from cli.common import TokenChoice, build_token_graph
from cli.output import console, fail, info, plural
from microgpt.errors import MicrogptError
from viz.patch import Edit, PatchResult, apply_edits, next_token_probabilities, top_probabilities


def _values_at(built, word: str, wanted: list[str]) -> list[float] | None:
    """The values of the nodes ``wanted`` (stable ids) in the graph of ``word`` at the position
    of ``built``'s token; None when the word is too short to have that position."""
    from microgpt.graph import TokenSpec, token_graph
    from viz.trace import Trace

    tokens, pos = built.loaded.tokenizer.document_tokens(word), built.spec.pos
    if len(tokens) < pos + 2:
        return None
    spec = TokenSpec(tuple(tokens[:pos]), tokens[pos], tokens[pos + 1], word)
    trace = Trace(token_graph(built.loaded.model, spec, granularity=built.graph.granularity, backward=False).root)
    index = trace.id_index
    return [trace.nodes[index[node_id]].data for node_id in wanted]


def _other_graph_values(built, word: str, trace_ids: list[str], nodes: list[int]) -> list[float]:
    """The values of ``nodes`` in the graph of ``word`` at the same position."""
    values = _values_at(built, word, [trace_ids[i] for i in nodes])
    if values is None:
        raise MicrogptError(
            f"--from {word!r} has no position {built.spec.pos} (it has {len(word) + 1}): "
            "choose a longer word or another --pos"
        )
    return values


def _mean_values(built, docs: list[str], trace_ids: list[str], nodes: list[int]) -> tuple[list[float], int]:
    """Each node's mean value over the graphs of ``docs`` at the same position."""
    wanted = [trace_ids[i] for i in nodes]
    sums = [0.0] * len(nodes)
    used = 0
    for doc in docs:
        values = _values_at(built, doc, wanted)
        if values is None:
            continue  # too short to have this position
        sums = [s + x for s, x in zip(sums, values)]
        used += 1
    if used == 0:
        raise MicrogptError(
            f"none of the {len(docs)} documents reaches position {built.spec.pos}: pass a larger --docs"
        )
    return [s / used for s in sums], used


def edit_values(built, data: Path | None, docs: int, notes: list[str]):
    """The values a --mean or --from edit gives its nodes in ``built``'s graph (a ValuesOf of
    viz.patch); each mean's documents are noted in ``notes``."""
    trace = built.trace

    def values_of(edit: Edit, nodes: list[int]) -> list[float]:
        if edit.kind == "from":
            tokenizer = built.loaded.tokenizer
            unknown = sorted(set(edit.word) - set(tokenizer.chars))
            if unknown:
                raise MicrogptError(
                    f"--from {edit.word!r} has characters the model does not know: {''.join(unknown)!r}"
                )
            return _other_graph_values(built, edit.word, trace.ids, nodes)
        from cli.common import documents_of

        all_docs, source = documents_of(built.loaded, data)
        values, used = _mean_values(built, all_docs[:docs], trace.ids, nodes)
        notes.append(f"{edit}: the mean over {plural(used, 'document')} of {source} at position {built.spec.pos}")
        return values

    return values_of


def run_patch(
    *,
    choice: TokenChoice,
    edits: list[Edit],
    docs: int,
    backward: bool,
    top: int,
    as_json: bool,
    data_for_mean,
    out=None,
) -> None:
    if not edits:
        fail("no edit given: add --set PATTERN=VALUE, --scale PATTERN=FACTOR, --mean PATTERN or --from WORD PATTERN")
    if docs < 1:
        fail(f"--docs must be 1 or more, got {docs}")
    if out is not None:
        from cli.view_cmd import check_page_out

        check_page_out(out, "mgx patch -o writes the viewer coloured by what the edits changed", "patch.html")
    built = build_token_graph(choice)
    trace = built.trace
    notes: list[str] = []
    values_of = edit_values(built, data_for_mean, docs, notes)

    # read now: the graphs a --mean or --from builds zero the model's (shared) weight grads
    grads = [node.grad for node in trace.nodes]
    result = apply_edits(trace, edits, values_of, backward=backward or out is not None)
    report = _report(built, result, top, grads)
    report["notes"] = notes + report["notes"]
    if as_json:
        console.print_json(json.dumps(report, allow_nan=False))
    else:
        _print(report)
    if out is not None:
        from cli.graph_cmd import token_built
        from cli.view_cmd import write_html
        from viz.page import Comparison

        label = "after " + " ".join(str(e.edit) for e in result.edits)
        compare = Comparison.of(label, trace.ids, trace.ids, result.after, result.grads_after)
        write_html(out, choice, "block", None, None, compare, token_built(built))


def _name(tokenizer, token_id: int) -> str:
    return tokenizer.token_name(token_id)


def _report(built, result: PatchResult, top: int, grads: list[float]) -> dict:
    from microgpt.numbers import to_json_number as num

    trace, graph, tokenizer = built.trace, built.graph, built.loaded.tokenizer
    root = len(trace.nodes) - 1
    logits = [trace.index[id(logit)] for logit in graph.logits]
    target = built.spec.target
    target_node = trace.index[id(graph.probs[target])]
    changed = result.changed_nodes
    changed.sort(key=lambda i: _delta_size(result.before[i], result.after[i]), reverse=True)
    notes = []
    for edit in result.edits:
        if edit.changed == 0:
            notes.append(
                f"{edit.edit} changes nothing: its {plural(len(edit.nodes), 'element')} already have those values"
            )
    if changed and _same(result.before[root], result.after[root]):
        stops = ", ".join(
            f"{trace.ids[b.node]} ({trace.nodes[b.node].op.name}: {b.reason})" for b in result.blockers[:3]
        )
        notes.append(f"the loss did not change: the edit stops at {stops}" if stops else "the loss did not change")
    report = {
        "edits": [
            {
                "edit": str(e.edit),
                "selected": len(e.nodes),
                "changed": e.changed,
                "nodes": [trace.ids[i] for i in e.nodes[:20]],
            }
            for e in result.edits
        ],
        "loss": {"before": num(result.before[root]), "after": num(result.after[root])},
        "target": {
            "token": _name(tokenizer, target),
            "before": num(result.before[target_node]),
            "after": num(result.after[target_node]),
        },
        "top": {
            side: [
                {"token": _name(tokenizer, t), "p": num(p)}
                for t, p in top_probabilities(next_token_probabilities(values, logits), top)
            ]
            for side, values in (("before", result.before), ("after", result.after))
        },
        "changed": len(changed),
        "recomputed": len(result.downstream),
        "most_changed": [
            {"node": trace.ids[i], "before": num(result.before[i]), "after": num(result.after[i])}
            for i in changed[: top * 2]
        ],
        "blockers": [
            {"node": trace.ids[b.node], "op": trace.nodes[b.node].op.name, "why": b.reason}
            for b in result.blockers[:10]
        ],
        "notes": notes,
    }
    if result.grads_after is not None:
        moved = [i for i in range(len(grads)) if not _same(grads[i], result.grads_after[i])]
        moved.sort(key=lambda i: _delta_size(grads[i], result.grads_after[i]), reverse=True)
        report["grads"] = [
            {"node": trace.ids[i], "before": num(grads[i]), "after": num(result.grads_after[i])}
            for i in moved[: top * 2]
        ]
    return report


def _same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def _delta_size(x: float, y: float) -> float:
    d = abs(y - x)
    return math.inf if math.isnan(d) else d


def _fmt(x) -> str:
    return x if isinstance(x, str) else f"{x:.4g}"


def _print(report: dict) -> None:
    for edit in report["edits"]:
        console.print(Text(f"{edit['edit']}: selects {plural(edit['selected'], 'element')}, changes {edit['changed']}"))
    loss, target = report["loss"], report["target"]
    console.print(Text(f"loss            {_fmt(loss['before'])} → {_fmt(loss['after'])}", style="bold"))
    console.print(Text(f"p({target['token']!r})          {_fmt(target['before'])} → {_fmt(target['after'])}"))
    for side in ("before", "after"):
        shown = ", ".join(f"{t['token']} {_fmt(t['p'])}" for t in report["top"][side])
        console.print(Text(f"top {side:<6}      {shown}"))
    console.print(
        Text(f"{plural(report['changed'], 'node')} changed of {plural(report['recomputed'], 'node')} recomputed")
    )
    if report["most_changed"]:
        console.print(Text("most changed:", style="bold"))
        width = max(len(n["node"]) for n in report["most_changed"])
        for n in report["most_changed"]:
            console.print(Text(f"  {n['node']:<{width}}  {_fmt(n['before'])} → {_fmt(n['after'])}"))
    if "grads" in report:
        console.print(Text("grads most changed:", style="bold"))
        for n in report["grads"]:
            console.print(Text(f"  {n['node']}  {_fmt(n['before'])} → {_fmt(n['after'])}"))
    for note in report["notes"]:
        info(note)
