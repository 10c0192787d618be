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

Glob or index: a bracket group that ends the pattern (or stands just before ``@pos``) is
the element index; any other bracket group, followed by more of its segment or by ``.``,
is a character class of a glob. So ``attn.h[01].q`` is the queries of heads 0 and 1 and
``layer[0].attn`` is layer 0's attention, while ``wq[3,5]`` is an element; the heads 0 and
1 as a whole are ``attn.h[01].*``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from microgpt.errors import MicrogptError
from microgpt.scope import TagParts

_POSITIONS = re.compile(r"^@pos(?P<pos>\*|\d+(?:-\d+)?)$")
_EXAMPLES = "e.g. attn.h0, layer*.mlp.pre, attn.h[01].q, layer0.attn.wq[3,5], attn.h0.k@pos0"


def _invalid(text: str, why: str) -> MicrogptError:
    return MicrogptError(
        f"pattern {text!r} is not valid: {why}; write dotted segments, an optional [index] and @posN, {_EXAMPLES}"
    )


def _bracket_groups(text: str, path: str) -> list[tuple[int, int]]:
    """The (start, end) of each top-level ``[..]`` in ``path``; a ``[`` inside one nests."""
    groups, depth, start = [], 0, 0
    for i, ch in enumerate(path):
        if ch == "[":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "]":
            if depth == 0:
                raise _invalid(text, f"the ']' at character {i + 1} closes no '['")
            depth -= 1
            if depth == 0:
                groups.append((start, i + 1))
    if depth:
        raise _invalid(text, f"the '[' at character {start + 1} is not closed")
    return groups


def _split_segments(path: str, groups: list[tuple[int, int]]) -> list[str]:
    """``path`` split at the dots outside bracket groups."""
    inside = {i for start, end in groups for i in range(start, end)}
    segments, begin = [], 0
    for i, ch in enumerate(path):
        if ch == "." and i not in inside:
            segments.append(path[begin:i])
            begin = i + 1
    segments.append(path[begin:])
    return segments


@dataclass(frozen=True)
class Pattern:
    text: str
    segments: tuple[str, ...]
    index: str | None
    pos_range: tuple[int, int] | None  # inclusive; None: any position

    @classmethod
    def parse(cls, text: str) -> Pattern:
        text = text.strip()
        path, at, positions = text.partition("@")
        pos_range = None
        if at:
            match = _POSITIONS.match(at + positions)
            if match is None:
                raise _invalid(text, "after '@' write posN, posN-M or pos*")
            if match["pos"] != "*":
                lo, _, hi = match["pos"].partition("-")
                pos_range = (int(lo), int(hi or lo))
                if pos_range[0] > pos_range[1]:
                    raise _invalid(text, f"@pos{lo}-{hi} is an empty range (did you mean @pos{hi}-{lo}?)")
        groups = _bracket_groups(text, path)
        index = None
        if groups and groups[-1][1] == len(path):  # a group that ends the path is the element index
            start = groups.pop()[0]
            index = path[start + 1 : -1].replace(" ", "")
            path = path[:start]
            if not index:
                raise _invalid(text, "the [index] is empty: write [3,5], [3,*] or [*]")
        segments = _split_segments(path, groups)
        if path and any(not segment for segment in segments):
            raise _invalid(text, "a segment is empty (two dots together, or a dot at either end)")
        segments = () if path in ("", "*") else tuple(segments)
        return cls(text, segments, index, pos_range)

    def as_segment_glob(self) -> Pattern | None:
        """The other reading of a pattern whose index is glued to its last segment: ``attn.h[01]``
        as the glob ``attn.h[01].*`` (None when there is no such reading)."""
        if self.index is None or not self.segments:
            return None
        last = f"{self.segments[-1]}[{self.index}]"
        at = self.text.find("@")
        pos = self.text[at:] if at >= 0 else ""
        text = ".".join((*self.segments[:-1], last, "*")) + pos
        return Pattern(text, (*self.segments[:-1], last, "*"), None, self.pos_range)

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
    """Indices (in topological order) of the trace's nodes that match ``pattern`` and ``op``.

    Path and position are the same for every node of a tag group, so a pattern is matched
    once per group; only an [index] is then checked node by node, in the groups that match."""
    pat = pattern if isinstance(pattern, Pattern) else Pattern.parse(pattern)
    by_group = pat if pat.index is None else Pattern(pat.text, pat.segments, None, pat.pos_range)
    parts = trace.tag_parts
    out: list[int] = []
    for group, members in trace.groups.items():
        group_parts = trace.group_parts[group]
        if not by_group.matches(group_parts):
            continue
        if pat.index is not None:
            members = [i for i in members if pat.matches(parts[i])]
        out.extend(members)
    out.sort()
    if op is not None:
        nodes = trace.nodes
        out = [i for i in out if nodes[i].op.name == op]
    return out


def suggestions(trace, pattern: str, limit: int = 3) -> list[str]:
    """Names in the graph that look like ``pattern``: every run of segments of its groups' paths."""
    names: set[str] = set()
    for group in trace.groups:
        segments = group.split("@")[0].split(".")
        for start in range(len(segments)):
            for end in range(start + 1, len(segments) + 1):
                names.add(".".join(segments[start:end]))
    target = ".".join(Pattern.parse(pattern).segments)
    return difflib.get_close_matches(target, sorted(names), n=limit, cutoff=0.5)


def select_or_explain(trace, pattern: str, op: str | None = None) -> list[int]:
    """``select``, but a pattern that matches nothing is an error naming the nearest valid ones."""
    parsed = Pattern.parse(pattern)
    hits = select(trace, parsed, op)
    if hits:
        return hits
    glob = parsed.as_segment_glob()
    if glob is not None and select(trace, glob, op):
        hint = (
            f"its last [{parsed.index}] is read as an element index; to match segments with it, "
            f"as a glob, write {glob.text}"
        )
    else:
        near = suggestions(trace, pattern)
        hint = f"did you mean {', '.join(near)}?" if near else "try a tag such as attn.h0, mlp.pre or logits"
    what = f"pattern {pattern!r}" + (f" with op {op!r}" if op else "")
    raise MicrogptError(f"{what} matches no node in this graph: {hint}")
