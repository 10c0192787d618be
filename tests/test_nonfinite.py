"""Non-finite values are data: every op's IEEE-754 edge cases, op by op and in both
granularities, as the README's table states them; and a model whose loss is infinite
builds, backpropagates and keeps every value."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from microgpt.data import Tokenizer
from microgpt.engine import Value, topological_order
from microgpt.graph import resolve_token, token_graph
from microgpt.model import GPT, GRANULARITIES, GPTConfig
from microgpt.nn import dot, rmsnorm, softmax, total

README = Path(__file__).resolve().parents[1] / "README.md"
inf, nan = math.inf, math.nan


def text(x: float) -> str:
    """How the README writes a number: nan, inf, -inf, 0, 1e+200."""
    return f"{float(x):g}"


# (expression, inputs, how the expression builds its node, value, local derivatives).
# The local derivatives are those of the node the expression returns, one per child, in
# order: a derived op records its primitive node, so a / b lists ∂/∂a and ∂/∂(b⁻¹).
EDGE_CASES: list[tuple[str, str, Callable[..., Value], str, str]] = [
    ("log(a)", "a = 0", lambda a: a.log(), "-inf", "inf"),
    ("log(a)", "a = -1", lambda a: a.log(), "nan", "-1"),
    ("log(a)", "a = inf", lambda a: a.log(), "inf", "0"),
    ("log(a)", "a = nan", lambda a: a.log(), "nan", "nan"),
    ("exp(a)", "a = 1000", lambda a: a.exp(), "inf", "inf"),
    ("exp(a)", "a = -inf", lambda a: a.exp(), "0", "0"),
    ("exp(a)", "a = nan", lambda a: a.exp(), "nan", "nan"),
    ("a + b", "a = inf, b = -inf", lambda a, b: a + b, "nan", "1, 1"),
    ("a + b", "a = nan, b = 1", lambda a, b: a + b, "nan", "1, 1"),
    ("a × b", "a = 0, b = inf", lambda a, b: a * b, "nan", "inf, 0"),
    ("a × b", "a = 1e200, b = 1e200", lambda a, b: a * b, "inf", "1e+200, 1e+200"),
    ("a ** n", "a = 0, n = -1", lambda a, n: a**n, "inf", "-inf"),
    ("a ** n", "a = 0, n = -0.5", lambda a, n: a**n, "inf", "-inf"),
    ("a ** n", "a = -8, n = 0.5", lambda a, n: a**n, "nan", "nan"),
    ("a ** n", "a = 1e200, n = 2", lambda a, n: a**n, "inf", "2e+200"),
    ("a ** n", "a = -1e200, n = 3", lambda a, n: a**n, "-inf", "inf"),
    ("a ** n", "a = nan, n = 0", lambda a, n: a**n, "nan", "nan"),
    ("relu(a)", "a = nan", lambda a: a.relu(), "nan", "nan"),
    ("relu(a)", "a = inf", lambda a: a.relu(), "inf", "1"),
    ("relu(a)", "a = -inf", lambda a: a.relu(), "0", "0"),
    ("-a", "a = nan", lambda a: -a, "nan", "-1, nan"),
    ("a − b", "a = inf, b = inf", lambda a, b: a - b, "nan", "1, 1"),
    ("a / b", "a = 1, b = 0", lambda a, b: a / b, "inf", "inf, 1"),
    ("a / b", "a = 0, b = 0", lambda a, b: a / b, "nan", "inf, 0"),
]


def parse_inputs(inputs: str) -> dict[str, float]:
    return {name: float(value) for name, value in (part.split(" = ") for part in inputs.split(", "))}


def build(inputs: str, expression: Callable[..., Value]) -> tuple[Value, list[Value]]:
    """The node an edge case builds: Values for its inputs, a plain number for pow's n."""
    values = parse_inputs(inputs)
    args = [x if name == "n" else Value(x) for name, x in values.items()]
    return expression(*args), [a for a in args if isinstance(a, Value)]


@pytest.mark.parametrize(("expression", "inputs", "fn", "value", "local"), EDGE_CASES)
def test_each_op_gives_the_ieee_754_value_and_local_derivative(
    expression: str, inputs: str, fn: Callable[..., Value], value: str, local: str
) -> None:
    node, _ = build(inputs, fn)
    assert text(node.data) == value
    assert ", ".join(text(g) for g in node.local_grads) == local


@pytest.mark.parametrize(("expression", "inputs", "fn", "value", "local"), EDGE_CASES)
def test_backward_through_each_edge_case_never_raises(
    expression: str, inputs: str, fn: Callable[..., Value], value: str, local: str
) -> None:
    node, leaves = build(inputs, fn)
    node.backward()
    # each leaf's grad is the sum over its edges of local ∂ × 1, in IEEE-754 arithmetic
    for leaf in leaves:
        expected = 0
        for n in topological_order(node):
            for child, g in zip(n.children, n.local_grads):
                if child is leaf:
                    expected = expected + g * n.grad
        assert text(leaf.grad) == text(expected)


