"""The graph as one self-contained HTML page: drill from blocks down to scalars, search it,
and play backprop across it (``mgx graph -o graph.html``, ``mgx view``, ``show`` in a notebook).

Python computes everything the page shows, once, from the analysis the other views read:

- the ``Trace`` (ids, tags, ops, data, grads, the edges with their local derivatives),
- ``viz.dot.display_graph`` / ``node_facts`` (which block and tensor each node belongs to,
  their clusters and summaries, the same as the SVG's),
- ``viz.tree`` (each edge's contribution ``local ∂ × upstream grad`` and a parameter's
  provenance by position and head, as ``mgx inspect --why``),
- ``viz.step.Stepper`` (the order of backward's steps, the grads it starts from, the origin
  of a non-finite grad).

The groups form a tree: block -> tensor -> element (a tag) -> scalar; a group with one
member is that member. Each group with more than one member is a *view*, laid out on its
own by the layout program the project runs (``viz.render``: the system ``dot``, else
graphviz-pure) with ``-Tjson``, all views in one run of the program. The page (the files
in ``viz/page_assets``: one template, one stylesheet, one script per concern) only draws
what it is given and does the multiply-adds of the chain rule while it plays backward.

The same inputs give the same bytes: ids are the trace's, every list is in graph order,
numbers are written by ``repr`` (which round-trips a float exactly, so the page's grads
equal ``backward()``'s to the bit).
"""

from __future__ import annotations

import html
import json
import math
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from microgpt.engine import zero_grad
from microgpt.errors import MicrogptError
from microgpt.numbers import to_json_number
from viz import style
from viz.dot import display_graph, key_edge_counts, node_facts, reading_rows
from viz.trace import Trace

ASSETS = "page_assets"
# The page's scripts, joined in this order (each reads the ones before it).
SCRIPTS = ("pattern.js", "data.js", "draw.js", "panel.js", "search.js", "player.js", "attention.js", "main.js")
LEVELS = ("block", "tensor")
POINTS_PER_INCH = 72
CHAR_WIDTH = 6.2  # points per character of the page's 10 px monospace labels
LINE_HEIGHT = 13.0


def _num(x: float) -> float | str:
    return to_json_number(float(x))


def _fmt(x: float) -> str:
    return f"{float(x):.4g}"


@dataclass
class Group:
    """One node of the tree of groups: a block, a tensor or an element, with its members."""

    key: str
    kind: str  # block | params | context | tensor | element
    depth: int
    parent: int  # the group holding it; -1 for the top
    members: list[int] = field(default_factory=list)  # trace nodes, in graph order
    children: list[tuple[str, int]] = field(default_factory=list)  # ("g", group) or ("n", node)
    clusters: tuple[str, ...] = ()


def _tree(trace: Trace, pos: int | None) -> tuple[list[Group], list[int]]:
    """The groups, and for each trace node the deepest group holding it (its view)."""
    blocks = display_graph(trace, "block", pos=pos)
    tensors = display_graph(trace, "tensor", pos=pos)
    keys = (blocks.base_keys, tensors.base_keys, _element_keys(trace, tensors.base_keys))
    kinds = [
        {k: d.kind for k, d in blocks.nodes.items()},
        {k: d.kind for k, d in tensors.nodes.items()},
    ]
    clusters = [
        {k: d.clusters for k, d in blocks.nodes.items()},
        {k: d.clusters for k, d in tensors.nodes.items()},
    ]
    groups: list[Group] = [Group("", "top", -1, -1)]
    index: dict[tuple, int] = {}
    ids = trace.ids
    for i in range(len(trace)):
        parent = 0
        path: tuple = ()
        groups[0].members.append(i)
        for depth in range(3):
            key = keys[depth][i]
            if key is None:  # an untagged node: its own element
                key = ids[i]
            path = (*path, key)
            g = index.get(path)
            if g is None:
                kind = kinds[depth].get(key, "tensor") if depth < 2 else "element"
                cl = clusters[depth].get(key, ()) if depth < 2 else ()
                g = index[path] = len(groups)
                groups.append(Group(key, kind, depth, parent, clusters=cl))
                groups[parent].children.append(("g", g))
            groups[g].members.append(i)
            parent = g
        groups[parent].children.append(("n", i))
    # A group with one member stands for it: its parent holds the member directly.
    for g in range(len(groups) - 1, 0, -1):
        group = groups[g]
        group.children = [_collapsed(groups, c) for c in group.children]
    groups[0].children = [_collapsed(groups, c) for c in groups[0].children]
    # Keep the groups still reached (children point down; collapsed groups drop out).
    reached = [0]
    seen = {0}
    k = 0
    while k < len(reached):
        for kind, c in groups[reached[k]].children:
            if kind == "g" and c not in seen:
                seen.add(c)
                reached.append(c)
        k += 1
    order = sorted(reached)
    renumber = {old: new for new, old in enumerate(order)}
    kept = []
    for old in order:
        group = groups[old]
        group.children = [(kind, renumber[c] if kind == "g" else c) for kind, c in group.children]
        kept.append(group)
    view_of = [0] * len(trace)
    for g, group in enumerate(kept):
        for kind, c in group.children:
            if kind == "n":
                view_of[c] = g
    for g, group in enumerate(kept):
        group.parent = -1 if g == 0 else 0
    for g, group in enumerate(kept):
        for kind, c in group.children:
            if kind == "g":
                kept[c].parent = g
    return kept, view_of


