"""The graph of a token as Graphviz DOT, at three levels of detail, from one ``Trace``.

- ``block``: embedding, each layer's attention and MLP, lm_head, probs, loss; one node per
  block and position, the parameters of a block as one node inside its cluster.
- ``tensor`` (default): one node per tag group (``layer0.attn.h2.weights@pos0``) with its
  shape, op and the min / mean / max / norm of its data and grad.
- ``scalar``: every Value, micrograd style (op, data, grad); ``edge_grads`` writes each
  edge's local derivative on it.

The context (the positions before the token's, which fill the KV cache) is one node per
earlier position unless ``expand_context``. ``focus`` keeps the nodes whose tag matches a
pattern (``viz.pattern``) plus ``hops`` of neighbours, drawn collapsed: one dashed node per
neighbouring tensor. Clusters follow tag paths (layer, attn / mlp, head); colours live in
``viz.style``. Node ids are the trace's stable ids, so ``dot.source`` is deterministic.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from microgpt.engine import Value
from microgpt.errors import MicrogptError
from viz import style
from viz.pattern import select_or_explain
from viz.trace import Summary, Trace

LEVELS = ("block", "tensor", "scalar")
RANKDIRS = ("TB", "BT", "LR", "RL")


def block_of(path: str) -> str:
    """The model block a tag path belongs to: ``layer0.attn.h2.q`` -> ``layer0.attn``;
    parameters go with the block that uses them (``wte`` -> ``embed``, ``lm_head`` -> ``lm_head``)."""
    segs = path.split(".")
    head = segs[0]
    if head in ("wte", "wpe", "embed"):
        return "embed"
    if head.startswith("layer") and len(segs) > 1:
        return f"{head}.{segs[1]}"
    if head in ("lm_head", "logits"):
        return "lm_head"
    return head


def _cluster_chain(path: str, block: str) -> tuple[str, ...]:
    """The nested clusters a tensor sits in: the prefixes of its path, at least its block."""
    bsegs = block.split(".")
    segs = path.split(".")[:-1]
    chain = segs if len(segs) >= len(bsegs) and segs[: len(bsegs)] == bsegs else bsegs
    return tuple(".".join(chain[: k + 1]) for k in range(len(chain)))


def _num(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return f"{x:.4g}"


def _summary_line(name: str, s: Summary) -> str:
    if s.count == 1:
        return f"{name} {_num(s.min)}"
    return f"{name} {_num(s.min)} … {_num(s.max)}  μ {_num(s.mean)}  ‖{_num(s.norm)}‖"


@dataclass
class _Display:
    key: str
    kind: str  # scalar | tensor | block | params | context | neighbour
    members: list[int] = field(default_factory=list)
    clusters: tuple[str, ...] = ()
    focus: bool = False


def _token_position(trace: Trace) -> int | None:
    parts = trace.tag_parts[-1]
    return None if parts is None else parts.pos


def _base_keys(
    trace: Trace, level: str, pos: int | None, expand_context: bool
) -> tuple[list[str], dict[str, _Display]]:
    """The display node of every trace node at ``level``, before any focus."""
    keys: list[str] = []
    displays: dict[str, _Display] = {}
    cache: dict[int, tuple[str, str, tuple[str, ...]]] = {}
    for i, parts in enumerate(trace.tag_parts):
        if parts is None:
            key, kind, clusters = ("(untagged)", "tensor", ())
            if level == "scalar":
                key, kind = trace.ids[i], "scalar"
        else:
            if parts.pos is not None and pos is not None and parts.pos < pos and not expand_context:
                key, kind, clusters = f"context@pos{parts.pos}", "context", ("context",)
            else:
                cached = cache.get(id(parts))
                if cached is None:
                    block = block_of(parts.path)
                    if level == "block":
                        if parts.pos is not None:
                            key, kind = f"{block}@pos{parts.pos}", "block"
                        elif trace.nodes[i].op.name == "param":
                            key, kind = f"{block}/params", "params"
                        else:  # computed outside any position: the mean loss of a whole word
                            key, kind = block, "block"
                        clusters = tuple(".".join(block.split(".")[: k + 1]) for k in range(block.count(".") + 1))
                    else:
                        key, kind = parts.group, "tensor"
                        clusters = _cluster_chain(parts.path, block)
                    cached = cache[id(parts)] = (key, kind, clusters)
                key, kind, clusters = cached
            if level == "scalar" and kind != "context":
                key, kind = trace.ids[i], "scalar"
        keys.append(key)
        display = displays.get(key)
        if display is None:
            display = displays[key] = _Display(key, kind, clusters=clusters)
        display.members.append(i)
    return keys, displays


def _elements(trace: Trace, keys: list[str], members: list[int]) -> list[int]:
    """The values a tensor node summarises: its labelled elements (``q[0]`` ... ``q[3]``), else
    its outputs (the members used outside it)."""
    labelled = [i for i in members if (p := trace.tag_parts[i]) is not None and p.index is not None]
    return labelled or _outputs(trace, keys, members)


def _outputs(trace: Trace, keys: list[str], members: list[int]) -> list[int]:
    """Members used outside their display node (or the root); all members if none is."""
    root = len(trace.nodes) - 1
    consumers = trace.consumers
    out = [i for i in members if i == root or any(keys[e.parent] != keys[i] for e in consumers[i])]
    return out or members


def _shape(trace: Trace, outputs: list[int]) -> str:
    indices = [p.index if (p := trace.tag_parts[i]) is not None else None for i in outputs]
    if indices and all(ix is not None and "," in ix for ix in indices):
        rows = {ix.split(",")[0] for ix in indices}
        cols = {ix.split(",")[1] for ix in indices}
        return f"{len(rows)}×{len(cols)}"
    if len(outputs) == 1:
        return "scalar"
    return f"[{len(outputs)}]"


def _op_text(trace: Trace, outputs: list[int]) -> str:
    ops = Counter(str(trace.nodes[i].op) for i in outputs)
    return "/".join(sorted(ops)) if len(ops) > 1 else next(iter(ops))


def _family_of(trace: Trace, members: list[int]) -> str:
    families = {style.family(trace.nodes[i].op.name) for i in members}
    return families.pop() if len(families) == 1 else "mixed"


def to_dot(
    source: Trace | Value | object,
    level: str = "tensor",
    focus: str | None = None,
    hops: int = 1,
    edge_grads: bool = False,
    title: str | None = None,
    rankdir: str = "TB",
    pos: int | None = None,
    expand_context: bool = False,
    legend: bool = True,
):
    """A ``graphviz.Digraph`` of ``source`` (a Trace, a root Value or a TokenGraph).

    ``pos`` is the token's position (read from the root's tag when not given): nodes of
    earlier positions are the context, collapsed unless ``expand_context``."""
    import graphviz

    trace = Trace.of(source)
    if level not in LEVELS:
        raise MicrogptError(f"unknown level {level!r}: use block, tensor or scalar")
    if rankdir not in RANKDIRS:
        raise MicrogptError(f"unknown rankdir {rankdir!r}: use TB, BT, LR or RL")
    if hops < 0:
        raise MicrogptError(f"hops must be 0 or more, got {hops}")
    if pos is None:
        pos = getattr(getattr(source, "spec", None), "pos", None)
        if pos is None:
            pos = _token_position(trace)

    keys, displays = _base_keys(trace, level, pos, expand_context)
    base_keys = keys
    if focus is not None:
        keys, displays = _apply_focus(trace, keys, displays, focus, hops, level)

    dot = graphviz.Digraph(name="microgpt", strict=False)
    dot.attr(rankdir=rankdir, fontname=style.FONT, labelloc="t", fontsize="16", newrank="true")
    dot.attr("node", fontname=style.FONT, fontsize="10", shape="box", style="rounded,filled")
    dot.attr("edge", fontname=style.FONT, fontsize="8", color="#6b7280", arrowsize="0.6")
    if title:
        dot.attr(label=title)

    # -- nodes, grouped into nested clusters by tag path ---------------------------------
    tree: dict[tuple[str, ...], list[tuple[str, dict[str, str]]]] = {}
    families_seen: set[str] = set()
    blocks_seen: set[str] = set()
    for display in displays.values():
        name, attrs, fam = _node(trace, base_keys, display, level)
        families_seen.add(fam)
        tree.setdefault(display.clusters, []).append((name, attrs))
        for c in display.clusters:
            blocks_seen.add(style.block_kind(c) if c != "context" else "context")
    _emit_clusters(dot, tree)

    # -- edges ------------------------------------------------------------------------------
    counts: dict[tuple[str, str], int] = {}  # edges between collapsed nodes: drawn once, counted
    for e in trace.edges:
        a, b = keys[e.child], keys[e.parent]
        if a is None or b is None or a == b:
            continue
        if level == "scalar" and displays[a].kind == "scalar" and displays[b].kind == "scalar":
            if edge_grads:
                dot.edge(a, b, label=_num(float(e.local_grad)))
            else:
                dot.edge(a, b)
        else:
            counts[(a, b)] = counts.get((a, b), 0) + 1
    for (a, b), n in counts.items():
        dot.edge(a, b, tooltip=f"{n} scalar edges" if n > 1 else "1 scalar edge")

    if legend:
        _legend(dot, families_seen, blocks_seen)
    return dot


def _apply_focus(trace, keys, displays, pattern, hops, level):
    """Keep the display nodes holding a match, plus ``hops`` of neighbours, collapsed."""
    selected = select_or_explain(trace, pattern)
    focus_keys = {keys[i] for i in selected}
    adjacency: dict[str, set[str]] = {}
    for e in trace.edges:
        a, b = keys[e.child], keys[e.parent]
        if a != b:
            adjacency.setdefault(a, set()).add(b)
            adjacency.setdefault(b, set()).add(a)
    reached = set(focus_keys)
    frontier = set(focus_keys)
    for _ in range(hops):
        frontier = {n for k in frontier for n in adjacency.get(k, ())} - reached
        reached |= frontier
    neighbours = reached - focus_keys

    new_keys: list[str | None] = []
    new_displays: dict[str, _Display] = {}
    for i, key in enumerate(keys):
        if key in focus_keys:
            new_key = key
            template = displays[key]
            kind, clusters = template.kind, template.clusters
        elif key in neighbours:
            template = displays[key]
            if level == "scalar" and template.kind == "scalar":
                group = trace.group_of(i)
                new_key = f"hop/{group}"
                parts = trace.tag_parts[i]
                clusters = () if parts is None else _cluster_chain(parts.path, block_of(parts.path))
            else:
                new_key, clusters = f"hop/{key}", template.clusters
            kind = "neighbour"
        else:
            new_keys.append(None)
            continue
        new_keys.append(new_key)
        display = new_displays.get(new_key)
        if display is None:
            display = new_displays[new_key] = _Display(new_key, kind, clusters=clusters, focus=key in focus_keys)
        display.members.append(i)
    return new_keys, new_displays


def _node(trace: Trace, keys: list[str], display: _Display, level: str) -> tuple[str, dict[str, str], str]:
    members = display.members
    kind = display.kind
    attrs: dict[str, str] = {}
    if kind == "scalar":
        i = members[0]
        node = trace.nodes[i]
        op = node.op
        fam = style.family(op.name)
        tag = trace.ids[i]
        label = f"{tag}\n{op}\ndata {_num(float(node.data))} · grad {_num(float(node.grad))}"
        attrs["fillcolor"] = style.FAMILY_COLOUR[fam]
    elif kind == "context":
        fam = "mixed"
        out = _outputs(trace, keys, members)
        data = Summary.of(trace.nodes[i].data for i in out)
        grad = Summary.of(trace.nodes[i].grad for i in out)
        label = "\n".join(
            (
                f"{display.key}",
                f"context: {len(members)} nodes, {len(out)} used later",
                _summary_line("data", data),
                _summary_line("grad", grad),
            )
        )
        attrs["fillcolor"] = style.CONTEXT_FILL
        attrs["color"] = style.BLOCK_COLOUR["context"]
    elif kind == "neighbour":
        fam = "mixed"
        group = display.key.removeprefix("hop/")
        label = f"{group}\n({len(members)} nodes, collapsed)"
        attrs.update(
            fillcolor=style.NEIGHBOUR_FILL, color=style.NEIGHBOUR_BORDER, style="rounded,dashed,filled", fontsize="9"
        )
    else:
        out = _elements(trace, keys, members) if kind in ("tensor", "params") else _outputs(trace, keys, members)
        fam = _family_of(trace, out)
        data = Summary.of(trace.nodes[i].data for i in out)
        grad = Summary.of(trace.nodes[i].grad for i in out)
        if kind in ("block", "params"):
            head = display.key if kind == "block" else f"θ {display.key.removesuffix('/params')} parameters"
            ops = Counter(trace.nodes[i].op.name for i in members)
            second = (
                f"{len(members)} params reached"
                if kind == "params"
                else f"{len(members)} nodes · out {_shape(trace, out)}"
            )
            lines = [head, second]
            if kind == "block":
                lines.append(" ".join(f"{name}×{n}" for name, n in sorted(ops.items())))
            attrs["color"] = style.BLOCK_COLOUR[style.block_kind(display.clusters[-1] if display.clusters else "")]
            attrs["penwidth"] = "2"
        else:
            lines = [display.key, f"{_shape(trace, out)} · {_op_text(trace, out)}"]
        lines += [_summary_line("data", data), _summary_line("grad", grad)]
        label = "\n".join(lines)
        attrs["fillcolor"] = style.FAMILY_COLOUR[fam]
    if display.focus and kind != "neighbour":
        attrs["color"] = style.FOCUS_BORDER
        attrs["penwidth"] = "2"
    attrs["label"] = label.replace("\n", "\\n")  # DOT's line break, not a raw newline
    return display.key, attrs, fam


def _emit_clusters(dot, tree: dict[tuple[str, ...], list[tuple[str, dict[str, str]]]]) -> None:
    """Nodes at the top level go straight in; each cluster path becomes nested subgraphs."""
    import graphviz

    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for chain in tree:
        for k in range(len(chain)):
            parent, child = chain[:k], chain[: k + 1]
            siblings = children.setdefault(parent, [])
            if child not in siblings:
                siblings.append(child)

    def fill(graph, chain: tuple[str, ...]) -> None:
        for name, attrs in tree.get(chain, []):
            graph.node(name, **attrs)
        for child in children.get(chain, []):
            path = child[-1]
            sub = graphviz.Digraph(name=f"cluster_{path}")
            kind = "context" if path == "context" else style.block_kind(path)
            sub.attr(
                label=path.split(".")[-1] if path != "context" else "context (earlier positions)",
                color=style.BLOCK_COLOUR[kind],
                style="rounded",
                fontcolor=style.BLOCK_COLOUR[kind],
            )
            fill(sub, child)
            graph.subgraph(sub)

    fill(dot, ())


def _legend(dot, families: set[str], blocks: set[str]) -> None:
    import graphviz

    legend = graphviz.Digraph(name="cluster_legend")
    legend.attr(label="legend", style="rounded", color="#9ca3af", fontcolor="#374151")
    previous = None
    for fam in style.FAMILY_COLOUR:
        if fam in families:
            name = f"legend/{fam}"
            legend.node(name, label=style.FAMILY_LABEL[fam], fillcolor=style.FAMILY_COLOUR[fam], fontsize="9")
            if previous:
                legend.edge(previous, name, style="invis")
            previous = name
    for block in style.BLOCK_COLOUR:
        if block in blocks:
            name = f"legend/block/{block}"
            legend.node(
                name,
                label=f"block: {block}",
                fillcolor="#ffffff",
                color=style.BLOCK_COLOUR[block],
                penwidth="2",
                fontsize="9",
            )
            if previous:
                legend.edge(previous, name, style="invis")
            previous = name
    dot.subgraph(legend)


def describe(graph, tokenizer, model_description: str) -> str:
    """The title line of a token's drawing: model, token, position, target and loss."""
    spec = graph.spec
    return (
        f"microgpt-x · {model_description} · token {tokenizer.token_name(spec.token)!r} at position {spec.pos}"
        f" · target {tokenizer.token_name(spec.target)!r} · loss {graph.root.data:.4f} · {graph.granularity}"
    )
