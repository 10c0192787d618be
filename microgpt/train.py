"""Training with Adam, and sampling, exactly as the reference run does them.

Adam with bias correction, the learning rate decayed linearly to 0 over the run:
    m ← β1·m + (1-β1)·g        v ← β2·v + (1-β2)·g²
    m̂ = m / (1-β1^t)           v̂ = v / (1-β2^t)
    θ ← θ - lr_t · m̂ / (√v̂ + ε),   lr_t = lr · (1 - step/steps)
One document per step, in the order of the shuffled data set. The trainer reports each
step to a callback (the CLI draws a progress bar); it never prints.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

from microgpt.data import Tokenizer
from microgpt.engine import Value, backward_recorded, gc_paused, power, recording, topological_order
from microgpt.errors import MicrogptError
from microgpt.model import GPT, GPTConfig, KVCache
from microgpt.scope import set_tagging


@dataclass(frozen=True)
class AdamConfig:
    lr: float = 0.01
    beta1: float = 0.85
    beta2: float = 0.99
    eps: float = 1e-8


@dataclass
class TrainState:
    """Everything a run needs to continue where it stopped (the checkpoint holds it)."""

    step: int = 0  # steps done
    m: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)


class Diverged(MicrogptError):
    """Training met a value that is not finite at ``step`` (counted from 1): the loss, a
    gradient, or a weight the update would write. Nothing of that step was applied: the
    model and the TrainState hold the last good state (``step - 1`` steps done)."""

    def __init__(self, step: int, what: str, document: str | None = None, origin: str | None = None) -> None:
        super().__init__(step, what, document, origin)
        self.step, self.what, self.document, self.origin = step, what, document, origin  # origin: a tag

    def __str__(self) -> str:
        doc = "" if self.document is None else f" (document {self.document!r})"
        return f"training diverged at step {self.step}{doc}: {self.what}"


def _first_non_finite_index(values: list[float]) -> int | None:
    if math.isfinite(sum(values)):  # the common case, at C speed (NaN and ±inf make the sum so)
        return None
    return next((i for i, x in enumerate(values) if not math.isfinite(x)), None)  # None: the sum overflowed


@dataclass
class Update:
    """What one Adam update read and wrote, in ``model.params`` order."""

    grads: list[float]
    before: list[float]  # the weights
    after: list[float]


def adam_update(model: GPT, state: TrainState, adam: AdamConfig, step: int, steps: int) -> Update:
    """One Adam update of every parameter from its grad, then the grad is zeroed.

    All or nothing: when a grad is not finite, or the update would write a weight that is
    not, it raises Diverged and changes nothing. A grad so large that its square overflows
    gives v = inf (IEEE-754), which stops that weight (m̂ / √v̂ = 0) instead of raising."""
    params = model.params
    grads, before = [p.grad for p in params], [p.data for p in params]
    m = state.m or [0.0] * len(params)
    v = state.v or [0.0] * len(params)
    beta1, beta2, eps = adam.beta1, adam.beta2, adam.eps
    c1, c2 = 1 - beta1, 1 - beta2
    lr_t = adam.lr * (1 - step / steps)
    m_correction = 1 - beta1 ** (step + 1)
    v_correction = 1 - beta2 ** (step + 1)
    # The formulas above, a list at a time; g**2 is pow, as in the reference, so the bits agree.
    new_m = [beta1 * m_i + c1 * g for m_i, g in zip(m, grads)]
    try:
        new_v = [beta2 * v_i + c2 * g**2 for v_i, g in zip(v, grads)]
    except OverflowError:  # some |g| > ~1.34e154, whose square ** refuses: IEEE-754 gives inf
        new_v = [beta2 * v_i + c2 * power(g, 2) for v_i, g in zip(v, grads)]
    new_data = [
        w - lr_t * (m_i / m_correction) / ((v_i / v_correction) ** 0.5 + eps)
        for w, m_i, v_i in zip(before, new_m, new_v)
    ]
    # A non-finite grad always makes its new weight non-finite, so one check finds both.
    bad = _first_non_finite_index(new_data)
    if bad is not None:
        bad_grad = _first_non_finite_index(grads)
        if bad_grad is not None:
            raise Diverged(step + 1, f"the gradient of {params[bad_grad].tag} is {grads[bad_grad]}")
        what = (
            f"the update would make {params[bad].tag} {new_data[bad]} (its grad {grads[bad]:.4g}, Adam's moments"
            f" m {new_m[bad]:.4g} and v {new_v[bad]:.4g}; the learning rate is too large)"
        )
        raise Diverged(step + 1, what)
    state.m, state.v = new_m, new_v
    for p, data in zip(params, new_data):  # a float 0, as 0 + x is 0.0 + x: Python adds two floats faster
        p.data = data
        p.grad = 0.0
    return Update(grads, before, new_data)


def first_non_finite(root: Value) -> Value | None:
    """The first node, in ``topological_order(root)``, whose data is NaN or infinite: that order
    computes every node after its inputs, so its inputs are finite: the values' origin."""
    return next((node for node in topological_order(root) if not math.isfinite(node.data)), None)


