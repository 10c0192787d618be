"""mgx inspect --adam: Adam's moments, bias-corrected, and the update the last step made."""

from __future__ import annotations

import json

import pytest

from tests.test_runs import mgx, one_error, train_tiny
from viz import runs


def test_the_last_update_is_what_the_last_step_added_to_each_weight(workdir) -> None:
    train_tiny("--steps", "4", "--snapshot-every", "1")
    result = mgx("inspect", "attn.wq", "--adam", "--json", "--checkpoint", "model.json")
    assert result.exit_code == 0, result.output
    nodes = {n["id"]: n for n in json.loads(result.stdout)["nodes"]}
    run_id = runs.list_runs("runs.sqlite")[0].id
    before, after = runs.read_snapshot("runs.sqlite", run_id, 3), runs.read_snapshot("runs.sqlite", run_id, 4)
    for r, c in ((0, 0), (3, 5), (7, 7)):
        adam = nodes[f"layer0.attn.wq[{r},{c}]"]["adam"]
        moved = after["layer0.attn.wq"]["data"][r][c] - before["layer0.attn.wq"]["data"][r][c]
        assert adam["update"] == pytest.approx(moved, rel=1e-9, abs=1e-18)
        assert adam["m"] == after["layer0.attn.wq"]["m"][r][c] and adam["v"] == after["layer0.attn.wq"]["v"][r][c]
        assert adam["m_hat"] == pytest.approx(adam["m"] / (1 - 0.85**4), rel=1e-15)
    text = mgx("inspect", "attn.wq", "--adam", "--checkpoint", "model.json", "--limit", "1")
    assert "Adam over 64 parameters" in text.stdout and "last update" in text.stdout


def test_adam_needs_a_trained_checkpoint_and_a_weight(workdir) -> None:
    train_tiny("--steps", "1", "--no-record")
    assert "selects no parameter" in one_error(mgx("inspect", "attn.h0.q", "--adam", "--checkpoint", "model.json"))
    (workdir / "model.json").unlink()  # so the views use a fresh model
    assert "needs a trained checkpoint" in one_error(mgx("inspect", "wte", "--adam", "--data", "tiny.txt"))
