"""The tag pattern language: which nodes `mgx inspect`, `mgx graph --focus` and `mgx step`
breakpoints mean. One implementation, documented in the README ("Patterns").

    pattern  := [ segments ] [ "[" index "]" ] [ "@pos" positions ]
    segments := glob ( "." glob )*        each glob matches one path segment (fnmatch: * ? [..])
    index    := a glob over the element index, e.g. 3,5  or  3,*  or  *
    positions:= N | N-M | *

- Segments match a run of consecutive segments anywhere in a tag's path, and everything
  under it: ``attn.h0`` matches ``layer0.attn.h0.q[1]@pos0`` and ``layer1.attn.h0...``.
- With an index, the segments must end the path: ``wq[3,5]`` is the one element
  ``layer0.attn.wq[3,5]``; ``q[*]`` is every labelled element of every q.
- A position keeps only nodes computed at it (the KV-cache entries of earlier positions
  are ``k@pos0`` ...); nodes without a position (parameters) never match a position.
- ``*`` alone, or an empty pattern, matches every node.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from microgpt.errors import MicrogptError
from microgpt.scope import TagParts

_PATTERN = re.compile(r"^(?P<path>[^\[@]*)(?:\[(?P<index>[^\]]*)\])?(?:@pos(?P<pos>\*|\d+(?:-\d+)?))?$")


@dataclass(frozen=True)
class Pattern:
    text: str
    segments: tuple[str, ...]
    index: str | None
    pos_range: tuple[int, int] | None  # inclusive; None: any position

    @classmethod
    def parse(cls, text: str) -> Pattern:
        text = text.strip()
        match = _PATTERN.match(text)
        if match is None or (any(seg == "" for seg in match["path"].split(".")) and match["path"] != ""):
            raise MicrogptError(
                f"pattern {text!r} is not valid: write dotted segments, an optional [index] and @posN, "
                "e.g. attn.h0, layer*.mlp.pre, layer0.attn.wq[3,5], attn.h0.k@pos0"
            )
        path = match["path"]
        segments = () if path in ("", "*") else tuple(path.split("."))
        pos = match["pos"]
        pos_range = None
        if pos is not None and pos != "*":
            lo, _, hi = pos.partition("-")
            pos_range = (int(lo), int(hi or lo))
        return cls(text, segments, match["index"], pos_range)

    def matches(self, parts: TagParts | None) -> bool:
        if parts is None:
            return not self.segments and self.index is None and self.pos_range is None
        if self.pos_range is not None:
            if parts.pos is None or not self.pos_range[0] <= parts.pos <= self.pos_range[1]:
                return False
        if self.index is not None and (parts.index is None or not fnmatchcase(parts.index, self.index)):
            return False
        if not self.segments:
            return True
        path = parts.segments
        k = len(self.segments)
        starts = [len(path) - k] if self.index is not None else range(len(path) - k + 1)
        return any(
            start >= 0 and all(fnmatchcase(seg, pat) for seg, pat in zip(path[start : start + k], self.segments))
            for start in starts
        )


def select(trace, pattern: str | Pattern, op: str | None = None) -> list[int]:
    """Indices (in topological order) of the trace's nodes that match ``pattern`` and ``op``."""
    pat = pattern if isinstance(pattern, Pattern) else Pattern.parse(pattern)
    cache: dict[int, bool] = {}
    out = []
    for i, parts in enumerate(trace.tag_parts):
        if op is not None and trace.nodes[i].op.name != op:
            continue
        key = id(parts)
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = pat.matches(parts)
        if hit:
            out.append(i)
    return out


def suggestions(trace, pattern: str, limit: int = 3) -> list[str]:
    """Names in the graph that look like ``pattern``: every run of segments of its groups' paths."""
    names: set[str] = set()
    for group in trace.groups:
        segments = group.split("@")[0].split(".")
        for start in range(len(segments)):
            for end in range(start + 1, len(segments) + 1):
                names.add(".".join(segments[start:end]))
    target = pattern.split("@")[0].split("[")[0]
    return difflib.get_close_matches(target, sorted(names), n=limit, cutoff=0.5)


def select_or_explain(trace, pattern: str, op: str | None = None) -> list[int]:
    """``select``, but a pattern that matches nothing is an error naming the nearest valid ones."""
    hits = select(trace, pattern, op)
    if hits:
        return hits
    near = suggestions(trace, pattern)
    hint = f"did you mean {', '.join(near)}?" if near else "try a tag such as attn.h0, mlp.pre or logits"
    what = f"pattern {pattern!r}" + (f" with op {op!r}" if op else "")
    raise MicrogptError(f"{what} matches no node in this graph: {hint}")
