"""The scalar autograd engine: each op's value, derivative and recorded op; backward on deep,
shared and dropped graphs; the two granularities; and the tags every node carries."""

from __future__ import annotations

import gc
import math
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgpt.data import Tokenizer, load_documents
from microgpt.engine import Value, dot, topological_order, total, zero_grad
from microgpt.graph import resolve_token, token_graph
from microgpt.model import GPT, GPTConfig
from microgpt.scope import set_tagging, tagging_enabled

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAMES = SHARED / "data" / "names.txt"


def leaves(*xs: float) -> list[Value]:
    return [Value(x) for x in xs]


def grads(*vs: Value) -> list[float]:
    return [v.grad for v in vs]


# -- each op by hand -----------------------------------------------------------------------
def test_a_leaf_records_op_leaf_and_no_children() -> None:
    a = Value(3.0)
    assert (a.data, a.grad, a.op.name, a.children, a.local_grads) == (3.0, 0, "leaf", (), ())


def test_add() -> None:
    a, b = leaves(2.0, -3.0)
    c = a + b
    assert (c.data, c.op.name, c.children) == (-1.0, "add", (a, b))
    c.backward()
    assert grads(a, b, c) == [1.0, 1.0, 1]


def test_mul() -> None:
    a, b = leaves(2.0, -3.0)
    c = a * b
    assert (c.data, c.op.name, c.children) == (-6.0, "mul", (a, b))
    c.backward()
    assert grads(a, b) == [-3.0, 2.0]


def test_pow_records_its_constant_exponent() -> None:
    a = Value(3.0)
    c = a**3
    assert (c.data, c.op.name, c.op.arg, c.children) == (27.0, "pow", 3, (a,))
    c.backward()
    assert a.grad == 27.0  # 3 · 3²


def test_pow_of_a_value_is_refused() -> None:
    with pytest.raises(TypeError, match="constant"):
        Value(2.0) ** Value(3.0)  # type: ignore[operator]


def test_exp() -> None:
    a = Value(1.5)
    c = a.exp()
    assert (c.data, c.op.name) == (math.exp(1.5), "exp")
    c.backward()
    assert a.grad == math.exp(1.5)


def test_log() -> None:
    a = Value(4.0)
    c = a.log()
    assert (c.data, c.op.name) == (math.log(4.0), "log")
    c.backward()
    assert a.grad == 0.25


@pytest.mark.parametrize(("x", "out", "grad"), [(3.0, 3.0, 1.0), (-2.0, 0, 0.0), (0.0, 0, 0.0)])
def test_relu_passes_positives_and_has_derivative_zero_at_and_below_zero(x: float, out: float, grad: float) -> None:
    a = Value(x)
    c = a.relu()
    assert (c.data, c.op.name) == (out, "relu")
    c.backward()
    assert a.grad == grad


def test_neg_is_a_mul_by_minus_one_recorded_as_neg() -> None:
    a = Value(2.5)
    c = -a
    assert (c.data, c.op.name) == (-2.5, "neg")
    assert c.children[0] is a and c.children[1].op.name == "const" and c.children[1].data == -1
    c.backward()
    assert a.grad == -1.0


def test_sub_is_add_of_the_negation_recorded_as_sub() -> None:
    a, b = leaves(5.0, 2.0)
    c = a - b
    assert (c.data, c.op.name) == (3.0, "sub")
    assert c.children[0] is a and c.children[1].op.name == "neg" and c.children[1].children[0] is b
    c.backward()
    assert grads(a, b) == [1.0, -1.0]


def test_rsub_is_the_negation_plus_the_number() -> None:
    a = Value(2.0)
    c = 5 - a
    assert (c.data, c.op.name) == (3.0, "sub")
    neg, const = c.children
    assert (neg.op.name, neg.children[0], const.op.name, const.data) == ("neg", a, "const", 5)
    c.backward()
    assert a.grad == -1.0


