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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import InitVar, dataclass, field
from functools import cached_property
from itertools import chain, compress, repeat
from operator import attrgetter, is_, mul
from typing import NamedTuple

from microgpt.engine import Op, Value, topological_order
from microgpt.scope import TagParts, parse_tag, tag_groups


class Edge(NamedTuple):
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
        xs = list(map(float, numbers))
        total = _plain_fsum(xs)
        if xs and math.isfinite(total):  # every number finite (a nan or an inf would show in the sum)
            squares = _plain_fsum(list(map(mul, xs, xs)))  # not finite: an overflow (hypot avoids it)
            norm = math.sqrt(squares) if math.isfinite(squares) else math.hypot(*xs)
            return cls(len(xs), min(xs), total / len(xs), max(xs), norm)
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
    xs = list(map(float, numbers))
    total = _plain_fsum(xs)
    if math.isfinite(total):  # the common case: no nan, no inf, no overflow
        return total
    if any(math.isnan(x) for x in xs):
        return math.nan
    infs = {x for x in xs if math.isinf(x)}
    if infs:
        return math.nan if len(infs) == 2 else infs.pop()
    try:
        return math.fsum(xs)
    except OverflowError:
        return math.fsum(x / 2 for x in xs) * 2


def _plain_fsum(xs: list[float]) -> float:
    """``math.fsum``, or nan where it raises (an inf and a -inf, or an overflow)."""
    try:
        return math.fsum(xs)
    except (ValueError, OverflowError):
        return math.nan


