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


def matrices_of(flat: list[float], shapes: dict[str, tuple[int, int]]) -> Matrices:
    """Flat numbers in parameter order (Adam's moments in a checkpoint) as named matrices."""
    out, start = {}, 0
    for name, (rows, cols) in shapes.items():
        out[name] = [flat[start + r * cols : start + (r + 1) * cols] for r in range(rows)]
        start += rows * cols
    return out
