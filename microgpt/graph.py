"""The graph of one token: the one function every view (graph, inspect, step) is built on.

A token's graph is everything its loss depends on: the token at ``pos``, the earlier
tokens whose keys and values sit in the KV cache, the weights, and the target. The
defaults are decided here, once (README, "The graph of one token"):

- the tokens come from a word, default ``emma``: the sequence ``[BOS] e m m a [BOS]``;
- ``pos`` defaults to 0; the token is the word's token at ``pos`` (BOS at 0);
- the context (the KV cache) is the word's tokens before ``pos``;
- the target is the word's token at ``pos + 1``;
- ``token`` and ``target`` override the word's, written as a character or ``BOS``;
- the views use the fused granularity unless asked for atomic.
"""

from __future__ import annotations

from dataclasses import dataclass

from microgpt.data import Tokenizer
from microgpt.engine import Value, gc_paused, topological_order
from microgpt.errors import MicrogptError
from microgpt.model import GPT, KVCache

DEFAULT_WORD = "emma"
DEFAULT_GRANULARITY = "fused"


@dataclass(frozen=True)
class TokenSpec:
    """Which token's graph: ids, resolved from what a user typed."""

    context: tuple[int, ...]  # the tokens at positions 0 .. pos-1, feeding the KV cache
    token: int
    target: int
    word: str

    @property
    def pos(self) -> int:
        return len(self.context)


def resolve_token(
    tokenizer: Tokenizer,
    block_size: int,
    *,
    word: str | None = None,
    pos: int | None = None,
    token: str | None = None,
    target: str | None = None,
) -> TokenSpec:
    """Fill in the defaults above and check every piece against the vocabulary."""
    word = DEFAULT_WORD if word is None else word
    pos = 0 if pos is None else pos
    sequence = tokenizer.document_tokens(word)
    if pos < 0 or pos >= block_size:
        raise MicrogptError(f"position {pos} is outside the context: use 0 to {block_size - 1}")
    if pos > len(sequence) - 2:
        raise MicrogptError(
            f"position {pos} is past the end of {word!r} (positions 0 to {len(sequence) - 2}): "
            "give a longer --word or a smaller --pos"
        )
    return TokenSpec(
        context=tuple(sequence[:pos]),
        token=sequence[pos] if token is None else tokenizer.token_id(token),
        target=sequence[pos + 1] if target is None else tokenizer.token_id(target),
        word=word,
    )


@dataclass
class TokenGraph:
    """The root (this position's loss) and the pieces a view names."""

    root: Value
    logits: list[Value]
    probs: list[Value]
    spec: TokenSpec
    granularity: str
    backward_done: bool
    order: list[Value] | None = None  # topological_order(root), sorted once for backward and the views


def token_graph(
    model: GPT, spec: TokenSpec, *, granularity: str = DEFAULT_GRANULARITY, backward: bool = True
) -> TokenGraph:
    """Run the context through the model, then the token to its loss; backpropagate unless
    ``backward=False`` (the stepper runs backward itself). Parameter grads are zeroed first,
    so after the call they hold this token's gradient alone."""
    if spec.pos >= model.config.block_size:
        raise MicrogptError(f"position {spec.pos} is outside the context: use 0 to {model.config.block_size - 1}")
    model.zero_grad()
    cache = KVCache(model.config)
    with gc_paused():
        for pos, token_id in enumerate(spec.context):
            model.forward(token_id, pos, cache, granularity)
        logits = model.forward(spec.token, spec.pos, cache, granularity)
        probs = model.probabilities(logits, spec.pos, granularity)
        root = model.position_loss(probs, spec.target, spec.pos)
        order = topological_order(root)
        if backward:
            root.backward(order)
    return TokenGraph(root, logits, probs, spec, granularity, backward, order)


def word_graph(
    model: GPT, tokens: list[int], *, granularity: str = DEFAULT_GRANULARITY, backward: bool = True
) -> tuple[Value, list[Value]]:
    """A whole document's graph, every position to the mean loss: its root and its sorted order."""
    model.zero_grad()
    with gc_paused():
        root = model.document_loss(tokens, granularity)
        order = topological_order(root)
        if backward:
            root.backward(order)
    return root, order