def describe_origin(node: Value) -> str:
    """``tag (op exp, input 812.3)``: what a user needs to find a non-finite value's origin."""
    inputs = [child.data for child in node.children]
    if not inputs:
        return f"{node.tag} (op {node.op}, no inputs)"
    if len(inputs) <= 4:
        shown = ", ".join(f"{x:.4g}" for x in inputs)
    else:
        largest = max(inputs, key=abs)
        shown = ", ".join(f"{x:.4g}" for x in inputs[:3]) + f" … {len(inputs)} in all, largest {largest:.4g}"
    return f"{node.tag} (op {node.op}, input{'s' if len(inputs) > 1 else ''} {shown})"


StepCallback = Callable[[int, float], None]  # (steps done, loss of the step just done)


@dataclass
class StepDetail:
    """What one step held, as numbers, for the series a run records (the runs database)."""

    step: int  # steps done, counted from 1
    loss: float
    lr: float  # the learning rate this step used
    grads: list[float]  # in model.params order, before the update
    before: list[float]  # the weights before the update
    after: list[float]
    attention: dict[tuple[int, int], list[list[float]]]  # (layer, head): each position's weights
    mlp_pre: dict[int, list[list[float]]]  # layer: each position's ReLU inputs
    logits: list[list[float]]  # each position's

    @staticmethod
    def numbers(cache: KVCache) -> tuple:
        """The attention weights, ReLU inputs and logits a forward pass kept in ``cache``."""

        def rows(vectors: list) -> list[list[float]]:
            return [[x.data for x in vector] for vector in vectors]

        attention = {key: rows(vectors) for key, vectors in cache.attention.items()}
        return attention, {layer: rows(vectors) for layer, vectors in cache.mlp_pre.items()}, rows(cache.logits)


DetailCallback = Callable[[StepDetail], None]


def train(
    model: GPT,
    tokenizer: Tokenizer,
    docs: list[str],
    steps: int,
    state: TrainState,
    *,
    adam: AdamConfig = AdamConfig(),
    granularity: str = "fused",
    on_step: StepCallback | None = None,
    on_detail: DetailCallback | None = None,
) -> TrainState:
    """Train from ``state.step`` up to ``steps``; ``state`` is updated after every step, so
    an interrupted run (KeyboardInterrupt) leaves a state that resumes to the same losses.

    A step whose loss, gradients or update are not finite raises Diverged and changes
    nothing: ``model`` and ``state`` then hold the last good state, ready to be saved.
    ``on_detail``, when given, receives each step's StepDetail before ``on_step``."""
    if steps < 1:
        raise MicrogptError(f"steps must be at least 1, got {steps}: pass --steps 1 or more")
    if state.step > steps:
        raise MicrogptError(f"the checkpoint has done {state.step} steps, more than --steps {steps}")
    for step in range(state.step, steps):
        document = docs[step % len(docs)]
        tokens = tokenizer.document_tokens(document)  # one document a step: encode only those used
        cache = None if on_detail is None else KVCache(model.config)
        with gc_paused():
            loss = _gradients(model, tokens, granularity, step, document, cache)
            seen = None if cache is None else StepDetail.numbers(cache)
            cache = None  # the last references to the step's graph: freed while the collector is paused
        try:
            update = adam_update(model, state, adam, step, steps)
        except Diverged as e:
            e.document = document
            raise
        state.step = step + 1
        if on_detail is not None:
            lr = adam.lr * (1 - step / steps)
            on_detail(StepDetail(state.step, loss, lr, update.grads, update.before, update.after, *seen))
        if on_step is not None:
            on_step(state.step, loss)
    return state


