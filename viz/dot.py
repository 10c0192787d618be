"""The graph of a token as Graphviz DOT, at three levels of detail, from one ``Trace``.

- ``block``: embedding, each layer's attention and MLP, lm_head, probs, loss; one node per
  block and position, the parameters of a block as one node inside its cluster.
- ``tensor`` (default): one node per tag group (``layer0.attn.h2.weights@pos0``) with its
  shape, op and the min / mean / max / norm of its data and grad.
- ``scalar``: every Value, with its op, data and grad; ``edge_grads`` writes each
  edge's local derivative on it.

The context (the positions before the token's, which fill the KV cache) is one node per
earlier position unless ``expand_context``. ``focus`` keeps the nodes whose tag matches a
pattern (``viz.pattern``) plus ``hops`` of neighbours, drawn collapsed: one dashed node per
neighbouring tensor. Clusters follow tag paths (layer, attn / mlp, head); colours live in
``viz.style``. Node ids are the trace's stable ids, so ``dot.source`` is deterministic.

Which trace nodes make up each drawn node is decided once, by ``display_graph``; the
networkx view (``viz.nx``) reads the same display nodes and ``node_facts``, so a ``.json``
or ``.graphml`` file holds the nodes the drawing shows. A node holding a nan or an infinity
(data or grad) is filled with ``style.NONFINITE_FILL`` and the legend says so; summaries
cover the finite values and count the others (``viz.trace.Summary``).

How the picture reads is decided apart from DOT too, for any drawing of the same display
nodes (DOT, Mermaid in ``viz.mermaid``, a page): ``stage_key`` orders clusters from input to
output, ``reading_rows`` says which nodes share a rank and in what order (a whole name left to
right by position), ``drawn_node`` gives each node's label and fill. Labels are ASCII (see
``style.label_width``).

``to_dot`` returns a ``graphviz.Digraph`` that displays itself in a notebook with the layout
program ``mgx graph`` uses (``viz.render``: the system ``dot``, else graphviz-pure), where a
plain Digraph needs a program named ``dot``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter

from microgpt.engine import Value
from microgpt.errors import MicrogptError
from viz import style
from viz.pattern import select_or_explain
from viz.trace import Summary, Trace

LEVELS = ("block", "tensor", "scalar")
RANKDIRS = ("TB", "BT", "LR", "RL")
NODE_FONTSIZE = "10"


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
    return f"{float(x):.4g}"  # nan, inf and -inf as Python writes them


def _summary_line(name: str, s: Summary) -> str:
    """``data -0.5 to 0.8, mean 0.1, norm 2.3``, the finite values, then ``, 1 nan, 2 inf`` for
    the rest. Plain ASCII, like every word the drawing writes itself (see ``style.label_width``)."""
    flags = [f"{n} {word}" for word, n in s.flags()]
    if s.count == 1:
        return f"{name} {_num(s.min) if s.finite else s.flags()[0][0]}"
    parts = [f"{_num(s.min)} to {_num(s.max)}, mean {_num(s.mean)}, norm {_num(s.norm)}"] if s.finite else []
    return f"{name} {', '.join(parts + flags)}"


def is_finite_node(node: Value) -> bool:
    return math.isfinite(node.data) and math.isfinite(node.grad)


@dataclass
class DisplayNode:
    """One drawn node: the trace nodes it stands for (``members``, in graph order)."""

    key: str  # its name in the drawing and in the networkx graph
    kind: str  # scalar | tensor | block | params | context | neighbour
    members: list[int] = field(default_factory=list)
    clusters: tuple[str, ...] = ()
    focus: bool = False


@dataclass
class DisplayGraph:
    """The nodes a view shows at one level, after the context and the focus are applied."""

    trace: Trace
    level: str
    keys: list[str | None]  # each trace node's display node; None where the focus leaves it out
    base_keys: list[str]  # the same before the focus: a tensor's outputs are counted against these
    nodes: dict[str, DisplayNode]


def _token_position(trace: Trace) -> int | None:
    parts = trace.tag_parts[-1]
    return None if parts is None else parts.pos


def _base_keys(
    trace: Trace, level: str, pos: int | None, expand_context: bool
) -> tuple[list[str], dict[str, DisplayNode]]:
    """The display node of every trace node at ``level``, before any focus.

    Which display node, of what kind, in which clusters is the same for every node of a tag
    group, so it is worked out once per group; at block level a group outside any position
    splits its parameters from the rest, and at scalar level each node is its own."""
    numbers = trace.group_numbers
    per_group: list[tuple[str, str, tuple[str, ...]]] = []
    split_params: set[int] = set()  # block level: groups outside any position
    for g, (name, parts) in enumerate(trace.group_parts.items()):
        if parts is None:
            per_group.append(("(untagged)", "tensor", ()))
        elif parts.pos is not None and pos is not None and parts.pos < pos and not expand_context:
            per_group.append((f"context@pos{parts.pos}", "context", ("context",)))
        else:
            block = block_of(parts.path)
            if level == "block":
                if parts.pos is not None:
                    key, kind = f"{block}@pos{parts.pos}", "block"
                else:  # parameters, or computed outside any position (the mean loss of a word)
                    key, kind = block, "block"
                    split_params.add(g)
                clusters = tuple(".".join(block.split(".")[: k + 1]) for k in range(block.count(".") + 1))
            else:
                key, kind, clusters = name, "tensor", _cluster_chain(parts.path, block)
            per_group.append((key, kind, clusters))
    node_info = list(map(per_group.__getitem__, numbers))
    if split_params:
        nodes = trace.nodes
        for members in trace.groups.values():
            g = numbers[members[0]]
            if g in split_params:
                key, kind, clusters = per_group[g]
                params = (f"{key}/params", "params", clusters)
                for i in members:
                    if nodes[i].op.name == "param":
                        node_info[i] = params
    if level == "scalar":
        ids = trace.ids
        node_info = [info if info[1] == "context" else (ids[i], "scalar", info[2]) for i, info in enumerate(node_info)]
    keys = list(map(itemgetter(0), node_info))
    if level != "scalar" and not split_params:  # every node of a group in one display node
        return keys, _displays_by_group(trace, per_group)
    displays: dict[str, DisplayNode] = {}
    for i, (key, kind, clusters) in enumerate(node_info):
        display = displays.get(key)
        if display is None:
            display = displays[key] = DisplayNode(key, kind, clusters=clusters)
        display.members.append(i)
    return keys, displays


def _displays_by_group(trace: Trace, per_group: list[tuple[str, str, tuple[str, ...]]]) -> dict[str, DisplayNode]:
    """The display nodes when each holds whole tag groups: built group by group (the groups
    come in graph order, so the display nodes do too), not node by node."""
    displays: dict[str, DisplayNode] = {}
    merged: set[str] = set()  # display nodes of several groups: their members are sorted at the end
    for (key, kind, clusters), members in zip(per_group, trace.groups.values()):
        display = displays.get(key)
        if display is None:
            displays[key] = DisplayNode(key, kind, members=list(members), clusters=clusters)
        else:
            display.members += members
            merged.add(key)
    for key in merged:
        displays[key].members.sort()
    return displays


def key_edges(trace: Trace, keys: list[str | None]) -> Iterator[tuple[str, str, int, int]]:
    """The edges between different display nodes, in edge order: (child's key, parent's key,
    parent, slot), read from the trace's child indices (no Edge objects)."""
    for parent, children in enumerate(trace.child_indices):
        b = keys[parent]
        if b is None:
            continue
        for slot, a in enumerate(map(keys.__getitem__, children)):
            if a is not None and a != b:
                yield a, b, parent, slot


