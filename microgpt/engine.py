"""A scalar autograd engine: every number is a Value that knows how it was made.

Each op computes its output and, beside the forward formula, the local derivative of the
output with respect to each input. ``backward()`` then applies the chain rule edge by
edge, in reverse topological order:

    child.grad += local_grad * node.grad

For seeing the graph:
- each node records the ``Op`` that made it; what an op is called, how many inputs it
  takes, its derivative and its rules live in the table of ops below, as data;
- each node records a tag path naming where in the model it was computed (scope.py).

Two granularities build the same numbers. Atomic: every multiply-add is one mul node and
one add node, exactly as the reference design. Fused: ``dot`` and ``total`` build one
n-ary node for a whole dot product or sum. Both accumulate left to right from 0, so
forward values are bit-identical (Python 3.12's ``sum()`` of floats is compensated and
would not be: it is never used on floats here).
"""

from __future__ import annotations

import gc
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import reduce
from operator import add, itemgetter, mul
from typing import Any

from microgpt import scope as _scope

Number = int | float


# -- IEEE-754 arithmetic ------------------------------------------------------------------
# Python raises where IEEE-754 gives a value (math.log(0), math.exp(1000), 0.0 ** -1,
# 1e200 ** 2) and returns a complex number for (-8.0) ** 0.5. A debugger has to show such
# values rather than die on them, so the ops compute the IEEE-754 result instead, and a NaN
# stays NaN through every op (README, "Non-finite values"). On finite, in-range inputs each
# function is the plain operation, so no result changes by a bit.


