"""Each attention head's weights, read from a graph: which key position each query position
attended to, and how much. One function for every view that shows them (the viewer page's
heatmaps; a terminal ``mgx attention`` could print the same).

The weights are the nodes tagged ``layerL.attn.hH.weights[j]@posT``: the softmax output for
query position T and key position j (j <= T, causal), so a token's graph holds one row per
head and a whole name's graph the positions x positions triangle."""

from __future__ import annotations

from dataclasses import dataclass

from viz.trace import Trace


@dataclass(frozen=True)
class HeadWeights:
    head: str  # the head's path: layer0.attn.h0
    rows: list[tuple[int, list[tuple[int, int]]]]  # (query position, [(key position, node)]), in order

    def weight(self, trace: Trace, query: int, key: int) -> float | None:
        for pos, cells in self.rows:
            if pos == query:
                return next((trace.nodes[i].data for k, i in cells if k == key), None)
        return None


def attention_weights(trace: Trace) -> list[HeadWeights]:
    """The attention weights of every head in ``trace``, heads in graph order, rows by query
    position, cells by key position; each cell names its node (an index into the trace)."""
    heads: dict[str, dict[int, list[tuple[int, int]]]] = {}
    for group, parts in trace.group_parts.items():
        if parts is None or parts.pos is None or not parts.path.endswith(".weights"):
            continue
        head = parts.path.removesuffix(".weights")
        cells = []
        for i in trace.groups[group]:
            index = trace.element_indices[i]
            if index is not None and index.isdigit():
                cells.append((int(index), i))
        if cells:
            heads.setdefault(head, {})[parts.pos] = sorted(cells)
    return [HeadWeights(head, sorted(rows.items())) for head, rows in heads.items()]