def key_edge_counts(trace: Trace, keys: list[str | None]) -> dict[tuple[str, str], int]:
    """How many edges join each pair of different display nodes, in the order ``key_edges``
    first meets the pair; counted node by node (a fused node has dozens of inputs) rather
    than edge by edge."""
    counts: dict[tuple[str, str], int] = {}
    get = keys.__getitem__
    for parent, children in enumerate(trace.child_indices):
        b = keys[parent]
        if b is None or not children:
            continue
        for a, n in Counter(map(get, children)).items():
            if a is not None and a != b:
                counts[(a, b)] = counts.get((a, b), 0) + n
    return counts


def _elements(trace: Trace, keys: list[str], members: list[int]) -> list[int]:
    """The values a tensor node summarises: its labelled elements (``q[0]`` ... ``q[3]``), else
    its outputs (the members used outside it)."""
    indices = trace.element_indices
    labelled = [i for i in members if indices[i] is not None]
    return labelled or _outputs(trace, keys, members)


def _outputs(trace: Trace, keys: list[str], members: list[int]) -> list[int]:
    """Members used outside their display node (or the root); all members if none is."""
    root = len(trace.nodes) - 1
    outside = _used_outside(trace, keys)
    out = [i for i in members if i == root or outside[i]]
    return out or members


