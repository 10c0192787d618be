"""mgx health: planted dead units and a collapsed head are found by name; the recorded run's
findings (update ratios, initial loss) come with the command that shows them."""

from __future__ import annotations

import json

from microgpt import checkpoint as ckpt_io
from tests.test_runs import mgx, one_error, train_tiny


def health_json(*args: str) -> dict:
    result = mgx("health", "--json", "--data", "tiny.txt", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_trained_tiny_model_is_reported_with_its_run(workdir) -> None:
    train_tiny("--steps", "20")
    report = health_json("--checkpoint", "model.json", "--docs", "7")
    assert report["documents"] == 7 and report["run"] == "model"
    assert [h["head"] for h in report["heads"]] == ["layer0.attn.h0", "layer0.attn.h1"]
    assert report["units"] == {"layer0.mlp": 32}
    kinds = {f["kind"] for f in report["findings"]}
    assert kinds <= {"update_ratio", "initial_loss", "dead_units"}
    text = mgx("health", "--checkpoint", "model.json", "--data", "tiny.txt", "--docs", "7")
    assert text.exit_code == 0 and "layer0.attn.h1" in text.stdout
    assert "is not used" not in text.stderr and "7 documents of tiny.txt" in text.stderr  # --data chose them


def test_planted_dead_units_and_a_collapsed_head_are_named(workdir) -> None:
    train_tiny("--steps", "5", "--no-record")
    ckpt = ckpt_io.load(workdir / "model.json")
    fc1 = ckpt.model.weights["layer0.mlp.fc1"]
    for unit in (3, 17):  # a row of zeros: the unit's input is 0 at every position, never above
        for p in fc1[unit]:
            p.data = 0.0
    hd = ckpt.model.config.head_dim
    for row in ckpt.model.weights["layer0.attn.wq"][hd : 2 * hd]:  # head 1's queries, scaled up: one-hot scores
        for p in row:
            p.data *= 1e4
    ckpt_io.save(ckpt, workdir / "planted.json")
    report = health_json("--checkpoint", "planted.json")
    assert report["dead"]["layer0.mlp"] == [3, 17]
    (dead,) = [f for f in report["findings"] if f["kind"] == "dead_units"]
    assert "layer0.mlp.post[3], layer0.mlp.post[17]" in dead["text"] and dead["command"].startswith("mgx inspect")
    collapsed = [f["subject"] for f in report["findings"] if f["kind"] in ("collapsed_head", "saturated_head")]
    assert collapsed == ["layer0.attn.h1"]
    assert "no recorded run" in report["run_note"]


def test_a_badly_initialised_run_is_told_by_its_first_loss(workdir) -> None:
    from viz.health import Health, add_run_findings

    health = Health(documents=0)
    add_run_findings(health, "r", {"loss": ([1, 2], [9.0, 8.0])}, steps=2, vocab_size=27)
    (finding,) = health.findings
    assert finding.kind == "initial_loss" and "ln(27) = 3.296" in finding.text
    health = Health(documents=0)
    add_run_findings(health, "r", {"loss": ([1], [3.3])}, steps=2, vocab_size=27)
    assert health.findings == []


def test_exploding_and_vanishing_grads_name_the_matrix_and_step(workdir) -> None:
    from viz.health import Health, add_run_findings

    health = Health(documents=0)
    series = {"grad_norm:wte": ([1, 2, 3], [0.5, 2e4, 1e-9]), "grad_norm:wpe": ([1, 2, 3], [0.1, 0.1, 0.1])}
    add_run_findings(health, "r", series, steps=3, vocab_size=27)
    assert [(f.kind, f.subject) for f in health.findings] == [("vanishing_grad", "wte"), ("exploding_grad", "wte")]
    assert "first step 2" in health.findings[1].text and health.findings[1].command == "mgx plot --run r grad_norm:wte"


def test_bad_input_is_one_line(workdir) -> None:
    assert "--docs must be 1 or more" in one_error(mgx("health", "--docs", "0"))
    (workdir / "odd.txt").write_text("zoë\n")
    train_tiny("--steps", "1", "--no-record")
    assert "characters the model does not know" in one_error(
        mgx("health", "--data", "odd.txt", "--checkpoint", "model.json")
    )
