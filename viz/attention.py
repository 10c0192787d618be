"""Every head's attention weights over a word: the one computation behind ``mgx attention``,
the browser viewer's heatmaps and the health report's head statistics.

A word is run through the model as one training step would (BOS, its characters, to the
last position that has a next token). Row q of a head's matrix holds the weights its query
at position q gives to the keys of positions 0..q: the causal triangle, one row a position.
"""

from __future__ import annotations

from dataclasses import dataclass

from microgpt.data import Tokenizer
from microgpt.engine import gc_paused
from microgpt.errors import MicrogptError
from microgpt.model import GPT, KVCache


@dataclass(frozen=True)
class HeadWeights:
    head: str  # its tag: layer0.attn.h2
    rows: list[list[float]]  # rows[q][k]: the weight query q gives key k (k <= q)

    def node_tag(self, q: int, k: int) -> str:
        """The tag of the weight node at row q, column k in the graph of position q."""
        return f"{self.head}.weights[{k}]@pos{q}"


@dataclass(frozen=True)
class WordAttention:
    word: str
    labels: list[str]  # the input token at each position: BOS, then the word's characters
    heads: list[HeadWeights]  # layer by layer, head by head


def word_attention(model: GPT, tokenizer: Tokenizer, word: str, granularity: str = "fused") -> WordAttention:
    """The attention weights of every head over ``word``, from one forward pass per position."""
    if not word:
        raise MicrogptError("the word is empty: give a name of at least one character, e.g. --word emma")
    unknown = sorted(set(word) - set(tokenizer.chars))
    if unknown:
        raise MicrogptError(
            f"word {word!r} has characters outside the vocabulary ({''.join(unknown)!r}): use only {tokenizer.chars!r}"
        )
    tokens = tokenizer.document_tokens(word)
    positions = min(model.config.block_size, len(tokens) - 1)
    cache = KVCache(model.config.n_layer)
    with gc_paused():
        for pos in range(positions):
            model.forward(tokens[pos], pos, cache, granularity)
    heads = [
        HeadWeights(f"layer{layer}.attn.h{head}", [[w.data for w in row] for row in rows])
        for (layer, head), rows in sorted(cache.attention.items())
    ]
    return WordAttention(word, [tokenizer.token_name(t) for t in tokens[:positions]], heads)