_outside_cache: dict[tuple[int, int], tuple[list[str], list[bool]]] = {}


def _used_outside(trace: Trace, keys: list[str]) -> list[bool]:
    """For each node, whether a node of another display node uses it: one pass over the
    edges per drawing, kept while the drawing is made."""
    cache_key = (id(trace), id(keys))
    cached = _outside_cache.get(cache_key)
    if cached is not None and cached[0] is keys:
        return cached[1]
    out = [False] * len(keys)
    for parent, children in enumerate(trace.child_indices):
        b = keys[parent]
        for child in children:
            if keys[child] != b:
                out[child] = True
    _outside_cache.clear()
    _outside_cache[cache_key] = (keys, out)
    return out


def _shape(trace: Trace, outputs: list[int]) -> str:
    indices = list(map(trace.element_indices.__getitem__, outputs))
    if indices and all(ix is not None and "," in ix for ix in indices):
        rows = {ix.split(",")[0] for ix in indices}
        cols = {ix.split(",")[1] for ix in indices}
        return f"{len(rows)}×{len(cols)}"
    if len(outputs) == 1:
        return "scalar"
    return f"[{len(outputs)}]"


def _ops_of(trace: Trace, members: Iterable[int]) -> list:
    """The distinct ops of some nodes: ops are shared objects, so they are told apart by
    identity, in C, rather than node by node."""
    used = set(map(id, map(trace.ops.__getitem__, members)))
    return [op for op in trace.distinct_ops if id(op) in used]


def _op_text(ops: list) -> str:
    names = dict.fromkeys(map(str, ops))
    return "/".join(sorted(names)) if len(names) > 1 else next(iter(names))


def _family_of(ops: list) -> str:
    families = {style.family(op.name) for op in ops}
    return families.pop() if len(families) == 1 else "mixed"


def display_graph(
    source: Trace | Value | object,
    level: str = "tensor",
    focus: str | None = None,
    hops: int = 1,
    pos: int | None = None,
    expand_context: bool = False,
) -> DisplayGraph:
    """The display nodes of ``source`` (a Trace, a root Value or a TokenGraph) at ``level``.

    ``pos`` is the token's position (read from the source when not given): nodes of earlier
    positions are the context, one node per position unless ``expand_context``. ``focus``
    keeps the display nodes holding a match plus ``hops`` of neighbours, collapsed."""
    trace = Trace.of(source)
    if level not in LEVELS:
        raise MicrogptError(f"unknown level {level!r}: use block, tensor or scalar")
    if hops < 0:
        raise MicrogptError(f"hops must be 0 or more, got {hops}")
    if pos is None:
        pos = getattr(getattr(source, "spec", None), "pos", None)
        if pos is None:
            pos = _token_position(trace)
    base_keys, nodes = _base_keys(trace, level, pos, expand_context)
    keys: list[str | None] = list(base_keys)
    if focus is not None:
        keys, nodes = _apply_focus(trace, base_keys, nodes, focus, hops, level)
    return DisplayGraph(trace, level, keys, base_keys, _context_in_position_order(nodes))


def _context_in_position_order(nodes: dict[str, DisplayNode]) -> dict[str, DisplayNode]:
    """The context nodes sorted by position (``context@pos2`` before ``context@pos10``), in the
    place of the first of them; the others keep the graph's order."""
    context = sorted((d for d in nodes.values() if d.kind == "context"), key=lambda d: _position(d.key))
    if not context:
        return nodes
    out: dict[str, DisplayNode] = {}
    for key, display in nodes.items():
        if display.kind != "context":
            out[key] = display
        elif context:
            out.update((d.key, d) for d in context)
            context = []
    return out


