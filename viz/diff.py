"""Two sets of weights compared scalar by scalar: two checkpoints, or two snapshots of a run.

Weights are matched by name and element, as their tags say (``layer0.attn.wq[3,5]``): for
each matrix, the norms of each side and of the change, how many elements changed, and the
elements that changed most, by tag; Adam's moments the same way where both sides have them.
A matrix on one side only, or of another shape, is listed as such, never dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from microgpt.errors import MicrogptError
from microgpt.numbers import to_json_number
from microgpt.scope import parse_tag
from viz.pattern import Pattern

Matrices = dict[str, list[list[float]]]


@dataclass
class WeightsSide:
    """One side: a label (a file, or run@step), its weights, and Adam's state when known."""

    label: str
    weights: Matrices
    step: int | None = None  # Adam's steps done
    m: Matrices | None = None
    v: Matrices | None = None


@dataclass
class ElementChange:
    tag: str
    a: float
    b: float

    @property
    def delta(self) -> float:
        return self.b - self.a


@dataclass
class MatrixDiff:
    name: str
    shape_a: tuple[int, int] | None  # None: not on side A
    shape_b: tuple[int, int] | None
    norm_a: float = math.nan
    norm_b: float = math.nan
    norm_change: float = math.nan
    changed: int = 0  # elements whose value differs (NaN on both sides counts as equal)
    elements: int = 0
    largest: list[ElementChange] = field(default_factory=list)
    moments: dict[str, tuple[float, float]] = field(default_factory=dict)  # m, v -> (‖A‖, ‖B‖)

    @property
    def comparable(self) -> bool:
        return self.shape_a is not None and self.shape_a == self.shape_b


@dataclass
class WeightsDiff:
    a: str
    b: str
    step_a: int | None
    step_b: int | None
    matrices: list[MatrixDiff]
    largest: list[ElementChange]  # over every selected matrix

    @property
    def identical(self) -> bool:
        return all(m.comparable and m.changed == 0 for m in self.matrices)

    def to_json(self) -> dict:
        def number(x: float) -> float | str:
            return to_json_number(x)

        def change(c: ElementChange) -> dict:
            return {"tag": c.tag, "a": number(c.a), "b": number(c.b), "delta": number(c.delta)}

        return {
            "a": self.a,
            "b": self.b,
            "step_a": self.step_a,
            "step_b": self.step_b,
            "identical": self.identical,
            "matrices": [
                {
                    "name": m.name,
                    "shape_a": m.shape_a,
                    "shape_b": m.shape_b,
                    "norm_a": number(m.norm_a),
                    "norm_b": number(m.norm_b),
                    "norm_change": number(m.norm_change),
                    "changed": m.changed,
                    "elements": m.elements,
                    "largest": [change(c) for c in m.largest],
                    "moments": {k: [number(x) for x in v] for k, v in m.moments.items()},
                }
                for m in self.matrices
            ],
            "largest": [change(c) for c in self.largest],
        }


def _shape(matrix: list[list[float]]) -> tuple[int, int]:
    return (len(matrix), len(matrix[0]) if matrix else 0)


def _norm(matrix: list[list[float]]) -> float:
    return math.hypot(*(x for row in matrix for x in row))


def _same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def _magnitude(change: ElementChange) -> float:
    d = abs(change.delta)
    return math.inf if math.isnan(d) else d  # a value that became NaN is as large a change as any


def diff_weights(a: WeightsSide, b: WeightsSide, pattern: str | None = None, top: int = 10) -> WeightsDiff:
    """Compare ``a`` and ``b`` over the matrices and elements ``pattern`` selects (all without one)."""
    parsed = Pattern.parse(pattern) if pattern else None
    names = list(a.weights) + [name for name in b.weights if name not in a.weights]
    out: list[MatrixDiff] = []
    everything: list[ElementChange] = []
    for name in names:
        ma, mb = a.weights.get(name), b.weights.get(name)
        if parsed is not None and not _matrix_selected(parsed, name):
            continue
        diff = MatrixDiff(name, None if ma is None else _shape(ma), None if mb is None else _shape(mb))
        out.append(diff)
        if not diff.comparable:
            continue
        changes = []
        for r, (row_a, row_b) in enumerate(zip(ma, mb)):
            for c, (x, y) in enumerate(zip(row_a, row_b)):
                tag = f"{name}[{r},{c}]"
                if parsed is not None and parsed.index is not None and not parsed.matches(parse_tag(tag)):
                    continue
                diff.elements += 1
                if not _same(x, y):
                    changes.append(ElementChange(tag, x, y))
        diff.norm_a, diff.norm_b = _norm(ma), _norm(mb)
        diff.norm_change = math.hypot(*(c.delta for c in changes))
        diff.changed = len(changes)
        changes.sort(key=_magnitude, reverse=True)
        diff.largest = changes[:top]
        everything.extend(changes[:top])
        for kind in ("m", "v"):
            moments_a, moments_b = getattr(a, kind), getattr(b, kind)
            if moments_a and moments_b and name in moments_a and name in moments_b:
                diff.moments[kind] = (_norm(moments_a[name]), _norm(moments_b[name]))
    everything.sort(key=_magnitude, reverse=True)
    if parsed is not None and not out:
        raise MicrogptError(
            f"pattern {pattern!r} selects no weight matrix: give a weight's tag, e.g. wte, attn.wq, mlp.fc1[3,*]"
        )
    return WeightsDiff(a.label, b.label, a.step, b.step, out, everything[:top])