def _gradients(model: GPT, tokens: list[int], granularity: str, step: int, document: str, cache=None) -> float:
    """The gradients of every parameter for one document; returns the loss. The graph is freed
    on return (but for what ``cache`` keeps), while the collector is paused (gc_paused), and
    never lives beside the next one."""
    fused, tagged = granularity == "fused", set_tagging(False)  # nothing reads a training graph's tags
    try:
        with recording(lean=True) if fused else nullcontext() as tape:
            loss = model.training_loss(tokens, cache) if fused else model.document_loss(tokens, granularity, cache)
    finally:
        set_tagging(tagged)
    if not math.isfinite(loss.data):  # rebuilt whole and tagged, to name where it starts
        origin = first_non_finite(model.document_loss(tokens, granularity))
        where = "" if origin is None else f", starting at {describe_origin(origin)}"
        raise Diverged(step + 1, f"the loss is {loss.data}{where}", document, None if origin is None else origin.tag)
    if fused:  # no depth-first sort: the forward pass recorded a topological order
        backward_recorded(loss, tape)
    else:  # atomic keeps the reference's order, to the bit
        loss.backward(retain_graph=False)
    return loss.data


def sample(model: GPT, tokenizer: Tokenizer, rng: random.Random, *, temperature: float = 0.5, prefix: str = "") -> str:
    """One name: draw a token at a time from softmax(logits / T) until BOS or the context is full.

    Each generated token consumes exactly one ``rng.choices`` draw, as the reference does."""
    if not temperature > 0 or not math.isfinite(1 / temperature):
        raise MicrogptError(f"temperature must be a positive number whose reciprocal is finite, got {temperature}")
    c = model.config
    prefix_ids = tokenizer.encode(prefix)
    if len(prefix_ids) >= c.block_size:
        raise MicrogptError(f"prefix {prefix!r} fills the whole context of {c.block_size} tokens: shorten it")
    cache = KVCache(c)
    token_id = tokenizer.bos
    out = list(prefix)
    with gc_paused():
        for pos in range(c.block_size):
            logits = model.forward(token_id, pos, cache)
            if pos < len(prefix_ids):
                token_id = prefix_ids[pos]
                continue
            probs = [p.data for p in model.probabilities([logit / temperature for logit in logits], pos)]
            bad = _first_non_finite_index(probs)
            if bad is not None:
                raise MicrogptError(
                    f"the probability of {tokenizer.token_name(bad)!r} at position {pos} is {probs[bad]}: "
                    "the model's numbers overflow; sample a model with smaller weights, or raise --temperature"
                )
            token_id = rng.choices(range(c.vocab_size), weights=probs)[0]
            if token_id == tokenizer.bos:
                break
            out.append(tokenizer.chars[token_id])
    return "".join(out)


@dataclass
class Run:
    """A fresh run set up as the reference does: seed, shuffle the documents, draw the weights."""

    docs: list[str]  # shuffled: training takes them in this order
    tokenizer: Tokenizer
    model: GPT
    rng: random.Random  # its state after the draws: sampling continues from it


def start_run(docs: list[str], seed: int = 42, **config: int) -> Run:
    """The reference's random-number order: ``seed``, shuffle(docs), then the weights."""
    rng = random.Random(seed)
    shuffled = list(docs)
    rng.shuffle(shuffled)
    tokenizer = Tokenizer.from_documents(shuffled)
    model = GPT.initialise(GPTConfig(vocab_size=tokenizer.vocab_size, **config), rng)
    return Run(shuffled, tokenizer, model, rng)