def _position(key: str) -> int:
    return int(key.rsplit("@pos", 1)[1])


@dataclass(frozen=True)
class NodeFacts:
    """What a display node's label (and its networkx attributes) says about its members."""

    summarised: list[int]  # the members its data and grad summaries cover
    data: Summary
    grad: Summary
    shape: str  # "scalar", "[4]", "4×4"
    op: str  # the op of the summarised members ("dot", or "add/dot" when several)
    family: str  # the op family that picks the fill
    nonfinite: int  # members holding a nan or an infinity, in data or grad


def node_facts(graph: DisplayGraph, display: DisplayNode) -> NodeFacts:
    trace, members, kind = graph.trace, display.members, display.kind
    if kind == "scalar":
        summarised = members
    elif kind in ("tensor", "params"):
        summarised = _elements(trace, graph.base_keys, members)
    else:  # block, context, neighbour: what leaves the node
        summarised = _outputs(trace, graph.base_keys, members)
    ops = _ops_of(trace, summarised)  # once: for the op text and the fill
    if kind == "scalar":
        family = style.family(trace.nodes[members[0]].op.name)
    else:
        family = _family_of(ops) if kind in ("tensor", "params", "block") else "mixed"
    nodes = trace.nodes
    return NodeFacts(
        summarised,
        Summary.of(nodes[i].data for i in summarised),
        Summary.of(nodes[i].grad for i in summarised),
        _shape(trace, summarised),
        _op_text(ops),
        family,
        sum(1 for i in members if not is_finite_node(nodes[i])),
    )


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
    """A ``graphviz.Digraph`` of ``source`` (a Trace, a root Value or a TokenGraph), which
    displays itself in a notebook (see the module's docstring).

    ``pos`` is the token's position (read from the root's tag when not given): nodes of
    earlier positions are the context, collapsed unless ``expand_context``."""
    import graphviz  # noqa: F401  (fails here, not halfway, when the package is missing)

    if rankdir not in RANKDIRS:
        raise MicrogptError(f"unknown rankdir {rankdir!r}: use TB, BT, LR or RL")
    graph = display_graph(source, level, focus, hops, pos, expand_context)
    trace, keys, displays = graph.trace, graph.keys, graph.nodes

    dot = _drawing_class()(name="microgpt", strict=False)
    dot.attr(rankdir=rankdir, fontname=style.FONT, labelloc="t", fontsize="16", newrank="true", remincross="false")
    dot.attr("node", fontname=style.FONT, fontsize=NODE_FONTSIZE, shape="box", style="rounded,filled")
    dot.attr("edge", fontname=style.FONT, fontsize="8", color="#6b7280", arrowsize="0.6")
    if title:
        dot.attr(label=title)

    # -- nodes, grouped into nested clusters by tag path ---------------------------------
    tree: dict[tuple[str, ...], list[tuple[str, dict[str, str]]]] = {}
    families_seen: set[str] = set()
    blocks_seen: set[str] = set()
    flagged = False
    for display in displays.values():
        name, attrs, fam, nonfinite = drawn_node(graph, display)
        label = attrs["label"]
        width = style.label_width(label, float(attrs.get("fontsize", NODE_FONTSIZE)))
        if width is not None:
            attrs["width"] = width
        attrs["label"] = label.replace("\n", "\\n")  # DOT's line break, not a raw newline
        families_seen.add(fam)
        flagged = flagged or nonfinite
        tree.setdefault(display.clusters, []).append((name, attrs))
        for c in display.clusters:
            blocks_seen.add(style.block_kind(c) if c != "context" else "context")

    # -- edges ------------------------------------------------------------------------------
    drawn: list[tuple[str, str, dict[str, str]]] = []
    counts: dict[tuple[str, str], int] = {}  # edges between collapsed nodes: drawn once, counted
    if level == "scalar":
        for a, b, parent, slot in key_edges(trace, keys):
            if displays[a].kind == "scalar" and displays[b].kind == "scalar":
                label = {"label": _num(float(trace.nodes[parent].local_grads[slot]))} if edge_grads else {}
                drawn.append((a, b, label))
            else:
                counts[(a, b)] = counts.get((a, b), 0) + 1
    else:
        counts = key_edge_counts(trace, keys)
    drawn += [(a, b, {"tooltip": style.counted(n, "scalar edge")}) for (a, b), n in counts.items()]

    rows = reading_rows(graph, [(a, b) for a, b, _ in drawn])
    _emit_clusters(dot, tree, rows)
    along = {(a, b) for names, chained in rows if chained for a, b in itertools.combinations(names, 2)}
    for a, b, attrs in drawn:
        if (a, b) in along and not holds_parameters(graph, a):  # from an earlier position: attention's keys and values
            attrs = {**attrs, "color": style.BLOCK_COLOUR["attn"], "penwidth": "1.5"}
        elif level != "scalar" and holds_parameters(graph, a):  # weights drawn light, the data's path dark
            attrs = {**attrs, "color": style.PARAM_EDGE}
        dot.edge(a, b, **attrs)
    if legend:
        _legend(dot, families_seen, blocks_seen, flagged, anchor=next(reversed(displays), None))
    return dot