def _element_keys(trace: Trace, tensor_keys: list[str]) -> list[str | None]:
    """Each node's element: its tag; for a node of a tensor whose tag has no element index
    (the products and partial sums of an atomic dot product, tagged ``mlp.pre@pos0``), the
    element it goes into (``mlp.pre[3]@pos0``), found through its consumers in the tensor.
    A node that goes into several elements (a softmax's sum of exps and its reciprocal, which
    every weight uses) is shared: it belongs to none of them and stays in the tensor's view as
    itself (None), as do the nodes that feed only shared ones (the sum of squares of a norm)."""
    tags, indices = trace.tags, trace.element_indices
    out: list[str | None] = list(tags)
    has = [ix is not None for ix in indices]
    into: dict[int, str] = {}  # an unindexed node -> the one element its consumers go into
    shared = set()
    for p in range(len(tags) - 1, -1, -1):  # consumers before the nodes they use
        if not has[p]:
            if p in shared or p not in into:
                continue
            out[p] = into[p]
            has[p] = True
        for c in trace.child_indices[p]:
            if has[c] or tags[c] is None or tensor_keys[c] != tensor_keys[p] or c in shared:
                continue
            if into.setdefault(c, out[p]) != out[p]:
                shared.add(c)
    return [key if ok else None for key, ok in zip(out, has)]


def _collapsed(groups: list[Group], child: tuple[str, int]) -> tuple[str, int]:
    kind, c = child
    while kind == "g" and len(groups[c].children) == 1:
        kind, c = groups[c].children[0]
    return kind, c


# -- labels --------------------------------------------------------------------------------
def _short(key: str, parent_key: str) -> str:
    """A member's name inside its group: the parent's path dropped (``h0.q@pos0`` in attn)."""
    base = parent_key.split("@")[0]
    if base and key.startswith(base + ".") and len(key) > len(base) + 1:
        return key[len(base) + 1 :]
    return key


def _summary_text(s) -> str:
    if s.count == 1:
        return _fmt(s.min) if s.finite else s.flags()[0][0]
    parts = [f"{_fmt(s.min)} … {_fmt(s.max)}"] if s.finite else []
    return " · ".join(parts + [f"{n} {w}" for w, n in s.flags()])


# -- layout --------------------------------------------------------------------------------
def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _box(lines: list[str]) -> tuple[float, float]:
    width = max(map(len, lines)) * CHAR_WIDTH + 14
    height = len(lines) * LINE_HEIGHT + 10
    return round(width, 1), round(height, 1)


def _position_rows(items: list[dict], groups: list[Group]) -> list[list[int]]:
    """The items that are one block at several positions (``layer0.attn@pos0`` ... ``@pos4``),
    in position order: each row is drawn on one rank, left to right, so a whole name reads
    with depth down the page and positions across it."""
    rows: dict[str, list[tuple[int, int]]] = {}
    for k, item in enumerate(items):
        if item["t"] != "g":
            continue
        base, at, pos = groups[item["g"]].key.partition("@pos")
        if at and pos.isdigit():
            rows.setdefault(base, []).append((int(pos), k))
    return [([k for _, k in sorted(row)], True) for row in rows.values() if len(row) > 1]


def _view_rows(
    view: dict, groups: list[Group], g: int, graphs: dict[int, Any], level_rows: dict[int, list]
) -> list[tuple[list[int], bool]]:
    """The rows of a view: for the top (blocks) and a block's view (tensors), the reading rows
    ``viz.dot.reading_rows`` gives the SVG at that level, kept to the items drawn here; deeper,
    the same element at several positions."""
    depth = 0 if g == 0 else 1 if groups[g].depth == 0 else None
    items = view["items"]
    if depth is None:
        return _position_rows(items, groups)
    keys = graphs[depth].base_keys
    where: dict[str, int] = {}
    for k, item in enumerate(items):
        if item["t"] == "g":
            where.setdefault(keys[groups[item["g"]].members[0]], k)
        elif item["t"] == "n":
            where.setdefault(keys[item["i"]], k)
    out = []
    for names, chained in level_rows[depth]:
        row = [where[name] for name in names if name in where]
        if len(row) > 1:
            out.append((row, chained))
    return out