def test_the_readme_table_states_every_edge_case() -> None:
    readme = README.read_text(encoding="utf-8")
    rows = {
        tuple(cell.strip().strip("`") for cell in line.strip("|").split("|"))
        for line in readme.splitlines()
        if line.startswith("| `")
    }
    missing = [
        (expression, inputs, value, local)
        for expression, inputs, _, value, local in EDGE_CASES
        if (expression, inputs, value, local) not in rows
    ]
    assert not missing, f"README's table of non-finite values lacks {missing}"


# -- the n-ary ops and the building blocks, in both granularities ---------------------------
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_a_dot_product_with_zero_times_inf_is_nan_in_both_granularities(granularity: str) -> None:
    ws, xs = [Value(0.0), Value(1.0)], [Value(inf), Value(2.0)]
    out = dot(ws, xs, granularity == "fused")
    assert math.isnan(out.data)
    out.backward()
    assert [text(w.grad) for w in ws] == ["inf", "2"]
    assert [text(x.grad) for x in xs] == ["0", "1"]


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_a_sum_of_inf_and_minus_inf_is_nan_in_both_granularities(granularity: str) -> None:
    xs = [Value(inf), Value(-inf), Value(1.0)]
    out = total(xs, granularity == "fused")
    assert math.isnan(out.data)
    out.backward()
    assert [x.grad for x in xs] == [1, 1, 1]


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("where", [0, 1, 2])
def test_softmax_of_a_nan_logit_is_nan_wherever_the_nan_sits(granularity: str, where: int) -> None:
    numbers = [1.0, 2.0]
    numbers.insert(where, nan)
    logits = [Value(x) for x in numbers]
    probs = softmax(logits, granularity == "fused")
    assert all(math.isnan(p.data) for p in probs)
    # the shift skips the NaN, so the finite logits' exps are the same wherever it sits
    exps = sorted(p.children[0].data for p in probs if p.children[0].data == p.children[0].data)
    assert exps == [math.exp(-1.0), 1.0]


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_softmax_of_an_infinite_logit_is_nan_and_backward_runs(granularity: str) -> None:
    logits = [Value(inf), Value(0.0)]
    probs = softmax(logits, granularity == "fused")
    assert all(math.isnan(p.data) for p in probs)
    total(probs, granularity == "fused").backward()
    assert all(math.isnan(x.grad) for x in logits)


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_rmsnorm_of_an_infinite_element(granularity: str) -> None:
    xs = [Value(inf), Value(1.0), Value(-2.0)]
    out = rmsnorm(xs, granularity == "fused")
    assert [text(y.data) for y in out] == ["nan", "0", "-0"]


def test_softmax_of_finite_logits_is_unchanged_to_the_bit() -> None:
    logits = [Value(x) for x in (0.3, -1.25, 2.5, 0.0)]
    for fused in (True, False):
        probs = [p.data for p in softmax(logits, fused)]
        m = 2.5
        exps = [math.exp(x - m) for x in (0.3, -1.25, 2.5, 0.0)]
        s = 0
        for e in exps:
            s += e
        assert probs == [e * s**-1 for e in exps]


# -- a model whose target probability underflows to 0 ---------------------------------------
def underflowing_model() -> tuple[GPT, Tokenizer]:
    """Weights large enough that the target's probability is exactly 0: the loss is inf."""
    tokenizer = Tokenizer("aem")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, n_embd=8, n_head=2, block_size=8)
    model = GPT.initialise(config, random.Random(0))
    for row in model.weights["lm_head"]:
        for p in row:
            p.data *= 1e5
    return model, tokenizer


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_a_model_whose_target_probability_underflows_has_an_infinite_loss_and_backpropagates(
    granularity: str,
) -> None:
    model, tokenizer = underflowing_model()
    losses = []
    for target in ("a", "e", "m", "BOS"):
        spec = resolve_token(tokenizer, model.config.block_size, word="emma", pos=1, target=target)
        graph = token_graph(model, spec, granularity=granularity)
        losses.append(graph.root.data)
        if graph.root.data == inf:
            prob = graph.probs[spec.target]
            assert prob.data == 0.0
            log_node = graph.root.children[0]  # the loss is -log(p): neg(log(p))
            assert log_node.op.name == "log" and log_node.data == -inf and log_node.local_grads == (inf,)
            assert any(math.isnan(p.grad) or math.isinf(p.grad) for p in model.params)
    assert inf in losses, losses


def test_both_granularities_give_the_same_non_finite_loss() -> None:
    model, tokenizer = underflowing_model()
    spec = resolve_token(tokenizer, model.config.block_size, word="emma", pos=2)
    atomic = token_graph(model, spec, granularity="atomic").root.data
    fused = token_graph(model, spec, granularity="fused").root.data
    assert text(atomic) == text(fused)
