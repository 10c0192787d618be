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
from viz.check import ElementCheck, backward_origin, band, check_gradients, forward_origin
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


def test_the_cross_entropy_node_of_training_passes_the_gradient_check() -> None:
    tokenizer = Tokenizer("aemo")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, n_embd=8, n_head=2, block_size=8)
    model = GPT.initialise(config, random.Random(5))
    root = model.training_loss(tokenizer.document_tokens("emma"))
    root.backward()
    trace = Trace(root)
    logits = [i for i, node in enumerate(trace.nodes) if node.tag is not None and node.tag.startswith("logits[")]
    results = check_gradients(trace, params(trace)[:60] + logits)
    assert len(logits) == 5 * tokenizer.vocab_size and [r for r in results if r.failed] == []


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


# -- NaN origins ------------------------------------------------------------------------------
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_a_nan_weight_is_the_forward_origin_and_its_spread_is_counted(granularity: str) -> None:
    model, _ = small_graph(granularity)
    weight = model.weights["layer0.mlp.fc1"][3][2]
    weight.data = math.nan
    _, trace = small_graph_of(model, granularity)
    origin = forward_origin(trace)
    assert origin is not None and trace.nodes[origin.node] is weight
    assert origin.origins == 1 and origin.reached_root
    assert "layer0.mlp.pre@pos3" in origin.groups and origin.non_finite > 10
    assert backward_origin(trace) is not None  # NaN data gives NaN local derivatives


def small_graph_of(model: GPT, granularity: str, pos: int = 3) -> tuple[GPT, Trace]:
    tokenizer = Tokenizer("aemo")
    spec = resolve_token(tokenizer, model.config.block_size, word="emma", pos=pos)
    return model, Trace(token_graph(model, spec, granularity=granularity).root)


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_an_underflowing_probability_is_traced_to_the_log_in_both_passes(granularity: str) -> None:
    from test_nonfinite import underflowing_model

    model, tokenizer = underflowing_model()
    for target in ("a", "e", "m", "BOS"):
        spec = resolve_token(tokenizer, model.config.block_size, word="emma", pos=1, target=target)
        trace = Trace(token_graph(model, spec, granularity=granularity).root)
        if math.isinf(trace.nodes[-1].data):
            break
    forward = forward_origin(trace)
    assert forward is not None
    assert trace.nodes[forward.node].op.name == "log" and trace.ids[forward.node].startswith("loss@pos1")
    backward = backward_origin(trace)
    assert backward is not None and backward.reason == "local derivative"
    assert trace.nodes[backward.parent].op.name == "log" and backward.local_grad == math.inf
    assert trace.ids[backward.child].startswith("probs[")


def test_a_backward_only_overflow_is_found_where_the_forward_is_finite() -> None:
    x = Value(1e-320)  # a subnormal: log(x) is finite, its derivative 1/x overflows
    y = Value(2.0)
    root = (x.log() * y) + y
    root.backward()
    trace = Trace(root)
    assert forward_origin(trace) is None
    origin = backward_origin(trace)
    assert origin is not None and origin.reason == "local derivative"
    assert trace.nodes[origin.child] is x and origin.local_grad == math.inf


def test_a_finite_graph_has_no_origins() -> None:
    _, trace = small_graph("fused")
    assert forward_origin(trace) is None and backward_origin(trace) is None
