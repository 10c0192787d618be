"""mgx diff graph: two token graphs matched node by node by their stable ids."""

from __future__ import annotations

import json

import pytest

from microgpt import checkpoint as ckpt_io
from microgpt.graph import resolve_token, token_graph
from tests.test_runs import mgx, one_error, train_tiny
from viz.trace import Trace


@pytest.fixture
def trained(workdir):
    train_tiny("--steps", "3", "--no-record", "--out", "early.json")
    train_tiny("--steps", "6", "--no-record")
    return workdir


def diff_json(*args: str) -> dict:
    result = mgx("diff", "graph", "--checkpoint", "model.json", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ids_match_across_runs_and_a_graph_against_itself_is_empty(trained) -> None:
    ckpt = ckpt_io.load(trained / "model.json")
    spec = resolve_token(ckpt.tokenizer, ckpt.model.config.block_size, word="emma", pos=2)
    first = Trace(token_graph(ckpt.model, spec).root).ids
    again = Trace(token_graph(ckpt_io.load(trained / "model.json").model, spec).root).ids
    assert first == again
    report = diff_json("--pos", "2", "--checkpoint-b", "model.json")
    assert report["identical"] and report["matched"] == len(first) and report["first_difference"] is None


def test_a_patched_replay_differs_first_at_the_edited_node(trained) -> None:
    report = diff_json("--pos", "2", "--patch-b", "set:layer0.attn.h1.out=0")
    assert report["first_difference"]["node"].startswith("layer0.attn.h1.out[")
    assert report["first_difference"]["b"] == 0
    assert "layer0.attn.h1.out@pos2" in [g["group"] for g in report["groups"]]
    assert not report["only_a"] and not report["only_b"]


def test_two_checkpoints_on_one_token_differ_everywhere_downstream_of_the_weights(trained) -> None:
    report = diff_json("--pos", "1", "--checkpoint-b", "early.json")
    assert report["first_difference"] is not None and report["groups"]
    assert {"wte", "lm_head"} <= {g["group"] for g in report["groups"]}


def test_nodes_on_one_side_only_are_listed_never_dropped(trained) -> None:
    report = diff_json("--pos", "1", "--pos-b", "2")
    ckpt = ckpt_io.load(trained / "model.json")
    sizes = []
    for pos in (1, 2):
        spec = resolve_token(ckpt.tokenizer, ckpt.model.config.block_size, word="emma", pos=pos)
        sizes.append(len(Trace(token_graph(ckpt.model, spec).root).ids))
    assert report["matched"] + len(report["only_a"]) == sizes[0]
    assert report["matched"] + len(report["only_b"]) == sizes[1]
    assert any(node.endswith("@pos2") for node in report["only_b"])
    text = mgx("diff", "graph", "--checkpoint", "model.json", "--pos", "1", "--pos-b", "2")
    assert "only in B:" in text.stdout


def test_bad_sides_are_one_line(trained) -> None:
    assert "side B is side A" in one_error(mgx("diff", "graph", "--checkpoint", "model.json"))
    assert "without other -b options" in one_error(
        mgx("diff", "graph", "--checkpoint", "model.json", "--patch-b", "set:attn.h0.out=0", "--pos-b", "1")
    )
    assert "is not an edit" in one_error(mgx("diff", "graph", "--checkpoint", "model.json", "--patch-b", "zero"))
    assert "--tolerance must be 0 or more" in one_error(
        mgx("diff", "graph", "--checkpoint", "model.json", "--pos-b", "1", "--tolerance", "-1")
    )