def exp(x: Number) -> float:
    """e**x; inf where it overflows."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def log(x: Number) -> float:
    """ln x; -inf at 0, NaN below 0 (and for NaN)."""
    if x > 0:
        return math.log(x)
    if x == 0:
        return -math.inf
    return math.nan


def reciprocal(x: Number) -> float:
    """1 / x; ±inf at ±0, as IEEE-754 division gives."""
    try:
        return 1 / x
    except ZeroDivisionError:
        return math.copysign(math.inf, x)


def power(x: Number, n: Number) -> float:
    """x ** n for a constant n: ±inf where it overflows or 0 is raised to a negative power,
    NaN for a negative base to a fractional power, and NaN whenever x is NaN (even n = 0)."""
    if x != x:
        return math.nan
    try:
        y = x**n
    except ZeroDivisionError:  # 0 to a negative power: inf, keeping the sign of 0 for odd n
        return math.copysign(math.inf, x) if _is_odd(n) else math.inf
    except OverflowError:  # beyond the float range: -inf only for a negative base to an odd n
        if x < 0 and not float(n).is_integer():
            return math.nan
        return -math.inf if x < 0 and _is_odd(n) else math.inf
    return math.nan if isinstance(y, complex) else y


def _is_odd(n: Number) -> bool:
    return float(n).is_integer() and n % 2 == 1


# -- the ops: what each computes and its local derivatives, as data ---------------------
# An op's rules take its children's data ``xs`` (and its constant ``arg``): ``forward`` gives
# the node's data, ``local`` the derivative of the node with respect to each child, given
# the node's data ``out``. The replay below evaluates a recorded graph with them alone. The
# Value methods inline the same arithmetic, since a call per node would cost a training
# step several percent; tests/test_replay.py proves each method and its rule agree to the
# bit, op by op, edge cases included.
Forward = Callable[[Sequence[Number], Any], Number]
Local = Callable[[Sequence[Number], Number, Any], tuple[Number, ...]]


def _left_to_right(numbers: Iterable[Number]) -> Number:
    """Σ from 0, left to right in float arithmetic: what the atomic chain of adds computes."""
    return reduce(add, numbers, 0)


if sys.version_info < (3, 12):
    # Up to 3.11, sum() adds floats left to right from 0 too, in C: the same bits, twice as
    # fast. From 3.12 on it compensates rounding errors (other bits), so it is not used there.
    _left_to_right = sum  # type: ignore[assignment]


def _sum(xs: Sequence[Number], arg: Any = None) -> Number:
    return _left_to_right(xs)


def _dot(xs: Sequence[Number], arg: Any = None) -> Number:
    half = len(xs) // 2  # the children are the ws, then the xs
    return _left_to_right(map(mul, xs[:half], xs[half:]))


def _relu(x: Number) -> tuple[Number, Number]:
    """relu and its derivative: NaN, on neither side of the kink, stays NaN both ways."""
    if x > 0:
        return x, 1.0
    if x <= 0:
        return 0, 0.0
    return x, x


@dataclass(frozen=True, slots=True)
class Op:
    """What made a node: its name, how it is drawn and explained, and its rules."""

    name: str  # short name, shown on every node: "mul"
    symbol: str  # how a drawing writes it: "×"
    arity: int | None  # inputs it takes; None for the n-ary (fused) ops, 0 for leaves
    derivative: str  # its local derivatives, for the views that explain the chain rule
    forward: Forward | None = field(default=None, repr=False, compare=False)  # None for leaves
    local: Local | None = field(default=None, repr=False, compare=False)
    arg: Any = None  # the constant of the op, where it has one (pow's exponent, xent's targets)

    def __str__(self) -> str:
        return f"{self.name}({self.arg:g})" if isinstance(self.arg, float) else self.name


def _product(xs: Sequence[Number], arg: Any = None) -> Number:
    return xs[0] * xs[1]


def _product_local(xs: Sequence[Number], out: Number, arg: Any = None) -> tuple[Number, ...]:
    return (xs[1], xs[0])


def _pair_sum(xs: Sequence[Number], arg: Any = None) -> Number:
    return xs[0] + xs[1]


def _ones(xs: Sequence[Number], out: Number, arg: Any = None) -> tuple[Number, ...]:
    return (1,) * len(xs)


LEAF = Op("leaf", "", 0, "a leaf: made by the user, no inputs")
PARAM = Op("param", "θ", 0, "a leaf: a trainable weight")
CONST = Op("const", "c", 0, "a leaf: a Python number wrapped on the fly")
ADD = Op("add", "+", 2, "∂(a+b)/∂a = 1, ∂(a+b)/∂b = 1", _pair_sum, _ones)
MUL = Op("mul", "×", 2, "∂(a·b)/∂a = b, ∂(a·b)/∂b = a", _product, _product_local)
EXP = Op("exp", "exp", 1, "∂exp(a)/∂a = exp(a)", lambda xs, arg: exp(xs[0]), lambda xs, out, arg: (out,))
LOG = Op("log", "log", 1, "∂log(a)/∂a = 1/a", lambda xs, arg: log(xs[0]), lambda xs, out, arg: (reciprocal(xs[0]),))
RELU = Op(
    "relu", "ReLU", 1, "∂relu(a)/∂a = 1 if a > 0, 0 if a ≤ 0 (NaN at NaN)",
    lambda xs, arg: _relu(xs[0])[0], lambda xs, out, arg: (_relu(xs[0])[1],),
)  # fmt: skip
# Derived ops build the reference's primitive structure and record their own name on the
# node they return, so their rules are those of that node: -a is a mul node (a, -1);
# a - b is an add node (a, -b); a / b is a mul node (a, b**-1).
NEG = Op("neg", "−", 2, "−a = a·(−1): ∂/∂a = −1", _product, _product_local)
SUB = Op("sub", "−", 2, "a − b = a + (−b): ∂/∂a = 1, ∂/∂(−b) = 1", _pair_sum, _ones)
DIV = Op("div", "÷", 2, "a / b = a·b⁻¹: ∂/∂a = b⁻¹, ∂/∂(b⁻¹) = a", _product, _product_local)
# Fused n-ary ops: one node for a whole dot product or sum.
DOT = Op(
    "dot", "·", None, "∂(Σ wᵢxᵢ)/∂wᵢ = xᵢ, ∂(Σ wᵢxᵢ)/∂xᵢ = wᵢ",
    _dot, lambda xs, out, arg: (*xs[len(xs) // 2 :], *xs[: len(xs) // 2]),
)  # fmt: skip
SUM = Op("sum", "Σ", None, "∂(Σ aᵢ)/∂aᵢ = 1", _sum, _ones)


def _cross_entropy(xs: Sequence[Number], targets: tuple[int, ...]) -> tuple[Number, tuple[Number, ...]]:
    """The mean over positions of −log softmax(logitsₚ)[targetₚ] (xs: the positions' logits in a
    row), and its derivative with respect to every logit: each computed by the very operations,
    in the very order, that the nodes of document_loss's softmaxes, logs and mean and their
    backward apply (model.py, nn.py), so one node gives the same bits as those hundreds."""
    vocab, scale = len(xs) // len(targets), 1 / len(targets)
    g_loss = 0 + 1 * (0 + scale * 1)  # ∂mean/∂lossₚ: the 1/n scale, then the sum
    losses, local = [], []
    for p, t in enumerate(targets):
        logits = xs[p * vocab : (p + 1) * vocab]
        finite = [x for x in logits if x == x]
        shift = -(max(finite) if finite else math.nan)  # softmax subtracts the max
        exps = [exp(x + shift) for x in logits]
        denominator = _left_to_right(exps)
        inverse = power(denominator, -1)
        prob = exps[t] * inverse
        losses.append(log(prob) * -1)
        g_prob = 0 + reciprocal(prob) * (0 + -1 * g_loss)  # through −x = x·(−1), then log
        g_total = 0 + (-1 * power(denominator, -2)) * (0 + exps[t] * g_prob)  # then x⁻¹
        g_exps = [0 + 1 * g_total] * vocab  # then Σ; the target's exp also feeds the product
        g_exps[t] = (0 + inverse * g_prob) + 1 * g_total
        local += [0 + e * g for e, g in zip(exps, g_exps)]  # then exp; x − max passes it on
    return _left_to_right(losses) * scale, tuple(local)


XENT = Op("xent", "CE", None, "∂(mean −log softmax(lₚ)[tₚ])/∂lₚᵢ = (softmax(lₚ)ᵢ − [i = tₚ]) / n",
          lambda xs, targets: _cross_entropy(xs, targets)[0], lambda xs, out, t: _cross_entropy(xs, t)[1])  # fmt: skip


_POW_OPS: dict[float, Op] = {}


def _pow_forward(xs: Sequence[Number], n: float) -> Number:
    return power(xs[0], n)


def _pow_local(xs: Sequence[Number], out: Number, n: float) -> tuple[Number, ...]:
    return (n * power(xs[0], n - 1),)


def pow_op(exponent: Number) -> Op:
    """The (shared) pow op for one constant exponent: the exponent is the op's argument."""
    exponent = float(exponent)
    op = _POW_OPS.get(exponent)
    if op is None:
        rule = "∂(aⁿ)/∂a = n·aⁿ⁻¹"
        op = _POW_OPS[exponent] = Op("pow", f"^{exponent:g}", 1, rule, _pow_forward, _pow_local, exponent)
    return op


