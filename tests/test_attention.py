"""mgx attention: every head's weights over a name, from viz.attention (the viewer's too)."""

from __future__ import annotations

import math

from microgpt import checkpoint as ckpt_io
from microgpt.graph import resolve_token, token_graph, word_graph
from tests.test_runs import mgx, one_error, train_tiny
from viz.plots import attention_picture
from viz.trace import Trace


def test_the_weights_are_the_graph_nodes_of_the_same_tags(workdir) -> None:
    train_tiny("--steps", "3", "--no-record")
    ckpt = ckpt_io.load(workdir / "model.json")
    tokens = ckpt.tokenizer.document_tokens("emma")
    trace = Trace(*word_graph(ckpt.model, tokens, backward=False))
    picture = attention_picture(trace, "emma", ["BOS", "e", "m", "m", "a"])
    assert [head for head, _ in picture.heads] == ["layer0.attn.h0", "layer0.attn.h1"]
    for _, rows in picture.heads:
        assert [len(row) for row in rows] == [1, 2, 3, 4, 5]  # the causal triangle
        assert all(math.isclose(math.fsum(row), 1.0, rel_tol=1e-12) for row in rows)
    spec = resolve_token(ckpt.tokenizer, ckpt.model.config.block_size, word="emma", pos=3)
    token = Trace(token_graph(ckpt.model, spec).root)
    by_id = dict(zip(token.ids, token.nodes))
    assert [by_id[f"layer0.attn.h1.weights[{k}]@pos3"].data for k in range(4)] == picture.heads[1][1][3]


def test_mgx_attention_draws_the_same_bytes_and_prints_cells(workdir) -> None:
    train_tiny("--steps", "2", "--no-record")
    for name in ("a.png", "b.png", "a.svg", "b.svg"):
        result = mgx("attention", "--word", "ava", "-o", name)
        assert result.exit_code == 0, result.output
    assert (workdir / "a.png").read_bytes() == (workdir / "b.png").read_bytes()
    assert (workdir / "a.svg").read_bytes() == (workdir / "b.svg").read_bytes()
    text = mgx("attention", "--word", "ava", "--no-color")
    assert text.exit_code == 0 and "layer0.attn.h1" in text.stdout and "BOS  100" in text.stdout
    assert "outside the vocabulary" in one_error(mgx("attention", "--word", "zoë"))
    assert "give -o a name ending in .png or .svg" in one_error(mgx("attention", "-o", "a.pdf"))
