"""Is a gradient right? The analytic grad of each selected node next to the central finite
difference of the loss, computed by replaying the recorded graph (``microgpt.engine.Replay``)
with the node nudged by ±step: no model is run again, and only what lies downstream of the
node is recomputed.

Defaults are PyTorch gradcheck's for float64: step 1e-6, an element passes where
|a − n| ≤ atol + rtol·|n| with atol 1e-5 and rtol 1e-3. The relative error
|a − n| / max(|a|, |n|) is also put in the words people know (CS231n's bands): ≤ 1e-7 good,
up to 1e-4 fine, up to 1e-2 uneasy, above that wrong.

A kink: where a ReLU's input changes sign between the two nudged replays, the loss is not
differentiable within the step, so the finite difference is not expected to agree; such an
element is listed as a kink, not a failure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from microgpt.engine import Replay
from viz.trace import Trace

STEP = 1e-6
ATOL = 1e-5
RTOL = 1e-3
# (upper bound of the relative error, word), checked in order
BANDS = ((1e-7, "good"), (1e-4, "fine"), (1e-2, "uneasy"), (math.inf, "wrong"))


def band(relative_error: float) -> str:
    if math.isnan(relative_error):
        return "wrong"
    return next(word for bound, word in BANDS if relative_error <= bound)


@dataclass(frozen=True)
class ElementCheck:
    node: int  # index in the trace
    analytic: float
    numeric: float
    abs_error: float
    rel_error: float
    passed: bool
    kink: bool  # a ReLU's input crosses 0 within the step: no verdict expected

    @property
    def verdict(self) -> str:
        if self.kink:
            return "kink"
        return "pass" if self.passed else "FAIL"

    @property
    def failed(self) -> bool:
        return not self.passed and not self.kink

    @property
    def words(self) -> str:
        return band(self.rel_error)


def _errors(analytic: float, numeric: float, atol: float, rtol: float) -> tuple[float, float, bool]:
    if analytic == numeric:  # equal (infinities of one sign included): no error at all
        return 0.0, 0.0, True
    abs_error = abs(analytic - numeric)
    scale = max(abs(analytic), abs(numeric))
    rel_error = abs_error / scale if scale > 0 else 0.0
    passed = abs_error <= atol + rtol * abs(numeric)  # False when either is NaN
    return abs_error, rel_error, passed


def check_gradients(
    trace: Trace,
    selection: Sequence[int],
    *,
    step: float = STEP,
    atol: float = ATOL,
    rtol: float = RTOL,
    replay: Replay | None = None,
    on_progress=None,
) -> list[ElementCheck]:
    """The finite-difference check of the root's grad with respect to each selected node, in
    the order given. The trace must hold a finished backward pass (its nodes' grads)."""
    replay = replay or Replay(trace.nodes)
    relus = [i for i, node in enumerate(trace.nodes) if node.op.name == "relu"]
    relu_inputs = {i: replay.inputs[i][0] for i in relus}
    out = []
    for done, i in enumerate(selection):
        x = replay.recorded[i]
        plus = replay.evaluate({i: x + step})
        minus = replay.evaluate({i: x - step})
        numeric = (plus[-1] - minus[-1]) / (2 * step)
        analytic = float(trace.nodes[i].grad)
        kink = any(
            (plus[k] > 0) != (minus[k] > 0) or plus[k] == 0 or minus[k] == 0
            for k in (relu_inputs[r] for r in relus)
            if plus[k] != replay.recorded[k] or minus[k] != replay.recorded[k]
        )
        abs_error, rel_error, passed = _errors(analytic, numeric, atol, rtol)
        out.append(ElementCheck(i, analytic, numeric, abs_error, rel_error, passed, kink))
        if on_progress is not None:
            on_progress(done + 1, len(selection))
    return out


# -- where a NaN or an infinity was born ------------------------------------------------------
@dataclass(frozen=True)
class ForwardOrigin:
    """The first node, in graph order (every node after its inputs: an order the forward pass
    could have computed them in), whose data is not finite; its inputs are all finite."""

    node: int
    non_finite: int  # nodes whose data is not finite
    origins: int  # nodes with finite inputs and a non-finite output (the first is ``node``)
    groups: list[str]  # tensor groups holding a non-finite value, in graph order
    reached_root: bool


@dataclass(frozen=True)
class BackwardOrigin:
    """The first edge, in the order backward applies them, where the chain rule made a
    finite grad non-finite: a local derivative that is not finite, or a product or sum of
    finite numbers that overflowed."""

    child: int
    parent: int
    slot: int
    local_grad: float
    upstream: float  # the parent's grad
    before: float  # the child's grad before this edge
    after: float  # and after it
    reason: str  # "local derivative", "product overflowed", "sum overflowed"


def forward_origin(trace: Trace) -> ForwardOrigin | None:
    """None when every node's data is finite. A constant is not an origin when something
    else is: its value was computed outside the graph from values in it (softmax's shift is
    the largest logit, NaN when every logit is)."""
    nodes = trace.nodes
    bad = [not math.isfinite(node.data) for node in nodes]
    if not any(bad):
        return None
    born = [i for i, b in enumerate(bad) if b and not any(bad[e.child] for e in trace.inputs[i])]
    computed = [i for i in born if nodes[i].op.name != "const"] or born
    groups = list(dict.fromkeys(trace.group_of(i) for i, b in enumerate(bad) if b))
    return ForwardOrigin(computed[0], sum(bad), len(computed), groups, bad[-1])


def backward_origin(trace: Trace) -> BackwardOrigin | None:
    """Replays the backward pass's accumulation from the recorded local derivatives; None
    when no edge turned a finite grad non-finite. Edges into constants are skipped: nothing
    uses a constant's grad (the -1 of ``-log p`` gets log p's value as its derivative)."""
    nodes = trace.nodes
    grads: list[float] = [0.0] * len(nodes)
    grads[-1] = 1.0
    for parent in reversed(range(len(nodes))):
        upstream = grads[parent]
        for edge in trace.inputs[parent]:
            before = grads[edge.child]
            contribution = edge.local_grad * upstream
            after = before + contribution
            grads[edge.child] = after
            if math.isfinite(after) or not (math.isfinite(before) and math.isfinite(upstream)):
                continue
            if nodes[edge.child].op.name == "const":
                continue
            if not math.isfinite(edge.local_grad):
                reason = "local derivative"
            elif not math.isfinite(contribution):
                reason = "product overflowed"
            else:
                reason = "sum overflowed"
            return BackwardOrigin(edge.child, parent, edge.slot, edge.local_grad, upstream, before, after, reason)
    return None