# The order of a model's parts from input to output: clusters are written, and so drawn, in
# this order (``layer2`` before ``layer10``, ``h2`` before ``h10``).
STAGES = ("context", "embed", "wte", "wpe", "layer", "attn", "mlp", "lm_head", "logits", "probs", "loss")


def stage_key(path: str) -> tuple:
    """Where a cluster path comes in the model's order: its segments by ``STAGES``, then by number."""
    key = []
    for seg in path.split("."):
        word = seg.rstrip("0123456789")
        number = seg[len(word) :]
        key.append((STAGES.index(word) if word in STAGES else len(STAGES), int(number) if number else -1, seg))
    return tuple(key)


def holds_parameters(graph: DisplayGraph, key: str) -> bool:
    """Whether a drawn node holds parameters (at block level, a block's; at tensor level, a weight matrix)."""
    d = graph.nodes[key]
    return d.kind == "params" or (d.kind == "tensor" and graph.trace.nodes[d.members[0]].op.name == "param")


def reading_rows(graph: DisplayGraph, edges: list[tuple[str, str]]) -> list[tuple[list[str], bool]]:
    """The nodes each drawn on one rank, left to right: ``(names, chained)``; a chained row is
    kept in its order by invisible edges.

    - The same block or tensor at each position (``layer0.attn@pos0`` ... ``@pos4``), in
      position order; at block level the block's parameters head the row. So a whole name
      reads left to right, and attention's edges from earlier positions run along the row
      instead of pushing each position one rank lower (the diagonal strip).
    - At tensor level, a parameter tensor sits beside the first node it feeds when no other
      input of that node sits in the parameter's own cluster (``lm_head`` beside the logits,
      ``wo`` beside the heads' joined output): a rank higher, it would stretch its cluster up
      beside the layer above, or hang far from the node it feeds.
    - At block level, the context (the earlier positions) on the rank of the block that reads
      it, so the parameters it shares with that block feed it along the row, not upwards."""
    displays = graph.nodes
    rows: list[tuple[list[str], bool]] = []
    if graph.level == "scalar":
        return rows
    inputs: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    for a, b in edges:
        inputs.setdefault(b, []).append(a)
        consumers.setdefault(a, []).append(b)

    def is_param(key: str) -> bool:
        return holds_parameters(graph, key)

    # Series computed from the same inputs (q, k and v from the norm) share a row, position
    # by position: q@pos0 k@pos0 v@pos0 q@pos1 ...
    series: dict[tuple[tuple[str, ...], frozenset[str]], list[tuple[int, int, str]]] = {}
    bases: dict[str, int] = {}
    for d in displays.values():
        if d.kind in ("block", "tensor") and "@pos" in d.key:
            base, p = d.key.rsplit("@pos", 1)
            fed_by = frozenset(a.rsplit("@pos", 1)[0] for a in inputs.get(d.key, []) if not is_param(a)) - {base}
            order = bases.setdefault(base, len(bases))
            series.setdefault((d.clusters, fed_by), []).append((int(p), order, d.key))
    for items in series.values():
        names = [key for _, _, key in sorted(items)]
        params = names[0].rsplit("@pos", 1)[0] + "/params"
        if params in displays:
            names.insert(0, params)
        if len(names) > 1:
            rows.append((names, True))
    context = [d.key for d in displays.values() if d.kind == "context"]
    fed = [c for c in consumers.get(context[0], []) if displays[c].kind == "block"] if context else []
    if fed:  # the earlier positions beside the block that reads them, left of the token's own
        rows.append(([context[0], fed[0]], False))
    if graph.level == "tensor":
        for d in displays.values():
            if d.key in inputs or not is_param(d.key):
                continue
            inside = [c for c in consumers.get(d.key, []) if displays[c].clusters[: len(d.clusters)] == d.clusters]
            if inside and not any(a != d.key and displays[a].clusters == d.clusters for a in inputs[inside[0]]):
                rows.append(([d.key, inside[0]], False))
    return rows