def _matrix_selected(pattern: Pattern, name: str) -> bool:
    """Whether ``pattern`` can select elements of matrix ``name`` (its index is checked per element)."""
    if pattern.pos_range is not None:
        return False  # parameters have no position
    whole = Pattern(pattern.text, pattern.segments, None, None)
    return whole.matches(parse_tag(name))


# -- two graphs -----------------------------------------------------------------------------


@dataclass
class NodeChange:
    node: str  # the stable id
    a: float
    b: float

    @property
    def size(self) -> float:
        d = abs(self.b - self.a)
        return math.inf if math.isnan(d) else d


@dataclass
class GroupDiff:
    group: str  # the tag group (tensor), e.g. layer0.attn.h0.q@pos2
    nodes: int  # matched on both sides
    data: NodeChange | None  # its largest |Δdata| (None: no difference)
    grad: NodeChange | None


@dataclass
class GraphDiff:
    a: str
    b: str
    matched: int
    only_a: list[str]
    only_b: list[str]
    groups: list[GroupDiff]  # groups with a difference, largest |Δdata| first
    first: NodeChange | None  # the first node, in A's graph order, whose data differs beyond the tolerance
    tolerance: float

    @property
    def identical(self) -> bool:
        return not self.only_a and not self.only_b and not self.groups

    def to_json(self) -> dict:
        def change(c: NodeChange | None) -> dict | None:
            if c is None:
                return None
            return {
                "node": c.node,
                "a": to_json_number(c.a),
                "b": to_json_number(c.b),
                "delta": to_json_number(c.b - c.a),
            }

        return {
            "a": self.a,
            "b": self.b,
            "matched": self.matched,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "tolerance": self.tolerance,
            "first_difference": change(self.first),
            "identical": self.identical,
            "groups": [
                {"group": g.group, "nodes": g.nodes, "data": change(g.data), "grad": change(g.grad)}
                for g in self.groups
            ],
        }


def _differs(x: float, y: float, tolerance: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) != math.isnan(y)
    if x == y:
        return False
    return not abs(x - y) <= tolerance * max(1.0, abs(x), abs(y))


def diff_graphs(
    a: str,
    b: str,
    ids_a: list[str],
    ids_b: list[str],
    groups_a: list[str],
    data_a: list[float],
    data_b: list[float],
    grad_a: list[float],
    grad_b: list[float],
    tolerance: float = 0.0,
) -> GraphDiff:
    """Two graphs' nodes matched by their stable ids; side A's order and tag groups lead.
    ``tolerance`` is relative (to the larger magnitude, at least 1): 0 reports any difference."""
    index_b = {node_id: i for i, node_id in enumerate(ids_b)}
    matched = 0
    first = None
    by_group: dict[str, list] = {}
    for i, node_id in enumerate(ids_a):
        j = index_b.get(node_id)
        if j is None:
            continue
        matched += 1
        entry = by_group.setdefault(groups_a[i], [0, None, None])
        entry[0] += 1
        if _differs(data_a[i], data_b[j], tolerance):
            change = NodeChange(node_id, data_a[i], data_b[j])
            if first is None:
                first = change
            if entry[1] is None or change.size > entry[1].size:
                entry[1] = change
        if _differs(grad_a[i], grad_b[j], tolerance):
            change = NodeChange(node_id, grad_a[i], grad_b[j])
            if entry[2] is None or change.size > entry[2].size:
                entry[2] = change
    groups = [
        GroupDiff(group, n, data, grad)
        for group, (n, data, grad) in by_group.items()
        if data is not None or grad is not None
    ]
    groups.sort(key=lambda g: (-(g.data.size if g.data else 0.0), -(g.grad.size if g.grad else 0.0), g.group))
    ids_a_set = set(ids_a)
    only_a = [node_id for node_id in ids_a if node_id not in index_b]
    only_b = [node_id for node_id in ids_b if node_id not in ids_a_set]
    return GraphDiff(a, b, matched, only_a, only_b, groups, first, tolerance)