def test_div_is_mul_by_the_reciprocal_recorded_as_div() -> None:
    a, b = leaves(3.0, 4.0)
    c = a / b
    assert (c.data, c.op.name) == (0.75, "div")
    reciprocal = c.children[1]
    assert (reciprocal.op.name, reciprocal.op.arg, reciprocal.children) == ("pow", -1, (b,))
    c.backward()
    assert grads(a, b) == [0.25, -3.0 / 16.0]


def test_rdiv_is_the_reciprocal_times_the_number() -> None:
    a = Value(4.0)
    c = 6 / a
    assert (c.data, c.op.name) == (1.5, "div")
    reciprocal, const = c.children
    assert (reciprocal.op.name, reciprocal.op.arg, const.op.name, const.data) == ("pow", -1, "const", 6)
    c.backward()
    assert a.grad == -6.0 / 16.0


def test_radd_and_rmul_record_add_and_mul_with_a_const_leaf() -> None:
    a = Value(3.0)
    s, p = 2 + a, 2 * a
    assert (s.data, s.op.name, p.data, p.op.name) == (5.0, "add", 6.0, "mul")
    for node in (s, p):
        const = node.children[1]
        assert (const.op.name, const.data, const.children) == ("const", 2, ())
    s.backward()
    p.backward()
    assert a.grad == 3.0  # 1 from the sum, 2 from the product


def test_an_input_used_twice_gets_both_contributions() -> None:
    a = Value(3.0)
    c = a * a + a
    c.backward()
    assert a.grad == 7.0  # 2a + 1


def test_fused_dot_and_total_record_one_node_with_every_input() -> None:
    ws, xs = leaves(1.0, 2.0, 3.0), leaves(4.0, -5.0, 6.0)
    d = dot(ws, xs)
    assert (d.data, d.op.name, d.children) == (12.0, "dot", (*ws, *xs))
    d.backward()
    assert grads(*ws, *xs) == [4.0, -5.0, 6.0, 1.0, 2.0, 3.0]
    t = total(xs)
    assert (t.data, t.op.name, t.children, t.local_grads) == (5.0, "sum", tuple(xs), (1, 1, 1))


# -- every op against central finite differences -----------------------------------------
H = 1e-6


def finite_difference(f: Callable[[list[float]], float], xs: list[float], i: int) -> float:
    up, down = list(xs), list(xs)
    up[i] += H
    down[i] -= H
    return (f(up) - f(down)) / (2 * H)


def check_gradients(build: Callable[[list[Value]], Value], xs: list[float]) -> None:
    """Backpropagate ``build`` at ``xs`` and compare every input's grad with a central difference."""
    inputs = [Value(x) for x in xs]
    build(inputs).backward()

    def f(point: list[float]) -> float:
        return build([Value(x) for x in point]).data

    for i, v in enumerate(inputs):
        expected = finite_difference(f, xs, i)
        assert math.isclose(v.grad, expected, rel_tol=1e-5, abs_tol=1e-6), (i, xs, v.grad, expected)


def floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


ANY = floats(-10, 10)
POSITIVE = floats(0.1, 10)
AWAY_FROM_ZERO = st.one_of(floats(-10, -0.1), floats(0.1, 10))
CONSTANT = st.one_of(st.integers(-5, 5), floats(-5, 5))

