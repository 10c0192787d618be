"""mgx diff weights: two checkpoints, or two snapshots of a run, compared element by element."""

from __future__ import annotations

import json
import math

from microgpt import checkpoint as ckpt_io
from tests.test_runs import mgx, one_error, train_tiny


def diff_json(*args: str) -> dict:
    result = mgx("diff", "weights", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_checkpoint_against_itself_is_empty(workdir) -> None:
    train_tiny("--steps", "3", "--no-record")
    report = diff_json("model.json", "model.json")
    assert report["identical"] and report["largest"] == []
    assert all(m["changed"] == 0 and m["norm_change"] == 0 for m in report["matrices"])
    text = mgx("diff", "weights", "model.json", "model.json")
    assert "no weight differs" in text.stdout


def test_checkpoints_a_few_steps_apart_name_the_weights_adam_moved_most(workdir) -> None:
    train_tiny("--steps", "3", "--out", "early.json", "--no-record")
    train_tiny("--steps", "6", "--out", "late.json", "--no-record")
    early, late = ckpt_io.load(workdir / "early.json"), ckpt_io.load(workdir / "late.json")
    moved = sorted(((abs(q.data - p.data), p.tag) for p, q in zip(early.model.params, late.model.params)), reverse=True)
    report = diff_json("early.json", "late.json", "--top", "5")
    assert [c["tag"] for c in report["largest"]] == [tag for _, tag in moved[:5]]
    assert (report["step_a"], report["step_b"]) == (3, 6)
    wte = next(m for m in report["matrices"] if m["name"] == "wte")
    expected = math.sqrt(sum((q.data - p.data) ** 2 for p, q in zip(early.model.params, late.model.params)
                             if p.tag.startswith("wte[")))  # fmt: skip
    assert abs(wte["norm_change"] - expected) < 1e-12 and set(wte["moments"]) == {"m", "v"}


def test_snapshots_of_a_run_and_a_pattern(workdir) -> None:
    train_tiny("--steps", "4", "--snapshot-every", "2")
    report = diff_json("model@2", "model@4", "--pattern", "attn.wq[0,*]")
    assert [m["name"] for m in report["matrices"]] == ["layer0.attn.wq"]
    (wq,) = report["matrices"]
    assert wq["elements"] == 8 and all(c["tag"].startswith("layer0.attn.wq[0,") for c in wq["largest"])
    same = diff_json("model@4", "model.json")  # the last snapshot is the checkpoint's state
    assert same["identical"]


def test_matrices_on_one_side_or_of_another_shape_are_listed(workdir) -> None:
    train_tiny("--steps", "1", "--no-record")
    train_tiny("--steps", "1", "--no-record", "--n-layer", "2", "--out", "deep.json")
    report = diff_json("model.json", "deep.json")
    only_b = [m["name"] for m in report["matrices"] if m["shape_a"] is None]
    assert only_b == [f"layer1.{n}" for n in ("attn.wq", "attn.wk", "attn.wv", "attn.wo", "mlp.fc1", "mlp.fc2")]
    assert not report["identical"]


def test_bad_sides_are_one_line(workdir) -> None:
    train_tiny("--steps", "2", "--snapshot-every", "2")
    assert "is neither a checkpoint file nor RUN@STEP" in one_error(mgx("diff", "weights", "nope", "model.json"))
    assert "no snapshot at step 1 (snapshots at: 2)" in one_error(mgx("diff", "weights", "model@1", "model.json"))
    assert "no run named 'other'" in one_error(mgx("diff", "weights", "other@2", "model.json"))
    assert "selects no weight matrix" in one_error(
        mgx("diff", "weights", "model.json", "model.json", "--pattern", "zz")
    )