def _view_source(
    name: str, items: list[dict], edges: list[tuple[int, int, int]], rows: list[tuple[list[int], bool]] = ()
) -> str:
    """One view as DOT: fixed-size boxes (the page draws the labels), clusters by path; each
    of ``rows`` on one rank, in its order."""
    lines = [f"digraph {_dot_id(name)} {{", "rankdir=TB; newrank=true; nodesep=0.25; ranksep=0.35;"]
    lines.append('node [shape=box, fixedsize=true, label=""];')
    tree: dict[tuple[str, ...], list[int]] = {}
    for k, item in enumerate(items):
        tree.setdefault(tuple(item.get("clusters", ())), []).append(k)
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for chain in tree:
        for d in range(len(chain)):
            sibs = children.setdefault(chain[:d], [])
            if chain[: d + 1] not in sibs:
                sibs.append(chain[: d + 1])

    def emit(chain: tuple[str, ...], indent: str) -> None:
        for k in tree.get(chain, []):
            w, h = items[k]["w"], items[k]["h"]
            lines.append(f"{indent}n{k} [width={w / POINTS_PER_INCH:.4f}, height={h / POINTS_PER_INCH:.4f}];")
        for child in children.get(chain, []):
            lines.append(f"{indent}subgraph {_dot_id('cluster_' + child[-1])} {{ label={_dot_id(child[-1])};")
            emit(child, indent + "  ")
            lines.append(f"{indent}}}")

    emit((), "")
    for a, b, _ in edges:
        lines.append(f"n{a} -> n{b};")
    for row, chained in rows:
        if chained:
            lines.append(f"{{rank=same; {' -> '.join(f'n{k}' for k in row)} [style=invis];}}")
        else:
            lines.append(f"{{rank=same; {'; '.join(f'n{k}' for k in row)};}}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _run_layout(program: str, sources: list[str]) -> list[dict]:
    """Lay out many views: each different source once (the views of a whole name's elements
    repeat a few shapes: 111 different ones among the 1,754 views of ``yuheng``'s atomic
    page), each in a run of the program of its own, two runs at a time. One run could lay
    out many graphs, but graphviz's dot (2.43) then lays some of them out differently from
    one run to the next (state left over from the graphs before), and the page must be the
    same bytes for the same inputs."""
    from concurrent.futures import ThreadPoolExecutor

    unique = list(dict.fromkeys(sources))
    with ThreadPoolExecutor(2) as pool:
        by_source = dict(zip(unique, pool.map(lambda source: _layout(program, source), unique)))
    return [by_source[source] for source in sources]


def _layout(program: str, source: str) -> dict:
    """One view as the layout program places it (``-Tjson``)."""
    try:
        result = subprocess.run([program, "-Tjson"], input=source.encode("utf-8"), capture_output=True, check=False)
    except OSError as e:
        raise MicrogptError(f"could not run the layout program {program}: {e.strerror}") from None
    laid = None
    if result.returncode == 0:
        try:
            laid = json.loads(result.stdout)
        except ValueError:  # no output, or not JSON
            pass
    if not isinstance(laid, dict):
        stderr = result.stderr.decode("utf-8", "replace").strip().splitlines()
        why = stderr[-1] if stderr else "no output"
        raise MicrogptError(f"{Path(program).name} could not lay out the page's views ({why}): write .svg or .dot")
    return laid


def _points(text: str, height: float) -> list[float]:
    """Graphviz's y-up points as a flat list, y measured down from the top (of the first
    spline, where dot splits an edge into several with ';')."""
    out: list[float] = []
    for pair in text.split(";")[0].split():
        if pair[:2] in ("e,", "s,"):
            continue
        x, y = pair.split(",")[:2]
        out += [round(float(x)), round(height - float(y))]  # whole points: a tenth of one is never seen
    return out


def _arrow_end(text: str, height: float) -> list[float]:
    for pair in text.split(";")[0].split():
        if pair.startswith("e,"):
            _, x, y = pair.split(",")
            return [round(float(x)), round(height - float(y))]
    return []


@dataclass
class _Placed:
    """What the layout program wrote for one view, read once for all the views laid out alike:
    its size, clusters, each item's centre and each edge's path (y measured down)."""

    w: float
    h: float
    clusters: list[dict[str, Any]]
    centres: dict[int, tuple[float, float]]
    paths: dict[tuple[int, int], tuple[list[float], list[float]]]

    @classmethod
    def read(cls, laid: dict) -> _Placed:
        x0, y0, x1, y1 = (float(v) for v in laid["bb"].split(","))
        height = y1
        clusters, centres = [], {}
        for obj in laid.get("objects", []):
            name = obj.get("name", "")
            if name.startswith("cluster_") and "bb" in obj:
                a, b, c, d = (float(v) for v in obj["bb"].split(","))
                clusters.append(
                    {
                        "name": name.removeprefix("cluster_"),
                        "x": round(a, 1),
                        "y": round(height - d, 1),
                        "w": round(c - a, 1),
                        "h": round(d - b, 1),
                    }
                )
            elif name.startswith("n") and "pos" in obj:
                x, y = (float(v) for v in obj["pos"].split(","))
                centres[int(name[1:])] = (round(x, 1), round(height - y, 1))
        clusters.sort(key=lambda c: (c["w"] * c["h"], c["name"]), reverse=True)
        gvid = {obj["_gvid"]: int(obj["name"][1:]) for obj in laid.get("objects", []) if obj.get("name", "")[:1] == "n"}
        paths = {}
        for edge in laid.get("edges", []):
            a, b = gvid.get(edge["tail"]), gvid.get(edge["head"])
            if a is not None and b is not None and "pos" in edge:
                paths[(a, b)] = (_points(edge["pos"], height), _arrow_end(edge["pos"], height))
        return cls(round(x1 - x0, 1), round(y1 - y0, 1), clusters, centres, paths)


def _apply_layout(view: dict, placed: _Placed) -> None:
    view["w"], view["h"] = placed.w, placed.h
    view["clusters"] = [dict(c) for c in placed.clusters]
    items = view["items"]
    for k, (x, y) in placed.centres.items():
        items[k]["x"], items[k]["y"] = x, y
    for edge in view["edges"]:
        edge["path"], edge["arrow"] = placed.paths.get((edge["a"], edge["b"]), ([], []))


# -- the data ------------------------------------------------------------------------------
def page_data(
    source: Trace | object,
    *,
    title: str = "",
    level: str = "block",
    focus: str | None = None,
    pos: int | None = None,
    layout_program: str | None = None,
    labels: list[str] | None = None,
    adam: dict[int, Any] | None = None,
    compare: Comparison | None = None,
) -> dict[str, Any]:
    """Everything the page shows, as strict-JSON-ready plain data.

    ``source`` is a TokenGraph built *without* its backward pass (``backward=False``), or a
    Trace of one: the ``Stepper`` records the grads backward starts from, then runs it, so the
    Values end up with ``backward()``'s grads, which the summaries and provenance read.
    ``labels`` names each position (its input character) on the attention heatmaps; ``adam``
    (node -> viz.optimizer.AdamState) adds each weight's Adam state to its panel; ``compare``
    (another graph's values, matched by node id) opens the page coloured by the difference."""
    from viz.attention import attention_weights
    from viz.check import backward_origin
    from viz.pattern import select_or_explain
    from viz.render import find_layout_program
    from viz.step import Stepper
    from viz.tree import provenance

    if level not in LEVELS:
        raise MicrogptError(f"the page opens on block or tensor level, not {level!r}")
    trace = Trace.of(source)
    zero_grad(trace.root)  # backward from a fresh start, whether or not the graph had one
    if pos is None:
        pos = getattr(getattr(source, "spec", None), "pos", None)
    stepper = Stepper(trace)
    start = list(stepper.grads)
    stepper.finish()
    origin = backward_origin(trace)
    nodes = trace.nodes
    n = len(nodes)

    groups, view_of = _tree(trace, pos)
    program = find_layout_program(layout_program)
    if program is None:
        raise MicrogptError(
            "no layout program found for the page: pip install graphviz-pure (or apt-get install graphviz)"
        )

    # Per node: ids, tags, ops, numbers; per edge (parent by parent, in input order): the child,
    # its local derivative and its contribution (viz.tree: local ∂ × the parent's grad).
    ops: dict[str, int] = {}
    op_table: list[dict[str, str]] = []
    tag_index: dict[str, int] = {}
    tag_table: list[str] = []
    node_op, node_tag = [], []
    for node in nodes:
        label = str(node.op)
        if label not in ops:
            ops[label] = len(op_table)
            op_table.append(
                {
                    "label": label,
                    "name": node.op.name,
                    "rule": node.op.derivative,
                    "family": style.family(node.op.name),
                }
            )
        node_op.append(ops[label])
        tag = node.tag
        if tag is None:
            node_tag.append(-1)
        else:
            if tag not in tag_index:
                tag_index[tag] = len(tag_table)
                tag_table.append(tag)
            node_tag.append(tag_index[tag])
    starts, children, local, contrib = [0], [], [], []
    for kids, node in zip(trace.child_indices, nodes):
        upstream = float(node.grad)
        for child, lg in zip(kids, node.local_grads):
            children.append(child)
            local.append(_num(lg))
            contrib.append(_num(float(lg) * upstream))
        starts.append(len(children))
    start_grads = {str(i): _num(g) for i, g in enumerate(start) if nodes[i].children == () and g != 0}

    params_prov = {}
    for i, node in enumerate(nodes):
        if node.op.name == "param" and trace.consumers[i]:
            prov = provenance(trace, i)
            params_prov[str(i)] = {
                "sum": _num(prov.total),
                "by_pos": [[p, _num(v)] for p, v in prov.by_pos],
                "by_head": [[h, _num(v)] for h, v in prov.by_head],
            }

    # The groups: their labels and summaries (node_facts, as the SVG's), and their views.
    blocks = display_graph(trace, "block", pos=pos)
    tensors = display_graph(trace, "tensor", pos=pos)
    facts_graph = {0: blocks, 1: tensors}
    group_out = []
    for g, group in enumerate(groups):
        entry: dict[str, Any] = {
            "key": group.key,
            "kind": group.kind,
            "depth": group.depth,
            "parent": group.parent,
            "size": len(group.members),
            "clusters": list(group.clusters),
            # members whose data is nan or ±inf: flagged whatever the player's grads are
            "nonfinite_data": sum(1 for i in group.members if not math.isfinite(nodes[i].data)),
        }
        if g and group.depth < 2 and group.key in facts_graph[group.depth].nodes:
            graph = facts_graph[group.depth]
            facts = node_facts(graph, graph.nodes[group.key])
            entry.update(
                summarised=facts.summarised,
                shape=facts.shape,
                op=facts.op,
                family=facts.family,
                data=_summary_text(facts.data),
                grad=_summary_text(facts.grad),
            )
        else:
            outs = [i for i in group.members if i == n - 1 or any(view_of[e.parent] != g for e in trace.consumers[i])]
            summarised = outs or group.members[-1:]
            entry.update(
                summarised=summarised,
                shape=f"[{len(summarised)}]" if len(summarised) > 1 else "scalar",
                op=str(nodes[summarised[-1]].op),
                family=style.family(nodes[summarised[-1]].op.name),
            )
        group_out.append(entry)

    # The SVG's reading rows at block and tensor level (viz.dot): one block at every position
    # on one rank, in position order, parameters beside what they feed.
    level_rows = {
        depth: reading_rows(graph, list(key_edge_counts(trace, graph.base_keys)))
        for depth, graph in facts_graph.items()
    }
    # Each group's view, then the top's drawing with each of its groups open in place (those of
    # at most OPEN_IN_PLACE_UP_TO members: the top's other groups stay collapsed around it).
    specs = [(g, None) for g, group in enumerate(groups) if len(group.children) >= 2 or not g]
    specs += [
        (0, c) for kind, c in groups[0].children if kind == "g" and 2 <= len(groups[c].children) <= OPEN_IN_PLACE_UP_TO
    ]
    views, open_views, sources, laid_out = [], [], [], []
    top = None
    for g, opened in specs:
        if opened is None:
            view = _view(trace, groups, group_out, g, view_of)
            views.append(view)
            if g == 0:
                top = _copied(view)
        else:
            view = _open_view(trace, groups, group_out, top, opened)
            open_views.append(view)
        inside = len(view["items"]) - sum(1 for item in view["items"] if item["t"] in ("o", "on"))
        if not _grid(trace, view, inside):
            # Edges from and to the neighbours cost a large view most of its layout time (dot
            # routes each across every rank: 1.3 s instead of 0.03 s for an atomic dot product
            # of 64 terms), so there the members are laid out alone, and the neighbours put in
            # a row above and one below them, their edges drawn straight (_place_neighbours).
            alone = inside > ROUTED_UP_TO
            laid_out.append((view, inside if alone else None))
            edges = [(e["a"], e["b"], e["n"]) for e in view["edges"]]
            rows = _view_rows(view, groups, g, facts_graph, level_rows)
            items = view["items"]
            if opened is not None:  # the open group's members are not on its rank in the rows
                block = {k for k, item in enumerate(items) if item.get("opened")}
                rows = [([k for k in row if k not in block], chained) for row, chained in rows]
                rows = [(row, chained) for row, chained in rows if len(row) > 1]
            if alone:
                items = items[:inside]
                edges = [(a, b, m) for a, b, m in edges if a < inside and b < inside]
                rows = [(row, chained) for row, chained in rows if all(k < inside for k in row)]
            sources.append(_view_source("view", items, edges, rows))  # named alike: alike views are laid out once
    placed: dict[int, _Placed] = {}  # the views laid out alike share one layout object
    for (view, alone), laid in zip(laid_out, _run_layout(program, sources)):
        if id(laid) not in placed:
            placed[id(laid)] = _Placed.read(laid)
        _apply_layout(view, placed[id(laid)])
        if alone is not None:
            _place_neighbours(view, alone)

    # Compact rows (a whole name's atomic page has 1,800 views): draw.js expands them. The
    # edges' drawn paths, view by view, are written once for the views laid out alike (118
    # different lists among yuheng's 1,819 views: 0.3 MB instead of 3.9 MB).
    path_lists: dict[str, int] = {}
    edge_paths: list[list] = []
    for view in views + open_views:
        view["items"] = [_item_row(item) for item in view["items"]]
        paths = [[e["path"], e["arrow"]] for e in view["edges"]]
        key = repr(paths)
        if key not in path_lists:
            path_lists[key] = len(edge_paths)
            edge_paths.append(paths)
        view["paths"] = path_lists[key]
        view["edges"] = [[e["a"], e["b"], e["n"]] for e in view["edges"]]
    open_group = 0
    if level == "tensor":
        open_group = -1  # every block open: the page starts on the tensor view
    matches: list[int] = []
    if focus is not None:
        matches = select_or_explain(trace, focus)

    finite = [abs(float(x.grad)) for x in nodes if math.isfinite(x.grad) and x.grad != 0]
    finite_data = [abs(float(x.data)) for x in nodes if math.isfinite(x.data) and x.data != 0]
    return {
        "title": title,
        "level": level,
        "focus": focus,
        "focus_first": matches[0] if matches else None,
        "open": open_group,
        "ids": trace.ids,
        "tags": tag_table,
        "node_tag": node_tag,
        "ops": op_table,
        "node_op": node_op,
        "data": [_num(x.data) for x in nodes],
        "grad": [_num(x.grad) for x in nodes],
        "start_grads": start_grads,
        "starts": starts,
        "children": children,
        "local": local,
        "contribution": contrib,
        "order": stepper.order,
        "tensor_group": trace.group_numbers,
        "tensor_groups": list(trace.groups),
        "origin": None if origin is None else origin.parent,
        "provenance": params_prov,
        "adam": {str(i): state.to_json() for i, state in sorted((adam or {}).items())},
        "compare": None if compare is None else compare.to_json(trace),
        "groups": group_out,
        "view_of": view_of,
        "views": {str(v["group"]): v for v in views},
        "open_views": {str(v["opened"]): v for v in open_views},
        "edge_paths": edge_paths,
        "attention": [
            {"head": h.head, "rows": [[pos, cells] for pos, cells in h.rows]} for h in attention_weights(trace)
        ],
        "labels": labels or [],
        "grad_scale": _scale(finite),
        "data_scale": _scale(finite_data),
        "style": {
            "family_colour": style.FAMILY_COLOUR,
            "family_label": style.FAMILY_LABEL,
            "block_colour": style.BLOCK_COLOUR,
            "nonfinite": style.NONFINITE_FILL,
            "only_a": "#d1d5db",  # a diff page's nodes that side B lacks
        },
    }


ROUTED_UP_TO = 24  # views with more members than this are laid out without their neighbours
OPEN_IN_PLACE_UP_TO = 40  # groups of the top with more members than this open as a view of their own
GRID_FROM = 12  # members with no edges among them, from this many on, are drawn as a grid
GAP = 12.0


def _grid(trace: Trace, view: dict[str, Any], inside: int) -> bool:
    """Arrange a view whose members have no edges among them (a weight matrix, a row of
    probabilities) as the grid they are: rows and columns by element index where each has
    two, else rows of about the square root of their number; the neighbours that feed them
    in a row above, those they feed below. Not a graph layout: nothing is routed, and the
    edges are counted on the neighbours' labels instead of drawn (lines from one box to every
    cell would cross the cells between). False when the view does not qualify (dot lays it out)."""
    items = view["items"]
    members, outside = items[:inside], items[inside:]
    if inside < GRID_FROM or any(e["a"] < inside and e["b"] < inside for e in view["edges"]):
        return False
    cells = [trace.element_indices[it["i"]] if it["t"] == "n" else None for it in members]
    if all(ix is not None and ix.count(",") == 1 for ix in cells):
        rows = sorted({int(ix.split(",")[0]) for ix in cells})
        cols = sorted({int(ix.split(",")[1]) for ix in cells})
        at = [(rows.index(int(ix.split(",")[0])), cols.index(int(ix.split(",")[1]))) for ix in cells]
        width = len(cols)
    else:
        width = math.ceil(math.sqrt(inside * 2))
        at = [divmod(k, width) for k in range(inside)]
    cell_w = max(it["w"] for it in members) + GAP
    cell_h = max(it["h"] for it in members) + GAP
    into = [k for k, it in enumerate(outside, inside) if any(e["a"] == k for e in view["edges"])]
    out_of = [k for k in range(inside, len(items)) if k not in into]
    top = GAP + (max((items[k]["h"] for k in into), default=0) + 2 * GAP if into else 0)
    for it, (r, c) in zip(members, at):
        it["x"], it["y"] = round(GAP + c * cell_w + cell_w / 2, 1), round(top + r * cell_h + cell_h / 2, 1)
    n_rows = max(r for r, _ in at) + 1
    total_w = GAP + width * cell_w
    bottom = top + n_rows * cell_h + GAP
    for row, y in ((into, GAP), (out_of, bottom)):
        x = GAP
        for k in row:
            it = items[k]
            it["x"], it["y"] = round(x + it["w"] / 2, 1), round(y + it["h"] / 2, 1)
            x += it["w"] + GAP
        total_w = max(total_w, x)
    view["w"] = round(total_w + GAP, 1)
    view["h"] = round(bottom + max((items[k]["h"] for k in out_of), default=0) + GAP, 1)
    for e in view["edges"]:
        e["path"], e["arrow"] = [], []
    return True


def _place_neighbours(view: dict[str, Any], inside: int) -> None:
    """Put the neighbours of a view whose members were laid out alone around them: those that
    feed the members in a row above, the others in a row below, each row in the order of the
    members it connects to (their mean x), centred. Not a graph layout: their edges are drawn
    straight from box to box by the page (``straight``), nothing is routed."""
    items = view["items"]
    if len(items) == inside:
        return
    ends: dict[int, list[float]] = {}
    feeds = set()
    for e in view["edges"]:
        a, b = e["a"], e["b"]
        if a >= inside:
            feeds.add(a)
            ends.setdefault(a, []).append(items[b]["x"])
        elif b >= inside:
            ends.setdefault(b, []).append(items[a]["x"])
    order = sorted(range(inside, len(items)), key=lambda k: (sum(ends.get(k, [0])) / len(ends.get(k, [0])), k))
    above = [k for k in order if k in feeds]
    below = [k for k in order if k not in feeds]
    fan = 4 * GAP  # room for the edges fanning out of a row
    dy = max((items[k]["h"] for k in above), default=0) + GAP + fan if above else 0
    rows_w = [sum(items[k]["w"] + GAP for k in row) - GAP for row in (above, below)]
    width = max(view["w"], *(w + 2 * GAP for w in rows_w))
    dx = (width - view["w"]) / 2  # the members centred under a wider row

    def moved(points: list[float]) -> list[float]:
        return [round(v + (dy if j % 2 else dx)) for j, v in enumerate(points)]

    for item in items[:inside]:
        item["x"], item["y"] = round(item["x"] + dx, 1), round(item["y"] + dy, 1)
    for cluster in view["clusters"]:
        cluster["x"], cluster["y"] = round(cluster["x"] + dx, 1), round(cluster["y"] + dy, 1)
    for e in view["edges"]:
        e["path"], e["arrow"] = moved(e["path"]), moved(e["arrow"])
    bottom = dy + view["h"] + fan
    for row, row_w, top in ((above, rows_w[0], GAP), (below, rows_w[1], bottom)):
        x = (width - row_w) / 2
        for k in row:
            item = items[k]
            item["x"], item["y"] = round(x + item["w"] / 2, 1), round(top + item["h"] / 2, 1)
            x += item["w"] + GAP
    view["w"] = round(width, 1)
    view["h"] = round(bottom + max(items[k]["h"] for k in below) + GAP if below else dy + view["h"], 1)
    view["straight"] = 1


def _item_row(item: dict[str, Any]) -> list[Any]:
    """An item as ``[kind, group or node, x, y, width, height]``, then its name (a group) or
    its edge counts (a neighbour), in whole points."""
    row = [item["t"], item["g"] if item["t"] in ("g", "o") else item["i"]]
    row += [round(item["x"]), round(item["y"]), math.ceil(item["w"]), math.ceil(item["h"])]
    if item["t"] == "g":
        row.append(item["name"])
    elif "edges" in item:
        row.append(item["edges"])
    return row


@dataclass
class Comparison:
    """Side B of ``mgx diff graph -o diff.html``: a label, and B's data and grad for each of A's
    nodes (None where B has no node of that id), with B's nodes that A lacks."""

    label: str
    data: list[float | None]
    grad: list[float | None]
    only_b: list[str]

    @classmethod
    def of(cls, label: str, ids_a: list[str], ids_b: list[str], data_b: list[float], grad_b: list[float]) -> Comparison:
        index = {node_id: j for j, node_id in enumerate(ids_b)}
        at = [index.get(node_id) for node_id in ids_a]
        known = set(ids_a)
        return cls(
            label,
            [None if j is None else data_b[j] for j in at],
            [None if j is None else grad_b[j] for j in at],
            [node_id for node_id in ids_b if node_id not in known],
        )

    def to_json(self, trace: Trace) -> dict[str, Any]:
        """B's numbers and the differences B - A, node by node, and the fill's scales."""
        nodes = trace.nodes
        d_data = [None if b is None else b - nodes[i].data for i, b in enumerate(self.data)]
        d_grad = [None if b is None else b - nodes[i].grad for i, b in enumerate(self.grad)]

        def json_list(xs: list[float | None]) -> list[float | str | None]:
            return [None if x is None else _num(x) for x in xs]

        def scale(xs: list[float | None]) -> list[float]:
            return _scale([abs(x) for x in xs if x is not None and math.isfinite(x) and x != 0])

        return {
            "label": self.label,
            "data": json_list(self.data),
            "grad": json_list(self.grad),
            "delta_data": json_list(d_data),
            "delta_grad": json_list(d_grad),
            "data_scale": scale(d_data),
            "grad_scale": scale(d_grad),
            "only_a": sum(b is None for b in self.data),
            "only_b": self.only_b,
        }


def _scale(magnitudes: list[float]) -> list[float]:
    """The log10 range the diverging fill spans: from 6 decades below the largest to it."""
    if not magnitudes:
        return [-6.0, 0.0]
    top = math.ceil(math.log10(max(magnitudes)) * 4) / 4
    return [top - 6.0, top]


def _view(trace: Trace, groups: list[Group], info: list[dict], g: int, view_of: list[int]) -> dict[str, Any]:
    """One group's drawing: its children, the neighbouring groups collapsed around them, and
    the edges between them counted."""
    group = groups[g]
    items: list[dict[str, Any]] = []
    item_of: dict[tuple[str, int], int] = {}
    for kind, c in group.children:
        item_of[(kind, c)] = len(items)
        items.append(_item(trace, groups, info, kind, c, group.key))
    # Each trace node below this group -> its item; a node outside -> its neighbour item.
    inside: dict[int, int] = {}
    for k, (kind, c) in enumerate(group.children):
        for i in groups[c].members if kind == "g" else [c]:
            inside[i] = k
    # The ancestors of each group, to name an outside node by the group at this depth.
    parent_of = [gr.parent for gr in groups]

    here = []  # g and its ancestors below the top
    v = g
    while v > 0:
        here.append(v)
        v = parent_of[v]
    depth = len(here)

    def outside_item(i: int) -> int:
        chain = []  # the groups holding node i, the top-most first
        v = view_of[i]
        while v > 0:
            chain.append(v)
            v = parent_of[v]
        chain.reverse()
        pick = chain[min(depth, len(chain)) - 1] if chain else 0
        key = ("o", pick) if pick and pick not in here else ("on", i)
        k = item_of.get(key)
        if k is None:
            k = item_of[key] = len(items)
            if key[0] == "o":
                gr = groups[pick]
                lines = [gr.key, f"({len(gr.members):,} nodes, outside)", "99,999 edges in, 99,999 edges out"]
                items.append({"t": "o", "g": pick, "clusters": []})
            else:
                lines = [trace.ids[i], "(outside) 99,999 edges in, 99,999 edges out"]
                items.append({"t": "on", "i": i, "clusters": []})
            items[-1]["w"], items[-1]["h"] = _box(lines)
        return k

    counts: dict[tuple[int, int], int] = {}
    child_indices = trace.child_indices
    consumers = trace.consumers
    for i, k in inside.items():
        for child in child_indices[i]:
            a = inside.get(child)
            if a is None:
                a = outside_item(child)
            if a != k:
                counts[(a, k)] = counts.get((a, k), 0) + 1
        for e in consumers[i]:
            if e.parent not in inside:
                b = outside_item(e.parent)
                counts[(k, b)] = counts.get((k, b), 0) + 1
    edges = [{"a": a, "b": b, "n": m} for (a, b), m in sorted(counts.items())]
    inside_n = len(group.children)
    for k in range(inside_n, len(items)):
        into = sum(m for (a, b), m in counts.items() if a == k)
        out_of = sum(m for (a, b), m in counts.items() if b == k)
        items[k]["edges"] = [into, out_of]
    _drop_lone_clusters(items)
    return {
        "group": g,
        "items": items,
        "edges": edges,
        "clusters": [],
        "w": 0,
        "h": 0,
    }


def _drop_lone_clusters(items: list[dict[str, Any]]) -> None:
    """Clusters around one item only are not drawn."""
    size: dict[str, int] = {}
    for item in items:
        for cl in item["clusters"]:
            size[cl] = size.get(cl, 0) + 1
    for item in items:
        item["clusters"] = [cl for cl in item["clusters"] if size[cl] > 1]


def _copied(view: dict[str, Any]) -> dict[str, Any]:
    """A view's items and edges, copied before the layout places them."""
    return {"items": [_copied_item(item) for item in view["items"]], "edges": [dict(e) for e in view["edges"]]}


def _copied_item(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "clusters": list(item["clusters"])}


def _open_view(trace: Trace, groups: list[Group], info: list[dict], top: dict[str, Any], b: int) -> dict[str, Any]:
    """The top's drawing with its group ``b`` open in place: b's members (in a cluster named
    by b's key) among the top's other groups, which stay collapsed. The edges between the
    other groups are the top's; only those of b's members are counted here."""
    block = groups[b]
    old = next(k for k, item in enumerate(top["items"]) if item["t"] == "g" and item["g"] == b)
    items = [_copied_item(item) for k, item in enumerate(top["items"]) if k != old]
    new_index = [k if k < old else k - 1 for k in range(len(top["items"]))]
    counts: dict[tuple[int, int], int] = {}
    for e in top["edges"]:
        if old not in (e["a"], e["b"]):
            counts[(new_index[e["a"]], new_index[e["b"]])] = e["n"]
    # Each node -> its item: the top's other groups by their members, b's members by b's children.
    item_of_node: dict[int, int] = {}
    for k, item in enumerate(items):
        for i in groups[item["g"]].members if item["t"] == "g" else [item["i"]]:
            item_of_node[i] = k
    own = set(block.clusters) | {block.key}
    mine = set(block.members)
    for kind, c in block.children:
        item = _item(trace, groups, info, kind, c, block.key)
        item["clusters"] = [*block.clusters, block.key, *(cl for cl in item["clusters"] if cl not in own)]
        item["opened"] = True
        for i in groups[c].members if kind == "g" else [c]:
            item_of_node[i] = len(items)
        items.append(item)
    for i in block.members:
        k = item_of_node[i]
        for child in trace.child_indices[i]:
            a = item_of_node[child]
            if a != k:
                counts[(a, k)] = counts.get((a, k), 0) + 1
        for e in trace.consumers[i]:
            if e.parent not in mine:
                counts[(k, item_of_node[e.parent])] = counts.get((k, item_of_node[e.parent]), 0) + 1
    _drop_lone_clusters(items)
    edges = [{"a": a, "b": c, "n": m} for (a, c), m in sorted(counts.items())]
    return {"group": 0, "opened": b, "items": items, "edges": edges, "clusters": [], "w": 0, "h": 0}


def _item(trace: Trace, groups: list[Group], info: list[dict], kind: str, c: int, parent_key: str) -> dict[str, Any]:
    if kind == "n":
        node = trace.nodes[c]
        lines = [trace.ids[c], str(node.op), f"data {_fmt(node.data)}", f"grad {_fmt(node.grad)}"]
        w, h = _box([lines[0], lines[1], "data -0.0000e-00", "grad -0.0000e-00"])
        return {"t": "n", "i": c, "w": w, "h": h, "clusters": []}
    entry = info[c]
    group = groups[c]
    name = _short(group.key, parent_key)
    lines = [name, f"{entry['shape']} · {entry['op']}"]
    if "data" in entry:
        lines += [f"data {entry['data']}", f"grad {entry['grad']}"]
    else:
        lines += [f"{len(group.members):,} nodes", ""]
    w, h = _box([*lines, "grad -0.000e-00 … -0.000e-00"])
    # The clusters inside this view: the group's path prefixes below the view's own path
    # (``_view`` then drops those around one item only).
    base = parent_key.split("@")[0]
    clusters = [cl for cl in group.clusters if not (base and (cl == base or base.startswith(cl + ".")))]
    return {"t": "g", "g": c, "name": name, "w": w, "h": h, "clusters": clusters}


# -- the page ------------------------------------------------------------------------------
def _asset(name: str) -> str:
    return resources.files("viz").joinpath(ASSETS, name).read_text(encoding="utf-8")


def page_html(data: dict[str, Any]) -> str:
    """The page: the template with the stylesheet, the data and the scripts put in."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    payload = payload.replace("</", "<\\/")  # no "</script>" can end the data early
    scripts = "\n".join(f"// ---- {name}\n{_asset(name)}" for name in SCRIPTS)
    template = _asset("page.html")
    return (
        template.replace("{{title}}", html.escape(data.get("title") or "microgpt-x graph"))
        .replace("{{style}}", _asset("page.css"))
        .replace("{{data}}", payload)
        .replace("{{script}}", scripts.replace("</script", "<\\/script"))
    )


def write_page(path: Path, data: dict[str, Any]) -> int:
    """Write the page atomically; returns its size in bytes."""
    from microgpt.files import write_atomic

    payload = page_html(data).encode("utf-8")
    write_atomic(path, payload)
    return len(payload)


class Viewer:
    """The page, displayed inline by a notebook (``_repr_html_``: an iframe holding it)."""

    def __init__(self, data: dict[str, Any], height: int = 640) -> None:
        self.data = data
        self.height = height

    def html(self) -> str:
        return page_html(self.data)

    def _repr_html_(self) -> str:
        doc = html.escape(self.html(), quote=True)
        return (
            f'<iframe srcdoc="{doc}" style="width:100%;height:{self.height}px;border:1px solid #d1d5db" '
            'sandbox="allow-scripts"></iframe>'
        )


def show(source: Trace | object, *, title: str = "", level: str = "block", height: int = 640, **options) -> Viewer:
    """The viewer of ``source`` (a TokenGraph built with ``backward=False``) for a notebook:
    the last expression of a cell, it displays inline; ``.html()`` is the page's text."""
    return Viewer(page_data(source, title=title, level=level, **options), height)
