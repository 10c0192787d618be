"""One walk of a graph: its nodes with stable ids, its edges, its consumers and its tag groups.

Every view (DOT, networkx, the inspect tree, the stepper) reads a ``Trace`` rather than
walking Values itself, so ids and orders agree everywhere.

Node ids are stable strings, never ``id()``: a node whose tag is unique in the graph is
named by its tag (``layer0.attn.h0.q[1]@pos0``); nodes sharing a tag (the products and
partial sums inside a dot product) are named ``tag#k``, k counting them in topological
order; untagged nodes are ``node#k``. The same inputs give the same ids on every run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from microgpt.engine import Value, topological_order
from microgpt.scope import TagParts, parse_tag


@dataclass(frozen=True)
class Edge:
    child: int  # index of the input node
    parent: int  # index of the node computed from it
    slot: int  # which input of the parent (a node may use one child twice: dot(x, x))
    local_grad: float  # ∂parent/∂child


@dataclass(frozen=True)
class Summary:
    """min / mean / max and the L2 norm of the finite numbers among some numbers, with the
    nans, infs and -infs counted apart.

    Python's ``min`` and ``max`` with a nan in the list answer by where the nan sits, and one
    inf makes a mean or a norm say nothing about the rest; so the statistics cover the finite
    numbers only (nan when there are none) and ``nan`` / ``posinf`` / ``neginf`` say how many
    of the others there were. The same numbers in any order give the same Summary."""

    count: int  # all the numbers
    min: float
    mean: float
    max: float
    norm: float
    nan: int = 0
    posinf: int = 0
    neginf: int = 0

    @classmethod
    def of(cls, numbers: Iterable[float]) -> Summary:
        xs = [float(x) for x in numbers]
        finite = [x for x in xs if math.isfinite(x)]
        nan = sum(1 for x in xs if math.isnan(x))
        posinf = sum(1 for x in xs if x == math.inf)
        neginf = len(xs) - len(finite) - nan - posinf
        if not finite:
            return cls(len(xs), math.nan, math.nan, math.nan, math.nan, nan, posinf, neginf)
        n = len(finite)
        try:
            mean = math.fsum(finite) / n
        except OverflowError:  # the sum of large finite numbers overflows; the mean does not
            mean = math.fsum(x / n for x in finite)
        squares = fsum(x * x for x in finite)
        norm = math.sqrt(squares) if math.isfinite(squares) else math.hypot(*finite)
        return cls(len(xs), min(finite), mean, max(finite), norm, nan, posinf, neginf)

    @property
    def finite(self) -> int:
        return self.count - self.nan - self.posinf - self.neginf

    def flags(self) -> list[tuple[str, int]]:
        """The non-finite numbers as ``[("nan", 2), ("inf", 1)]``: only those present."""
        return [(word, n) for word, n in (("nan", self.nan), ("inf", self.posinf), ("-inf", self.neginf)) if n]


def fsum(numbers: Iterable[float]) -> float:
    """The sum as IEEE-754 arithmetic gives it, exactly rounded where it is finite.

    ``math.fsum`` raises where float addition does not: ``inf + -inf`` (ValueError; IEEE
    says nan) and a finite sum past the largest float (OverflowError; IEEE says ±inf)."""
    xs = [float(x) for x in numbers]
    if any(math.isnan(x) for x in xs):
        return math.nan
    infs = {x for x in xs if math.isinf(x)}
    if infs:
        return math.nan if len(infs) == 2 else infs.pop()
    try:
        return math.fsum(xs)
    except OverflowError:
        return math.fsum(x / 2 for x in xs) * 2


@dataclass
class Trace:
    """The graph under ``root``, in topological order (children before parents)."""

    root: Value
    nodes: list[Value] = field(init=False)
    ids: list[str] = field(init=False)
    index: dict[int, int] = field(init=False, repr=False)  # id(Value) -> position in nodes

    def __post_init__(self) -> None:
        self.nodes = topological_order(self.root)
        self.index = {id(node): i for i, node in enumerate(self.nodes)}
        counts = Counter(node.tag for node in self.nodes)
        seen: Counter[str | None] = Counter()
        ids = []
        for node in self.nodes:
            tag = node.tag
            if tag is not None and counts[tag] == 1:
                ids.append(tag)
            else:
                ids.append(f"{tag or 'node'}#{seen[tag]}")
                seen[tag] += 1
        self.ids = ids

    @classmethod
    def of(cls, source: Trace | Value | object) -> Trace:
        """A Trace of ``source``: a Trace as it is, a root Value, or anything with a ``root``
        Value (a TokenGraph)."""
        if isinstance(source, Trace):
            return source
        root = source if isinstance(source, Value) else getattr(source, "root", None)
        if isinstance(root, Value):
            return cls(root)
        raise TypeError(f"need a Trace, a Value or a TokenGraph, not {type(source).__name__}")

    def __len__(self) -> int:
        return len(self.nodes)

    @cached_property
    def id_index(self) -> dict[str, int]:
        return {node_id: i for i, node_id in enumerate(self.ids)}

    @cached_property
    def edges(self) -> list[Edge]:
        index = self.index
        return [
            Edge(index[id(child)], parent, slot, local)
            for parent, node in enumerate(self.nodes)
            for slot, (child, local) in enumerate(zip(node.children, node.local_grads))
        ]

    @cached_property
    def consumers(self) -> list[list[Edge]]:
        """For each node, the edges to the nodes computed from it (its parents)."""
        out: list[list[Edge]] = [[] for _ in self.nodes]
        for edge in self.edges:
            out[edge.child].append(edge)
        return out

    @cached_property
    def inputs(self) -> list[list[Edge]]:
        """For each node, the edges from its children, in input order."""
        out: list[list[Edge]] = [[] for _ in self.nodes]
        for edge in self.edges:
            out[edge.parent].append(edge)
        return out

    @cached_property
    def tag_parts(self) -> list[TagParts | None]:
        cache: dict[str, TagParts] = {}
        out = []
        for node in self.nodes:
            tag = node.tag
            if tag is None:
                out.append(None)
                continue
            parts = cache.get(tag)
            if parts is None:
                parts = cache[tag] = parse_tag(tag)
            out.append(parts)
        return out

    @cached_property
    def groups(self) -> dict[str, list[int]]:
        """Tensor groups (a tag without its element index) -> node indices, in first-seen order."""
        out: dict[str, list[int]] = {}
        for i, parts in enumerate(self.tag_parts):
            out.setdefault("(untagged)" if parts is None else parts.group, []).append(i)
        return out

    def group_of(self, i: int) -> str:
        parts = self.tag_parts[i]
        return "(untagged)" if parts is None else parts.group

    def group_outputs(self, group: str) -> list[int]:
        """A group's outputs: its members used outside it (or the root). Their values are the
        tensor's; the rest are the intermediate steps that computed them."""
        members = self.groups[group]
        member_set = set(members)
        root = len(self.nodes) - 1
        return [i for i in members if i == root or any(e.parent not in member_set for e in self.consumers[i])]

    def depth(self) -> int:
        """The longest path, in edges, from a leaf to the root."""
        level = [0] * len(self.nodes)
        for edge in self.edges:  # edges come parent by parent in topological order
            if level[edge.child] + 1 > level[edge.parent]:
                level[edge.parent] = level[edge.child] + 1
        return level[-1] if level else 0
