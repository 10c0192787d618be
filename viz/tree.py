"""The inspect view: selected nodes of a Trace as a rich ``Tree``, nested by tag path.

    layer0.attn.h0                      55 nodes  data min … max …  grad …
    ├── q@pos2                           4 nodes  ...
    │   ├── layer0.attn.h0.q[0]@pos2  dot  data +0.06224  grad +0.0003394
    ...

Three questions it answers, each a function returning plain data (``to_json``) or a
``Tree`` (``build_tree``); nothing here prints:

- what are the values and gradients of a part of the model (groups nest by the segments
  of the tag path; a group line summarises its nodes' data and grad);
- what was a node computed from (``depth``): each input with its local derivative, so
  every line reads ``local ∂ × upstream grad = contribution`` (the chain rule, one edge);
- why is a gradient what it is (``why``): the node's grad split into one contribution per
  consumer, ``local ∂ × consumer's grad``, largest first; they sum to the grad. For a
  parameter the contributions are also added up by the position and the attention head
  each use of it belongs to.

Group summaries are over the group's *outputs* (``Trace.group_outputs``: the tensor's
values, not the partial sums and constants that computed them) when the group has any
among the selection, else over all its selected nodes; each line says which.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from rich.tree import Tree

from microgpt.numbers import to_json_number
from viz.style import counted
from viz.trace import Edge, Summary, Trace, fsum

SORTS = ("order", "grad", "data", "id")
_HEAD = re.compile(r"^h\d+$")

# -- style: sign by hue, magnitude by weight --------------------------------------------
DATA_POSITIVE, DATA_NEGATIVE = "cyan", "magenta"
GRAD_POSITIVE, GRAD_NEGATIVE = "green", "red"
GROUP_STYLE, ID_STYLE, OP_STYLE, NOTE_STYLE = "bold", "", "yellow", "dim italic"
NONFINITE_STYLE = "bold reverse red"  # nan, inf, -inf, and the counts of them in summaries


def fmt(x: float, digits: int = 4) -> str:
    """A number as every line shows it: sign, 4 significant digits (summaries: 3)."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:+.{digits}g}"


def _value_style(x: float, scale: float, positive: str, negative: str) -> str:
    """Hue for the sign; bold when large (≥ 10% of the largest), dim when tiny (< 0.1%); a
    nan or an infinity is flagged."""
    x = float(x)
    if not math.isfinite(x):
        return NONFINITE_STYLE
    if x == 0:
        return "dim"
    style = positive if x > 0 else negative
    if scale > 0:
        ratio = abs(x) / scale
        if ratio >= 0.1:
            style = f"bold {style}"
        elif ratio < 1e-3:
            style = f"dim {style}"
    return style


# -- grouping ------------------------------------------------------------------------------
@dataclass
class Group:
    """A run of tag-path segments, with the selected nodes under it."""

    name: str  # what its line shows: "attn", "q@pos2", or a collapsed "layer0.attn.h0"
    path: str  # the full prefix, e.g. "layer0.attn.h0" or "layer0.attn.h0.q@pos2"
    children: dict[str, Group] = field(default_factory=dict)
    members: list[int] = field(default_factory=list)  # nodes whose tensor this is
    nodes: list[int] = field(default_factory=list)  # every selected node under it, in order

    @property
    def subgroups(self) -> list[Group]:
        return list(self.children.values())


def _key_path(trace: Trace, i: int) -> list[str]:
    parts = trace.tag_parts[i]
    if parts is None:
        return ["(untagged)"]
    segments = parts.segments or ["(no path)"]
    last = segments[-1] if parts.pos is None else f"{segments[-1]}@pos{parts.pos}"
    return [*segments[:-1], last]


def group_selection(trace: Trace, selection: Sequence[int], title: str = "") -> Group:
    """Nest the selected nodes by tag path; chains of single groups collapse to one line."""
    root = Group(title, "")
    for i in sorted(selection):
        group = root
        group.nodes.append(i)
        for segment in _key_path(trace, i):
            path = f"{group.path}.{segment}" if group.path else segment
            group = group.children.setdefault(segment, Group(segment, path))
            group.nodes.append(i)
        group.members.append(i)
    _collapse(root)
    return root


