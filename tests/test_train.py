"""Training and sampling: the reference run digit for digit, checkpoints, resume, Ctrl-C."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

from microgpt import checkpoint as ckpt_io
from microgpt.data import load_documents
from microgpt.engine import Value, backward_recorded, dot, recording
from microgpt.errors import MicrogptError
from microgpt.scope import tagging_enabled
from microgpt.train import (
    AdamConfig,
    Diverged,
    TrainState,
    adam_update,
    describe_origin,
    first_non_finite,
    sample,
    start_run,
    train,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAMES = SHARED / "data" / "names.txt"
REFERENCE = SHARED / "reference"
needs_shared = pytest.mark.skipif(not NAMES.is_file(), reason=f"the reference data is absent: {NAMES}")

TINY_DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"]
TINY_CONFIG = {"n_embd": 8, "n_head": 2, "block_size": 8}


def reference_losses() -> list[str]:
    return [line.split()[1] for line in (REFERENCE / "loss-trace.txt").read_text().splitlines()]


def within_one_unit(ours: list[float], printed: list[str]) -> list[tuple[int, str, str]]:
    """Steps whose loss differs from the printed one by more than one unit of the 4th decimal."""
    return [
        (i + 1, f"{loss:.4f}", ref)
        for i, (loss, ref) in enumerate(zip(ours, printed))
        if abs(loss - float(ref)) > 0.00011
    ]


class StopAfter(Exception):
    pass


def run_steps(granularity: str, steps: int) -> list[float]:
    """Train the reference run (1,000-step schedule) and stop after ``steps`` steps."""
    run = start_run(load_documents(NAMES).docs, seed=42)
    losses: list[float] = []

    def on_step(done: int, loss: float) -> None:
        losses.append(loss)
        if done == steps:
            raise StopAfter

    with pytest.raises(StopAfter):
        train(run.model, run.tokenizer, run.docs, 1000, TrainState(), granularity=granularity, on_step=on_step)
    return losses


@needs_shared
@pytest.mark.parametrize("granularity", ["fused", "atomic"])
def test_first_100_steps_reproduce_the_reference_loss_trace(granularity: str) -> None:
    losses = run_steps(granularity, 100)
    assert len(losses) == 100
    assert within_one_unit(losses, reference_losses()[:100]) == []


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("granularity", ["fused", "atomic"])
def test_the_full_reference_run_and_its_samples(granularity: str) -> None:
    run = start_run(load_documents(NAMES).docs, seed=42)
    losses: list[float] = []
    train(
        run.model,
        run.tokenizer,
        run.docs,
        1000,
        TrainState(),
        granularity=granularity,
        on_step=lambda _s, loss: losses.append(loss),
    )
    assert within_one_unit(losses, reference_losses()) == []
    names = [sample(run.model, run.tokenizer, run.rng, temperature=0.5) for _ in range(20)]
    assert names == (REFERENCE / "samples.txt").read_text().split()


@pytest.mark.parametrize("granularity", ["fused", "atomic"])
def test_a_step_frees_its_graph_before_the_next_step_builds_one(granularity: str) -> None:
    """Two graphs alive at once would double training's peak memory, and a graph alive when
    the collector resumes makes it walk every node."""
    import gc

    def values_alive() -> int:
        return sum(isinstance(o, Value) for o in gc.get_objects())

    run = start_run(TINY_DOCS, seed=1, **TINY_CONFIG)
    gc.collect()
    before = values_alive()  # the parameters, and whatever other tests left
    alive: list[int] = []

    def on_step(done: int, loss: float) -> None:
        alive.append(values_alive() - before)

    train(run.model, run.tokenizer, run.docs, 3, TrainState(), granularity=granularity, on_step=on_step)
    assert alive == [0, 0, 0]


@needs_shared
def test_training_loss_is_document_loss_to_the_bit_in_value_and_every_gradient() -> None:
    """Training's one cross-entropy node stands for the fused softmaxes, logs and mean (both
    backpropagated as training does it, in reverse creation order)."""
    run = start_run(load_documents(NAMES).docs, seed=42)
    for document in [*run.docs[:40], "abcdefghijklmnopqrstuvwxyz"]:  # the last one fills the context
        tokens = run.tokenizer.document_tokens(document)
        results = []
        for training in (False, True):
            with recording() as tape:
                loss = run.model.training_loss(tokens) if training else run.model.document_loss(tokens, "fused")
            backward_recorded(loss, tape)
            results.append([float(loss.data).hex()] + [float(p.grad).hex() for p in run.model.params])
            run.model.zero_grad()
        assert results[0] == results[1], document


def test_the_non_finite_check_tells_an_overflowing_sum_from_a_non_finite_value() -> None:
    from microgpt.train import _first_non_finite_index

    assert _first_non_finite_index([1e308, 1e308, -1.0]) is None  # finite, though their sum is not
    assert _first_non_finite_index([1.0, 2.0, math.nan, math.inf]) == 2
    assert _first_non_finite_index([0.5, -math.inf]) == 1


def test_adam_matches_the_formula_by_hand() -> None:
    run = start_run(TINY_DOCS, seed=1, **TINY_CONFIG)
    p = run.model.params[0]
    before = p.data
    run.model.document_loss(run.tokenizer.document_tokens("emma")).backward()
    g = p.grad
    state = TrainState()
    adam = AdamConfig()
    adam_update(run.model, state, adam, step=0, steps=10)
    m = (1 - adam.beta1) * g
    v = (1 - adam.beta2) * g**2
    m_hat, v_hat = m / (1 - adam.beta1), v / (1 - adam.beta2)
    assert p.data == before - adam.lr * 1.0 * m_hat / (v_hat**0.5 + adam.eps)
    assert p.grad == 0 and state.m[0] == m and state.v[0] == v


def test_the_same_seed_gives_the_same_run_and_another_seed_does_not() -> None:
    def losses(seed: int) -> list[float]:
        run = start_run(TINY_DOCS, seed=seed, **TINY_CONFIG)
        out: list[float] = []
        train(run.model, run.tokenizer, run.docs, 5, TrainState(), on_step=lambda _s, loss: out.append(loss))
        return out

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


def test_checkpoint_round_trip_keeps_everything(tmp_path: Path) -> None:
    run = start_run(TINY_DOCS, seed=7, **TINY_CONFIG)
    state = train(run.model, run.tokenizer, run.docs, 3, TrainState())
    ckpt = ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), state, 10, 7, "tiny", "fused", run.rng)
    path = tmp_path / "m.json"
    ckpt_io.save(ckpt, path)
    loaded = ckpt_io.load(path)
    assert loaded.model.weight_data() == run.model.weight_data()
    assert loaded.state.m == state.m and loaded.state.v == state.v and loaded.state.step == 3
    assert loaded.rng.getstate() == run.rng.getstate()
    assert (loaded.steps, loaded.seed, loaded.data_source, loaded.granularity) == (10, 7, "tiny", "fused")
    assert loaded.tokenizer == run.tokenizer
    assert [p.tag for p in loaded.model.params] == [p.tag for p in run.model.params]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_an_interrupted_run_resumes_to_the_same_losses(tmp_path: Path) -> None:
    def fresh():
        return start_run(TINY_DOCS, seed=5, **TINY_CONFIG)

    whole = fresh()
    expected: list[float] = []
    train(whole.model, whole.tokenizer, whole.docs, 12, TrainState(), on_step=lambda _s, loss: expected.append(loss))

    first = fresh()
    got: list[float] = []
    state = TrainState()

    def stop_at_5(done: int, loss: float) -> None:
        got.append(loss)
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(first.model, first.tokenizer, first.docs, 12, state, on_step=stop_at_5)
    path = tmp_path / "m.json"
    ckpt_io.save(
        ckpt_io.Checkpoint(first.model, first.tokenizer, AdamConfig(), state, 12, 5, "t", "fused", first.rng), path
    )
    resumed = ckpt_io.load(path)
    train(resumed.model, first.tokenizer, first.docs, 12, resumed.state, on_step=lambda _s, loss: got.append(loss))
    assert got == expected
    assert resumed.model.weight_data() == whole.model.weight_data()


def test_sampling_continues_the_random_state_and_respects_the_prefix() -> None:
    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    state = run.rng.getstate()
    first = [sample(run.model, run.tokenizer, run.rng) for _ in range(5)]
    run.rng.setstate(state)
    assert [sample(run.model, run.tokenizer, run.rng) for _ in range(5)] == first
    assert all(sample(run.model, run.tokenizer, random.Random(i), prefix="em").startswith("em") for i in range(5))
    assert all(len(name) <= TINY_CONFIG["block_size"] for name in first)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature must be a positive number"),
        ({"prefix": "xyz"}, "not in the vocabulary"),
        ({"prefix": "emmaemmaemma"}, "fills the whole context"),
    ],
)
def test_bad_sampling_input_is_named(kwargs: dict, message: str) -> None:
    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    with pytest.raises(MicrogptError, match=message):
        sample(run.model, run.tokenizer, run.rng, **kwargs)


def test_bad_training_input_is_named() -> None:
    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    with pytest.raises(MicrogptError, match="steps must be at least 1"):
        train(run.model, run.tokenizer, run.docs, 0, TrainState())


def test_a_diverging_run_stops_naming_the_step_and_changes_nothing_of_it() -> None:
    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    state = TrainState()
    done: list[dict] = []
    with pytest.raises(Diverged) as info:
        train(
            run.model, run.tokenizer, run.docs, 50, state, adam=AdamConfig(lr=1e300),
            on_step=lambda _s, _l: done.append(run.model.weight_data()),
        )  # fmt: skip
    assert info.value.step == state.step + 1 and f"at step {info.value.step}" in str(info.value)
    assert run.model.weight_data() == done[-1]  # the weights after the last good step


def test_a_non_finite_loss_names_its_origin() -> None:
    run = start_run(TINY_DOCS, seed=42, **TINY_CONFIG)
    run.model.weights["wte"][run.tokenizer.bos][3].data = 1e308  # BOS starts every document
    run.model.weights["wpe"][0][3].data = 1e308  # their sum overflows: embed[3]@pos0 is inf
    with pytest.raises(Diverged) as info:
        train(run.model, run.tokenizer, run.docs, 5, TrainState())
    e = info.value
    assert e.step == 1 and e.origin == "embed[3]@pos0" and e.document == run.docs[0]
    assert "the loss is nan, starting at embed[3]@pos0 (op add, inputs 1e+308, 1e+308)" in str(e)
    assert tagging_enabled()  # training builds its graphs untagged, and turns tagging back on


def test_training_builds_untagged_graphs_and_leaves_tagging_as_it_was() -> None:
    run = start_run(TINY_DOCS, seed=42, **TINY_CONFIG)
    tags: list[str | None] = []
    build = run.model.training_loss

    def training_loss(tokens: list[int], cache=None) -> Value:
        loss = build(tokens, cache)
        tags.append(loss.children[0].tag)  # the first logit's
        return loss

    run.model.training_loss = training_loss  # type: ignore[method-assign]
    train(run.model, run.tokenizer, run.docs, 1, TrainState())
    assert tags == [None] and tagging_enabled()
    assert build(run.tokenizer.document_tokens("emma")).children[0].tag == "logits[0]@pos0"


def test_the_origin_is_the_first_node_in_topological_order_whose_inputs_are_finite() -> None:
    a, b = Value(1e200, tag="a"), Value(1e200, tag="b")
    product = a * b  # inf: the origin
    product._tag = "product"
    later = (product + 1) * 0  # inf * 0 = nan, downstream of the origin
    origin = first_non_finite(later)
    assert origin is product
    assert describe_origin(origin) == "product (op mul, inputs 1e+200, 1e+200)"
    many = dot([Value(1.0), Value(2.0), Value(3.0)], [Value(4.0), Value(-1e300), Value(5.0)])
    many._tag = "many"
    assert describe_origin(many) == "many (op dot, inputs 1, 2, 3 … 6 in all, largest -1e+300)"


def test_adam_does_not_raise_on_a_huge_gradient() -> None:
    run = start_run(TINY_DOCS, seed=1, **TINY_CONFIG)
    p = run.model.params[0]
    before = p.data
    p.grad = 1e200  # its square overflows (Python's ** raises OverflowError)
    state = TrainState()
    adam_update(run.model, state, AdamConfig(), step=0, steps=10)
    assert state.v[0] == math.inf and p.data == before  # m̂/√v̂ = 0: the weight stays
    assert all(math.isfinite(q.data) for q in run.model.params)


@pytest.mark.parametrize(
    ("grad", "lr", "message"),
    [
        (math.nan, 0.01, "the gradient of wte[0,0] is nan"),
        (-math.inf, 0.01, "the gradient of wte[0,0] is -inf"),
        (1.0, 1e308, "the update would make wte[0,0]"),
    ],
)
def test_adam_refuses_a_non_finite_gradient_or_update_and_changes_nothing(grad, lr, message) -> None:
    run = start_run(TINY_DOCS, seed=1, **TINY_CONFIG)
    run.model.weights["wte"][0][0].data = -1.7e308  # lr 1e308 takes it past the largest float
    before = run.model.weight_data()
    run.model.params[0].grad = grad
    state = TrainState(step=3, m=[0.5] * len(run.model.params), v=[0.25] * len(run.model.params))
    with pytest.raises(Diverged, match=re.escape(message)) as info:
        adam_update(run.model, state, AdamConfig(lr=lr), step=3, steps=10)
    assert info.value.step == 4
    assert run.model.weight_data() == before
    assert state == TrainState(step=3, m=[0.5] * len(run.model.params), v=[0.25] * len(run.model.params))


def test_adam_is_the_reference_formula_bit_for_bit_over_several_steps() -> None:
    """The reference's Adam, inline, on a copy of the same run: the same bits after 4 steps.
    (Atomic: its backward is the reference's, to the bit; fused training's may move last bits.)"""
    ours, theirs = start_run(TINY_DOCS, seed=3, **TINY_CONFIG), start_run(TINY_DOCS, seed=3, **TINY_CONFIG)
    with pytest.raises(_Stop):
        train(ours.model, ours.tokenizer, ours.docs, 10, TrainState(), granularity="atomic", on_step=_stop_at_4)
    adam, params = AdamConfig(), theirs.model.params
    m, v = [0.0] * len(params), [0.0] * len(params)
    for step in range(4):
        theirs.model.document_loss(theirs.tokenizer.document_tokens(theirs.docs[step]), "atomic").backward()
        lr_t = adam.lr * (1 - step / 10)
        for i, p in enumerate(params):
            m[i] = adam.beta1 * m[i] + (1 - adam.beta1) * p.grad
            v[i] = adam.beta2 * v[i] + (1 - adam.beta2) * p.grad**2
            m_hat = m[i] / (1 - adam.beta1 ** (step + 1))
            v_hat = v[i] / (1 - adam.beta2 ** (step + 1))
            p.data -= lr_t * m_hat / (v_hat**0.5 + adam.eps)
            p.grad = 0
    assert ours.model.weight_data() == theirs.model.weight_data()


class _Stop(Exception):
    pass


def _stop_at_4(done: int, _loss: float) -> None:
    if done == 4:
        raise _Stop


def test_sampling_a_model_whose_probabilities_are_not_finite_is_named() -> None:
    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    run.model.weights["lm_head"][0][0].data = math.nan
    with pytest.raises(MicrogptError, match="is nan: the model's numbers overflow"):
        sample(run.model, run.tokenizer, run.rng)
    with pytest.raises(MicrogptError, match="reciprocal is finite"):
        sample(start_run(TINY_DOCS, seed=2, **TINY_CONFIG).model, run.tokenizer, run.rng, temperature=1e-320)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw.update(format="something-else"), "not a microgpt-x checkpoint"),
        (lambda raw: raw.update(version=99), "version 99"),
        (lambda raw: raw["weights"].pop("wte"), "weights are"),
        (lambda raw: raw["weights"]["wte"][0].pop(), "wte is not a"),
        (lambda raw: raw["weights"]["wpe"][0].__setitem__(0, "x"), "non-number"),
        (lambda raw: raw.update(vocabulary="ab"), "does not match vocab_size"),
        (lambda raw: raw["config"].update(n_head=3), "does not divide"),
        (lambda raw: raw.pop("training"), "no 'training'"),
        (lambda raw: raw.update(random_state=[1, 2]), "random_state is malformed"),
        (lambda raw: raw.update(version=True), "version True"),
        (lambda raw: raw["training"].pop("run_id"), "no 'run_id'"),
        (lambda raw: raw["training"].update(step=11), "done step 11 of 10, which is impossible"),
        (lambda raw: raw["training"].update(granularity="huge"), "'huge' is not atomic or fused"),
        (lambda raw: raw["optimizer"]["adam"].update(lr="NaN"), "adam.lr is 'NaN', not a finite number"),
        (lambda raw: raw["weights"]["wpe"][0].__setitem__(0, "nan"), "non-number 'nan'"),
        (lambda raw: raw["weights"]["wpe"][0].__setitem__(0, None), "non-number None"),
    ],
)
def test_corrupt_or_foreign_checkpoints_are_named(tmp_path: Path, mutate, message: str) -> None:
    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    ckpt = ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), TrainState(), 10, 2, "t", "fused", run.rng)
    raw = ckpt_io.to_json(ckpt)
    mutate(raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(MicrogptError, match=message):
        ckpt_io.load(path)


def strict_json(text: str):
    """Parse as a strict JSON parser does: the bare NaN / Infinity tokens are refused."""

    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_checkpoint_has_version_2_and_a_run_id_drawn_outside_the_training_rng(tmp_path: Path) -> None:
    run = start_run(TINY_DOCS, seed=7, **TINY_CONFIG)
    state = run.rng.getstate()
    one = ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), TrainState(), 10, 7, "tiny", "fused", run.rng)
    two = ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), TrainState(), 10, 7, "tiny", "fused", run.rng)
    assert run.rng.getstate() == state  # sampling after training draws the same names
    assert one.run_id != two.run_id and re.fullmatch("[0-9a-f]{32}", one.run_id)
    ckpt_io.save(one, tmp_path / "m.json")
    raw = json.loads((tmp_path / "m.json").read_text())
    assert raw["version"] == 2 and raw["training"]["run_id"] == one.run_id
    assert ckpt_io.load(tmp_path / "m.json").run_id == one.run_id == ckpt_io.stored_run_id(tmp_path / "m.json")


def test_a_version_1_checkpoint_still_loads(tmp_path: Path) -> None:
    run = start_run(TINY_DOCS, seed=7, **TINY_CONFIG)
    state = train(run.model, run.tokenizer, run.docs, 2, TrainState())
    raw = ckpt_io.to_json(
        ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), state, 5, 7, "t", "fused", run.rng)
    )
    raw["version"] = 1
    del raw["training"]["run_id"], raw["training"]["data_sha256"]
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(raw))
    loaded = ckpt_io.load(path)
    assert loaded.run_id is None and ckpt_io.stored_run_id(path) is None and loaded.data_sha256 is None
    assert loaded.model.weight_data() == run.model.weight_data() and loaded.state.step == 2


def test_non_finite_weights_and_moments_are_strict_json_and_load_back(tmp_path: Path) -> None:
    run = start_run(TINY_DOCS, seed=7, **TINY_CONFIG)
    state = train(run.model, run.tokenizer, run.docs, 1, TrainState())
    weights = run.model.weights
    weights["wte"][1][2].data, weights["wpe"][0][0].data, weights["lm_head"][3][1].data = math.nan, math.inf, -math.inf
    state.m[5], state.v[6] = -math.inf, math.inf
    path = tmp_path / "m.json"
    ckpt_io.save(ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), state, 5, 7, "t", "fused", run.rng), path)
    raw = strict_json(path.read_text())
    assert (raw["weights"]["wte"][1][2], raw["weights"]["wpe"][0][0]) == ("NaN", "Infinity")
    assert raw["weights"]["lm_head"][3][1] == "-Infinity"
    loaded = ckpt_io.load(path)
    assert [(p.tag, str(p.data)) for p in loaded.non_finite_weights()] == [
        ("wte[1,2]", "nan"),
        ("wpe[0,0]", "inf"),
        ("lm_head[3,1]", "-inf"),
    ]
    assert (loaded.state.m[5], loaded.state.v[6]) == (-math.inf, math.inf)
    finite = [p.data for p in loaded.model.params if math.isfinite(p.data)]
    assert finite == [p.data for p in run.model.params if math.isfinite(p.data)]


def test_a_checkpoint_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b"\x00\xff not json")
    with pytest.raises(MicrogptError, match="not valid JSON"):
        ckpt_io.load(path)


def test_a_damaged_checkpoint_names_what_is_wrong_and_the_fix(tmp_path) -> None:
    import json as _json

    from microgpt import checkpoint as ckpt_io
    from microgpt.errors import MicrogptError

    path = tmp_path / "m.json"
    path.write_text(_json.dumps({"format": "microgpt-x-checkpoint", "version": 2, "config": "wide"}))
    with pytest.raises(MicrogptError) as caught:
        ckpt_io.load(path)
    message = str(caught.value)
    assert "'config' has the wrong type (str)" in message and "train a new one with `mgx train --out" in message
    assert "\n" not in message
