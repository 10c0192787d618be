"""How a model learns, one step at a time: the series ``mgx train`` records.

Every function here takes numbers the training step already holds (grads, the weights
before and after the update, the attention weights and ReLU inputs of the step's forward
pass) and returns named values. Names are ``kind:tag`` (``grad_norm:layer0.attn.wq``), so
the tag pattern language chooses series as it chooses nodes (README, "The runs database"):

    loss, lr, max_logit                         one a step
    grad_norm:M, weight_norm:M                  the 2-norm of matrix M's grads and weights
    update_ratio:M                              log10(std(Δw) / std(w)) over M's elements, Δw the
                                                update just made, w the weights after it; healthy
                                                near -3 (the makemore convention)
    entropy:layerL.attn.hH                      the head's attention entropy, divided by
                                                log(positions seen), averaged over the queries that
                                                see more than one position (1: uniform, 0: one-hot)
    dead:layerL.mlp                             the fraction of the MLP's units whose ReLU input is
                                                <= 0 at every position of the step's document

Norms use ``math.hypot``, which runs at C speed and does not overflow where the squares
would, and each pass over a matrix is one C call: recording costs a step little.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from operator import sub

SERIES_KINDS = ("loss", "lr", "max_logit", "grad_norm", "weight_norm", "update_ratio", "entropy", "dead")


def std(xs: Sequence[float], norm: float | None = None) -> float:
    """The population standard deviation, from the 2-norm (pass it if known) and the mean."""
    if not xs:
        return math.nan
    return _std(math.hypot(*xs) if norm is None else norm, sum(xs), len(xs))


def _std(norm: float, total: float, n: int) -> float:
    """The population std of n numbers from their 2-norm and their sum: var = ‖x‖²/n − mean²,
    which loses nothing that shows when |mean| is not far above the spread, as for weights
    and their updates. A plain sum: its rounding is far below what the ratio shows."""
    rms = norm / math.sqrt(n)
    if rms == 0 or not math.isfinite(rms):
        return 0.0 if rms == 0 else math.nan
    mean = total / n
    return rms * math.sqrt(max(0.0, 1 - (mean / rms) ** 2))  # in units of rms: no square overflows


def update_ratio(before: Sequence[float], after: Sequence[float], after_norm: float | None = None) -> float:
    """log10(std(after - before) / std(after)); -inf when nothing moved, nan when w is constant.

    std(after - before) is taken from ‖after − before‖ (math.dist) and the difference of the
    sums, without a list of the differences: making one would cost a recorded step more than
    every other series together."""
    if not after:
        return math.nan
    after_total = sum(after)
    moved_total = after_total - sum(before)
    if not math.isfinite(moved_total):  # the sums overflowed: add the differences instead
        moved_total = sum(map(sub, after, before))
    moved = _std(math.dist(after, before), moved_total, len(after))
    spread = _std(math.hypot(*after) if after_norm is None else after_norm, after_total, len(after))
    if spread == 0 or not math.isfinite(spread) or not math.isfinite(moved):
        return math.nan
    return -math.inf if moved == 0 else math.log10(moved / spread)


def matrix_series(
    matrices: dict[str, slice], grads: Sequence[float], before: Sequence[float], after: Sequence[float]
) -> dict[str, float]:
    """grad_norm, weight_norm and update_ratio of each matrix, whose elements are
    ``matrices[name]`` of the flat parameter lists."""
    out = {}
    for name, where in matrices.items():
        weights = after[where]
        out[f"grad_norm:{name}"] = math.hypot(*grads[where])
        out[f"weight_norm:{name}"] = norm = math.hypot(*weights)
        out[f"update_ratio:{name}"] = update_ratio(before[where], weights, norm)
    return out


def normalised_entropy(weights: Sequence[float]) -> float:
    """The entropy of one query's attention weights over n positions, divided by log n."""
    h = -math.fsum(w * math.log(w) for w in weights if w > 0)
    return h / math.log(len(weights))


def head_entropy(rows: Sequence[Sequence[float]]) -> float:
    """The mean normalised entropy over a head's queries that see more than one position
    (a query at position 0 sees one: its weight is 1 whatever the scores); nan if none do."""
    seen = [normalised_entropy(row) for row in rows if len(row) > 1]
    return math.fsum(seen) / len(seen) if seen else math.nan


def dead_fraction(relu_inputs: Sequence[Sequence[float]]) -> float:
    """The fraction of units (columns) whose input is <= 0 at every position (rows)."""
    if not relu_inputs:
        return math.nan
    units = list(zip(*relu_inputs))  # one tuple a unit: its inputs at every position
    return sum(max(unit) <= 0 for unit in units) / len(units)


def flat_slices(shapes: dict[str, tuple[int, int]]) -> dict[str, slice]:
    """Where each matrix's elements sit in the flat parameter list, in ``shapes``' order."""
    out, start = {}, 0
    for name, (rows, cols) in shapes.items():
        out[name] = slice(start, start + rows * cols)
        start += rows * cols
    return out


def step_series(detail, matrices: dict[str, slice]) -> dict[str, float]:
    """Every series of one training step (a microgpt.train.StepDetail), by name."""
    out = {"loss": detail.loss, "lr": detail.lr}
    out["max_logit"] = max(map(abs, chain.from_iterable(detail.logits)), default=math.nan)
    out.update(matrix_series(matrices, detail.grads, detail.before, detail.after))
    for (layer, head), rows in sorted(detail.attention.items()):
        out[f"entropy:layer{layer}.attn.h{head}"] = head_entropy(rows)
    for layer, rows in sorted(detail.mlp_pre.items()):
        out[f"dead:layer{layer}.mlp"] = dead_fraction(rows)
    return out


def snapshot(shapes: dict[str, tuple[int, int]], **flat: list[float]) -> dict[str, dict[str, list[list[float]]]]:
    """{matrix: {kind: rows}} from flat lists in parameter order (kinds: data, grad, m, v)."""
    from microgpt.checkpoint import named_matrices

    by_kind = {kind: named_matrices(values, shapes) for kind, values in flat.items()}
    return {name: {kind: matrices[name] for kind, matrices in by_kind.items()} for name in shapes}