def _apply_focus(trace, keys, displays, pattern, hops, level):
    """Keep the display nodes holding a match, plus ``hops`` of neighbours, collapsed."""
    selected = select_or_explain(trace, pattern)
    focus_keys = {keys[i] for i in selected}
    adjacency: dict[str, set[str]] = {}
    for a, b, _, _ in key_edges(trace, keys):
        adjacency.setdefault(a, set()).add(b)
        adjacency.setdefault(b, set()).add(a)
    reached = set(focus_keys)
    frontier = set(focus_keys)
    for _ in range(hops):
        frontier = {n for k in frontier for n in adjacency.get(k, ())} - reached
        reached |= frontier
    neighbours = reached - focus_keys

    new_keys: list[str | None] = []
    new_displays: dict[str, DisplayNode] = {}
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
            display = new_displays[new_key] = DisplayNode(new_key, kind, clusters=clusters, focus=key in focus_keys)
        display.members.append(i)
    return new_keys, new_displays


def _short(key: str, clusters: tuple[str, ...]) -> str:
    """A name as its innermost cluster shows it: ``q@pos0`` in the cluster titled
    ``layer0.attn.h0``; a name outside the cluster's path stays whole."""
    inner = clusters[-1] if clusters else ""
    return key[len(inner) + 1 :] if inner and key.startswith(inner + ".") else key


def _op_counts(ops: Counter) -> list[str]:
    """``17 add, 2 const, 1 div`` ..., five kinds of op a line."""
    counts = [f"{n} {name}" for name, n in sorted(ops.items())]
    return [", ".join(counts[k : k + 5]) for k in range(0, len(counts), 5)]


def drawn_node(graph: DisplayGraph, display: DisplayNode) -> tuple[str, dict[str, str], str, bool]:
    """A display node's name, drawing attributes (Graphviz's names; the label as plain lines),
    op family and whether it holds a non-finite value: what the DOT and Mermaid drawings show."""
    trace = graph.trace
    members = display.members
    kind = display.kind
    facts = node_facts(graph, display)
    fam = facts.family
    shape = facts.shape.replace("×", "x")
    attrs: dict[str, str] = {}
    if kind == "scalar":
        node = trace.nodes[members[0]]
        name = _short(trace.ids[members[0]], display.clusters)
        label = f"{name}\n{node.op}\ndata {_num(node.data)}, grad {_num(node.grad)}"
        attrs["fillcolor"] = style.FAMILY_COLOUR[fam]
    elif kind == "context":
        lines = [
            display.key,
            f"context: {style.counted(len(members), 'node')}, {len(facts.summarised):,} used later",
            _summary_line("data", facts.data),
            _summary_line("grad", facts.grad),
        ]
        label = "\n".join(lines + _nonfinite_line(trace, facts, members))
        attrs["fillcolor"] = style.CONTEXT_FILL
        attrs["color"] = style.BLOCK_COLOUR["context"]
    elif kind == "neighbour":
        group = display.key.removeprefix("hop/")
        label = "\n".join(
            [
                _short(group, display.clusters),
                f"({style.counted(len(members), 'node')}, collapsed)",
                *_nonfinite_line(trace, facts, members, summaries_shown=False),
            ]
        )
        attrs.update(
            fillcolor=style.NEIGHBOUR_FILL, color=style.NEIGHBOUR_BORDER, style="rounded,dashed,filled", fontsize="9"
        )
    else:
        if kind in ("block", "params"):
            head = display.key if kind == "block" else f"{display.key.removesuffix('/params')} parameters"
            ops = Counter(trace.nodes[i].op.name for i in members)
            second = (
                f"{style.counted(len(members), 'param')} reached"
                if kind == "params"
                else f"{style.counted(len(members), 'node')}, out {shape}"
            )
            lines = [head, second]
            if kind == "block":
                lines += _op_counts(ops)
            attrs["color"] = style.BLOCK_COLOUR[style.block_kind(display.clusters[-1] if display.clusters else "")]
            attrs["penwidth"] = "2"
        else:
            lines = [_short(display.key, display.clusters), f"{shape}, {facts.op}"]
        lines += [_summary_line("data", facts.data), _summary_line("grad", facts.grad)]
        label = "\n".join(lines + _nonfinite_line(trace, facts, members))
        attrs["fillcolor"] = style.FAMILY_COLOUR[fam]
    if facts.nonfinite:
        attrs["fillcolor"] = style.NONFINITE_FILL
    if display.focus and kind != "neighbour":
        attrs["color"] = style.FOCUS_BORDER
        attrs["penwidth"] = "2"
    attrs["label"] = label
    return display.key, attrs, fam, facts.nonfinite > 0