# Every op by name; pow appears once, as the op family (its exponents vary).
OPS: dict[str, Op] = {
    op.name: op for op in (LEAF, PARAM, CONST, ADD, MUL, pow_op(2), EXP, LOG, RELU, NEG, SUB, DIV, DOT, SUM, XENT)
}


# While a forward pass is recorded (``recording()``), every new Value is appended here. A
# node is made after its inputs, so creation order is a topological order: a backward over
# it needs no depth-first sort of the graph (training's fastest path, ``backward_recorded``).
_tape: list[Value] | None = None
# While it is lean (``recording(lean=True)``): no const leaves, and relu's shortcuts to _zero.
_lean = False
_zero: Value | None = None


class Value:
    """One scalar in the graph: its data, its gradient, and how it was computed."""

    # Six slots: a binary node is 216 bytes (object 80, two 2-tuples 56 each, one float 24).
    __slots__ = ("_children", "_local_grads", "_op", "_tag", "data", "grad")

    def __init__(
        self,
        data: Number,
        children: tuple[Value, ...] = (),
        local_grads: tuple[Number, ...] = (),
        op: Op = LEAF,
        tag: str | None = None,
    ) -> None:
        self.data = data
        self.grad: Number = 0
        self._children = children
        self._local_grads = local_grads  # ∂self/∂child, one per child, in order
        self._op = op
        self._tag = _scope.current_tag if tag is None else tag
        if _tape is not None:
            _tape.append(self)

    # -- read-only views of the graph -------------------------------------------------
    op: Op = property(lambda self: self._op)  # type: ignore[assignment]
    tag: str | None = property(lambda self: self._tag)  # type: ignore[assignment]
    children: tuple[Value, ...] = property(lambda self: self._children)  # type: ignore[assignment]
    local_grads: tuple[Number, ...] = property(lambda self: self._local_grads)  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Value(data={self.data!r}, grad={self.grad!r}, op={self._op}, tag={self._tag!r})"

    # -- primitive ops: forward value, then the local derivative of each input -----------
    def __add__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):
            return Value(self.data + other.data, (self, other), (1, 1), ADD)
        if _lean:  # a number operand is no node (recording)
            return Value(self.data + other, (self,), (1,), ADD)
        return Value(self.data + other, (self, Value(other, (), (), CONST)), (1, 1), ADD)

    def __mul__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):
            return Value(self.data * other.data, (self, other), (other.data, self.data), MUL)
        if _lean:
            return Value(self.data * other, (self,), (other,), MUL)
        return Value(self.data * other, (self, Value(other, (), (), CONST)), (other, self.data), MUL)

    def __pow__(self, exponent: Number) -> Value:
        if isinstance(exponent, Value) or not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
            raise TypeError("the exponent must be a constant number (Value ** Value is not supported)")
        data = power(self.data, exponent)
        local = exponent * power(self.data, exponent - 1)
        return Value(data, (self,), (local,), pow_op(exponent))

    def exp(self) -> Value:
        out = exp(self.data)
        return Value(out, (self,), (out,), EXP)

    def log(self) -> Value:
        return Value(log(self.data), (self,), (reciprocal(self.data),), LOG)

    def exp_minus(self, c: Number) -> Value:
        """exp(self − c), c a number (softmax's max): sub then exp, or one exp node if lean."""
        if _lean:
            out = exp(self.data - c)
            return Value(out, (self,), (out,), EXP)
        return (self - c).exp()

    def relu(self) -> Value:
        if _lean and self.data == self.data:  # the shortcuts of recording(lean=True); NaN keeps its node
            return self if self.data > 0 else _zero  # type: ignore[return-value]
        out, local = _relu(self.data)
        return Value(out, (self,), (local,), RELU)

    # -- derived ops: each states its identity; the node it returns records its name -----
    def __neg__(self) -> Value:  # -a = a * -1
        return _relabel(self * -1, NEG)

    def __sub__(self, other: Value | Number) -> Value:  # a - b = a + (-b)
        return _relabel(self + (-other), SUB)

    def __rsub__(self, other: Number) -> Value:  # b - a = (-a) + b, as the reference builds it
        return _relabel(-self + other, SUB)

    def __truediv__(self, other: Value | Number) -> Value:  # a / b = a * b**-1
        inverse = other**-1 if isinstance(other, Value) else power(other, -1)
        return _relabel(self * inverse, DIV)

    def __rtruediv__(self, other: Number) -> Value:  # b / a = a**-1 * b, as the reference builds it
        return _relabel(self**-1 * other, DIV)

    def __radd__(self, other: Number) -> Value:  # b + a = a + b (sum() starts with 0 + a)
        return self + other

    def __rmul__(self, other: Number) -> Value:  # b * a = a * b
        return self * other

    # -- backpropagation ----------------------------------------------------------------
    def backward(self, order: Sequence[Value] | None = None, *, retain_graph: bool = True) -> None:
        """Set this node's grad to 1 and fill in ∂self/∂v for every v it depends on. As in
        PyTorch, leaves (parameters, inputs) accumulate: a training loop zeroes them between
        steps (``GPT.zero_grad``); every other node's grad is recomputed from 0 by each call.
        ``order`` is ``topological_order(self)`` when the caller has it (the views sort once).
        ``retain_graph=False`` (training's) takes the graph apart as the pass goes: a node lets
        go of its inputs once it has passed them its grad, so memory falls during the pass
        instead of growing by a grad a node; the grads are the same."""
        order = _computed_order(self) if order is None else order
        for node in order:
            if node._children:
                node.grad = 0
        self.grad = 1
        for node in reversed(order):
            node_grad = node.grad
            for child, local_grad in zip(node._children, node._local_grads):
                child.grad += local_grad * node_grad
            if not retain_graph:
                node._children = node._local_grads = ()


