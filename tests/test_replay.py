"""The op table's rules and the replay: every op's rule computes what its Value method
computed (derived ops and non-finite edge cases included), and a recorded graph re-evaluated
from its leaves gives every value and every grad to the bit, in both granularities."""

from __future__ import annotations

import math
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_nonfinite import EDGE_CASES, build, underflowing_model

from microgpt.data import Tokenizer
from microgpt.engine import OPS, Replay, Value, cross_entropy, dot, topological_order, total
from microgpt.graph import resolve_token, token_graph
from microgpt.model import GPT, GRANULARITIES, GPTConfig


def bits(x: float) -> bytes:
    """A number's exact bits, so that -0.0 differs from 0.0 and NaN equals NaN."""
    return struct.pack("<d", float(x))


def assert_rules_reproduce(root: Value) -> int:
    """Every node's op rules give the node's data and local derivatives, to the bit."""
    checked = 0
    for node in topological_order(root):
        if not node.children:
            continue
        xs = [child.data for child in node.children]
        op = node.op
        assert bits(op.forward(xs, op.arg)) == bits(node.data), (op, xs)
        assert [bits(g) for g in op.local(xs, node.data, op.arg)] == [bits(g) for g in node.local_grads], (op, xs)
        checked += 1
    return checked


def test_every_op_but_the_leaves_has_rules() -> None:
    for name, op in OPS.items():
        has_rules = op.forward is not None and op.local is not None
        assert has_rules == (op.arity != 0), name


@pytest.mark.parametrize(("expression", "inputs", "fn", "value", "local"), EDGE_CASES)
def test_the_rules_reproduce_every_non_finite_edge_case(expression, inputs, fn, value, local) -> None:
    node, _ = build(inputs, fn)
    assert assert_rules_reproduce(node) >= 1


finite = st.floats(-50, 50, allow_nan=False).filter(lambda x: abs(x) > 1e-3)
EXPRESSIONS = {
    "add": lambda a, b: a + b,
    "radd": lambda a, b: 2.5 + a,
    "mul": lambda a, b: a * b,
    "rmul": lambda a, b: 2.5 * a,
    "neg": lambda a, b: -a,
    "sub": lambda a, b: a - b,
    "sub a number": lambda a, b: a - 1.5,
    "rsub": lambda a, b: 1.5 - a,
    "div": lambda a, b: a / b,
    "div by a number": lambda a, b: a / 3.0,
    "rdiv": lambda a, b: 3.0 / a,
    "pow 2": lambda a, b: a**2,
    "pow -1": lambda a, b: a**-1,
    "pow -0.5": lambda a, b: abs(a.data) ** 0.5 * (a * a) ** -0.5,
    "pow 3": lambda a, b: a**3,
    "exp": lambda a, b: (a * 0.1).exp(),
    "log": lambda a, b: (a * a).log(),
    "relu": lambda a, b: a.relu(),
    "dot": lambda a, b: dot([a, b, a], [b, b, a]),
    "sum": lambda a, b: total([a, b, a * b]),
    "xent": lambda a, b: cross_entropy([[a, b, a * b], [b * 0.5, a, b]], [2, 0]),
}


@pytest.mark.parametrize("name", EXPRESSIONS)
@settings(max_examples=40, deadline=None)
@given(a=finite, b=finite)
def test_each_ops_rules_agree_with_its_value_method(name: str, a: float, b: float) -> None:
    assert assert_rules_reproduce(EXPRESSIONS[name](Value(a), Value(b))) >= 1


def small_model(seed: int = 3) -> tuple[GPT, Tokenizer]:
    tokenizer = Tokenizer("aemo")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, n_embd=8, n_head=2, block_size=8)
    return GPT.initialise(config, random.Random(seed)), tokenizer


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("model_kind", ["fresh", "underflowing"])
def test_replaying_a_token_graph_reproduces_every_value_and_grad_to_the_bit(granularity: str, model_kind: str) -> None:
    model, tokenizer = small_model() if model_kind == "fresh" else underflowing_model()
    for target in ("a", "e", "m", "BOS"):  # the underflowing model gives some target an infinite loss
        spec = resolve_token(tokenizer, model.config.block_size, word="emma", pos=2, target=target)
        graph = token_graph(model, spec, granularity=granularity)
        if model_kind == "fresh" or math.isinf(graph.root.data):
            break
    order = topological_order(graph.root)
    assert_rules_reproduce(graph.root)
    replay = Replay(order)
    data = replay.evaluate()
    assert [bits(x) for x in data] == [bits(node.data) for node in order]
    grads = replay.backward(data)
    assert [bits(g) for g in grads] == [bits(node.grad) for node in order]
    if model_kind == "underflowing":
        assert math.isinf(data[-1]) and any(math.isnan(g) for g in grads)


def test_replaying_a_training_graph_with_its_cross_entropy_node_reproduces_it_to_the_bit() -> None:
    model, tokenizer = small_model()
    root = model.training_loss(tokenizer.document_tokens("emma"))
    root.backward()
    order = topological_order(root)
    assert assert_rules_reproduce(root) >= 1 and root.op.name == "xent"
    replay = Replay(order)
    data = replay.evaluate()
    assert [bits(x) for x in data] == [bits(node.data) for node in order]
    assert [bits(g) for g in replay.backward(data)] == [bits(node.grad) for node in order]


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_a_changed_weight_replays_to_the_loss_of_a_model_built_with_it(granularity: str) -> None:
    model, tokenizer = small_model()
    spec = resolve_token(tokenizer, model.config.block_size, word="emma", pos=3)
    graph = token_graph(model, spec, granularity=granularity, backward=False)
    order = topological_order(graph.root)
    replay = Replay(order)
    weight = model.weights["layer0.attn.wk"][1][2]
    i = next(k for k, node in enumerate(order) if node is weight)
    new_value = weight.data + 0.25

    downstream = replay.downstream([i])
    data = replay.evaluate({i: new_value})
    assert 0 < len(downstream) < len(order)
    untouched = set(range(len(order))) - set(downstream) - {i}
    assert all(bits(data[k]) == bits(order[k].data) for k in untouched)
    assert all(order[k].data == replay.recorded[k] for k in range(len(order)))  # the graph itself is unchanged

    weight.data = new_value
    rebuilt = token_graph(model, spec, granularity=granularity, backward=False)
    assert bits(data[-1]) == bits(rebuilt.root.data)
    assert data[-1] != replay.recorded[-1]


def test_a_change_that_reaches_nothing_recomputes_nothing() -> None:
    a, b = Value(1.0), Value(2.0)
    root = a * 3.0 + b
    order = topological_order(root)
    replay = Replay(order)
    const = next(i for i, node in enumerate(order) if node.op.name == "const")
    assert replay.downstream([len(order) - 1]) == []
    assert replay.evaluate({const: 4.0})[-1] == 6.0