UNARY: dict[str, tuple[Callable[[Value], Value], st.SearchStrategy[float]]] = {
    "exp": (Value.exp, floats(-5, 5)),
    "log": (Value.log, POSITIVE),
    "relu": (Value.relu, AWAY_FROM_ZERO),
    "neg": (lambda a: -a, ANY),
}
BINARY: dict[str, tuple[Callable[[Value, Value], Value], st.SearchStrategy[float], st.SearchStrategy[float]]] = {
    "add": (lambda a, b: a + b, ANY, ANY),
    "mul": (lambda a, b: a * b, ANY, ANY),
    "sub": (lambda a, b: a - b, ANY, ANY),
    "div": (lambda a, b: a / b, ANY, AWAY_FROM_ZERO),
}
NONZERO = st.one_of(st.sampled_from([-3, -1, 1, 2]), floats(-5, -0.1), floats(0.1, 5))
WITH_A_NUMBER: dict[str, tuple[Callable[[Value, float], Value], st.SearchStrategy[float], st.SearchStrategy[float]]] = {
    "add": (lambda a, c: a + c, ANY, CONSTANT),
    "radd": (lambda a, c: c + a, ANY, CONSTANT),
    "mul": (lambda a, c: a * c, ANY, CONSTANT),
    "rmul": (lambda a, c: c * a, ANY, CONSTANT),
    "sub": (lambda a, c: a - c, ANY, CONSTANT),
    "rsub": (lambda a, c: c - a, ANY, CONSTANT),
    "div": (lambda a, c: a / c, ANY, NONZERO),
    "rdiv": (lambda a, c: c / a, AWAY_FROM_ZERO, CONSTANT),
}


@pytest.mark.parametrize("name", UNARY)
@given(data=st.data())
def test_unary_op_gradient_matches_finite_differences(name: str, data: st.DataObject) -> None:
    op, inputs = UNARY[name]
    check_gradients(lambda v: op(v[0]), [data.draw(inputs)])


@given(x=floats(0.2, 5), exponent=st.sampled_from([-2, -1, -0.5, 0.5, 1, 1.5, 2, 3]))
def test_pow_gradient_matches_finite_differences(x: float, exponent: float) -> None:
    check_gradients(lambda v: v[0] ** exponent, [x])


@pytest.mark.parametrize("name", BINARY)
@given(data=st.data())
def test_binary_op_gradient_matches_finite_differences(name: str, data: st.DataObject) -> None:
    op, left, right = BINARY[name]
    check_gradients(lambda v: op(v[0], v[1]), [data.draw(left), data.draw(right)])


@pytest.mark.parametrize("name", WITH_A_NUMBER)
@given(data=st.data())
def test_op_with_a_python_number_gradient_matches_finite_differences(name: str, data: st.DataObject) -> None:
    op, inputs, constants = WITH_A_NUMBER[name]
    c = data.draw(constants)
    check_gradients(lambda v: op(v[0], c), [data.draw(inputs)])


@given(pairs=st.lists(st.tuples(ANY, ANY), min_size=1, max_size=8))
def test_fused_dot_gradient_matches_finite_differences(pairs: list[tuple[float, float]]) -> None:
    n = len(pairs)
    xs = [w for w, _ in pairs] + [x for _, x in pairs]
    check_gradients(lambda v: dot(v[:n], v[n:]), xs)


@given(xs=st.lists(ANY, min_size=1, max_size=8))
def test_fused_total_gradient_matches_finite_differences(xs: list[float]) -> None:
    check_gradients(total, xs)


@given(pairs=st.lists(st.tuples(ANY, ANY), min_size=1, max_size=8))
def test_fused_dot_and_total_equal_the_atomic_sum_to_the_bit(pairs: list[tuple[float, float]]) -> None:
    ws, xs = [Value(w) for w, _ in pairs], [Value(x) for _, x in pairs]
    assert dot(ws, xs).data == sum(w * x for w, x in zip(ws, xs, strict=True)).data
    assert total(xs).data == sum(xs).data


@given(x=floats(-2, 2), y=floats(0.5, 3))
def test_a_composite_expression_gradient_matches_finite_differences(x: float, y: float) -> None:
    check_gradients(lambda v: ((v[0] * v[1]).exp() + v[1].log() - v[0] / v[1]).relu() ** 2 + 1, [x, y])


# -- deep graphs --------------------------------------------------------------------------
CHAIN = 100_000


def test_a_chain_of_100000_adds_backpropagates_without_recursion() -> None:
    leaf = x = Value(1.0)
    for _ in range(CHAIN):
        x = x + 1.0
    order = topological_order(x)
    assert len(order) == 2 * CHAIN + 1  # the leaf, then each add after its const
    assert order[0] is leaf and order[1].op.name == "const" and order[2].op.name == "add" and order[-1] is x
    x.backward()
    assert (x.data, leaf.grad) == (CHAIN + 1.0, 1.0)


