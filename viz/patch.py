"""What if? The graph of one token replayed with some nodes' values edited.

An edit selects nodes with the tag pattern language, as ``mgx inspect`` does, and applies to
tensors' elements (and weights), never to the partial sums that computed them:

    set    PATTERN=VALUE     every selected element takes VALUE
    scale  PATTERN=FACTOR    every selected element is multiplied by FACTOR
    mean   PATTERN           each selected element takes its mean over other documents
    from   WORD PATTERN      each selected element takes its value in the graph of WORD
                             at the same position (activation patching)

The replay (``microgpt.engine.Replay``) recomputes only what is downstream of the edits, by
the ops' own rules. A patch that changes nothing is never silent: either the elements
already had those values, or the change stops at nodes whose value did not move (a softmax
over one position is 1 whatever its score), and the result names them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from microgpt.engine import Replay
from microgpt.errors import MicrogptError
from viz.pattern import select_or_explain
from viz.trace import Trace

EDIT_KINDS = ("set", "scale", "mean", "from")


@dataclass(frozen=True)
class Edit:
    kind: str
    pattern: str
    number: float | None = None  # set: the value; scale: the factor
    word: str | None = None  # from: the other word

    def __str__(self) -> str:
        if self.kind in ("set", "scale"):
            return f"--{self.kind} {self.pattern}={self.number:g}"
        if self.kind == "mean":
            return f"--mean {self.pattern}"
        return f"--from {self.word} {self.pattern}"

    @classmethod
    def assignment(cls, kind: str, text: str) -> Edit:
        """``--set PATTERN=VALUE`` or ``--scale PATTERN=FACTOR``."""
        pattern, sep, number = text.rpartition("=")
        try:
            value = float(number)
        except ValueError:
            value = None
        if not sep or not pattern or value is None:
            example = "layer0.attn.h2.out=0" if kind == "set" else "layer0.mlp.post[17]=2"
            raise MicrogptError(f"--{kind} {text!r} is not PATTERN=NUMBER: write e.g. --{kind} {example}")
        return cls(kind, pattern, value)


def _bits_equal(x: float, y: float) -> bool:
    return (x == y and math.copysign(1, x) == math.copysign(1, y)) or (math.isnan(x) and math.isnan(y))


def element_nodes(trace: Trace, pattern: str) -> list[int]:
    """The tensor elements and weights ``pattern`` selects (the outputs of their tag groups)."""
    selected = select_or_explain(trace, pattern)
    outputs: set[int] = set()
    for group in dict.fromkeys(trace.group_of(i) for i in selected):
        outputs.update(trace.group_outputs(group))
    return [i for i in selected if i in outputs]


@dataclass
class EditResult:
    edit: Edit
    nodes: list[int]  # the elements it selected
    changed: int  # how many of them took a different value


@dataclass
class Blocker:
    """A node downstream of the edits whose value stayed the same although an input changed."""

    node: int
    reason: str


@dataclass
class PatchResult:
    edits: list[EditResult]
    before: list[float]  # every node's data, before and after
    after: list[float]
    downstream: list[int]  # the nodes recomputed
    blockers: list[Blocker] = field(default_factory=list)
    grads_after: list[float] | None = None

    @property
    def changed_nodes(self) -> list[int]:
        return [i for i, (x, y) in enumerate(zip(self.before, self.after)) if not _bits_equal(x, y)]


ValuesOf = Callable[[Edit, list[int]], list[float]]  # mean and from: the values an edit's nodes take


def apply_edits(trace: Trace, edits: Sequence[Edit], values_of: ValuesOf, *, backward: bool = False) -> PatchResult:
    """Replay ``trace`` with ``edits``, in order (a later edit of the same node wins).
    ``values_of`` gives the values of a mean or from edit's nodes."""
    replay = Replay(trace.nodes)
    before = replay.recorded
    changes: dict[int, float] = {}
    results = []
    for edit in edits:
        nodes = element_nodes(trace, edit.pattern)
        if edit.kind == "set":
            values = [edit.number] * len(nodes)
        elif edit.kind == "scale":
            values = [before[i] * edit.number for i in nodes]
        else:
            values = values_of(edit, nodes)
        for i, x in zip(nodes, values):
            changes[i] = x
        results.append(EditResult(edit, nodes, sum(not _bits_equal(before[i], x) for i, x in zip(nodes, values))))
    real = {i: x for i, x in changes.items() if not _bits_equal(before[i], x)}
    after = replay.evaluate(real) if real else list(before)
    downstream = replay.downstream(real) if real else []
    result = PatchResult(results, before, after, downstream)
    result.blockers = _blockers(trace, replay, real, downstream, before, after)
    if backward:
        result.grads_after = replay.backward(after)
    return result


def _blockers(trace, replay, changes, downstream, before, after) -> list[Blocker]:
    moved = {i for i in changes}
    out = []
    for i in downstream:
        if i in changes:
            continue
        if not _bits_equal(before[i], after[i]):
            moved.add(i)
        elif any(k in moved for k in replay.inputs[i]):
            out.append(Blocker(i, _why_unchanged(trace, replay, i, before, after, moved)))
    return out


def _why_unchanged(trace, replay, i, before, after, moved) -> str:
    node = trace.nodes[i]
    op = node.op.name
    inputs = replay.inputs[i]
    parts = trace.tag_parts[i]
    group = trace.group_of(i)
    if parts is not None and parts.segments[-1] == "weights" and len(trace.group_outputs(group)) == 1:
        return "a softmax over one position is 1 whatever its score"
    if op == "relu" and before[i] == 0 and after[i] == 0:
        return "ReLU gives 0 for a negative input, before and after"
    if op == "mul" and any(after[k] == 0 and k not in moved for k in inputs):
        return "it is multiplied by 0"
    return "at these values its output does not depend on the change"


def next_token_probabilities(values: Sequence[float], logits: Sequence[int]) -> list[float]:
    """softmax of the logits (node indices) at ``values``. The graph holds only the target's
    probability (the loss needs no other), so the others are computed here from the logits."""
    shown = [values[i] for i in logits]
    finite = [x for x in shown if not math.isnan(x)]
    shift = max(finite) if finite else 0.0
    exps = [math.exp(x - shift) if x - shift < 709 else math.inf for x in shown]
    total = math.fsum(exps)
    return [e / total if total else math.nan for e in exps]


def top_probabilities(probs: Sequence[float], k: int) -> list[tuple[int, float]]:
    """The ``k`` largest probabilities as (token id, p), largest first (ties: lower id first)."""
    ranked = sorted(range(len(probs)), key=lambda t: (-probs[t] if not math.isnan(probs[t]) else math.inf, t))
    return [(t, probs[t]) for t in ranked[:k]]
