"""The block level of a graph as a Mermaid flowchart, the diagram language GitHub and most
documentation sites draw natively (a ``.mmd`` file, or a fenced ``mermaid`` block in Markdown).

It reads the same analysis as the DOT drawing (``viz.dot.display_graph`` and ``drawn_node``):
the same nodes, labels, clusters (as nested subgraphs, titled with their path) and fills.
Mermaid ids are generated (``n0``, ``n1``, ... and ``c0``, ``c1``, ... for subgraphs) in the
drawing's order, so no tag needs escaping there and the same graph gives the same text; the
labels are quoted, with Mermaid's entity codes for the characters that would end them.
Edges from parameters are drawn light and attention's edges from earlier positions in the
attention colour, as in the DOT drawing.
"""

from __future__ import annotations

import itertools
import json

from viz import style
from viz.dot import display_graph, drawn_node, holds_parameters, key_edge_counts, reading_rows, stage_key

# Mermaid ends a quoted label at '"' and reads HTML in it: these are written as its entity codes.
_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;"}


def mermaid_text(text: str) -> str:
    """``text`` for inside a quoted Mermaid label: entity codes for ``# " < > &``, and
    ``<br/>`` between lines."""
    escaped = "".join(_ESCAPES.get(c, c) for c in text)
    return escaped.replace("\n", "<br/>")


def to_mermaid(
    source,
    title: str | None = None,
    pos: int | None = None,
    expand_context: bool = False,
    direction: str = "TB",
) -> str:
    """The block level of ``source`` (a Trace, a root Value or a TokenGraph) as Mermaid text."""
    graph = display_graph(source, "block", pos=pos, expand_context=expand_context)
    lines: list[str] = []
    if title:
        lines += ["---", f"title: {json.dumps(title, ensure_ascii=False)}", "---"]
    lines.append(f"flowchart {direction}")

    tree: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    fills: dict[str, str] = {}
    for display in graph.nodes.values():
        key, attrs, fam, _ = drawn_node(graph, display)
        tree.setdefault(display.clusters, []).append((key, attrs["label"]))
        nonfinite = attrs["fillcolor"] == style.NONFINITE_FILL
        fills[key] = "nonfinite" if nonfinite else "context" if display.kind == "context" else fam

    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for chain in tree:
        for k in range(len(chain)):
            parent, child = chain[:k], chain[: k + 1]
            if child not in children.setdefault(parent, []):
                children[parent].append(child)
    ids: dict[str, str] = {}  # numbered as written, top to bottom
    cluster_ids: dict[tuple[str, ...], str] = {}

    def fill(chain: tuple[str, ...], indent: str) -> None:
        for key, label in tree.get(chain, []):
            ids[key] = f"n{len(ids)}"
            lines.append(f'{indent}{ids[key]}["{mermaid_text(label)}"]')
        for child in sorted(children.get(chain, []), key=lambda c: stage_key(c[-1])):
            cid = cluster_ids[child] = f"c{len(cluster_ids)}"
            path = child[-1]
            label = "context (earlier positions)" if path == "context" else path
            lines.append(f'{indent}subgraph {cid}["{mermaid_text(label)}"]')
            fill(child, indent + "    ")
            lines.append(f"{indent}end")

    fill((), "    ")

    counts = key_edge_counts(graph.trace, graph.keys)
    rows = reading_rows(graph, list(counts))
    along = {(a, b) for names, chained in rows if chained for a, b in itertools.combinations(names, 2)}
    attention: list[int] = []
    weights: list[int] = []
    for k, (a, b) in enumerate(counts):
        lines.append(f"    {ids[a]} --> {ids[b]}")
        if holds_parameters(graph, a):
            weights.append(k)
        elif (a, b) in along:
            attention.append(k)

    classes: dict[str, list[str]] = {}
    for key, node_id in ids.items():
        classes.setdefault(fills[key], []).append(node_id)
    for name, members in sorted(classes.items()):
        colour = style.CONTEXT_FILL if name == "context" else style.NONFINITE_FILL if name == "nonfinite" else None
        colour = colour or style.FAMILY_COLOUR[name]
        lines.append(f"    classDef fill_{name} fill:{colour},stroke:#374151,color:#111827")
        lines.append(f"    class {','.join(members)} fill_{name}")
    for chain, cid in cluster_ids.items():
        path = chain[-1]
        colour = style.BLOCK_COLOUR["context" if path == "context" else style.block_kind(path)]
        lines.append(f"    style {cid} fill:#ffffff,stroke:{colour},color:{colour}")
    if weights:
        lines.append(f"    linkStyle {','.join(map(str, weights))} stroke:{style.PARAM_EDGE}")
    if attention:
        lines.append(
            f"    linkStyle {','.join(map(str, attention))} stroke:{style.BLOCK_COLOUR['attn']},stroke-width:2px"
        )
    return "\n".join(lines) + "\n"