def _collapse(group: Group) -> None:
    for key, child in list(group.children.items()):
        while not child.members and len(child.children) == 1:
            (only,) = child.children.values()
            child = Group(f"{child.name}.{only.name}", only.path, only.children, only.members, only.nodes)
        group.children[key] = child
        _collapse(child)


@dataclass(frozen=True)
class GroupSummary:
    over: str  # "outputs" or "nodes": which of the group's nodes were summarised
    count: int
    data: Summary
    grad: Summary


def summarise(trace: Trace, nodes: Sequence[int], outputs: set[int]) -> GroupSummary:
    chosen = [i for i in nodes if i in outputs]
    over = "outputs"
    if not chosen:
        chosen, over = list(nodes), "nodes"
    return GroupSummary(
        over,
        len(chosen),
        Summary.of(trace.nodes[i].data for i in chosen),
        Summary.of(trace.nodes[i].grad for i in chosen),
    )


def tensor_outputs(trace: Trace, selection: Sequence[int]) -> set[int]:
    """The selected nodes that are outputs of their tensor group."""
    outputs: set[int] = set()
    for name in dict.fromkeys(trace.group_of(i) for i in selection):
        outputs.update(trace.group_outputs(name))
    return outputs


# -- ordering ------------------------------------------------------------------------------
def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _magnitude(x: float) -> float:
    x = abs(float(x))
    return math.inf if math.isnan(x) else x


