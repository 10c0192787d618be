"""Colours and names the views share: one colour per op family, one per model block, the
flag of a non-finite value, and counted nouns ("1 node", "2 nodes").

Colours are 6-digit hex only (Debian's dot 2.43 rejects the 3-digit form). The core knows
nothing of them: they live here, beside the views that use them.
"""

from __future__ import annotations

import math

# Op families: the fill of a node, by what computed it.
OP_FAMILY: dict[str, str] = {
    "leaf": "leaf",
    "param": "param",
    "const": "leaf",
    "add": "add",
    "sub": "add",
    "sum": "add",
    "mul": "mul",
    "neg": "mul",
    "div": "mul",
    "dot": "dot",
    "pow": "nonlinear",
    "exp": "nonlinear",
    "log": "nonlinear",
    "relu": "relu",
}

FAMILY_COLOUR: dict[str, str] = {
    "param": "#fde68a",  # amber: trainable weights
    "leaf": "#e5e7eb",  # grey: inputs and constants
    "add": "#bfdbfe",  # blue: add, sub, sum
    "mul": "#c7d2fe",  # indigo: mul, neg, div
    "dot": "#a5b4fc",  # deeper indigo: fused dot products
    "nonlinear": "#fbcfe8",  # pink: exp, log, pow
    "relu": "#bbf7d0",  # green: ReLU
    "mixed": "#f3f4f6",  # a block of many ops
}

FAMILY_LABEL: dict[str, str] = {
    "param": "parameter",
    "leaf": "leaf / constant",
    "add": "add, sub, sum",
    "mul": "mul, neg, div",
    "dot": "dot (fused)",
    "nonlinear": "exp, log, pow",
    "relu": "relu",
    "mixed": "several ops",
}

# Blocks: the border of a cluster and of a block-level node.
BLOCK_COLOUR: dict[str, str] = {
    "embed": "#0f766e",
    "attn": "#1d4ed8",
    "mlp": "#15803d",
    "lm_head": "#7c3aed",
    "probs": "#c2410c",
    "loss": "#b91c1c",
    "context": "#6b7280",
    "other": "#374151",
}

# A node holding a nan or an infinity (its data or its grad): a fill no op family uses.
NONFINITE_FILL = "#fca5a5"
NONFINITE_LABEL = "non-finite data or grad"

CONTEXT_FILL = "#f3f4f6"
PARAM_EDGE = "#b8bec8"  # an edge from parameters: lighter than the data's path
NEIGHBOUR_FILL = "#ffffff"
NEIGHBOUR_BORDER = "#9ca3af"
FOCUS_BORDER = "#dc2626"
FONT = "Helvetica"

# The advance widths of Helvetica (and of Arial, Arimo and Liberation Sans, which share its
# metrics), in thousandths of the font size: the standard Adobe metrics for printable ASCII,
# then the few other characters a label can hold. A layout program sizes each box from its
# own estimate of the text; graphviz-pure knows these ASCII widths exactly but counts every
# byte of a non-ASCII character as a space (and warns), so a label holding one gets its
# width from ``label_width`` instead. The drawings' own words are ASCII for that reason.
_ASCII_WIDTHS = (
    "278 278 355 556 556 889 667 191 333 333 389 584 278 333 278 278 556 556 556 556 556 556 556 556 556 556 "
    "278 278 584 584 584 556 1015 667 667 722 722 667 611 778 722 278 500 667 556 833 722 778 667 778 722 667 "
    "611 722 667 944 667 667 611 278 278 278 469 556 333 556 556 500 556 556 278 556 556 222 222 500 222 833 556 "
    "556 556 556 333 500 278 556 500 722 500 500 500 334 260 334 584"
)
CHAR_WIDTH: dict[str, int] = {chr(32 + k): int(w) for k, w in enumerate(_ASCII_WIDTHS.split())}
CHAR_WIDTH.update({"·": 278, "…": 1000, "×": 584, "μ": 576, "θ": 556, "−": 584, "±": 584, "é": 556})
WIDE = 1000  # any other character: as wide as an em, which no Latin, Greek or Cyrillic letter exceeds
NODE_MARGIN = 0.11  # inches each side of a label, Graphviz's default for a box


def text_width(text: str, fontsize: float) -> float:
    """The width in points of the widest line of ``text`` set in Helvetica at ``fontsize``."""
    lines = text.split("\n")
    return max(sum(CHAR_WIDTH.get(c, WIDE) for c in line) for line in lines) * fontsize / 1000


def label_width(text: str, fontsize: float) -> str | None:
    """A box's ``width`` (inches, for DOT) that fits ``text`` with Graphviz's margins, or None
    when the text is ASCII, which every layout program measures right by itself."""
    if text.isascii():
        return None
    inches = text_width(text, fontsize) / 72 + 2 * NODE_MARGIN
    return f"{math.ceil(inches * 100) / 100:.2f}"


def family(op_name: str) -> str:
    return OP_FAMILY.get(op_name, "mixed")


def block_kind(block: str) -> str:
    """The colour key of a block path: ``layer0.attn`` -> ``attn``."""
    last = block.split(".")[-1]
    return last if last in BLOCK_COLOUR else "other"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 node``, ``2 nodes``, ``4,024 nodes``: a count and its noun, in the right number."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
