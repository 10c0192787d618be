"""The building blocks of the GPT, on lists of Values, in both granularities.

Atomic builds the reference design's nodes one multiply and one add at a time (Python's
``sum()`` over Values: ``0 + a0`` then ``+ a1`` ...). Fused builds one n-ary node per dot
product or sum. The forward values are bit-identical; see engine.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from microgpt.engine import Value
from microgpt.engine import dot as fused_dot
from microgpt.engine import dots as fused_dots
from microgpt.engine import total as fused_total

Vector = list[Value]
Matrix = Sequence[Sequence[Value]]  # rows: out features; columns: in features


def dot(ws: Sequence[Value], xs: Sequence[Value], fused: bool) -> Value:
    if fused:
        return fused_dot(ws, xs)
    if len(ws) != len(xs):
        raise ValueError(f"dot of vectors of different lengths ({len(ws)} and {len(xs)})")
    return sum(w * x for w, x in zip(ws, xs))  # type: ignore[return-value]


def total(xs: Sequence[Value], fused: bool) -> Value:
    if fused:
        return fused_total(xs)
    return sum(xs)  # type: ignore[return-value]


def linear(x: Sequence[Value], w: Matrix, fused: bool, w_data: list[tuple[float, ...]] | None = None) -> Vector:
    """y = W x, no bias. w: (out, in), x: (in,) -> (out,); ``w_data``: W's data, if already read."""
    if fused:
        return fused_dots(w, x, w_data)
    return [dot(row, x, fused) for row in w]


def softmax(logits: Sequence[Value], fused: bool) -> Vector:
    """exp(l - max) / Σ exp(l - max); the max is a constant, so subtracting it is exact algebra.

    The max skips NaN logits, so it does not depend on where a NaN sits (Python's max() does):
    a NaN logit makes its own exp NaN, hence the sum and every output NaN."""
    numbers = [v.data for v in logits if v.data == v.data]
    max_val = max(numbers) if numbers else math.nan
    exps = [v.exp_minus(max_val) for v in logits]
    denominator = total(exps, fused)
    if fused:  # one reciprocal node shared by every output
        inverse = denominator**-1
        return [e * inverse for e in exps]
    return [e / denominator for e in exps]  # the reference: a reciprocal node per output


def rmsnorm(x: Sequence[Value], fused: bool) -> Vector:
    """x / sqrt(mean(x²) + 1e-5), no learned scale."""
    mean_square = dot(x, x, fused) / len(x)
    scale = (mean_square + 1e-5) ** -0.5
    return [xi * scale for xi in x]
