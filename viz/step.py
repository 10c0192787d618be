"""The backprop stepper: ``Value.backward`` run one node at a time, forwards and back.

``Value.backward`` (microgpt/engine.py) zeroes the grad of every node that has inputs,
sets the root's grad to 1, then walks the nodes in reverse topological order and, for
each edge of each node, applies the chain rule

    child.grad += local_grad * node.grad

The ``Stepper`` does exactly that on a graph built without its backward pass
(``token_graph(..., backward=False)``), one *step* at a time: a step is one node with
inputs, all of its edges, each reported as an ``Update`` with the child's grad before
and after. Leaves (weights, constants) have no edges, so they are never a step: their
grads are the ones the steps write into. Because the order and the arithmetic are the
engine's, the grads at any moment are the ones the engine would hold at that point, and
after the last step they equal ``backward()``'s to the last bit.

Every step remembers the grads it overwrote, so a step can be undone exactly. On top of
single steps: step over the rest of a tag group, run to a breakpoint, jump to a node or
a tag pattern. The stepper writes the grads into the graph's Values as it goes (as
backward would), and keeps no other state than its position and that history.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from microgpt.errors import MicrogptError
from microgpt.numbers import to_json_number
from viz.check import BackwardOrigin, backward_origin
from viz.pattern import Pattern, select
from viz.trace import Trace

BREAKPOINT_KINDS = ("pattern", "op", "nonfinite", "origin", "grad")


@dataclass(frozen=True)
class Update:
    """One edge of a step: ``child.grad += local_grad * node_grad``, with the numbers."""

    child: int  # index of the child in the trace
    slot: int  # which input of the node
    local_grad: float  # ∂node/∂child
    node_grad: float  # the node's grad (final when the node is processed)
    before: float  # the child's grad before the update
    after: float  # and after


@dataclass(frozen=True)
class StepRecord:
    """One step: the node processed and its updates, in input order."""

    number: int  # 1-based: the k of "step k of N"
    node: int  # index of the node in the trace
    updates: tuple[Update, ...]


@dataclass(frozen=True)
class Breakpoint:
    """Where ``run_until`` stops: a step whose node matches, or whose numbers cross a line.

    - ``pattern``: the node's tag matches a tag pattern (viz.pattern's language);
    - ``op``: the node's op is called ``op`` (mul, dot, exp, ...);
    - ``nonfinite``: the node's data or grad, or a grad the step writes, is nan or ±inf;
    - ``origin``: the step applies the backward origin (viz.check): the first edge where
      the chain rule turned a finite grad into a non-finite one;
    - ``grad``: |the node's grad| or |a grad the step writes| is above ``threshold``; a nan
      counts as above every threshold (it compares false to everything, so a plain ``>``
      would run straight past the nan a user hunting an explosion is looking for).
    """

    kind: str
    text: str = ""  # the pattern or op name
    threshold: float = math.inf

    def __post_init__(self) -> None:
        if self.kind not in BREAKPOINT_KINDS:
            raise MicrogptError(f"unknown breakpoint kind {self.kind!r}: use one of {', '.join(BREAKPOINT_KINDS)}")

    def __str__(self) -> str:
        if self.kind == "pattern":
            return f"tag {self.text}"
        if self.kind == "op":
            return f"op {self.text}"
        if self.kind == "nonfinite":
            return "non-finite value"
        if self.kind == "origin":
            return "backward origin of a non-finite grad"
        return f"|grad| > {self.threshold:g}"

    @classmethod
    def parse(cls, text: str) -> Breakpoint:
        """What a user types: ``op:mul``, ``nonfinite``, ``grad>0.5``, or a tag pattern. The
        keywords take any case and spaces around ``:`` and ``>`` (``grad > 0.5``, ``op: exp``)."""
        text = text.strip()
        if not text:
            raise MicrogptError("empty breakpoint: give a tag pattern, op:NAME, nonfinite, origin or grad>X")
        if text.lower() in ("nonfinite", "origin"):
            return cls(text.lower())
        op_form = _OP_FORM.fullmatch(text)
        if op_form:
            op = op_form[1].strip()
            if not op:
                raise MicrogptError("breakpoint op: needs an op name, e.g. op:exp")
            return cls("op", op)
        grad_form = _GRAD_FORM.fullmatch(text)
        if grad_form:
            raw = grad_form[1].strip()
            try:
                threshold = float(raw)
            except ValueError:
                raise MicrogptError(f"breakpoint threshold {raw!r} is not a number: write e.g. grad>0.5") from None
            if not (math.isfinite(threshold) and threshold >= 0):
                raise MicrogptError(f"breakpoint threshold {raw!r} must be a finite number >= 0: e.g. grad>0.5")
            return cls("grad", threshold=threshold)
        Pattern.parse(text)  # raises a clear error for a malformed pattern
        return cls("pattern", text)


_OP_FORM = re.compile(r"op\s*:(.*)", re.IGNORECASE | re.DOTALL)
_GRAD_FORM = re.compile(r"grad\s*>(.*)", re.IGNORECASE | re.DOTALL)


def _finite(x: float) -> bool:
    return math.isfinite(x)


def _above(x: float, threshold: float) -> bool:
    """|x| > threshold, with nan above every threshold."""
    return math.isnan(x) or abs(x) > threshold


class Stepper:
    """Backward through ``trace``, one node with inputs at a time, with undo."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        nodes = trace.nodes
        # The steps: the nodes with inputs, in reverse topological order (backward's order).
        self.order: list[int] = [i for i in range(len(nodes) - 1, -1, -1) if nodes[i].children]
        self.step_of: dict[int, int] = {node: k for k, node in enumerate(self.order)}
        # The initial state of backward: nodes with inputs at 0, the root at 1, leaves as they are.
        self.grads: list[float] = [0 if node.children else node.grad for node in nodes]
        if nodes:
            self.grads[-1] = 1
        for node, grad in zip(nodes, self.grads):
            node.grad = grad
        self.done = 0  # steps applied so far
        self._history: list[list[tuple[int, float]]] = []  # per step: (child, grad before), in order
        self.breakpoints: list[Breakpoint] = []
        self._pattern_hits: dict[str, frozenset[int]] = {}

    # -- where we are ------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.order)

    @property
    def finished(self) -> bool:
        return self.done >= len(self.order)

    @property
    def current(self) -> int | None:
        """The node of the last step applied (None before the first)."""
        return self.order[self.done - 1] if self.done else None

    @property
    def next_node(self) -> int | None:
        """The node the next step processes (None when backward is finished)."""
        return None if self.finished else self.order[self.done]

    def current_group(self) -> str:
        node = self.current if self.current is not None else self.next_node
        return "" if node is None else self.trace.group_of(node)

    def progress(self) -> str:
        group = self.current_group()
        where = f", group {group}" if group else ""
        state = " (backward finished)" if self.finished else ""
        return f"node {self.done} of {self.total}{where}{state}"

    # -- stepping ----------------------------------------------------------------------
    def _edges(self, node: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """The node's children, as indices, and its local grads: looked up per step taken, so
        opening a large graph costs nothing per edge."""
        value, index = self.trace.nodes[node], self.trace.index
        return tuple([index[id(child)] for child in value.children]), value.local_grads

    def step(self) -> StepRecord | None:
        """Process the next node: every edge, in input order. None when finished."""
        if self.finished:
            return None
        node = self.order[self.done]
        children, locals_ = self._edges(node)
        grads = self.grads
        values = self.trace.nodes
        node_grad = grads[node]
        saved: list[tuple[int, float]] = []
        updates = []
        for slot, (child, local) in enumerate(zip(children, locals_)):
            before = grads[child]
            after = before + local * node_grad
            grads[child] = after
            values[child].grad = after
            saved.append((child, before))
            updates.append(Update(child, slot, local, node_grad, before, after))
        self._history.append(saved)
        self.done += 1
        return StepRecord(self.done, node, tuple(updates))

    def step_back(self) -> bool:
        """Undo the last step exactly (grads restored in reverse, so a repeated child is right)."""
        if not self.done:
            return False
        values = self.trace.nodes
        for child, before in reversed(self._history.pop()):
            self.grads[child] = before
            values[child].grad = before
        self.done -= 1
        return True

    def record(self, k: int | None = None) -> StepRecord | None:
        """The record of step ``k`` (1-based; default the last applied), recomputed from the history."""
        k = self.done if k is None else k
        if not 1 <= k <= self.done:
            return None
        node = self.order[k - 1]
        locals_ = self.trace.nodes[node].local_grads
        saved = self._history[k - 1]
        # The node's grad is final once it is processed: no later step writes it.
        node_grad = self.grads[node]
        updates = tuple(
            Update(child, slot, local, node_grad, before, before + local * node_grad)
            for slot, ((child, before), local) in enumerate(zip(saved, locals_))
        )
        return StepRecord(k, node, updates)

    def run(self, steps: int) -> list[StepRecord]:
        out = []
        for _ in range(steps):
            rec = self.step()
            if rec is None:
                break
            out.append(rec)
        return out

    def finish(self) -> None:
        while self.step() is not None:
            pass

    def group_to_step_over(self) -> str | None:
        """The tag group ``step_over_group`` finishes: the current node's while it has steps
        left, else (at a group's last node) the next node's. None when backward is finished."""
        if self.finished:
            return None
        if self.current is not None:
            group = self.trace.group_of(self.current)
            if self._last_step_of(group) >= self.done:
                return group
        return self.trace.group_of(self.order[self.done])

    def _last_step_of(self, group: str) -> int:
        """The 0-based step of the group's last node (groups interleave: other nodes come between)."""
        return max((self.step_of[i] for i in self.trace.groups[group] if i in self.step_of), default=-1)

    def step_over_group(self) -> list[StepRecord]:
        """Finish a tag group (``group_to_step_over``'s): step until its last node is done.
        Repeated, it walks backward group by group. Empty when backward is finished."""
        group = self.group_to_step_over()
        if group is None:
            return []
        last = self._last_step_of(group)
        out = []
        while self.done <= last:
            rec = self.step()
            assert rec is not None
            out.append(rec)
        return out

    # -- breakpoints -------------------------------------------------------------------
    def _pattern_set(self, text: str) -> frozenset[int]:
        hits = self._pattern_hits.get(text)
        if hits is None:
            hits = self._pattern_hits[text] = frozenset(select(self.trace, text))
        return hits

    def hits(self, bp: Breakpoint, rec: StepRecord) -> bool:
        node = rec.node
        if bp.kind == "pattern":
            return node in self._pattern_set(bp.text)
        if bp.kind == "op":
            return self.trace.nodes[node].op.name == bp.text
        if bp.kind == "origin":
            origin = self.backward_origin
            return origin is not None and node == origin.parent
        if bp.kind == "nonfinite":
            value = self.trace.nodes[node]
            return not (
                _finite(value.data) and _finite(self.grads[node]) and all(_finite(u.after) for u in rec.updates)
            )
        return _above(self.grads[node], bp.threshold) or any(_above(u.after, bp.threshold) for u in rec.updates)

    @cached_property
    def backward_origin(self) -> BackwardOrigin | None:
        """The first edge where the chain rule turned a finite grad non-finite (viz.check)."""
        return backward_origin(self.trace)

    def add_breakpoint(self, bp: Breakpoint) -> None:
        if bp.kind == "origin" and self.backward_origin is None:
            raise MicrogptError(
                "this graph's backward pass has no origin of a non-finite grad: every grad the chain rule "
                "writes from finite numbers is finite (try the nonfinite breakpoint)"
            )
        if bp.kind == "pattern" and not self._pattern_set(bp.text):
            from viz.pattern import select_or_explain

            select_or_explain(self.trace, bp.text)  # raises, naming what was meant
        if bp.kind == "op" and not any(n.op.name == bp.text for n in self.trace.nodes):
            ops = sorted({n.op.name for n in self.trace.nodes if n.children})
            raise MicrogptError(f"no node in this graph has op {bp.text!r}: the ops here are {', '.join(ops)}")
        if bp not in self.breakpoints:
            self.breakpoints.append(bp)

    def toggle_tag_breakpoint(self) -> tuple[Breakpoint, bool] | None:
        """Toggle a breakpoint on the current node's tag group; returns it and whether it is now on."""
        node = self.current if self.current is not None else self.next_node
        if node is None or self.trace.tag_parts[node] is None:
            return None
        bp = Breakpoint("pattern", self.trace.group_of(node))
        if bp in self.breakpoints:
            self.breakpoints.remove(bp)
            return bp, False
        self.add_breakpoint(bp)
        return bp, True

    def run_until(self, breakpoints: Iterable[Breakpoint] | None = None) -> StepRecord | None:
        """Step at least once, stopping after the first step that hits a breakpoint (that step
        is applied and returned). None when backward finished without a hit."""
        bps = list(self.breakpoints if breakpoints is None else breakpoints)
        while True:
            rec = self.step()
            if rec is None:
                return None
            if any(self.hits(bp, rec) for bp in bps):
                return rec

    # -- jumping -----------------------------------------------------------------------
    def _step_for_node(self, i: int) -> int | None:
        """The step (0-based) that shows node ``i``: its own, or for a leaf the first that updates it."""
        if i in self.step_of:
            return self.step_of[i]
        parents = [e.parent for e in self.trace.consumers[i]]
        return self.step_of[max(parents)] if parents else None

    def goto(self, k: int) -> None:
        """Move to the state after ``k`` steps, forwards or back."""
        k = max(0, min(k, self.total))
        while self.done > k:
            self.step_back()
        while self.done < k:
            self.step()

    def jump(self, target: str) -> StepRecord | None:
        """Go to a node id (exact) or the next step whose node matches a tag pattern (wrapping
        round to the first). Leaves are shown by the first step that updates them."""
        target = target.strip()
        if not target:
            raise MicrogptError("nothing to jump to: give a node id or a tag pattern, e.g. attn.h0 or logits[3]@pos0")
        i = self.trace.id_index.get(target)
        if i is not None:
            k = self._step_for_node(i)
            if k is None:
                raise MicrogptError(f"node {target!r} takes no part in backward (nothing uses it)")
        else:
            try:
                hits = select(self.trace, target)
            except MicrogptError:
                raise MicrogptError(
                    f"{target!r} is neither a node id nor a valid tag pattern: try e.g. attn.h0 or logits[3]@pos0"
                ) from None
            if not hits:
                from viz.pattern import select_or_explain

                select_or_explain(self.trace, target)
            steps = sorted({s for s in (self._step_for_node(h) for h in hits) if s is not None})
            if not steps:
                raise MicrogptError(f"pattern {target!r} matches only nodes that take no part in backward")
            k = next((s for s in steps if s >= self.done), steps[0])
        self.goto(k + 1)
        return self.record()

    # -- what the views show -----------------------------------------------------------
    def largest(self, n: int = 10) -> list[tuple[int, float]]:
        """The ``n`` nodes with the largest finite |grad| so far (ties: topological order),
        non-zero only. Non-finite grads are ``nonfinite_grads``' (a nan has no size to rank)."""
        grads = self.grads
        best = heapq.nsmallest(
            n, (i for i in range(len(grads)) if grads[i] != 0 and _finite(grads[i])), key=lambda i: (-abs(grads[i]), i)
        )
        return [(i, grads[i]) for i in best]

    def nonfinite_grads(self) -> list[tuple[int, float]]:
        """Every node whose grad so far is nan or ±inf, in topological order."""
        return [(i, g) for i, g in enumerate(self.grads) if not _finite(g)]

    def describe(self, rec: StepRecord) -> dict:
        """A step as plain data (ids, not indices): what ``--json`` prints. Non-finite numbers are
        the strings "NaN", "Infinity", "-Infinity" (microgpt/numbers.py), so it dumps as strict JSON."""
        trace = self.trace
        node = trace.nodes[rec.node]
        return {
            "step": rec.number,
            "of": self.total,
            "id": trace.ids[rec.node],
            "op": str(node.op),
            "tag": node.tag,
            "group": trace.group_of(rec.node),
            "data": _json(node.data),
            "grad": _json(self.grads[rec.node]),
            "updates": [
                {
                    "child": trace.ids[u.child],
                    "slot": u.slot,
                    "local_grad": _json(u.local_grad),
                    "node_grad": _json(u.node_grad),
                    "before": _json(u.before),
                    "after": _json(u.after),
                }
                for u in rec.updates
            ],
        }

    def format(self, rec: StepRecord) -> str:
        """A step as text: a header line, then one line per update."""
        trace = self.trace
        node = trace.nodes[rec.node]
        lines = [
            f"step {rec.number}/{self.total}  {trace.ids[rec.node]}  {node.op}  "
            f"data={fmt(node.data)}  grad={fmt(self.grads[rec.node])}"
        ]
        for u in rec.updates:
            lines.append(
                f"  {trace.ids[u.child]}.grad += {fmt(u.local_grad)} × {fmt(u.node_grad)}"
                f"  :  {fmt(u.before)} → {fmt(u.after)}"
            )
        return "\n".join(lines)


def _json(x: float) -> float | str:
    """A number as ``--json`` writes it: always a float (grads start as the int 0 or 1), the
    non-finite ones as "NaN", "Infinity" or "-Infinity" (microgpt/numbers.py)."""
    return to_json_number(float(x))


def fmt(x: float) -> str:
    """Numbers as the views print them: 6 significant digits, stable across runs; nan, inf, -inf."""
    return f"{x:.6g}"
