"""The graph of a token as a ``networkx.DiGraph``, from the same ``Trace`` walk as the DOT view.

Nodes are the trace's stable ids, with ``op``, ``tag`` ("" when untagged), ``group``,
``data`` and ``grad``; an edge runs from an input to the node computed from it, with
``local_grad`` (∂parent/∂child) and ``count``. A node that uses one input twice (the
``dot(x, x)`` of RMSNorm) has one edge whose ``count`` is 2 and whose ``local_grad`` is the
sum of the two slots' derivatives, which is the total derivative the chain rule uses.
"""

from __future__ import annotations

from viz.trace import Trace


def to_networkx(source):
    """A ``networkx.DiGraph`` of ``source`` (a Trace, a root Value or a TokenGraph)."""
    import networkx as nx

    trace = Trace.of(source)
    graph = nx.DiGraph()
    ids = trace.ids
    for i, node in enumerate(trace.nodes):
        graph.add_node(
            ids[i],
            op=node.op.name,
            tag=node.tag or "",
            group=trace.group_of(i),
            data=float(node.data),
            grad=float(node.grad),
        )
    for e in trace.edges:
        a, b = ids[e.child], ids[e.parent]
        attrs = graph.get_edge_data(a, b)
        if attrs is None:
            graph.add_edge(a, b, local_grad=float(e.local_grad), count=1)
        else:
            attrs["local_grad"] += float(e.local_grad)
            attrs["count"] += 1
    return graph