@contextmanager
def recording(lean: bool = False) -> Iterator[list[Value]]:
    """Record every Value created inside, in creation order: ``with recording() as tape:``.

    ``lean=True`` (fused training's) builds a graph for backward alone, which nothing draws or
    replays, without the nodes backward has no use for; every gradient is the same, to the bit:
    - a number operand (``x * 0.5``, ``x + 1e-5``) is not made a const leaf, whose grad no one
      reads: the add or mul node has the one input, and ``x.exp_minus(c)`` is one exp node;
    - relu of a positive input is that input itself (its derivative is 1), and of a negative
      input or 0 one const leaf 0 shared by the pass (its derivative is 0, so nothing flows
      back). relu of NaN keeps its node;
    - a fused W·x (``dots``) leaves out the terms of x that are that 0: they add 0 to the sum.
    Only where an upstream grad is already not finite do the last two differ from the whole
    graph: 0 × inf would send NaN back where they send nothing (as PyTorch's relu does)."""
    global _tape, _lean, _zero
    outer = _tape, _lean, _zero
    _tape, _lean = [], lean
    _zero = Value(0, (), (), CONST) if lean else None
    try:
        yield _tape
    finally:
        _tape, _lean, _zero = outer


def backward_recorded(root: Value, tape: Sequence[Value]) -> None:
    """``root.backward()`` over a recorded forward pass (every grad 0, every node ``root``
    depends on), in reverse creation order: the same chain rule, but a node's consumers add to
    its grad in another order, so a grad may move in its last bits. A node whose grad is 0 adds
    only zeros and is skipped (a dead ReLU's dot product), unless a local derivative is not
    finite: 0 × inf is NaN, which backward passes on if, and only if, ``root`` depends on it."""
    isfinite = math.isfinite
    reachable: set[int] | None = None
    root.grad = 1
    for node in reversed(tape):
        children = node._children
        if not children:
            continue
        node_grad = node.grad
        local_grads = node._local_grads
        if node_grad == 0:
            if isfinite(sum(local_grads)):
                continue
            if reachable is None:  # rare: sort the graph once to tell
                reachable = {id(n) for n in topological_order(root)}
            if id(node) not in reachable:
                continue
        for child, local_grad in zip(children, local_grads):
            child.grad += local_grad * node_grad


