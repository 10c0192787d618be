"""Finite-difference gradient checks on the replay: every parameter of a token's graph passes,
a wrong derivative planted in one op is caught in both granularities, kinks are told apart
from failures, and the numeric gradients agree with PyTorch's analytic ones."""

from __future__ import annotations

import math
import random

import pytest

from microgpt.data import Tokenizer
from microgpt.engine import EXP, Value
from microgpt.graph import resolve_token, token_graph
from microgpt.model import GPT, GRANULARITIES, GPTConfig
from viz.check import ElementCheck, band, check_gradients
from viz.trace import Trace


def small_graph(granularity: str, seed: int = 5, pos: int = 3) -> tuple[GPT, Trace]:
    tokenizer = Tokenizer("aemo")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, n_embd=8, n_head=2, block_size=8)
    model = GPT.initialise(config, random.Random(seed))
    spec = resolve_token(tokenizer, config.block_size, word="emma", pos=pos)
    return model, Trace(token_graph(model, spec, granularity=granularity).root)


def params(trace: Trace) -> list[int]:
    return [i for i, node in enumerate(trace.nodes) if node.op.name == "param"]


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_every_parameter_and_activation_passes(granularity: str) -> None:
    _, trace = small_graph(granularity)
    selection = params(trace) + [i for i, node in enumerate(trace.nodes) if node.op.name == "dot"][:50]
    results = check_gradients(trace, selection)
    assert len(results) == len(selection)
    assert [r for r in results if r.failed] == []
    # the relative error is "wrong" only where both grads are tiny and the absolute error negligible
    assert all(r.abs_error < 1e-8 for r in results if r.words == "wrong")


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_a_wrong_derivative_planted_in_exp_is_caught(granularity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong_exp(self: Value) -> Value:  # the value is right, the local derivative 10% off
        out = math.exp(self.data)
        return Value(out, (self,), (1.1 * out,), EXP)

    monkeypatch.setattr(Value, "exp", wrong_exp)
    _, trace = small_graph(granularity)
    results = check_gradients(trace, params(trace))
    failures = [r for r in results if r.failed]
    assert failures, "a 10% error in exp's derivative went unnoticed"
    worst = max(failures, key=lambda r: r.abs_error)
    assert worst.words in ("uneasy", "wrong")
    assert trace.ids[worst.node] in {trace.ids[r.node] for r in failures}


def test_a_relu_input_within_the_step_of_zero_is_a_kink_not_a_failure() -> None:
    w = Value(1e-8)
    x = Value(1.0)
    root = (w * x).relu() * 3.0
    root.backward()
    trace = Trace(root)
    i = trace.nodes.index(w)
    (result,) = check_gradients(trace, [i])
    assert result.kink and not result.failed and result.verdict == "kink"
    assert result.analytic == 3.0 and result.numeric != pytest.approx(3.0)

    far = Value(0.5)
    root = (far * x).relu() * 3.0
    root.backward()
    trace = Trace(root)
    (result,) = check_gradients(trace, [trace.nodes.index(far)])
    assert not result.kink and result.passed


def test_errors_and_bands() -> None:
    assert band(1e-9) == "good" and band(1e-5) == "fine" and band(1e-3) == "uneasy" and band(0.5) == "wrong"
    assert band(math.nan) == "wrong"
    check = ElementCheck(0, 1.0, 1.0, 0.0, 0.0, True, False)
    assert check.verdict == "pass" and not check.failed


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_the_numeric_gradient_agrees_with_the_analytic_one_on_a_two_layer_model(granularity: str) -> None:
    tokenizer = Tokenizer("abcdef")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_embd=8, n_head=2, block_size=8)
    model = GPT.initialise(config, random.Random(2))
    spec = resolve_token(tokenizer, config.block_size, word="fade", pos=2)
    trace = Trace(token_graph(model, spec, granularity=granularity).root)
    results = check_gradients(trace, params(trace))
    assert not [r for r in results if r.failed]
    assert sum(r.kink for r in results) < len(results) // 10