def _nonfinite_line(trace: Trace, facts: NodeFacts, members: list[int], summaries_shown: bool = True) -> list[str]:
    """A line counting the members holding a nan or an infinity, unless the label's summaries
    count every one of them already."""
    if not facts.nonfinite:
        return []
    in_summaries = sum(1 for i in facts.summarised if not is_finite_node(trace.nodes[i]))
    if summaries_shown and facts.nonfinite == in_summaries:
        return []
    return [f"non-finite: {facts.nonfinite:,} of {style.counted(len(members), 'node')}"]


def _emit_clusters(
    dot,
    tree: dict[tuple[str, ...], list[tuple[str, dict[str, str]]]],
    rows: list[tuple[list[str], bool]],
) -> None:
    """Nodes at the top level go straight in; each cluster path becomes nested subgraphs,
    written in the model's order (``STAGES``) and titled with the whole path, so the nodes
    inside say only the rest of their names. Each row goes in the innermost cluster holding
    all its nodes."""
    import graphviz

    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for chain in tree:
        for k in range(len(chain)):
            parent, child = chain[:k], chain[: k + 1]
            siblings = children.setdefault(parent, [])
            if child not in siblings:
                siblings.append(child)
    chain_of = {name: chain for chain, nodes in tree.items() for name, _ in nodes}
    rows_in: dict[tuple[str, ...], list[tuple[list[str], bool]]] = {}
    for names, chained in rows:
        common = chain_of[names[0]]
        for name in names[1:]:
            other = chain_of[name]
            k = 0
            while k < min(len(common), len(other)) and common[k] == other[k]:
                k += 1
            common = common[:k]
        rows_in.setdefault(common, []).append((names, chained))

    def fill(graph, chain: tuple[str, ...]) -> None:
        for name, attrs in tree.get(chain, []):
            graph.node(name, **attrs)
        for child in sorted(children.get(chain, []), key=lambda c: stage_key(c[-1])):
            path = child[-1]
            sub = graphviz.Digraph(name=f"cluster_{path}")
            kind = "context" if path == "context" else style.block_kind(path)
            sub.attr(
                label=path if path != "context" else "context (earlier positions)",
                color=style.BLOCK_COLOUR[kind],
                style="rounded",
                fontcolor=style.BLOCK_COLOUR[kind],
            )
            fill(sub, child)
            if path == "context":
                _one_rank(sub, [name for name, _ in tree.get(child, [])], chained=True)
            graph.subgraph(sub)
        for names, chained in rows_in.get(chain, []):
            _one_rank(graph, names, chained)

    fill(dot, ())