def test_a_chain_of_100000_muls_backpropagates_the_product_of_local_grads() -> None:
    leaf = x = Value(1.0)
    for _ in range(CHAIN):
        x = x * 1.00001
    x.backward()
    assert math.isclose(x.data, 1.00001**CHAIN, rel_tol=1e-9)
    assert math.isclose(leaf.grad, 1.00001**CHAIN, rel_tol=1e-9)


# -- a dropped graph is freed by reference counting alone --------------------------------
def count_values() -> int:
    return sum(type(o) is Value for o in gc.get_objects())  # type(), not isinstance: no __class__ lookups


def test_a_dropped_graph_is_freed_without_the_cycle_collector() -> None:
    """With the collector off, only reference counting frees: a cycle through the graph
    (a node pointing back at its parent, a closure, a cache) would leave nodes alive."""
    model = GPT.initialise(GPTConfig(vocab_size=6, n_embd=8, n_head=2, block_size=8), random.Random(0))
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        before = count_values()
        loss = model.document_loss([5, 0, 1, 2, 5], "atomic")
        loss.backward()
        assert count_values() > before + 1000
        del loss
        assert count_values() == before  # the parameters alone remain
    finally:
        if was_enabled:
            gc.enable()


# -- gradients accumulate; zero_grad resets --------------------------------------------------
def test_backward_twice_accumulates_into_leaves_and_recomputes_intermediates() -> None:
    """As in PyTorch: leaves accumulate (+=) across backward calls, so a second call doubles
    their grads; an intermediate node's grad is recomputed by each call, never accumulated."""
    a, b = leaves(2.0, 3.0)
    d = a * b
    e = d + a
    e.backward()
    assert grads(a, b, d, e) == [4.0, 2.0, 1, 1]  # ∂e/∂a = b + 1, ∂e/∂b = a
    e.backward()
    assert grads(a, b, d, e) == [8.0, 4.0, 1, 1]  # leaves doubled, d still 1
    zero_grad(e)
    e.backward()
    assert grads(a, b, d, e) == [4.0, 2.0, 1, 1]


def test_dot_of_vectors_of_different_lengths_is_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        dot(leaves(1.0, 2.0), leaves(10.0, 20.0, 30.0))


def test_backward_twice_on_a_graph_of_leaves_doubles_their_grads() -> None:
    a, b = leaves(2.0, 3.0)
    c = a * b
    c.backward()
    c.backward()
    assert grads(a, b, c) == [6.0, 4.0, 1]


def test_zero_grad_zeroes_every_node_the_root_depends_on() -> None:
    a, b = leaves(2.0, 3.0)
    root = (a * b + a.exp()).log() / b
    root.backward()
    order = topological_order(root)
    assert any(node.grad != 0 for node in order)
    zero_grad(root)
    assert all(node.grad == 0 for node in order)


def test_gpt_zero_grad_zeroes_every_parameter() -> None:
    model = GPT.initialise(GPTConfig(vocab_size=6, n_embd=8, n_head=2, block_size=8), random.Random(1))
    model.document_loss([5, 0, 1, 5], "fused").backward()
    assert sum(p.grad != 0 for p in model.params) > len(model.params) // 2
    model.zero_grad()
    assert all(p.grad == 0 for p in model.params)


# -- topological order -------------------------------------------------------------------
def recursive_post_order(root: Value) -> list[Value]:
    """The reference design's build_topo: recursive depth-first, children in order."""
    order: list[Value] = []
    visited: set[Value] = set()

    def visit(node: Value) -> None:
        if node not in visited:
            visited.add(node)
            for child in node.children:
                visit(child)
            order.append(node)

    visit(root)
    return order


