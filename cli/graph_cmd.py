"""``mgx graph`` and ``mgx stats``: the DAG of one token (or one word) drawn or counted.

The output's extension picks the format: ``.dot``/``.gv`` are written by the project;
``.svg``/``.png``/``.pdf`` run a layout program on the DOT source (the system ``dot`` when
on PATH, else ``graphviz-pure``, which pip installs with this package, or the one given
with ``--layout-program``); ``.json`` (node-link) and ``.graphml`` come from networkx;
``.mmd`` is the block level as a Mermaid flowchart (``viz.mermaid``).
Every file is written through a temporary file and a rename.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from cli.common import TokenChoice
from cli.output import check_writable, console, fail, info, status
from microgpt.files import write_atomic
from viz.style import counted

DOT_FORMATS = (".dot", ".gv")
LAYOUT_FORMATS = (".svg", ".png", ".pdf")
NX_FORMATS = (".json", ".graphml")
MERMAID_FORMATS = (".mmd",)
PAGE_FORMATS = (".html",)  # the interactive page: cli/view_cmd.py, viz/page.py
FORMATS = DOT_FORMATS + LAYOUT_FORMATS + NX_FORMATS + MERMAID_FORMATS + PAGE_FORMATS
# Scalar drawings past this many nodes ask first (viz.render estimates how long layout takes).
SCALAR_CONFIRM_NODES = 2000


@dataclass
class Built:
    trace: object  # viz.trace.Trace
    title: str
    pos: int | None  # the token's position; None for a whole word
    param_total: int = 0  # the model's parameters, reached or not
    loaded: object = None  # cli.common.LoadedModel: the model the graph was built from


def build(choice: TokenChoice, *, moments: bool = False) -> Built:
    """The graph asked for: one token's (default), or a whole word's with --word and no --pos."""
    from cli.common import build_token_graph, load_model
    from microgpt.graph import word_graph
    from viz.trace import Trace

    choice.check()
    if choice.word is not None and choice.pos is None and choice.token is None and choice.target is None:
        loaded = load_model(choice.checkpoint, choice.data, moments=moments)
        model = loaded.model
        tokens = loaded.tokenizer.document_tokens(choice.word)
        root, order = word_graph(model, tokens, granularity=choice.granularity)
        trace = Trace(root, order)
        n = min(model.config.block_size, len(tokens) - 1)
        title = (
            f"microgpt-x | {loaded.description} | word {choice.word!r}: {n} positions to the mean loss"
            f" | loss {root.data:.4f} | {choice.granularity}"
        )
        return Built(trace, title, None, len(model.params), loaded)
    return token_built(build_token_graph(choice, moments=moments))


def token_built(built) -> Built:
    """A token's graph (cli.common.build_token_graph's) as the drawings and the page take it."""
    from viz.dot import describe

    loaded = built.loaded
    title = describe(built.graph, loaded.tokenizer, loaded.description)
    return Built(built.trace, title, built.spec.pos, len(loaded.model.params), loaded)


def graph_command(
    *,
    out: Path,
    choice: TokenChoice,
    level: str,
    focus: str | None,
    hops: int,
    edge_grads: bool,
    rankdir: str,
    layout_program: str | None,
    force: bool,
    expand_context: bool,
) -> None:
    from viz.dot import LEVELS, RANKDIRS

    suffix = out.suffix.lower()
    if not out.suffix and out.name.lower() in FORMATS:  # "-o .svg": a hidden file with no extension
        fail(f"-o {out} has no file name before its extension: give one, e.g. -o graph{out.name}")
    if suffix not in FORMATS:
        fail(f"unknown output extension {out.suffix or '(none)'!r} for {out}: use one of {', '.join(FORMATS)}")
    if level not in LEVELS:
        fail(f"--level must be block, tensor or scalar, got {level!r}")
    if rankdir.upper() not in RANKDIRS:
        fail(f"--rankdir must be TB, BT, LR or RL, got {rankdir!r}")
    if hops < 0:
        fail(f"--hops must be 0 or more, got {hops}")
    check_writable(out, "-o", "graph.svg")
    if suffix in PAGE_FORMATS:
        from cli.view_cmd import unused_page_options, write_html

        for note in unused_page_options(
            hops=hops, edge_grads=edge_grads, rankdir=rankdir, expand_context=expand_context
        ):
            info(note)
        write_html(out, choice, level, focus, layout_program)
        return
    from viz.render import UNSUPPORTED, estimate_seconds, find_layout_program, layout

    program = find_layout_program(layout_program) if suffix in LAYOUT_FORMATS else None
    if program is not None and suffix[1:] in UNSUPPORTED.get(Path(program).name, set()):
        layout(program, "", suffix[1:])  # says which formats to use instead, before any work
    fallback = out.with_suffix(".dot")
    if program is None and suffix in LAYOUT_FORMATS and fallback.exists():
        fail(
            f"no layout program found to write {out}, and {fallback}, where the DOT source would go instead, "
            "already exists and is not replaced: `pip install graphviz-pure` (or `apt-get install graphviz`), "
            "or write the DOT to a name you choose with -o NAME.dot"
        )
    if layout_program is not None and suffix not in LAYOUT_FORMATS:
        info(f"--layout-program is not used for {suffix} files")
    for note in _ignored_options(suffix, level, focus, hops, edge_grads, rankdir):
        info(note)

    built = build(choice)
    trace = built.trace

    if suffix in NX_FORMATS:
        from viz.nx import graphml, node_link_json, to_networkx

        graph = to_networkx(trace, level=level, focus=focus, hops=hops, pos=built.pos, expand_context=expand_context)
        graph.graph["title"] = built.title
        text = node_link_json(graph) if suffix == ".json" else graphml(graph)
        write_atomic(out, text.encode("utf-8"))
        info(
            f"wrote {out}: {counted(graph.number_of_nodes(), 'node')}, {counted(graph.number_of_edges(), 'edge')}"
            f" (networkx {suffix[1:]}, {level} level)"
        )
        return
    if suffix in MERMAID_FORMATS:
        from viz.mermaid import to_mermaid

        text = to_mermaid(
            trace, title=built.title, pos=built.pos, expand_context=expand_context, direction=rankdir.upper()
        )
        write_atomic(out, text.encode("utf-8"))
        info(f"wrote {out} (block level, Mermaid flowchart)")
        return

    from viz.dot import to_dot

    dot = to_dot(
        trace,
        level=level,
        focus=focus,
        hops=hops,
        edge_grads=edge_grads,
        title=built.title,
        rankdir=rankdir.upper(),
        pos=built.pos,
        expand_context=expand_context,
    )
    source = dot.source
    big = level == "scalar" and focus is None and len(trace) > SCALAR_CONFIRM_NODES
    if big and suffix in LAYOUT_FORMATS and not force:
        from viz.dot import display_graph

        drawn = len(display_graph(trace, level, None, hops, built.pos, expand_context).nodes)
        estimate = estimate_seconds(program, drawn)
        question = (
            f"the scalar graph has about {drawn:,} nodes; laying it out takes roughly {estimate} s"
            f"{' with ' + Path(program).name if program else ''} and the picture is hard to read"
        )
        if not sys.stdin.isatty():
            fail(f"{question}: pass --force to draw it anyway, or --focus PATTERN (e.g. attn.h0) for a part")
        import typer

        if not typer.confirm(f"{question}. Draw it anyway?", default=False, err=True):
            fail("not drawn: pass --focus PATTERN (e.g. attn.h0) for a readable part, or --level tensor")

    if suffix in DOT_FORMATS:
        write_atomic(out, source.encode("utf-8"))
        info(f"wrote {out} ({level} level)")
        return
    if program is None:
        write_atomic(fallback, source.encode("utf-8"))
        info(
            f"no layout program found: wrote {fallback} instead; for {suffix[1:].upper()} run "
            f"`pip install graphviz-pure` (or `apt-get install graphviz`) and then "
            f"`graphviz-pure -T{suffix[1:]} {fallback} -o {out}`"
        )
        return
    with status(f"laying out the {level}-level drawing with {Path(program).name}…"):
        payload = layout(program, source, suffix[1:])
    write_atomic(out, payload)
    info(f"wrote {out} ({level} level, laid out by {Path(program).name})")


def stats_command(
    *,
    choice: TokenChoice,
    top: int,
) -> None:
    from collections import Counter

    from rich.table import Table

    if top < 1:
        fail(f"--top must be at least 1, got {top}")
    built = build(choice)
    trace = built.trace
    nodes = trace.nodes
    # Counted per node and per group from the edge counts, never edge by edge: a word's graph
    # on a 4-layer model has two million edges.
    inputs = list(map(len, trace.child_indices))
    op_names = [node.op.name for node in nodes]

    console.print(built.title)
    summary = Table(title="graph", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    per_op = Counter(op_names)
    n_ops = len(nodes) - inputs.count(0)
    fan_in = inputs.index(max(inputs, default=0)) if nodes else 0
    fan_out_counts = trace.fan_out
    fan_out = fan_out_counts.index(max(fan_out_counts, default=0)) if nodes else 0
    summary.add_row("nodes", f"{len(nodes):,}")
    summary.add_row("  ops (nodes with inputs)", f"{n_ops:,}")
    summary.add_row("  leaves", f"{len(nodes) - n_ops:,}")
    summary.add_row("  parameters reached", f"{per_op.get('param', 0):,} of {built.param_total:,}")
    summary.add_row("edges", f"{trace.edge_count:,}")
    summary.add_row("depth (longest path, edges)", f"{trace.depth():,}")
    summary.add_row("tag groups", f"{len(trace.groups):,}")
    summary.add_row("largest fan-in", f"{inputs[fan_in]}  {trace.ids[fan_in]}")
    summary.add_row("largest fan-out", f"{fan_out_counts[fan_out]}  {trace.ids[fan_out]}")
    for what, order in (("data", "forward"), ("grad", "backward")):
        found = _nonfinite(trace, what)
        summary.add_row(f"nodes with non-finite {what} (nan, ±inf)", f"{len(found):,}")
        if found:
            first = found[0] if order == "forward" else found[-1]
            summary.add_row(f"  first, in {order} order", f"{trace.ids[first]} = {getattr(nodes[first], what)}")
    console.print(summary)

    edges_in: Counter[str] = Counter()
    for name, n in zip(op_names, inputs):
        edges_in[name] += n
    table = Table(title="per op")
    table.add_column("op")
    table.add_column("nodes", justify="right")
    table.add_column("edges in", justify="right")
    for name, n in sorted(per_op.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(name, f"{n:,}", f"{edges_in.get(name, 0):,}")
    console.print(table)

    groups = sorted(trace.groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    table = Table(title=f"per tag group (largest {min(top, len(groups))} of {len(groups)})")
    table.add_column("group")
    table.add_column("nodes", justify="right")
    table.add_column("edges in", justify="right")
    table.add_column("ops")
    for name, members in groups[:top]:
        op_counts = Counter(op_names[i] for i in members)
        table.add_row(
            name,
            f"{len(members):,}",
            f"{sum(inputs[i] for i in members):,}",
            " ".join(f"{op}×{n}" for op, n in sorted(op_counts.items())),
        )
    console.print(table)


def _ignored_options(suffix: str, level: str, focus: str | None, hops: int, edge_grads: bool, rankdir: str):
    """One line for each option given that this drawing or file does not use."""
    if suffix in MERMAID_FORMATS:
        if level == "scalar":
            yield "--level scalar is not used: a .mmd file is the block level"
        if focus is not None:
            yield "--focus is not used: a .mmd file is the whole block level"
        if edge_grads:
            yield "--edge-grads labels the edges of scalar-level drawings only: not used in a .mmd file"
        return
    if edge_grads and level != "scalar":
        yield f"--edge-grads labels the edges of scalar-level drawings only: not used at {level} level"
    elif edge_grads and suffix in NX_FORMATS:
        yield f"--edge-grads is for drawings: the edges of a scalar-level {suffix} file carry local_grad anyway"
    if hops != 1 and focus is None:
        yield "--hops counts neighbours of --focus: not used without --focus"
    if rankdir.upper() != "TB" and suffix in NX_FORMATS:
        yield f"--rankdir is for drawings: not used for {suffix} files"


def _nonfinite(trace, what: str) -> list[int]:
    """The nodes holding a nan or an infinity in ``what`` (data or grad), in graph order. The
    first to show is the one the pass computing ``what`` reached first: in forward order for
    data (where a value first went bad), in backward order for grad (the nearest the loss)."""
    import math
    from operator import attrgetter

    values = list(map(attrgetter(what), trace.nodes))
    try:
        if math.isfinite(math.fsum(values)):  # a nan or an inf anywhere would show in the sum
            return []
    except (ValueError, OverflowError):  # inf + -inf, or finite numbers past the largest float
        pass
    return [i for i, x in enumerate(values) if not math.isfinite(x)]