@dataclass
class Trace:
    """The graph under ``root``, in topological order (children before parents).

    ``order``, when given, is ``topological_order(root)`` already computed (a TokenGraph's:
    the graph is then sorted once, for backward and the views, not twice).

    A 4-layer model's graph has 200,000 nodes, nearly all of them weights, and a view shows
    few of them: every per-node list is built on first use, and anything whose answer is the
    same for every node of a tag group is worked out per group."""

    root: Value
    order: InitVar[Sequence[Value] | None] = None
    nodes: list[Value] = field(init=False)
    index: dict[int, int] = field(init=False, repr=False)  # id(Value) -> position in nodes

    def __post_init__(self, order: Sequence[Value] | None) -> None:
        self.nodes = topological_order(self.root) if order is None else list(order)
        self.index = dict(zip(map(id, self.nodes), range(len(self.nodes))))

    @classmethod
    def of(cls, source: Trace | Value | object) -> Trace:
        """A Trace of ``source``: a Trace as it is, a root Value, or anything with a ``root``
        Value (a TokenGraph, whose sorted ``order`` is reused)."""
        if isinstance(source, Trace):
            return source
        root = source if isinstance(source, Value) else getattr(source, "root", None)
        if isinstance(root, Value):
            return cls(root, getattr(source, "order", None))
        raise TypeError(f"need a Trace, a Value or a TokenGraph, not {type(source).__name__}")

    def __len__(self) -> int:
        return len(self.nodes)

    # Value's read-only properties (tag, op, children) cost a Python call each; on 200,000
    # nodes the lists below read the slots behind them instead.
    @cached_property
    def tags(self) -> list[str | None]:
        return list(map(attrgetter("_tag"), self.nodes))

    @cached_property
    def ops(self) -> list[Op]:
        """Each node's op."""
        return list(map(attrgetter("_op"), self.nodes))

    @cached_property
    def ids(self) -> list[str]:
        """Each node's stable id (the module's docstring): its tag, or ``tag#k`` where tags repeat."""
        tags = self.tags
        shared = {tag for tag, n in Counter(tags).items() if n > 1 or tag is None}
        ids: list[str] = list(tags)  # type: ignore[arg-type]  (the untagged are renamed below)
        seen: Counter[str | None] = Counter()
        for i in compress(range(len(tags)), map(shared.__contains__, tags)):
            tag = tags[i]
            ids[i] = f"{tag or 'node'}#{seen[tag]}"
            seen[tag] += 1
        return ids

    @cached_property
    def id_index(self) -> dict[str, int]:
        return {node_id: i for i, node_id in enumerate(self.ids)}

    # -- edges ------------------------------------------------------------------------------
    # A 4-layer model's graph has hundreds of thousands of edges, and most views show a few
    # of them: ``child_indices`` (plain tuples of ints) is what counting needs; the Edge
    # objects are built only when a view asks for them.

    @cached_property
    def child_indices(self) -> list[tuple[int, ...]]:
        """For each node, the indices of its inputs, in input order."""
        position = self.index.__getitem__
        none: tuple[int, ...] = ()  # most nodes of a large graph are weights: no inputs
        return [
            tuple(map(position, map(id, children))) if children else none
            for children in map(attrgetter("_children"), self.nodes)
        ]

    @cached_property
    def edge_count(self) -> int:
        return sum(map(len, self.child_indices))

    @cached_property
    def fan_out(self) -> list[int]:
        """For each node, how many edges leave it (its uses as an input)."""
        out = [0] * len(self.nodes)
        for i, n in Counter(chain.from_iterable(self.child_indices)).items():
            out[i] = n
        return out

    @cached_property
    def edges(self) -> list[Edge]:
        return [
            Edge(child, parent, slot, local)
            for parent, (children, node) in enumerate(zip(self.child_indices, self.nodes))
            for slot, (child, local) in enumerate(zip(children, node.local_grads))
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
        edges, out, start = self.edges, [], 0
        for children in self.child_indices:  # edges come parent by parent, in input order
            out.append(edges[start : start + len(children)])
            start += len(children)
        return out

    # -- tags and groups --------------------------------------------------------------------
    # The answer to "which group, which path, which position" is the same for every node of a
    # group, so it is worked out once per group (a 4-layer model has 200,000 parameters with a
    # tag each, in a few dozen groups); a node's full TagParts is parsed when asked for.

    @cached_property
    def tag_parts(self) -> Sequence[TagParts | None]:
        """Each node's tag split into path, index and position (None for an untagged node),
        parsed on first access."""
        return _LazyParts(self.tags)

    @cached_property
    def element_indices(self) -> list[str | None]:
        """Each node's element index (``3,5`` for ``wq[3,5]``; None for none), as TagParts.index,
        cut from the tag without parsing all of it."""
        return [None if tag is None or "[" not in tag else tag[tag.find("[") + 1 : tag.find("]")] for tag in self.tags]

    @cached_property
    def distinct_ops(self) -> list[Op]:
        """The ops the graph uses, each once (ops are shared objects: told apart by identity)."""
        return list(dict(zip(map(id, self.ops), self.ops)).values())

    @cached_property
    def _group_table(self) -> tuple[list[int], list[str]]:
        """Each node's group as a number, and the group names in first-seen order."""
        tags = self.tags
        # The tag without its element index (q[1]@pos0 -> q@pos0), as TagParts.group: noted by
        # microgpt.scope when it made the tag; cut from the tag where it was made elsewhere.
        groups = list(map(tag_groups.get, tags))
        if None in groups:
            missing = set(compress(tags, map(is_, groups, repeat(None))))
            cut = {tag: _group_name(tag) for tag in missing}
            groups = [cut[tag] if group is None else group for tag, group in zip(tags, groups)]
        names = list(dict.fromkeys(groups))
        number = dict(zip(names, range(len(names))))
        return list(map(number.__getitem__, groups)), names

    @property
    def group_numbers(self) -> list[int]:
        """Each node's group, as its place in ``groups``."""
        return self._group_table[0]

    @cached_property
    def groups(self) -> dict[str, list[int]]:
        """Tensor groups (a tag without its element index) -> node indices, in first-seen order."""
        numbers, names = self._group_table
        members: list[list[int]] = [[] for _ in names]
        for i, g in enumerate(numbers):
            members[g].append(i)
        return dict(zip(names, members))

    @cached_property
    def group_parts(self) -> dict[str, TagParts | None]:
        """Each group's path and position (index None); None for the untagged nodes."""
        return {name: None if name == "(untagged)" else parse_tag(name) for name in self.groups}

    def group_of(self, i: int) -> str:
        return self._group_table[1][self._group_table[0][i]]

    @cached_property
    def _used_outside_group(self) -> list[bool]:
        """For each node, whether a node of another group uses it."""
        numbers = self.group_numbers
        out = [False] * len(self.nodes)
        for parent, children in enumerate(self.child_indices):
            g = numbers[parent]
            for child in children:
                if numbers[child] != g:
                    out[child] = True
        return out

    def group_outputs(self, group: str) -> list[int]:
        """A group's outputs: its members used outside it (or the root). Their values are the
        tensor's; the rest are the intermediate steps that computed them."""
        root = len(self.nodes) - 1
        outside = self._used_outside_group
        return [i for i in self.groups[group] if i == root or outside[i]]

    def depth(self) -> int:
        """The longest path, in edges, from a leaf to the root."""
        level: list[int] = []
        get = level.__getitem__
        for children in self.child_indices:  # children come before their parents
            level.append(1 + max(map(get, children)) if children else 0)
        return level[-1] if level else 0


def _group_name(tag: str | None) -> str:
    """The group of a tag (TagParts.group), cut from the tag itself."""
    if tag is None:
        return "(untagged)"
    return tag if "[" not in tag else tag[: tag.find("[")] + tag[tag.find("]") + 1 :]


class _LazyParts(Sequence):
    """The TagParts of a list of tags, each parsed once, when first read."""

    def __init__(self, tags: list[str | None]) -> None:
        self._tags = tags
        self._parsed: dict[str, TagParts] = {}

    def __len__(self) -> int:
        return len(self._tags)

    def __getitem__(self, i: int) -> TagParts | None:  # type: ignore[override]
        tag = self._tags[i]
        if tag is None:
            return None
        parts = self._parsed.get(tag)
        if parts is None:
            parts = self._parsed[tag] = parse_tag(tag)
        return parts

    def __iter__(self) -> Iterator[TagParts | None]:
        return (self[i] for i in range(len(self._tags)))
