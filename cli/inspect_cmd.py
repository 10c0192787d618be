"""``mgx inspect PATTERN``: the nodes a tag pattern selects, as a tree of data and grad.

Builds the graph of one token (microgpt.graph: the word ``emma`` at position 0 unless told
otherwise), selects nodes with the pattern language (viz.pattern) and prints the tree
(viz.tree) or, with ``--json``, the same as JSON for scripts.
"""

from __future__ import annotations

from cli.common import TokenChoice, build_token_graph
from cli.output import console, fail

SORT_CHOICES = ("order", "grad", "data", "id")


def run_inspect(
    *,
    pattern: str,
    op: str | None,
    limit: int,
    sort: str,
    depth: int | None,
    why: bool,
    as_json: bool,
    no_color: bool,
    width: int | None,
    choice: TokenChoice,
    adam: bool = False,
) -> None:
    if sort not in SORT_CHOICES:
        fail(f"--sort {sort!r} is not a sort: use one of {', '.join(SORT_CHOICES)}")
    if limit < 0:
        fail(f"--limit must be 0 (show all) or more, got {limit}")
    if depth is not None and depth < 0:
        fail(f"--depth must be 0 or more, got {depth}")
    if width is not None and width < 40:
        fail(f"--width must be at least 40 columns, got {width}")
    choice.check()
    if op is not None:
        import difflib

        from microgpt.engine import OPS

        if op not in OPS:
            near = difflib.get_close_matches(op, list(OPS), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(near)}?" if near else f"use one of {', '.join(OPS)}"
            fail(f"--op {op!r} is not an op: {hint}")

    from viz.pattern import Pattern

    Pattern.parse(pattern)  # a malformed pattern fails before the model loads

    from viz.pattern import select_or_explain

    built = build_token_graph(choice, moments=adam)
    loaded, spec, graph, trace = built.loaded, built.spec, built.graph, built.trace
    tokenizer = loaded.tokenizer
    selection = select_or_explain(trace, pattern, op)
    states = None
    if adam:
        from viz.optimizer import adam_states

        if loaded.checkpoint is None:
            fail("--adam needs a trained checkpoint (a fresh model has no Adam state): pass --checkpoint FILE")
        states = adam_states(trace, selection, loaded.checkpoint)
        if not states:
            fail(f"--adam: pattern {pattern!r} selects no parameter; Adam keeps state for weights (e.g. attn.wq)")

    name = tokenizer.token_name
    context = " ".join(name(t) for t in spec.context)
    title = (
        f"{pattern}{f' --op {op}' if op else ''}: {len(selection)} of {len(trace)} nodes · "
        f"token {name(spec.token)} at pos {spec.pos} of {spec.word!r}"
        f"{f' after {context}' if context else ''} → target {name(spec.target)} · "
        f"loss {graph.root.data:.4f} · {choice.granularity}"
    )

    if as_json:
        import json
        import sys

        from viz.tree import to_json

        document = to_json(trace, selection, title=title, depth=depth, why=why, adam=states)
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
        return

    from rich.console import Console

    from viz.tree import build_tree

    tree = build_tree(
        trace,
        selection,
        title=title,
        limit=limit or None,
        sort=sort,
        depth=depth,
        why=why,
        color=not no_color,
        adam=states,
    )
    out = console
    if no_color or width is not None:
        out = Console(highlight=False, color_system=None if no_color else "auto", width=width)
    out.print(tree)
