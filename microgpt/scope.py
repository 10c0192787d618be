"""Tag paths: the name of the place in the model where a Value was computed.

Every Value records a tag, a short string such as ``layer0.attn.h2.weights[1]@pos4``.
The grammar, defined here once (README, "Tag paths"):

    tag      := path [ "[" index ("," index)* "]" ] [ "@pos" position ]
    path     := segment ( "." segment )*          e.g. layer0.attn.h2.weights
    segment  := lower-case letters, digits and "_"

- Parameters carry their weight name and element: ``layer0.attn.wq[3,5]`` (row 3, column 5).
- Activations carry the position they were computed at: ``layer0.attn.h2.q[1]@pos0``.
- A labelled vector's elements carry an index (``q[1]``); the intermediate nodes that
  computed them (the products and partial sums of a dot product) carry the path alone.

Tagging is cheap: entering a scope builds one interned string, and every node created
inside shares that one object. Turning tagging off (``set_tagging(False)``) leaves every
tag ``None``; the benchmark uses it to measure what tagging costs.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# The tag given to every Value created now: read by Value.__init__, set by the contexts below.
current_tag: str | None = None
_path: str = ""
_pos: int | None = None
_enabled = True


# Every tag string is built once per (path, index, position) and then reused, so the
# thousands of tags of each training step cost a dictionary lookup, not an f-string.
_tags: dict[tuple[str, str, int | None], str] = {}
_element_tags: dict[tuple[str, int | None, int], tuple[str, ...]] = {}
# The group of every tag made here (the tag without its index: wq[3,5] -> wq), noted when the
# tag is made, so that a view of a model's 200,000 weights never cuts their tags apart.
tag_groups: dict[str, str] = {}


def _compose(path: str, index: str = "") -> str:
    key = (path, index, _pos)
    tag = _tags.get(key)
    if tag is None:
        position = "" if _pos is None else f"@pos{_pos}"
        tag = _tags[key] = sys.intern(f"{path}{index}{position}")
        tag_groups[tag] = _compose(path) if index else tag
    return tag


def _refresh() -> None:
    global current_tag
    current_tag = _compose(_path) if _enabled and (_path or _pos is not None) else None


class _Scope:
    """Sets the path and position on entry and restores them, and the tag, on exit. A class,
    not a generator-based context manager: a forward pass enters hundreds of scopes."""

    __slots__ = ("_name", "_outer", "_pos_to_set", "_root")

    def __init__(self, name: str | None, pos: int | _Keep | None, root: bool = False) -> None:
        self._name, self._pos_to_set, self._root = name, pos, root

    def __enter__(self) -> None:
        global _path, _pos, current_tag
        self._outer = (_path, _pos, current_tag)
        # What a scope sets depends only on where it is entered: worked out once, then looked up.
        key = (_path, _pos, self._name, self._pos_to_set, self._root, _enabled)
        inside = _inside.get(key)
        if inside is None:
            if self._root:
                _path, _pos = "", None
            if self._name is not None:
                _path = f"{_path}.{self._name}" if _path else self._name
            if self._pos_to_set is not _KEEP:
                _pos = self._pos_to_set  # type: ignore[assignment]
            _refresh()
            inside = _inside[key] = (_path, _pos, current_tag)
        _path, _pos, current_tag = inside

    def __exit__(self, *exc: object) -> None:
        global _path, _pos, current_tag
        _path, _pos, current_tag = self._outer


class _Keep:
    """The position is left as it is."""


_KEEP = _Keep()
_inside: dict[tuple, tuple[str, int | None, str | None]] = {}  # (where entered, the scope) -> _Scope.__enter__


# What the scopes below are while tagging is off: nothing to set or restore, so the hundreds
# of scopes of an untagged training step cost next to nothing.
_UNTAGGED = nullcontext()


def scope(name: str) -> _Scope | nullcontext:
    """Nest ``name`` (one segment or a dotted path) under the current path: ``with scope("attn"):``."""
    return _Scope(name, _KEEP) if _enabled else _UNTAGGED


def position(pos: int | None) -> _Scope | nullcontext:
    """Mark every Value created inside as computed at sequence position ``pos``."""
    return _Scope(None, pos) if _enabled else _UNTAGGED


def root_scope() -> _Scope | nullcontext:
    """Start from an empty path and no position (so a model's tags never depend on the caller's)."""
    return _Scope(None, _KEEP, root=True) if _enabled else _UNTAGGED


def label(values: Sequence[T]) -> Sequence[T]:
    """Tag ``values`` as the elements of the current scope: ``path[i]@posN``; returns them."""
    if _enabled:
        key = (_path, _pos, len(values))
        tags = _element_tags.get(key)
        if tags is None:
            tags = _element_tags[key] = tuple(_compose(_path, f"[{i}]") for i in range(len(values)))
        for v, tag in zip(values, tags):
            v._tag = tag  # type: ignore[attr-defined]
    return values


def matrix_tags(name: str, rows: int, cols: int) -> list[list[str | None]]:
    """The tag of every element of the rows × cols matrix ``name`` (``layer0.attn.wq[3,5]``),
    built in one go: a model has hundreds of thousands of weights, and every command loads one."""
    if not _enabled:
        return [[None] * cols for _ in range(rows)]
    path = f"{_path}.{name}" if _path else name
    position = "" if _pos is None else f"@pos{_pos}"
    ends = [f"{j}]{position}" for j in range(cols)]  # a row's tags are its prefix + these
    tags = [list(map(f"{path}[{i},".__add__, ends)) for i in range(rows)]
    group = path + position
    for row in tags:
        tag_groups.update(dict.fromkeys(row, group))
    return tags


def set_tagging(enabled: bool) -> bool:
    """Turn tag recording on or off, between forward passes (a scope entered while tagging is
    off sets no path); returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, enabled
    _refresh()
    return previous


def tagging_enabled() -> bool:
    return _enabled


@dataclass(frozen=True)
class TagParts:
    """A tag split by the grammar above: ``layer0.attn.wq[3,5]`` -> path, index, position."""

    path: str  # "layer0.attn.wq"
    index: str | None  # "3,5", or None for an intermediate node or a scalar
    pos: int | None  # the position, or None for parameters and position-free nodes

    @property
    def segments(self) -> list[str]:
        return self.path.split(".") if self.path else []

    @property
    def group(self) -> str:
        """The tensor a node belongs to: the tag without its element index."""
        return self.path if self.pos is None else f"{self.path}@pos{self.pos}"


_TAG = re.compile(r"^(?P<path>[^\[@]*)(?:\[(?P<index>[^\]]*)\])?(?:@pos(?P<pos>\d+))?$")


def parse_tag(tag: str) -> TagParts:
    match = _TAG.match(tag)
    if match is None:
        raise ValueError(f"not a tag path: {tag!r}")
    pos = match["pos"]
    return TagParts(match["path"], match["index"], None if pos is None else int(pos))