def _one_rank(cluster, names: list[str], chained: bool) -> None:
    """Draw ``names`` on one rank; ``chained``: in this order, kept by invisible edges, which
    dot and graphviz-pure draw left to right (top to bottom with LR). The graph's
    ``remincross=false`` keeps them so: the second crossing-minimisation pass over clusters
    reordered them (pos1, pos2, pos0 at --pos 3) whatever the edges said."""
    if len(names) < 2:
        return
    import graphviz

    row = graphviz.Digraph()
    row.attr(rank="same")
    if chained:
        for a, b in itertools.pairwise(names):
            row.edge(a, b, style="invis")
    else:
        for name in names:
            row.node(name)
    cluster.subgraph(row)


LEGEND_ROW = 7  # entries a row of the legend holds at most


def _legend(dot, families: set[str], blocks: set[str], nonfinite: bool, anchor: str | None = None) -> None:
    """The fills and borders the drawing uses, in rows under it (an invisible edge from
    ``anchor``, the last node drawn, puts the legend below the graph rather than beside it)."""
    import graphviz

    entries: list[tuple[str, dict[str, str]]] = []
    if nonfinite:
        entries.append(("legend/nonfinite", {"label": style.NONFINITE_LABEL, "fillcolor": style.NONFINITE_FILL}))
    for fam in style.FAMILY_COLOUR:
        if fam in families:
            entries.append((f"legend/{fam}", {"label": style.FAMILY_LABEL[fam], "fillcolor": style.FAMILY_COLOUR[fam]}))
    for block in style.BLOCK_COLOUR:
        if block in blocks:
            attrs = {"label": f"block: {block}", "fillcolor": "#ffffff", "color": style.BLOCK_COLOUR[block]}
            entries.append((f"legend/block/{block}", {**attrs, "penwidth": "2"}))
    legend = graphviz.Digraph(name="cluster_legend")
    legend.attr(label="legend", style="rounded", color="#9ca3af", fontcolor="#374151")
    for name, attrs in entries:
        legend.node(name, fontsize="9", **attrs)
    per_row = math.ceil(len(entries) / math.ceil(len(entries) / LEGEND_ROW)) if entries else 1
    rows = [[name for name, _ in entries[k : k + per_row]] for k in range(0, len(entries), per_row)]
    for row in rows:
        _one_rank(legend, row, chained=True)
    for upper, lower in itertools.pairwise(rows):
        legend.edge(upper[0], lower[0], style="invis")
    dot.subgraph(legend)
    if anchor is not None and rows:
        dot.edge(anchor, rows[0][0], style="invis")


@functools.cache
def _drawing_class() -> type:
    """``graphviz.Digraph`` whose notebook display lays out with ``viz.render``'s choice of
    program (the system ``dot``, else graphviz-pure) instead of requiring one named ``dot``."""
    import graphviz

    class Drawing(graphviz.Digraph):
        def draw(self, fmt: str = "svg", program: str | None = None) -> bytes:
            """The drawing as ``fmt`` bytes, laid out as ``mgx graph`` would (``program``: as
            ``--layout-program``); a MicrogptError when there is no program."""
            from viz.render import find_layout_program, layout

            found = find_layout_program(program)
            if found is None:
                raise MicrogptError(NO_PROGRAM)
            return layout(found, self.source, fmt)

        def _repr_mimebundle_(self, include=None, exclude=None, **_):
            from viz.render import find_layout_program

            if find_layout_program(None) is None:  # the source, and how to see the picture
                return {"text/plain": f"{NO_PROGRAM}\n{self.source}"}
            return super()._repr_mimebundle_(include, exclude)

        def _repr_image_svg_xml(self) -> str:
            return self.draw("svg").decode("utf-8")

        def _repr_image_png(self) -> bytes:
            return self.draw("png")

        def _repr_image_jpeg(self) -> bytes:
            return self.draw("jpeg")

    return Drawing


NO_PROGRAM = "no layout program to draw it: pip install graphviz-pure (or apt-get install graphviz)"


def describe(graph, tokenizer, model_description: str) -> str:
    """The title line of a token's drawing: model, token, position, target and loss."""
    spec = graph.spec
    return (
        f"microgpt-x | {model_description} | token {tokenizer.token_name(spec.token)!r} at position {spec.pos}"
        f" | target {tokenizer.token_name(spec.target)!r} | loss {graph.root.data:.4f} | {graph.granularity}"
    )
