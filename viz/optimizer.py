"""Adam's state of each parameter, as ``mgx inspect --adam`` and the viewer's panel show it.

A checkpoint holds Adam's moments after its last step t (``state.step``). From them:

    m̂ = m / (1 - β1^t)        v̂ = v / (1 - β2^t)
    update = -lr_t · m̂ / (√v̂ + ε),   lr_t = lr · (1 - (t-1)/steps)

the bias-corrected moments and the update that last step made (what it added to the weight),
computed as Adam computed it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from microgpt.errors import MicrogptError
from microgpt.numbers import to_json_number


@dataclass(frozen=True)
class AdamState:
    m: float
    v: float
    m_hat: float
    v_hat: float
    update: float  # what the last step added to the weight

    def to_json(self) -> dict[str, float | str]:
        return {name: to_json_number(getattr(self, name)) for name in ("m", "v", "m_hat", "v_hat", "update")}


def adam_states(trace, selection: Sequence[int], checkpoint) -> dict[int, AdamState]:
    """The Adam state of every selected parameter node (index -> state)."""
    state, adam = checkpoint.state, checkpoint.adam
    if state.step == 0 or not state.m:
        raise MicrogptError(
            "this checkpoint has no Adam state yet (no training step done): train it first, or drop --adam"
        )
    where = {id(p): k for k, p in enumerate(checkpoint.model.params)}
    t = state.step
    m_correction, v_correction = 1 - adam.beta1**t, 1 - adam.beta2**t
    lr_t = adam.lr * (1 - (t - 1) / checkpoint.steps)
    out = {}
    for i in selection:
        k = where.get(id(trace.nodes[i]))
        if k is None:
            continue  # not a parameter
        m, v = state.m[k], state.v[k]
        m_hat, v_hat = m / m_correction, v / v_correction
        out[i] = AdamState(
            m, v, m_hat, v_hat, -lr_t * m_hat / (math.sqrt(v_hat) + adam.eps) if v_hat >= 0 else math.nan
        )
    return out
