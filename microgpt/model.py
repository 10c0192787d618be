"""The GPT of microgpt, on scalar Values, with every intermediate tagged.

The design of the single-file microgpt, a GPT-2-style model on scalars: token +
position embedding, RMSNorm (no weights) after the embedding sum and before each
block, multi-head causal self-attention with a KV cache, a ReLU MLP of width 4·n_embd,
residual adds, a separate lm_head, no biases. Tags (README, "Tag paths") name every
intermediate, e.g. ``layer0.attn.h2.weights[1]@pos4``.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from microgpt.engine import PARAM, Value, cross_entropy
from microgpt.errors import MicrogptError
from microgpt.nn import Vector, dot, linear, rmsnorm, softmax, total
from microgpt.scope import label, matrix_tags, position, root_scope, scope

GRANULARITIES = ("atomic", "fused")


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 27  # 26 letters + the BOS token of the names data set
    n_layer: int = 1
    n_embd: int = 16
    n_head: int = 4
    block_size: int = 16  # the longest name (15 letters) + BOS fits in one context
    init_std: float = 0.08  # std of the Gaussian init, as in the reference

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise MicrogptError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise MicrogptError(
                f"n_head {self.n_head} does not divide n_embd {self.n_embd}: choose a head count that divides the width"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


def weight_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """Every weight matrix, (rows, columns), in the order the reference draws them."""
    c = config
    shapes = {"wte": (c.vocab_size, c.n_embd), "wpe": (c.block_size, c.n_embd), "lm_head": (c.vocab_size, c.n_embd)}
    for i in range(c.n_layer):
        for name in ("wq", "wk", "wv", "wo"):
            shapes[f"layer{i}.attn.{name}"] = (c.n_embd, c.n_embd)
        shapes[f"layer{i}.mlp.fc1"] = (4 * c.n_embd, c.n_embd)
        shapes[f"layer{i}.mlp.fc2"] = (c.n_embd, 4 * c.n_embd)
    return shapes


@dataclass
class KVCache:
    """The keys and values of earlier positions, per layer and head, as attention reads them:
    keys[layer][head][position] is a key vector, values[layer][head][j][position] element j of
    a value vector. It also keeps what the series a run records read (README, "How it
    learns"), a vector a position: each head's attention weights, ReLU inputs, and logits."""

    config: GPTConfig
    keys: list[list[list[Vector]]] = field(init=False)
    values: list[list[list[Vector]]] = field(init=False)
    # The weights' data by matrix name, read at the first position that needs it: fused dot
    # products read every row at every position, and nothing changes a weight meanwhile.
    weight_data: dict[str, list[tuple[float, ...]]] = field(init=False, default_factory=dict)
    attention: dict[tuple[int, int], list[Vector]] = field(init=False, default_factory=dict)  # (layer, head)
    mlp_pre: dict[int, list[Vector]] = field(init=False, default_factory=dict)  # layer
    logits: list[Vector] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        c = self.config
        self.keys = [[[] for _ in range(c.n_head)] for _ in range(c.n_layer)]
        self.values = [[[[] for _ in range(c.head_dim)] for _ in range(c.n_head)] for _ in range(c.n_layer)]


class GPT:
    """Weights as matrices of Value leaves, named as in the tag grammar (``layer0.attn.wq``)."""

    def __init__(self, config: GPTConfig, weights: dict[str, list[list[float]]]) -> None:
        self.config = config
        shapes = weight_shapes(config)
        if list(weights) != list(shapes):
            raise MicrogptError(f"weights are {list(weights)}, expected {list(shapes)}")
        # Rows are tuples: a fused dot product's children are a row and its input, joined as is.
        self.weights: dict[str, list[tuple[Value, ...]]] = {}
        with root_scope():
            for name, rows in weights.items():
                n_rows, n_cols = shapes[name]
                if len(rows) != n_rows or any(len(row) != n_cols for row in rows):
                    raise MicrogptError(f"weight {name} is not {n_rows}×{n_cols}")
                tags = matrix_tags(name, n_rows, n_cols)
                self.weights[name] = [
                    tuple([Value(x, (), (), PARAM, tag) for x, tag in zip(row, row_tags)])
                    for row, row_tags in zip(rows, tags)
                ]
        self.params: list[Value] = [p for matrix in self.weights.values() for row in matrix for p in row]

    @classmethod
    def initialise(cls, config: GPTConfig, rng: random.Random) -> GPT:
        """Gaussian init, drawn matrix by matrix, row by row, in the reference's order."""
        weights = {
            name: [[rng.gauss(0, config.init_std) for _ in range(cols)] for _ in range(rows)]
            for name, (rows, cols) in weight_shapes(config).items()
        }
        return cls(config, weights)

    def weight_data(self) -> dict[str, list[list[float]]]:
        return {name: [[p.data for p in row] for row in matrix] for name, matrix in self.weights.items()}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = 0

    # -- forward ------------------------------------------------------------------------
    def forward(self, token_id: int, pos: int, cache: KVCache, granularity: str = "fused") -> Vector:
        """The logits for the next token after ``token_id`` at ``pos``; appends to ``cache``."""
        fused = _is_fused(granularity)
        c = self.config
        if not 0 <= pos < c.block_size:
            raise MicrogptError(f"position {pos} is outside the context: use 0 to {c.block_size - 1}")
        if not 0 <= token_id < c.vocab_size:
            raise MicrogptError(f"token id {token_id} is outside the vocabulary: use 0 to {c.vocab_size - 1}")
        with root_scope(), position(pos):
            with scope("embed"):
                x = label([t + p for t, p in zip(self.weights["wte"][token_id], self.weights["wpe"][pos])])
                with scope("norm"):
                    x = label(rmsnorm(x, fused))
            for layer in range(c.n_layer):
                with scope(f"layer{layer}"):
                    x = self._attention(layer, x, cache, fused)
                    x = self._mlp(layer, x, cache, fused)
            with scope("logits"):
                logits = label(self._linear(x, "lm_head", cache, fused))
        cache.logits.append(logits)
        return logits

    def _linear(self, x: Vector, name: str, cache: KVCache, fused: bool, rows: slice = slice(None)) -> Vector:
        """W x with the weight ``name`` (its ``rows``); fused reads W's data once a pass (KVCache)."""
        if fused and name not in cache.weight_data:
            cache.weight_data[name] = [tuple([p.data for p in row]) for row in self.weights[name]]
        return linear(x, self.weights[name][rows], fused, cache.weight_data[name][rows] if fused else None)

    def _attention(self, layer: int, x: Vector, cache: KVCache, fused: bool) -> Vector:
        c = self.config
        hd = c.head_dim
        residual = x
        with scope("attn"):
            with scope("norm"):
                x = label(rmsnorm(x, fused))
            # q, k, v are computed row by row, so computing them head by head changes no value
            # and lets each element carry its head: layer0.attn.h2.q[1].
            queries: list[Vector] = []
            for h in range(c.n_head):
                rows = slice(h * hd, (h + 1) * hd)
                with scope(f"h{h}"):
                    qkv = []
                    for name in ("q", "k", "v"):
                        with scope(name):
                            qkv.append(label(self._linear(x, f"layer{layer}.attn.w{name}", cache, fused, rows)))
                queries.append(qkv[0])
                cache.keys[layer][h].append(qkv[1])
                for column, element in zip(cache.values[layer][h], qkv[2]):
                    column.append(element)
            heads_out: Vector = []
            for h, q_h in enumerate(queries):
                with scope(f"h{h}"):
                    with scope("score"):
                        scores = label([dot(q_h, k_t, fused) / hd**0.5 for k_t in cache.keys[layer][h]])
                    with scope("weights"):
                        weights = label(softmax(scores, fused))
                    cache.attention.setdefault((layer, h), []).append(weights)
                    with scope("out"):
                        heads_out += label([dot(weights, column, fused) for column in cache.values[layer][h]])
            with scope("out"):
                x = label(self._linear(heads_out, f"layer{layer}.attn.wo", cache, fused))
            with scope("resid"):
                return label([a + b for a, b in zip(x, residual)])

    def _mlp(self, layer: int, x: Vector, cache: KVCache, fused: bool) -> Vector:
        residual = x
        with scope("mlp"):
            with scope("norm"):
                x = label(rmsnorm(x, fused))
            with scope("pre"):
                x = label(self._linear(x, f"layer{layer}.mlp.fc1", cache, fused))
            cache.mlp_pre.setdefault(layer, []).append(x)
            with scope("post"):
                x = label([xi.relu() for xi in x])
            with scope("out"):
                x = label(self._linear(x, f"layer{layer}.mlp.fc2", cache, fused))
            with scope("resid"):
                return label([a + b for a, b in zip(x, residual)])

    # -- losses -------------------------------------------------------------------------
    def probabilities(self, logits: Vector, pos: int, granularity: str = "fused") -> Vector:
        """softmax(logits), tagged probs[i]@pos."""
        with root_scope(), position(pos), scope("probs"):
            return label(softmax(logits, _is_fused(granularity)))

    def position_loss(self, probs: Vector, target_id: int, pos: int) -> Value:
        """-log probs[target], tagged loss@pos."""
        if not 0 <= target_id < self.config.vocab_size:
            raise MicrogptError(
                f"target id {target_id} is outside the vocabulary: use 0 to {self.config.vocab_size - 1}"
            )
        with root_scope(), position(pos), scope("loss"):
            return -probs[target_id].log()

    def document_loss(self, tokens: list[int], granularity: str = "fused", cache: KVCache | None = None) -> Value:
        """The mean loss over a document's positions, every node of it (what the views show)."""
        cache, targets = cache or KVCache(self.config), self._targets(tokens)
        losses = []
        for pos, target in enumerate(targets):
            logits = self.forward(tokens[pos], pos, cache, granularity)
            probs = self.probabilities(logits, pos, granularity)
            losses.append(self.position_loss(probs, target, pos))
        with root_scope(), scope("loss"):
            return (1 / len(targets)) * total(losses, _is_fused(granularity))

    def training_loss(self, tokens: list[int], cache: KVCache | None = None) -> Value:
        """document_loss, fused, whose softmaxes, logs and mean are one cross-entropy node over
        the logits: the same value and gradients to the bit, with a fifth fewer nodes to build."""
        cache, targets = cache or KVCache(self.config), self._targets(tokens)
        logits = [self.forward(tokens[pos], pos, cache) for pos in range(len(targets))]
        with root_scope(), scope("loss"):
            return cross_entropy(logits, targets)

    def _targets(self, tokens: list[int]) -> list[int]:
        """The token each position predicts, within the context."""
        n = min(self.config.block_size, len(tokens) - 1)
        if n < 1:
            raise MicrogptError("a document needs at least two tokens (BOS and one more)")
        if any(not 0 <= t < self.config.vocab_size for t in tokens[1 : n + 1]):
            raise MicrogptError(f"a target id is outside the vocabulary: use 0 to {self.config.vocab_size - 1}")
        return tokens[1 : n + 1]


def _is_fused(granularity: str) -> bool:
    if granularity not in GRANULARITIES:
        raise MicrogptError(f"unknown granularity {granularity!r}: use 'atomic' or 'fused'")
    return granularity == "fused"