def order_nodes(trace: Trace, nodes: Sequence[int], sort: str) -> list[int]:
    """``order``: the graph's (topological) order; ``grad`` / ``data``: largest magnitude
    first; ``id``: by id, numbers compared as numbers."""
    nodes = list(nodes)
    if sort == "grad":
        return sorted(nodes, key=lambda i: (-_magnitude(trace.nodes[i].grad), i))
    if sort == "data":
        return sorted(nodes, key=lambda i: (-_magnitude(trace.nodes[i].data), i))
    if sort == "id":
        return sorted(nodes, key=lambda i: _natural(trace.ids[i]))
    if sort != "order":
        raise ValueError(f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
    return nodes


def order_groups(trace: Trace, groups: list[Group], sort: str) -> list[Group]:
    if sort == "grad":
        return sorted(groups, key=lambda g: -max(_magnitude(trace.nodes[i].grad) for i in g.nodes))
    if sort == "data":
        return sorted(groups, key=lambda g: -max(_magnitude(trace.nodes[i].data) for i in g.nodes))
    if sort == "id":
        return sorted(groups, key=lambda g: _natural(g.name))
    return groups


# -- the chain rule, one edge at a time ---------------------------------------------------
@dataclass(frozen=True)
class Contribution:
    """One edge's share of the child's gradient: local ∂ × the parent's grad."""

    edge: Edge
    local: float
    upstream: float
    value: float


def contribution(trace: Trace, edge: Edge) -> Contribution:
    local = float(edge.local_grad)
    upstream = float(trace.nodes[edge.parent].grad)
    return Contribution(edge, local, upstream, local * upstream)


def input_contributions(trace: Trace, i: int, sort: str = "order") -> list[Contribution]:
    """What node ``i`` was computed from: one entry per input edge, in input order, or with
    ``sort="grad"`` the largest |contribution| first."""
    out = [contribution(trace, e) for e in trace.inputs[i]]
    if sort == "grad":
        out.sort(key=lambda c: -_magnitude(c.value))
    elif sort == "data":
        out.sort(key=lambda c: -_magnitude(trace.nodes[c.edge.child].data))
    elif sort == "id":
        out.sort(key=lambda c: _natural(trace.ids[c.edge.child]))
    return out


# -- gradient provenance -------------------------------------------------------------------
@dataclass(frozen=True)
class Provenance:
    """A node's grad split by consumer (largest |contribution| first); for a parameter, also
    by position and by attention head (None: a use outside any head, or without a position)."""

    node: int
    grad: float
    contributions: list[Contribution]
    total: float  # the contributions' sum (viz.trace.fsum): the grad, to float rounding
    by_pos: list[tuple[int | None, float]]
    by_head: list[tuple[str | None, float]]
    is_root: bool


def _head_of(trace: Trace, i: int) -> str | None:
    parts = trace.tag_parts[i]
    if parts is None:
        return None
    return next((s for s in parts.segments if _HEAD.match(s)), None)


def _partners(trace: Trace, edge: Edge) -> list[int]:
    """The operands a use is paired with: a dot's wᵢ pairs with xᵢ, a product's a with b."""
    node = trace.nodes[edge.parent]
    inputs = trace.inputs[edge.parent]
    if node.op.name == "dot":
        half = len(inputs) // 2
        slot = edge.slot + half if edge.slot < half else edge.slot - half
        return [inputs[slot].child]
    if node.op.name in ("mul", "div") and len(inputs) == 2:
        return [inputs[1 - edge.slot].child]
    return []


def use_head(trace: Trace, edge: Edge) -> str | None:
    """The head a use belongs to: the consumer's tag (``layer0.attn.h2.q[1]@pos3`` -> h2),
    else the operand it is multiplied with (a column of ``wo`` meets head h's output)."""
    head = _head_of(trace, edge.parent)
    if head is None:
        for partner in _partners(trace, edge):
            head = _head_of(trace, partner)
            if head is not None:
                break
    return head


def use_position(trace: Trace, edge: Edge) -> int | None:
    """The position a use was computed at: the consumer's, else its first consumer's with one."""
    frontier, seen = [edge.parent], set()
    while frontier:
        i = frontier.pop(0)
        parts = trace.tag_parts[i]
        if parts is not None and parts.pos is not None:
            return parts.pos
        for e in trace.consumers[i]:
            if e.parent not in seen:
                seen.add(e.parent)
                frontier.append(e.parent)
    return None


def _add_up(pairs: list[tuple[Any, float]]) -> list[tuple[Any, float]]:
    totals: dict[Any, list[float]] = {}
    for key, value in pairs:
        totals.setdefault(key, []).append(value)
    summed = [(key, fsum(values)) for key, values in totals.items()]
    return sorted(summed, key=lambda kv: -_magnitude(kv[1]))


def provenance(trace: Trace, i: int) -> Provenance:
    """Where node ``i``'s grad came from: ``grad = Σ over consumers of local ∂ × their grad``."""
    contributions = [contribution(trace, e) for e in trace.consumers[i]]
    contributions.sort(key=lambda c: -_magnitude(c.value))
    total = fsum(c.value for c in contributions)
    by_pos: list[tuple[int | None, float]] = []
    by_head: list[tuple[str | None, float]] = []
    if trace.nodes[i].op.name == "param":
        by_pos = _add_up([(use_position(trace, c.edge), c.value) for c in contributions])
        by_head = _add_up([(use_head(trace, c.edge), c.value) for c in contributions])
    is_root = i == len(trace) - 1
    return Provenance(i, float(trace.nodes[i].grad), contributions, total, by_pos, by_head, is_root)


# -- the rich tree -------------------------------------------------------------------------
@dataclass(frozen=True)
class TreeOptions:
    limit: int | None = 10  # entries shown per group / per list; None: all
    sort: str = "order"
    depth: int = 0  # expand each shown node's inputs this many levels
    why: bool = False
    color: bool = True
    adam: dict[int, Any] | None = None  # node -> viz.optimizer.AdamState (--adam)


class _Painter:
    def __init__(self, trace: Trace, selection: Sequence[int], options: TreeOptions) -> None:
        self.trace = trace
        self.options = options
        self.expanded: set[int] = set()  # nodes whose inputs the tree already shows
        nodes = trace.nodes
        self.data_scale = max((_finite_abs(nodes[i].data) for i in selection), default=0.0)
        self.grad_scale = max((_finite_abs(nodes[i].grad) for i in selection), default=0.0)

    def number(self, x: float, kind: str, digits: int = 4) -> Text:
        if not self.options.color:
            return Text(fmt(x, digits))
        if kind == "data":
            style = _value_style(x, self.data_scale, DATA_POSITIVE, DATA_NEGATIVE)
        else:
            style = _value_style(x, self.grad_scale, GRAD_POSITIVE, GRAD_NEGATIVE)
        return Text(fmt(x, digits), style=style)

    def styled(self, text: str, style: str) -> Text:
        return Text(text, style=style if self.options.color else "")

    def node_line(self, i: int) -> Text:
        node = self.trace.nodes[i]
        return Text.assemble(
            self.styled(self.trace.ids[i], ID_STYLE),
            "  ",
            self.styled(str(node.op), OP_STYLE),
            "  data ",
            self.number(node.data, "data"),
            "  grad ",
            self.number(node.grad, "grad"),
        )

    def summary(self, summary: Summary, kind: str) -> Text:
        """``data min/mean/max a/b/c norm n`` over the finite values, then ``· 1 nan · 2 inf``
        (flagged) for the others; only the flags when no value is finite."""
        text = Text(f"{kind} ")
        if summary.finite or not summary.flags():
            text.append_text(
                Text.assemble(
                    "min/mean/max ",
                    self.number(summary.min, kind, 3),
                    "/",
                    self.number(summary.mean, kind, 3),
                    "/",
                    self.number(summary.max, kind, 3),
                    f" norm {summary.norm:.3g}",
                )
            )
        for k, (word, n) in enumerate(summary.flags()):
            text.append(" · " if summary.finite or k else "")
            text.append(f"{n} {word}", style=NONFINITE_STYLE if self.options.color else "")
        return text

    def group_line(self, group: Group, summary: GroupSummary) -> Text:
        size = len(group.nodes)
        what = counted(size, "node")
        if summary.over == "outputs" and summary.count != size:
            what += f", {counted(summary.count, 'output')}"
        return Text.assemble(
            self.styled(group.name, GROUP_STYLE),
            f"  ({what})  ",
            self.summary(summary.data, "data"),
            " · ",
            self.summary(summary.grad, "grad"),
        )

    def note(self, text: str) -> Text:
        return self.styled(text, NOTE_STYLE)


def _finite_abs(x: float) -> float:
    x = abs(float(x))
    return x if math.isfinite(x) else 0.0


def _limited(items: list[Any], limit: int | None) -> tuple[list[Any], int]:
    if limit is None or len(items) <= limit:
        return items, 0
    return items[:limit], len(items) - limit


def _hidden(count: int) -> str:
    return f"… {count} more hidden (--limit to show)"


def build_tree(
    trace: Trace,
    selection: Sequence[int],
    *,
    title: str = "",
    limit: int | None = 10,
    sort: str = "order",
    depth: int | None = None,
    why: bool = False,
    color: bool = True,
    adam: dict[int, Any] | None = None,
) -> Tree:
    """The selected nodes as a rich Tree. ``depth`` defaults to 1 when one node is selected
    (what it was computed from), else 0."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
    if depth is None:
        depth = 1 if len(selection) == 1 else 0
    options = TreeOptions(limit, sort, depth, why, color, adam)
    paint = _Painter(trace, selection, options)
    outputs = tensor_outputs(trace, selection)
    root_group = group_selection(trace, selection, title)
    tree = Tree(paint.styled(title, GROUP_STYLE), guide_style="dim" if color else "")
    _add_group_children(tree, root_group, trace, outputs, paint)
    return tree


def _add_group_children(tree: Tree, group: Group, trace: Trace, outputs: set[int], paint: _Painter) -> None:
    options = paint.options
    subgroups, hidden_groups = _limited(order_groups(trace, group.subgroups, options.sort), options.limit)
    for sub in subgroups:
        branch = tree.add(paint.group_line(sub, summarise(trace, sub.nodes, outputs)))
        if options.adam and any(i in options.adam for i in sub.nodes):
            branch.add(paint.note(_adam_group_text([options.adam[i] for i in sub.nodes if i in options.adam])))
        _add_group_children(branch, sub, trace, outputs, paint)
    if hidden_groups:
        tree.add(paint.note(f"… {counted(hidden_groups, 'more group')} hidden (--limit to show)"))
    members, hidden = _limited(order_nodes(trace, group.members, options.sort), options.limit)
    for i in members:
        leaf = tree.add(paint.node_line(i))
        if options.adam and i in options.adam:
            leaf.add(paint.note(_adam_text(options.adam[i])))
        _add_inputs(leaf, i, trace, paint, options.depth)
        if options.why:
            _add_why(leaf, i, trace, paint)
    if hidden:
        tree.add(paint.note(_hidden(hidden)))


def _adam_text(state) -> str:
    return (
        f"Adam  m {fmt(state.m)}  v {fmt(state.v)}  m̂ {fmt(state.m_hat)}  v̂ {fmt(state.v_hat)}"
        f"  last update {fmt(state.update)}"
    )


def _adam_group_text(states: list) -> str:
    updates = Summary.of(s.update for s in states)
    m_hat = Summary.of(s.m_hat for s in states)
    v_hat = Summary.of(s.v_hat for s in states)
    return (
        f"Adam over {counted(len(states), 'parameter')}  last update norm {updates.norm:.3g}, "
        f"min/max {fmt(updates.min)}/{fmt(updates.max)}  m̂ norm {m_hat.norm:.3g}  v̂ mean {fmt(v_hat.mean)}"
    )


def _add_inputs(tree: Tree, i: int, trace: Trace, paint: _Painter, depth: int) -> None:
    """What node ``i`` was computed from, ``depth`` levels down. The graph shares nodes, so
    a node's inputs are drawn once per tree; where it comes again a note says so (without
    that, each level could multiply the lines, and a deep --depth would never finish)."""
    if depth <= 0 or not trace.inputs[i]:
        return
    if i in paint.expanded:
        tree.add(paint.note("… its inputs are shown above"))
        return
    paint.expanded.add(i)
    options = paint.options
    shown, hidden = _limited(input_contributions(trace, i, options.sort), options.limit)
    for c in shown:
        child = c.edge.child
        node = trace.nodes[child]
        line = Text.assemble(
            "← ",
            paint.styled(trace.ids[child], ID_STYLE),
            "  ",
            paint.styled(str(node.op), OP_STYLE),
            "  data ",
            paint.number(node.data, "data"),
            f"  local ∂ {fmt(c.local)} × upstream grad ",
            paint.number(c.upstream, "grad"),
            " = ",
            paint.number(c.value, "grad"),
        )
        if trace.consumers[child] and len(trace.consumers[child]) > 1:
            line.append(f"  (of its grad {fmt(node.grad)})")
        _add_inputs(tree.add(line), child, trace, paint, depth - 1)
    if hidden:
        tree.add(paint.note(_hidden(hidden)))


def _rounding(prov: Provenance) -> str:
    difference = prov.grad - prov.total
    if math.isfinite(difference):
        return f"  (rounding {difference:+.1e})"
    if fmt(prov.grad) == fmt(prov.total):  # the same nan or infinity
        return ""
    return f"  (differs: {fmt(prov.grad)})"


def _add_why(tree: Tree, i: int, trace: Trace, paint: _Painter) -> None:
    prov = provenance(trace, i)
    if prov.is_root:
        tree.add(paint.note("why: this is the root (the loss); its grad is ∂loss/∂loss = 1"))
        return
    n = len(prov.contributions)
    branch = tree.add(
        Text.assemble(
            paint.styled("why ", GROUP_STYLE),
            "grad ",
            paint.number(prov.grad, "grad"),
            f" = Σ over {counted(n, 'consumer')} of local ∂ × its grad = {fmt(prov.total)}",
            _rounding(prov),
        )
    )
    shown, hidden = _limited(prov.contributions, paint.options.limit)
    for c in shown:
        parent = c.edge.parent
        branch.add(
            Text.assemble(
                "→ ",
                paint.styled(trace.ids[parent], ID_STYLE),
                "  ",
                paint.styled(str(trace.nodes[parent].op), OP_STYLE),
                f"  local ∂ {fmt(c.local)} × its grad ",
                paint.number(c.upstream, "grad"),
                " = ",
                paint.number(c.value, "grad"),
            )
        )
    if hidden:
        rest = fsum(c.value for c in prov.contributions[len(shown) :])
        branch.add(paint.note(f"… {hidden} more hidden, together {fmt(rest)} (--limit to show)"))
    for title, pairs, name in (
        ("by position", prov.by_pos, lambda pos: "(no position)" if pos is None else f"pos{pos}"),
        ("by head", prov.by_head, lambda head: "(no head)" if head is None else head),
    ):
        if pairs:
            line = Text(f"{title}: ")
            for k, (key, value) in enumerate(pairs):
                line.append(", " if k else "")
                line.append(f"{name(key)} ")
                line.append_text(paint.number(value, "grad"))
            branch.add(line)


# -- JSON for scripts ----------------------------------------------------------------------
def _num(x: float) -> float | str:
    """A number as strict JSON holds it: nan, inf and -inf as "NaN", "Infinity", "-Infinity"."""
    return to_json_number(float(x))


def _summary_json(summary: Summary) -> dict[str, Any]:
    """min / mean / max / norm of the finite values (null when there are none), and how many
    values were nan, inf and -inf."""
    stats = {k: _num(v) if summary.finite else None for k, v in _stats(summary).items()}
    return {
        "count": summary.count,
        "finite": summary.finite,
        **stats,
        "nan": summary.nan,
        "posinf": summary.posinf,
        "neginf": summary.neginf,
    }


def _stats(summary: Summary) -> dict[str, float]:
    return {"min": summary.min, "mean": summary.mean, "max": summary.max, "norm": summary.norm}


def _node_json(trace: Trace, i: int) -> dict[str, Any]:
    node = trace.nodes[i]
    return {
        "id": trace.ids[i],
        "tag": node.tag,
        "op": str(node.op),
        "data": _num(node.data),
        "grad": _num(node.grad),
        "group": trace.group_of(i),
    }


def _inputs_json(trace: Trace, i: int, depth: int, expanded: set[int]) -> list[dict[str, Any]]:
    """As the tree: each node's inputs once; where a node comes again, ``"inputs_above": true``."""
    expanded.add(i)
    out = []
    for c in input_contributions(trace, i):
        entry = {
            "id": trace.ids[c.edge.child],
            "slot": c.edge.slot,
            "local": _num(c.local),
            "upstream": _num(c.upstream),
            "contribution": _num(c.value),
        }
        child = c.edge.child
        if depth > 1 and trace.inputs[child]:
            if child in expanded:
                entry["inputs_above"] = True
            else:
                entry["inputs"] = _inputs_json(trace, child, depth - 1, expanded)
        out.append(entry)
    return out


