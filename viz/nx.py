"""The graph of a token as a ``networkx.DiGraph``, with the nodes the DOT view draws.

``to_networkx`` takes the drawing's options (``level``, ``focus``, ``hops``, ``pos``,
``expand_context``) and reads the display nodes of ``viz.dot.display_graph``, so a ``.json``
or ``.graphml`` file written by ``mgx graph`` holds the nodes its drawing shows. By default
it is every Value (scalar level, context expanded): the whole graph, for analysis.

Nodes are named as in the drawing, each with ``kind`` (scalar, tensor, block, params,
context, neighbour). A scalar node has ``op``, ``tag`` ("" when untagged), ``group``,
``data`` and ``grad``. Any other node stands for several Values: ``nodes`` (how many),
``shape``, ``op``, ``nonfinite`` (how many hold a nan or an infinity), and for data and grad
the summary of ``viz.trace.Summary``: ``data_min``, ``data_mean``, ``data_max``,
``data_norm`` over the finite values (absent when there are none) and ``data_nan``,
``data_posinf``, ``data_neginf`` counting the rest (``grad_...`` likewise).

An edge runs from an input to the node computed from it, with ``count`` (how many scalar
edges it stands for) and, between two scalar nodes, ``local_grad`` (∂parent/∂child). A node
that uses one input twice (the ``dot(x, x)`` of RMSNorm) has one edge whose ``count`` is 2
and whose ``local_grad`` is the sum of the two slots' derivatives, the total derivative
the chain rule uses.

Files: ``node_link_json`` writes strict JSON (a non-finite number as "NaN", "Infinity" or
"-Infinity", the convention of ``microgpt.numbers``); ``graphml`` writes GraphML, whose
doubles spell them NaN, INF and -INF.
"""

from __future__ import annotations

from typing import Any

from microgpt.numbers import to_json_number
from viz.dot import DisplayGraph, DisplayNode, display_graph, key_edge_counts, key_edges, node_facts
from viz.trace import Summary, Trace


def to_networkx(
    source: Trace | object,
    level: str = "scalar",
    focus: str | None = None,
    hops: int = 1,
    pos: int | None = None,
    expand_context: bool = True,
):
    """A ``networkx.DiGraph`` of ``source`` (a Trace, a root Value or a TokenGraph) at ``level``,
    with the focus and context of ``viz.dot.to_dot`` (whose defaults differ only in ``level``
    and ``expand_context``: here the whole graph)."""
    import networkx as nx

    shown = display_graph(source, level, focus, hops, pos, expand_context)
    graph = nx.DiGraph(level=level)
    for display in shown.nodes.values():
        graph.add_node(display.key, **_node_attributes(shown, display))
    keys, nodes = shown.keys, shown.nodes
    trace_nodes = shown.trace.nodes
    if level != "scalar":  # no scalar nodes, so no local_grad: the counts are all there is
        for (a, b), n in key_edge_counts(shown.trace, keys).items():
            graph.add_edge(a, b, count=n)
        return graph
    for a, b, parent, slot in key_edges(shown.trace, keys):
        attrs = graph.get_edge_data(a, b)
        if attrs is None:
            attrs = {"count": 0}
            if nodes[a].kind == "scalar" and nodes[b].kind == "scalar":
                attrs["local_grad"] = 0.0
            graph.add_edge(a, b, **attrs)
            attrs = graph.get_edge_data(a, b)
        attrs["count"] += 1
        if "local_grad" in attrs:
            attrs["local_grad"] += float(trace_nodes[parent].local_grads[slot])
    return graph


def _node_attributes(shown: DisplayGraph, display: DisplayNode) -> dict[str, Any]:
    trace = shown.trace
    if display.kind == "scalar":
        i = display.members[0]
        node = trace.nodes[i]
        return {
            "kind": "scalar",
            "op": node.op.name,
            "tag": node.tag or "",
            "group": trace.group_of(i),
            "data": float(node.data),
            "grad": float(node.grad),
        }
    facts = node_facts(shown, display)
    attrs: dict[str, Any] = {
        "kind": display.kind,
        "nodes": len(display.members),
        "shape": facts.shape,
        "op": facts.op,
        "nonfinite": facts.nonfinite,
    }
    attrs.update(_summary_attributes("data", facts.data))
    attrs.update(_summary_attributes("grad", facts.grad))
    return attrs


def _summary_attributes(name: str, s: Summary) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.finite:
        out.update({f"{name}_min": s.min, f"{name}_mean": s.mean, f"{name}_max": s.max, f"{name}_norm": s.norm})
    out.update({f"{name}_nan": s.nan, f"{name}_posinf": s.posinf, f"{name}_neginf": s.neginf})
    return out


def node_link_json(graph) -> str:
    """``graph`` as networkx's node-link JSON, strict: non-finite numbers as strings."""
    import json

    import networkx as nx

    data = _json_numbers(nx.node_link_data(graph, edges="edges"))
    return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _json_numbers(value: Any) -> Any:
    if isinstance(value, float):
        return to_json_number(value)
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    return value


GRAPHML_NUMBERS = {"nan": "NaN", "inf": "INF", "-inf": "-INF"}  # XML Schema's double forms


def graphml(graph) -> str:
    """``graph`` as GraphML; nan, inf and -inf written as GraphML's NaN, INF and -INF (which
    ``networkx.read_graphml`` reads back as floats)."""
    from networkx.readwrite.graphml import GraphMLWriter

    class Writer(GraphMLWriter):
        def add_data(self, name, element_type, value, scope="all", default=None):
            # networkx passes the value as str(value): "nan", "inf" or "-inf" for a float
            if element_type is float and value in GRAPHML_NUMBERS:
                value = GRAPHML_NUMBERS[value]
            return super().add_data(name, element_type, value, scope, default)

    writer = Writer(encoding="utf-8", prettyprint=True)
    writer.add_graph_element(graph)
    return str(writer) + "\n"
