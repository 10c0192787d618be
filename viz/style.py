"""Colours and names the views share: one colour per op family, one per model block, the
flag of a non-finite value, and counted nouns ("1 node", "2 nodes").

Colours are 6-digit hex only (Debian's dot 2.43 rejects the 3-digit form). The core knows
nothing of them: they live here, beside the views that use them.
"""

from __future__ import annotations

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
    "add": "add · sub · sum",
    "mul": "mul · neg · div",
    "dot": "dot (fused)",
    "nonlinear": "exp · log · pow",
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
NEIGHBOUR_FILL = "#ffffff"
NEIGHBOUR_BORDER = "#9ca3af"
FOCUS_BORDER = "#dc2626"
FONT = "Helvetica"


def family(op_name: str) -> str:
    return OP_FAMILY.get(op_name, "mixed")


def block_kind(block: str) -> str:
    """The colour key of a block path: ``layer0.attn`` -> ``attn``."""
    last = block.split(".")[-1]
    return last if last in BLOCK_COLOUR else "other"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 node``, ``2 nodes``, ``4,024 nodes``: a count and its noun, in the right number."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
