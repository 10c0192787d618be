"""The views' fast paths give what the full paths give: a checkpoint read without its Adam
moments (cli.common.parse_without_moments) makes the same model and the same graph, and a
damaged checkpoint fails with the same one-line error; a token's graph sorted once (for
backward and the Trace) is the graph sorted twice; tag groups noted by microgpt.scope as the
tags are made are the groups cut from the tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.common import parse_without_moments
from microgpt import checkpoint as ckpt_io
from microgpt.engine import Value, topological_order, zero_grad
from microgpt.errors import MicrogptError
from microgpt.graph import resolve_token, token_graph
from microgpt.train import AdamConfig, TrainState, start_run, train
from viz.trace import Trace, _group_name

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint after 3 steps of training: weights and Adam moments all set."""
    run = start_run(DOCS, n_layer=2, n_embd=8, n_head=2, block_size=8)
    state = TrainState()
    train(run.model, run.tokenizer, run.docs, 3, state)
    ckpt = ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), state, 3, 42, "test", "fused", run.rng)
    path = tmp_path_factory.mktemp("ckpt") / "model.json"
    ckpt_io.save(ckpt, path)
    return path


def without_moments(raw: dict) -> dict:
    raw = json.loads(json.dumps(raw))
    raw["optimizer"].pop("m", None)
    raw["optimizer"].pop("v", None)
    return raw


def graph_facts(model, tokenizer) -> list[tuple]:
    spec = resolve_token(tokenizer, model.config.block_size, word="ava", pos=2)
    trace = Trace(token_graph(model, spec).root)
    return [(i, n.op.name, n.data, n.grad) for i, n in zip(trace.ids, trace.nodes)]


def test_the_moments_are_skipped_and_everything_else_is_read(saved: Path) -> None:
    text = saved.read_text()
    full = json.loads(text)
    assert full["optimizer"]["m"] and full["optimizer"]["v"]
    assert parse_without_moments(text) == without_moments(full)


def test_the_model_and_its_graph_are_those_of_the_full_load(saved: Path) -> None:
    full = ckpt_io.load(saved)
    fast = ckpt_io.load(saved, parse_without_moments)
    assert fast.model.weight_data() == full.model.weight_data()
    assert fast.tokenizer.chars == full.tokenizer.chars
    assert fast.rng.getstate() == full.rng.getstate()
    assert (fast.state.step, fast.steps, fast.run_id, fast.data_sha256) == (
        full.state.step, full.steps, full.run_id, full.data_sha256,
    )  # fmt: skip
    assert full.state.m and not fast.state.m  # the views never use the moments
    assert graph_facts(fast.model, fast.tokenizer) == graph_facts(full.model, full.tokenizer)


def test_a_version_1_checkpoint_loads_the_same_way(saved: Path, tmp_path: Path) -> None:
    raw = json.loads(saved.read_text())
    raw["version"] = 1
    del raw["training"]["run_id"], raw["training"]["data_sha256"]
    old = tmp_path / "v1.json"
    old.write_text(json.dumps(raw, separators=(",", ":")))
    fast = ckpt_io.load(old, parse_without_moments)
    assert fast.run_id is None and fast.model.weight_data() == ckpt_io.load(old).model.weight_data()


@pytest.mark.parametrize(
    "layout",
    [
        lambda raw: json.dumps(raw, indent=1),  # whitespace: parsed whole
        lambda raw: json.dumps({**raw, "optimizer": {**raw["optimizer"], "m": {"wte": [["NaN"]]}}}),  # a string
        lambda raw: json.dumps({"optimizer": {"m": {}}, **raw}, separators=(",", ":")),  # keys repeated
        lambda raw: json.dumps(raw, separators=(",", ":")) + "  \n",  # space after the object
    ],
)
def test_any_other_layout_is_parsed_as_json_loads_parses_it(saved: Path, layout) -> None:
    text = layout(json.loads(saved.read_text()))
    expected = json.loads(text)
    got = parse_without_moments(text)
    assert got == expected or got == without_moments(expected)