def random_dag(seed: int, n_leaves: int, n_ops: int) -> Value:
    """Ops on randomly chosen earlier nodes, so nodes are shared (and sometimes used twice by one op)."""
    rng = random.Random(seed)
    nodes = [Value(rng.uniform(0.5, 2.0)) for _ in range(n_leaves)]
    for _ in range(n_ops):
        a, b = rng.choice(nodes), rng.choice(nodes)
        kind = rng.randrange(5)
        if kind == 0:
            nodes.append(a + b)
        elif kind == 1:
            nodes.append(a * b)
        elif kind == 2:
            nodes.append(a.relu())
        elif kind == 3:
            nodes.append(dot([a, b], [b, a]))
        else:
            nodes.append(total(rng.sample(nodes, min(3, len(nodes)))))
    return total(nodes[-5:])  # one root over the last few, so most nodes are reached


@given(seed=st.integers(0, 2**32 - 1), n_leaves=st.integers(1, 6), n_ops=st.integers(0, 40))
@settings(max_examples=200)
def test_topological_order_is_the_recursive_post_order(seed: int, n_leaves: int, n_ops: int) -> None:
    root = random_dag(seed, n_leaves, n_ops)
    order = topological_order(root)
    assert [id(n) for n in order] == [id(n) for n in recursive_post_order(root)]
    position = {id(n): i for i, n in enumerate(order)}
    assert len(position) == len(order)  # each node once
    assert all(position[id(c)] < position[id(n)] for n in order for c in n.children)


# -- the two granularities -----------------------------------------------------------------
@st.composite
def model_and_document(draw: st.DrawFn) -> tuple[GPT, list[int]]:
    config = GPTConfig(
        vocab_size=draw(st.integers(5, 10)),
        n_layer=draw(st.integers(1, 2)),
        n_embd=8,
        n_head=draw(st.sampled_from([1, 2, 4])),
        block_size=8,
    )
    model = GPT.initialise(config, random.Random(draw(st.integers(0, 2**32 - 1))))
    tokens = draw(st.lists(st.integers(0, config.vocab_size - 1), min_size=2, max_size=11))
    return model, tokens


def param_grads(model: GPT, tokens: list[int], granularity: str) -> tuple[float, list[float]]:
    model.zero_grad()
    loss = model.document_loss(tokens, granularity)
    loss.backward()
    return loss.data, [p.grad for p in model.params]


@given(case=model_and_document())
@settings(max_examples=25, deadline=None)
def test_fused_and_atomic_give_the_same_loss_to_the_bit_and_the_same_grads(case: tuple[GPT, list[int]]) -> None:
    model, tokens = case
    atomic_loss, atomic_grads = param_grads(model, tokens, "atomic")
    fused_loss, fused_grads = param_grads(model, tokens, "fused")
    assert atomic_loss == fused_loss
    scale = max(abs(g) for g in atomic_grads)
    for p, a, f in zip(model.params, atomic_grads, fused_grads, strict=True):
        assert math.isclose(a, f, rel_tol=1e-12, abs_tol=1e-15 * scale), (p.tag, a, f)


# -- the reference's first training step ------------------------------------------------------
@pytest.mark.skipif(not NAMES.is_file(), reason=f"the reference data {NAMES} is absent (no ../shared checkout)")
def test_the_reference_first_step_atomic_graph_has_107060_edges_and_loss_3_3660() -> None:
    """The figures of the reference's step 1: seed 42, shuffle, init, the first name."""
    dataset = load_documents(NAMES)
    docs = list(dataset.docs)
    rng = random.Random(42)
    rng.shuffle(docs)
    assert docs[0] == "yuheng"
    tokenizer = dataset.tokenizer
    model = GPT.initialise(GPTConfig(vocab_size=tokenizer.vocab_size), rng)
    assert len(model.params) == 4192
    loss = model.document_loss(tokenizer.document_tokens(docs[0]), "atomic")
    assert sum(len(node.children) for node in topological_order(loss)) == 107_060
    assert f"{loss.data:.4f}" == "3.3660"


