"""mgx patch: edits replayed on the graph of one token, never silently doing nothing."""

from __future__ import annotations

import json

import pytest

from microgpt import checkpoint as ckpt_io
from microgpt.graph import resolve_token, token_graph
from tests.test_runs import mgx, one_error, train_tiny


@pytest.fixture
def trained(workdir):
    train_tiny("--steps", "5", "--no-record")
    return workdir / "model.json"


def patch_json(*args: str) -> dict:
    result = mgx("patch", "--checkpoint", "model.json", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("granularity", ["fused", "atomic"])
def test_zeroing_a_head_changes_the_loss_as_a_rerun_without_it_does(trained, granularity) -> None:
    report = patch_json("--set", "layer0.attn.h1.out=0", "--word", "emma", "--pos", "2", "--granularity", granularity)
    # head_dim 4 at position 2; earlier positions' head outputs feed only their own positions,
    # not in this graph, and with one layer they reach no key or value of position 2 either
    assert report["edits"][0]["selected"] == 4
    ckpt = ckpt_io.load(trained)
    hd = ckpt.model.config.head_dim
    for row in ckpt.model.weights["layer0.attn.wo"]:  # head 1's output enters wo through columns hd..2hd
        for p in row[hd : 2 * hd]:
            p.data = 0.0
    spec = resolve_token(ckpt.tokenizer, ckpt.model.config.block_size, word="emma", pos=2)
    rerun = token_graph(ckpt.model, spec, granularity=granularity, backward=False).root.data
    assert report["loss"]["after"] == pytest.approx(rerun, rel=1e-12, abs=1e-15)
    assert report["loss"]["after"] != report["loss"]["before"]


def test_only_nodes_downstream_of_the_edit_change(trained) -> None:
    from viz.patch import Edit, apply_edits
    from viz.trace import Trace

    ckpt = ckpt_io.load(trained)
    spec = resolve_token(ckpt.tokenizer, ckpt.model.config.block_size, word="emma", pos=1)
    trace = Trace(token_graph(ckpt.model, spec).root)
    result = apply_edits(trace, [Edit("set", "layer0.attn.h0.out@pos1", 0.0)], lambda e, n: [])
    edited = set(result.edits[0].nodes)
    assert set(result.changed_nodes) - edited <= set(result.downstream)
    assert all(trace.tag_parts[i].pos == 1 for i in result.changed_nodes)  # nothing at position 0 moves


def test_patching_from_the_same_word_changes_nothing_and_says_so(trained) -> None:
    result = mgx("patch", "--checkpoint", "model.json", "--from", "emma", "layer0.attn.h0.out", "--word", "emma")
    assert result.exit_code == 0, result.output
    assert "changes nothing: its 4 elements already have those values" in result.stderr
    report = patch_json("--from", "emma", "layer0.attn.h0.out", "--word", "emma")
    assert report["loss"]["before"] == report["loss"]["after"] and report["changed"] == 0


def test_a_query_at_position_0_cannot_change_the_loss_and_it_says_why(trained) -> None:
    report = patch_json("--set", "layer0.attn.h0.score=7", "--pos", "0")
    assert report["loss"]["before"] == report["loss"]["after"]
    assert any("a softmax over one position is 1 whatever its score" in note for note in report["notes"])


def test_activation_patching_from_another_word_and_mean_ablation(trained) -> None:
    other = patch_json("--from", "ava", "layer0.mlp.post", "--word", "emma", "--pos", "1")
    assert other["loss"]["after"] != other["loss"]["before"]
    mean = patch_json("--mean", "layer0.mlp.post@pos0", "--docs", "7", "--data", "tiny.txt", "--backward")
    assert "grads" in mean and any("the mean over 7 documents" in note for note in mean["notes"])


def test_bad_edits_are_one_line(trained) -> None:
    assert "matches no node" in one_error(mgx("patch", "--checkpoint", "model.json", "--set", "nothing.here=0"))
    assert "is not PATTERN=NUMBER" in one_error(mgx("patch", "--checkpoint", "model.json", "--set", "attn.h0.out"))
    assert "no edit given" in one_error(mgx("patch", "--checkpoint", "model.json"))
    assert "has no position 5" in one_error(mgx("patch", "--checkpoint", "model.json", "--pos", "5",
                                                "--word", "isabella", "--from", "ava", "attn.h0.out"))  # fmt: skip


def test_patch_writes_the_viewer_coloured_by_what_changed(trained) -> None:
    import re

    result = mgx("patch", "--checkpoint", "model.json", "--pos", "2", "--set", "layer0.attn.h1.out=0", "-o", "p.html")
    assert result.exit_code == 0, result.output
    html = trained.with_name("p.html").read_text()
    raw = json.loads(re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', html, re.S)[1])
    compare = raw["compare"]
    assert compare["label"] == "after --set layer0.attn.h1.out=0" and compare["only_a"] == 0
    edited = [i for i, node_id in enumerate(raw["ids"]) if node_id.startswith("layer0.attn.h1.out[")]
    assert edited and all(compare["data"][i] == 0 for i in edited)
    assert compare["delta_data"][raw["ids"].index("wpe[2,0]")] == 0  # a weight: upstream of every edit
    assert "ending in .html" in one_error(mgx("patch", "--checkpoint", "model.json", "--set", "wte=0", "-o", "p.png"))


def test_grads_before_are_backwards_even_when_other_graphs_are_built(trained) -> None:
    plain = patch_json("--set", "layer0.mlp.post@pos1=0", "--pos", "1", "--backward", "--top", "50")
    mean = patch_json("--mean", "layer0.mlp.post@pos1", "--pos", "1", "--docs", "3", "--data", "tiny.txt",
                      "--backward", "--top", "50")  # fmt: skip
    before = {g["node"]: g["before"] for g in plain["grads"]}
    weights = [g for g in mean["grads"] if g["node"].startswith("layer0.mlp.fc") and g["node"] in before]
    assert weights and all(g["before"] == before[g["node"]] for g in weights)
    assert any(g["before"] != 0 for g in weights)


def test_diff_graph_takes_a_mean_or_activation_patch_as_side_b(trained) -> None:
    report = json.loads(
        mgx(
            "diff",
            "graph",
            "--checkpoint",
            "model.json",
            "--pos",
            "1",
            "--json",
            "--patch-b",
            "from:ava:layer0.mlp.post",
        ).stdout
    )
    assert report["first_difference"]["node"].startswith("layer0.mlp.post[")
    mean = mgx("diff", "graph", "--checkpoint", "model.json", "--data", "tiny.txt", "--pos", "1",
               "--patch-b", "mean:layer0.mlp.post@pos1")  # fmt: skip
    assert mean.exit_code == 0 and "the mean over" in mean.stderr
    assert "is not an edit" in one_error(mgx("diff", "graph", "--checkpoint", "model.json", "--patch-b", "from:ava"))


def test_the_page_shows_the_graph_that_was_compared(trained) -> None:
    """With --word and no --pos the views mean position 0's graph; the page is that graph too,
    not the whole word's that mgx graph would draw (it once was, and B's numbers missed it)."""
    import re

    for command in (
        ["patch", "--word", "emma", "--set", "layer0.attn.h0.out=0", "-o", "w.html"],
        ["diff", "graph", "--word", "emma", "--patch-b", "set:layer0.attn.h0.out=0", "-o", "w.html"],
    ):
        result = mgx(*command, "--checkpoint", "model.json", "--json")
        assert result.exit_code == 0, result.output
        html = trained.with_name("w.html").read_text()
        raw = json.loads(re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', html, re.S)[1])
        assert len(raw["compare"]["data"]) == len(raw["ids"])
        assert all("@pos" not in node_id or "@pos0" in node_id for node_id in raw["ids"])
