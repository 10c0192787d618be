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
from dataclasses import dataclass, field

from microgpt.data import Tokenizer
from microgpt.engine import Value, gc_paused, topological_order
from microgpt.errors import MicrogptError
from microgpt.model import GPT, GPTConfig, KVCache


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


class NonFiniteLoss(MicrogptError):
    pass


def adam_update(model: GPT, state: TrainState, adam: AdamConfig, step: int, steps: int) -> None:
    """One Adam update of every parameter from its grad, then the grad is zeroed."""
    if not state.m:
        state.m = [0.0] * len(model.params)
        state.v = [0.0] * len(model.params)
    m, v = state.m, state.v
    beta1, beta2, eps = adam.beta1, adam.beta2, adam.eps
    lr_t = adam.lr * (1 - step / steps)
    m_correction = 1 - beta1 ** (step + 1)
    v_correction = 1 - beta2 ** (step + 1)
    for i, p in enumerate(model.params):
        m[i] = beta1 * m[i] + (1 - beta1) * p.grad
        v[i] = beta2 * v[i] + (1 - beta2) * p.grad**2
        m_hat = m[i] / m_correction
        v_hat = v[i] / v_correction
        p.data -= lr_t * m_hat / (v_hat**0.5 + eps)
        p.grad = 0


def first_non_finite(root: Value) -> Value | None:
    """The first node, in the order it was computed, whose data is NaN or infinite."""
    for node in topological_order(root):
        if not math.isfinite(node.data):
            return node
    return None


StepCallback = Callable[[int, float], None]  # (steps done, loss of the step just done)


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
) -> TrainState:
    """Train from ``state.step`` up to ``steps``; ``state`` is updated after every step, so
    an interrupted run (KeyboardInterrupt) leaves a state that resumes to the same losses."""
    if steps < 1:
        raise MicrogptError(f"steps must be at least 1, got {steps}: pass --steps 1 or more")
    if state.step > steps:
        raise MicrogptError(f"the checkpoint has done {state.step} steps, more than --steps {steps}")
    encoded = [tokenizer.document_tokens(doc) for doc in docs]
    for step in range(state.step, steps):
        with gc_paused():
            loss = model.document_loss(encoded[step % len(encoded)], granularity)
            if not math.isfinite(loss.data):
                bad = first_non_finite(loss)
                where = f" (first at {bad.tag}, op {bad.op})" if bad is not None else ""
                raise NonFiniteLoss(
                    f"the loss became {loss.data} at step {step + 1}{where}: lower --lr or check the data"
                )
            loss.backward()
        adam_update(model, state, adam, step, steps)
        state.step = step + 1
        if on_step is not None:
            on_step(state.step, loss.data)
    return state


def sample(model: GPT, tokenizer: Tokenizer, rng: random.Random, *, temperature: float = 0.5, prefix: str = "") -> str:
    """One name: draw a token at a time from softmax(logits / T) until BOS or the context is full.

    Each generated token consumes exactly one ``rng.choices`` draw, as the reference does."""
    if not temperature > 0:
        raise MicrogptError(f"temperature must be a positive number, got {temperature}")
    c = model.config
    prefix_ids = tokenizer.encode(prefix)
    if len(prefix_ids) >= c.block_size:
        raise MicrogptError(f"prefix {prefix!r} fills the whole context of {c.block_size} tokens: shorten it")
    cache = KVCache(c.n_layer)
    token_id = tokenizer.bos
    out = list(prefix)
    with gc_paused():
        for pos in range(c.block_size):
            logits = model.forward(token_id, pos, cache)
            if pos < len(prefix_ids):
                token_id = prefix_ids[pos]
                continue
            probs = model.probabilities([logit / temperature for logit in logits], pos)
            token_id = rng.choices(range(c.vocab_size), weights=[p.data for p in probs])[0]
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