# -- tags --------------------------------------------------------------------------------------
TAG = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*(\[\d+(,\d+)*\])?(@pos\d+)?")
TOKENIZER = Tokenizer("abcd")  # vocab 5: a b c d BOS
CONFIG = GPTConfig(vocab_size=TOKENIZER.vocab_size, n_layer=1, n_embd=8, n_head=4, block_size=8)


def graph_of_position_4(model: GPT) -> list[Value]:
    spec = resolve_token(TOKENIZER, CONFIG.block_size, word="abcab", pos=4)
    return topological_order(token_graph(model, spec, granularity="atomic").root)


def test_parameters_are_tagged_with_their_weight_name_and_element() -> None:
    model = GPT.initialise(CONFIG, random.Random(0))
    assert model.weights["layer0.attn.wq"][3][5].tag == "layer0.attn.wq[3,5]"
    assert model.weights["wte"][4][0].tag == "wte[4,0]"
    assert all(p.op.name == "param" for p in model.params)


def test_every_node_of_a_token_graph_has_a_tag_in_the_grammar() -> None:
    nodes = graph_of_position_4(GPT.initialise(CONFIG, random.Random(0)))
    untagged = [n for n in nodes if n.tag is None]
    assert not untagged, untagged[:3]
    assert [n.tag for n in nodes if not TAG.fullmatch(n.tag)] == []
    tags = {n.tag for n in nodes}
    expected = {
        "layer0.attn.h2.weights[1]@pos4",  # a labelled element
        "layer0.attn.h2.weights@pos4",  # an intermediate of the softmax that made it
        "layer0.attn.h0.k[1]@pos0",  # an earlier position, through the KV cache
        "layer0.mlp.post[31]@pos4",
        "logits[2]@pos4",
        "loss@pos4",
        "layer0.attn.wq[3,5]",
    }
    assert expected <= tags, expected - tags


def test_equal_tags_are_one_shared_string_object() -> None:
    nodes = graph_of_position_4(GPT.initialise(CONFIG, random.Random(0)))
    objects: dict[str, set[int]] = {}
    for n in nodes:
        objects.setdefault(n.tag, set()).add(id(n.tag))
    assert {tag: ids for tag, ids in objects.items() if len(ids) > 1} == {}
    activations = [n for n in nodes if n.op.name != "param"]
    assert len({n.tag for n in activations}) < len(activations) // 5  # most share their scope's tag
    softmax_nodes = [n for n in nodes if n.tag == "layer0.attn.h2.weights@pos4"]
    assert len(softmax_nodes) > 5 and all(n.tag is softmax_nodes[0].tag for n in softmax_nodes)


def test_set_tagging_false_leaves_every_tag_none() -> None:
    previous = set_tagging(False)
    try:
        assert not tagging_enabled()
        nodes = graph_of_position_4(GPT.initialise(CONFIG, random.Random(0)))
    finally:
        set_tagging(previous)
    assert tagging_enabled()
    assert [n.tag for n in nodes if n.tag is not None] == []
    assert len(nodes) > 1000


def test_a_scope_tags_by_where_it_is_entered_each_time() -> None:
    """A scope's effect is worked out once per place it is entered (scope._inside), and a
    scope made while tagging is on but entered while it is off tags nothing."""
    from microgpt.scope import position, root_scope, scope

    made = {}
    for where in ("first", "again"):
        with root_scope(), position(2), scope("a"), scope("b"):
            made[where] = Value(1.0)
        with root_scope(), scope("a"), scope("b"):
            made[where + " without a position"] = Value(1.0)
    assert {k: v.tag for k, v in made.items()} == {
        "first": "a.b@pos2", "again": "a.b@pos2", "first without a position": "a.b", "again without a position": "a.b"
    }  # fmt: skip
    entered_later = [root_scope(), scope("a")]
    previous = set_tagging(False)
    try:
        with entered_later[0], entered_later[1]:
            assert Value(1.0).tag is None
    finally:
        set_tagging(previous)


