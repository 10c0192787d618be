"""microgpt: a GPT in pure Python on scalar Values that know their op, their tag and their derivative."""

from microgpt.data import Dataset, Tokenizer, find_dataset
from microgpt.engine import OPS, Op, Value, dot, topological_order, total, zero_grad
from microgpt.errors import MicrogptError
from microgpt.graph import TokenGraph, TokenSpec, resolve_token, token_graph, word_graph
from microgpt.model import GPT, GPTConfig, KVCache
from microgpt.scope import label, position, scope

__version__ = "0.1.0"

__all__ = [
    "GPT",
    "OPS",
    "Dataset",
    "GPTConfig",
    "KVCache",
    "MicrogptError",
    "Op",
    "TokenGraph",
    "TokenSpec",
    "Tokenizer",
    "Value",
    "__version__",
    "dot",
    "find_dataset",
    "label",
    "position",
    "resolve_token",
    "scope",
    "token_graph",
    "topological_order",
    "total",
    "word_graph",
    "zero_grad",
]