def _why_json(trace: Trace, i: int) -> dict[str, Any]:
    prov = provenance(trace, i)
    out: dict[str, Any] = {
        "grad": _num(prov.grad),
        "sum": _num(prov.total),
        "root": prov.is_root,
        "consumers": [
            {
                "id": trace.ids[c.edge.parent],
                "slot": c.edge.slot,
                "local": _num(c.local),
                "upstream": _num(c.upstream),
                "contribution": _num(c.value),
            }
            for c in prov.contributions
        ],
    }
    if trace.nodes[i].op.name == "param":
        out["by_pos"] = [{"pos": pos, "contribution": _num(v)} for pos, v in prov.by_pos]
        out["by_head"] = [{"head": head, "contribution": _num(v)} for head, v in prov.by_head]
    return out


def _group_json(trace: Trace, group: Group, outputs: set[int]) -> dict[str, Any]:
    summary = summarise(trace, group.nodes, outputs)
    return {
        "name": group.name,
        "path": group.path,
        "size": len(group.nodes),
        "summary_over": summary.over,
        "summary_count": summary.count,
        "data": _summary_json(summary.data),
        "grad": _summary_json(summary.grad),
        "members": [trace.ids[i] for i in group.members],
        "groups": [_group_json(trace, sub, outputs) for sub in group.subgroups],
    }


def to_json(
    trace: Trace,
    selection: Sequence[int],
    *,
    title: str = "",
    depth: int | None = None,
    why: bool = False,
    adam: dict[int, Any] | None = None,
) -> dict[str, Any]:
    """The same view as plain dicts, every selected node (no limit), in graph order:
    ``{"title", "nodes": [{id, tag, op, data, grad, group, [inputs], [why]}], "groups": ...}``."""
    if depth is None:
        depth = 1 if len(selection) == 1 else 0
    outputs = tensor_outputs(trace, selection)
    nodes = []
    expanded: set[int] = set()
    for i in sorted(selection):
        entry = _node_json(trace, i)
        if depth > 0:
            entry["inputs"] = _inputs_json(trace, i, depth, expanded)
        if why:
            entry["why"] = _why_json(trace, i)
        if adam is not None and i in adam:
            entry["adam"] = adam[i].to_json()
        nodes.append(entry)
    root = group_selection(trace, selection, title)
    return {
        "title": title,
        "count": len(selection),
        "graph_size": len(trace),
        "nodes": nodes,
        "groups": _group_json(trace, root, outputs),
    }