# -- the recorded forward pass (training's backward) -----------------------------------------
def _recorded_loss(config: GPTConfig, tokens: list[int], granularity: str, seed: int = 0):
    from microgpt.engine import recording

    model = GPT.initialise(config, random.Random(seed))
    with recording() as tape:
        loss = model.document_loss(tokens, granularity)
    return model, loss, tape


@pytest.mark.parametrize("granularity", ["atomic", "fused"])
@pytest.mark.parametrize(
    ("n_layer", "n_embd", "n_head", "block_size", "length"), [(1, 8, 2, 8, 5), (2, 8, 4, 4, 9), (1, 16, 4, 16, 2)]
)
def test_every_node_a_training_step_records_is_one_its_loss_depends_on(
    granularity: str, n_layer: int, n_embd: int, n_head: int, block_size: int, length: int
) -> None:
    """backward_recorded's premise: the tape of a document's loss holds its whole graph but the
    parameters (made before), in an order where every node comes after its inputs; what else
    it holds (the probabilities of tokens that are not the target) the loss does not use."""
    config = GPTConfig(vocab_size=6, n_layer=n_layer, n_embd=n_embd, n_head=n_head, block_size=block_size)
    tokens = [random.Random(length).randrange(6) for _ in range(length)]
    _, loss, tape = _recorded_loss(config, tokens, granularity)
    graph = [node for node in topological_order(loss) if node.op.name != "param"]
    on_tape = {id(n) for n in tape}
    assert all(id(n) in on_tape for n in graph)
    assert all(n.tag.startswith("probs") for n in tape if id(n) not in {id(m) for m in graph})
    position = {id(node): k for k, node in enumerate(tape)}
    assert all(position[id(c)] < position[id(n)] for n in tape for c in n.children if c.op.name != "param")


def test_backward_recorded_gives_backwards_grads_to_float_rounding() -> None:
    from microgpt.engine import backward_recorded

    config = GPTConfig(vocab_size=7, n_layer=2, n_embd=8, n_head=2, block_size=8)
    tokens = [6, 1, 2, 3, 4, 5, 0, 6]
    model, loss, tape = _recorded_loss(config, tokens, "fused", seed=4)
    backward_recorded(loss, tape)
    recorded = [p.grad for p in model.params]
    model.zero_grad()
    loss.backward()
    for ours, reference in zip(recorded, (p.grad for p in model.params)):
        assert math.isclose(ours, reference, rel_tol=1e-12, abs_tol=1e-15)


@pytest.mark.parametrize("loss", ["training_loss", "document_loss"])
@pytest.mark.parametrize(("n_layer", "init_std"), [(1, 0.08), (2, 0.5)])
def test_a_lean_recording_gives_every_gradient_to_the_bit_with_fewer_nodes(
    loss: str, n_layer: int, init_std: float
) -> None:
    """recording(lean=True) leaves out the const leaves and the relu nodes (engine.recording):
    the loss and every parameter's grad are the same bits as the whole graph's."""
    from microgpt.engine import backward_recorded, recording

    config = GPTConfig(vocab_size=7, n_layer=n_layer, n_embd=8, n_head=2, block_size=8, init_std=init_std)
    model = GPT.initialise(config, random.Random(3))
    tokens = [6, 1, 2, 3, 4, 5, 1, 2, 6]
    results, tapes = [], []
    for lean in (False, True):
        with recording(lean=lean) as tape:
            root = model.training_loss(tokens) if loss == "training_loss" else model.document_loss(tokens, "fused")
        backward_recorded(root, tape)
        results.append([root.data.hex()] + [float(p.grad).hex() for p in model.params])
        tapes.append(tape)
        model.zero_grad()
    assert results[0] == results[1]
    full, lean_tape = ([n.op.name for n in tape] for tape in tapes)
    assert full.count("relu") == 8 * 4 * n_layer * (len(tokens) - 1) and "relu" not in lean_tape
    assert full.count("const") > 100 and lean_tape.count("const") == 1  # the shared 0 of dead units
    zero = tapes[1][0]  # made first: the 0 of every dead unit, in no dot product
    assert zero.op.name == "const" and not any(zero in n.children for n in tapes[1])
    pre = [n for n in tapes[1] if n.op.name == "dot" and len(n.children) == 16]  # fc1's, 8 wide
    assert any(n.data > 0 for n in pre) and any(n.data <= 0 for n in pre)  # live and dead units both