def damage(raw: dict, how: str) -> str:
    compact = json.dumps(raw, separators=(",", ":"))
    if how == "truncated":
        return compact[: len(compact) // 2]
    if how == "truncated in the moments":
        return compact[: compact.index('"v":') + 40]
    if how == "extra data":
        return compact + "{}"
    if how == "not an object":
        return "[1, 2]"
    raw = json.loads(compact)
    if how == "a weight is a word":
        raw["weights"]["wte"][0][0] = "heavy"
    elif how == "weights of the wrong shape":
        raw["weights"]["wte"].pop()
    elif how == "no training":
        del raw["training"]
    elif how == "version 9":
        raw["version"] = 9
    elif how == "a moment is a word":
        raw["optimizer"]["m"]["wte"][0][0] = "heavy"
    elif how == "the optimizer is a list":
        raw["optimizer"] = [1]
    elif how == "bad adam":
        raw["optimizer"]["adam"]["lr"] = "fast"
    return json.dumps(raw, separators=(",", ":"))


@pytest.mark.parametrize(
    "how",
    [
        "truncated", "truncated in the moments", "extra data", "not an object", "a weight is a word",
        "weights of the wrong shape", "no training", "version 9", "a moment is a word", "the optimizer is a list",
        "bad adam",
    ],
)  # fmt: skip
def test_a_damaged_checkpoint_fails_with_the_same_error(saved: Path, tmp_path: Path, how: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(damage(json.loads(saved.read_text()), how))
    with pytest.raises(MicrogptError) as full:
        ckpt_io.load(bad)
    with pytest.raises(MicrogptError) as fast:
        ckpt_io.load(bad, parse_without_moments)
    assert str(fast.value) == str(full.value)
    assert "\n" not in str(fast.value)


def test_resume_still_checks_the_moments_the_views_skip(saved: Path, tmp_path: Path) -> None:
    """Moments of the wrong shape are not the views' business, but a full load refuses them."""
    raw = json.loads(saved.read_text())
    raw["optimizer"]["m"]["wte"].pop()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw, separators=(",", ":")))
    assert ckpt_io.load(bad, parse_without_moments).model.weight_data() == ckpt_io.load(saved).model.weight_data()
    with pytest.raises(MicrogptError, match="wte is not a"):
        ckpt_io.load(bad)


# -- one sort, groups noted when tags are made ----------------------------------------------


def test_a_token_graph_sorted_once_is_the_graph_sorted_twice(saved: Path) -> None:
    ckpt = ckpt_io.load(saved)
    spec = resolve_token(ckpt.tokenizer, ckpt.model.config.block_size, word="mia", pos=1)
    graph = token_graph(ckpt.model, spec)
    assert graph.order == topological_order(graph.root)
    once = [(n.data, n.grad) for n in graph.order]
    zero_grad(graph.root)
    graph.root.backward()  # sorts again
    assert [(n.data, n.grad) for n in graph.order] == once
    shared, own = Trace(graph.root, graph.order), Trace(graph.root)
    assert shared.nodes == own.nodes and shared.ids == own.ids and Trace.of(graph).nodes == own.nodes


def test_groups_noted_by_scope_are_the_groups_cut_from_the_tags(saved: Path) -> None:
    ckpt = ckpt_io.load(saved)
    spec = resolve_token(ckpt.tokenizer, ckpt.model.config.block_size, word="amelia", pos=3)
    for granularity in ("fused", "atomic"):
        trace = Trace(token_graph(ckpt.model, spec, granularity=granularity).root)
        assert [trace.group_of(i) for i in range(len(trace))] == list(map(_group_name, trace.tags))
        cut = [None if t is None or "[" not in t else t[t.find("[") + 1 : t.find("]")] for t in trace.tags]
        assert trace.element_indices == cut and trace.element_indices.count(None) < len(trace)


def test_tags_made_by_hand_are_grouped_too() -> None:
    a = Value(2.0, tag="hand.w[3,1]")
    b = Value(3.0, tag="hand.w[0,0]")
    c = Value(1.0)
    root = a * b + c
    root._tag = "hand.out[0]@pos2"
    trace = Trace(root)
    assert trace.groups == {"hand.w": [0, 1], "(untagged)": [2, 3], "hand.out@pos2": [4]}
    assert trace.element_indices == ["3,1", "0,0", None, None, "0"]
    assert trace.group_outputs("hand.w") == [0, 1] and trace.group_outputs("(untagged)") == [2, 3]
    c._tag, root._children[0]._tag = "hand.c", "hand.w[]@pos1"  # every node tagged: cut by group
    trace = Trace(root)
    assert trace.element_indices == ["3,1", "0,0", "", None, "0"] and trace.ids[4] == "hand.out[0]@pos2"