def _relabel(node: Value, op: Op) -> Value:
    node._op = op
    return node


def dot(ws: Sequence[Value], xs: Sequence[Value]) -> Value:
    """Fused Σ wᵢ·xᵢ: one node whose children are the ws then the xs, and whose local
    derivatives are the other operand's data. Accumulates left to right from 0."""
    ws, xs = tuple(ws), tuple(xs)
    if len(ws) != len(xs):
        raise ValueError(f"dot of vectors of different lengths ({len(ws)} and {len(xs)})")
    w_data, x_data = tuple([w.data for w in ws]), tuple([x.data for x in xs])
    return Value(_left_to_right(map(mul, w_data, x_data)), ws + xs, x_data + w_data, DOT)


def dots(rows: Sequence[Sequence[Value]], xs: Sequence[Value], w_data: Sequence[tuple] | None = None) -> list[Value]:
    """Fused W·x: ``[dot(row, xs) for row in rows]``, reading the xs' data once, not per row
    (and the rows' data not at all if the caller has read it: ``w_data``). Children and local
    derivatives are built by joining tuples, three times faster than unpacking into one."""
    xs = tuple(xs)
    x_data = tuple([x.data for x in xs])
    live = [j for j, x in enumerate(xs) if x is not _zero] if _lean and _zero in xs else []
    keep = itemgetter(*live) if len(live) > 1 else None  # lean: terms with a dead unit's 0 pass no grad
    xs_kept, x_kept = (xs, x_data) if keep is None else (keep(xs), keep(x_data))
    out = []
    for ws, row_data in zip(rows, w_data or [tuple([w.data for w in ws]) for ws in rows]):
        if len(ws) != len(xs):
            raise ValueError(f"dot of vectors of different lengths ({len(ws)} and {len(xs)})")
        data = _left_to_right(map(mul, row_data, x_data))
        if keep is not None:
            ws, row_data = keep(ws), keep(row_data)
        out.append(Value(data, tuple(ws) + xs_kept, x_kept + row_data, DOT))
    return out


def total(xs: Sequence[Value]) -> Value:
    """Fused Σ aᵢ: one node, every local derivative 1. Accumulates left to right from 0."""
    data = _left_to_right([x.data for x in xs])
    return Value(data, tuple(xs), (1,) * len(xs), SUM)


def cross_entropy(logits: Sequence[Sequence[Value]], targets: Sequence[int]) -> Value:
    """Fused mean of −log softmax(logitsₚ)[targetₚ]: one node over every logit (``_cross_entropy``)."""
    xs = tuple(x for row in logits for x in row)
    data, local = _cross_entropy([x.data for x in xs], tuple(targets))
    return Value(data, xs, local, replace(XENT, arg=tuple(targets)))