def test_lean_relu_keeps_nan_and_passes_nothing_back_through_a_dead_unit() -> None:
    """A dead unit's upstream grad is infinite here: the whole graph sends 0 × inf = NaN back;
    the lean one sends nothing, as PyTorch's relu does. relu of NaN keeps its node."""
    from microgpt.engine import backward_recorded, recording

    for lean in (False, True):
        dead, live, weight = Value(-2.0), Value(3.0), Value(1e308)
        with recording(lean=lean) as tape:
            nan, passed_on = Value(math.nan).relu(), live.relu()
            root = (dead.relu() * weight * 10.0) + passed_on * 2.0
        backward_recorded(root, tape)
        assert (live.grad, math.isnan(nan.data), nan.op.name) == (2.0, True, "relu")
        if lean:
            assert dead.grad == 0 and passed_on is live
        else:
            assert math.isnan(dead.grad)


def test_backward_recorded_keeps_ieee_zero_times_inf() -> None:
    """A node whose grad is 0 is skipped only when its local derivatives are finite: 0 × inf is NaN."""
    from microgpt.engine import backward_recorded, recording

    x = Value(1e-320)  # log's derivative 1/x overflows to inf
    with recording() as tape:
        root = x.log() * 0.0 + 1.0
    backward_recorded(root, tape)
    recorded = x.grad
    x.grad = 0
    root.backward()
    assert math.isnan(recorded) and math.isnan(x.grad)


def test_backward_recorded_ignores_a_node_the_root_does_not_depend_on() -> None:
    """An unused node with an infinite derivative (its grad is 0) must not pass 0 × inf = NaN on."""
    from microgpt.engine import backward_recorded, recording

    x = Value(1e-320)
    with recording() as tape:
        x.log()  # made, never used
        root = x * 2.0
    backward_recorded(root, tape)
    assert x.grad == 2.0


@pytest.mark.parametrize("granularity", ["atomic", "fused"])
def test_backward_without_an_order_gives_the_bits_of_backward_along_topological_order(granularity: str) -> None:
    """backward() sorts without a set (engine._computed_order, marking nodes by their grad):
    the same order of the computed nodes, so the same bits, and every intermediate grad set."""
    config = GPTConfig(vocab_size=7, n_layer=2, n_embd=8, n_head=2, block_size=8)
    model = GPT.initialise(config, random.Random(3))
    loss = model.document_loss([6, 1, 2, 3, 4, 5, 0, 6], granularity)
    runs = []
    for order in (None, topological_order(loss)):
        model.zero_grad()
        loss.backward(order)
        runs.append([float(n.grad).hex() for n in topological_order(loss) if n.children or n.op.name == "param"])
    assert runs[0] == runs[1]
    assert all(isinstance(n.grad, (int, float)) for n in topological_order(loss))


def test_backward_without_retaining_the_graph_gives_the_same_grads_and_lets_go_of_inputs() -> None:
    """Training's backward(retain_graph=False): the same bits for every parameter, while each
    computed node drops its inputs once it has passed them its grad (memory falls as it goes)."""
    config = GPTConfig(vocab_size=7, n_layer=1, n_embd=8, n_head=2, block_size=8)
    model = GPT.initialise(config, random.Random(5))
    grads = []
    for retain in (True, False):
        model.zero_grad()
        loss = model.document_loss([6, 1, 2, 3, 0, 6], "atomic")
        computed = [n for n in topological_order(loss) if n.children]
        loss.backward(retain_graph=retain)
        grads.append([float(p.grad).hex() for p in model.params])
        assert all(bool(n.children) == retain for n in computed)
    assert grads[0] == grads[1]