def topological_order(root: Value) -> list[Value]:
    """Every node ``root`` depends on, each after all of its children, in the order of the
    reference's recursive depth-first ``build_topo`` (so gradients accumulate to the same bits),
    but as an explicit stack loop: Python's recursion limit never applies to a deep graph."""
    order: list[Value] = []
    visited = {root}
    stack = [(root, iter(root._children))]
    while stack:
        node, children = stack[-1]
        for child in children:
            if child not in visited:
                visited.add(child)
                if child._children:
                    stack.append((child, iter(child._children)))
                    break
                order.append(child)  # a leaf is finished as soon as it is reached
        else:
            stack.pop()
            order.append(node)
    return order


_SEEN = object()


def _computed_order(root: Value) -> list[Value]:
    """``topological_order(root)`` without its leaves, which backward passes nothing from: the
    same order of every other node, found without a set. A node is marked as seen by its grad,
    which backward then sets to 0: a set of an atomic step's 100,000 nodes would add a fifth
    to a training step's peak memory."""
    order: list[Value] = []
    root.grad = _SEEN
    stack = [(root, iter(root._children))]
    while stack:
        node, children = stack[-1]
        for child in children:
            if child._children and child.grad is not _SEEN:
                child.grad = _SEEN
                stack.append((child, iter(child._children)))
                break
        else:
            stack.pop()
            order.append(node)
    return order


class Replay:
    """A recorded graph re-evaluated from its leaves by the ops' rules alone, without running
    the model again: with some nodes' values replaced, only the nodes downstream of them
    are recomputed. The graph's Values are never modified.

    ``order`` is a topological order of the graph (``topological_order(root)``); nodes are
    named by their position in it, and the last one is the root.
    """

    def __init__(self, order: Sequence[Value]) -> None:
        self.nodes = list(order)
        index = {id(node): i for i, node in enumerate(self.nodes)}
        self.inputs = [tuple(index[id(child)] for child in node._children) for node in self.nodes]
        self.recorded = [node.data for node in self.nodes]
        self._consumers: list[list[int]] | None = None

    def consumers(self) -> list[list[int]]:
        """For each node, the nodes computed from it."""
        if self._consumers is None:
            self._consumers = [[] for _ in self.nodes]
            for parent, inputs in enumerate(self.inputs):
                for child in set(inputs):
                    self._consumers[child].append(parent)
        return self._consumers

    def downstream(self, changed: Iterable[int]) -> list[int]:
        """Every node computed, directly or not, from the ``changed`` ones, in graph order."""
        consumers = self.consumers()
        seen: set[int] = set()
        stack = [parent for i in changed for parent in consumers[i]]
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack.extend(consumers[i])
        return sorted(seen)

    def evaluate(self, changes: dict[int, Number] | None = None) -> list[Number]:
        """Every node's data. Without ``changes``, all of it recomputed from the leaves (which
        reproduces the recorded graph to the bit); with them (node -> value), those nodes
        take the values and the nodes downstream are recomputed."""
        data = list(self.recorded)
        if changes is None:
            todo: Iterable[int] = (i for i, inputs in enumerate(self.inputs) if inputs)
        else:
            for i, x in changes.items():
                data[i] = x
            todo = (i for i in self.downstream(changes) if i not in changes)
        for i in todo:
            op = self.nodes[i]._op
            data[i] = op.forward([data[k] for k in self.inputs[i]], op.arg)  # type: ignore[misc]
        return data

    def local_grads(self, data: Sequence[Number], i: int) -> tuple[Number, ...]:
        """∂node/∂child for each input of node ``i``, at the values ``data``."""
        op = self.nodes[i]._op
        return op.local([data[k] for k in self.inputs[i]], data[i], op.arg)  # type: ignore[misc]

    def backward(self, data: Sequence[Number]) -> list[Number]:
        """The grad of the root with respect to every node at the values ``data``: the chain
        rule in the order ``Value.backward`` applies it, so the same values give the same bits."""
        grads: list[Number] = [0] * len(self.nodes)
        grads[-1] = 1
        for i in reversed(range(len(self.nodes))):
            if self.inputs[i]:
                grad = grads[i]
                for child, local in zip(self.inputs[i], self.local_grads(data, i)):
                    grads[child] += local * grad
        return grads


def zero_grad(root: Value) -> None:
    """Set grad to 0 on ``root`` and every node it depends on."""
    for node in topological_order(root):
        node.grad = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a graph is built, backpropagated and freed:
    the graph is acyclic, so reference counting frees it, and the collector would walk its tens
    of thousands of young nodes every step. Restores the collector's previous state."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
