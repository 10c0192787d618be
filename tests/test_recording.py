"""mgx train records every step in the runs database; mgx runs and mgx plot read it."""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
from pathlib import Path

import pytest

from tests.test_runs import SMALL, interrupt_at, logged_losses, mgx, one_error, train_tiny
from viz import runs
from viz.runs import read_series, read_snapshot, series_names, snapshot_steps

ROOT = Path(__file__).resolve().parents[1]


def only_run(db: str = "runs.sqlite") -> runs.RunInfo:
    (info,) = runs.list_runs(db)
    return info


def test_the_recorded_loss_is_the_printed_one_at_every_step(workdir) -> None:
    printed = logged_losses(train_tiny("--steps", "9", "--log-every", "1"))
    info = only_run()
    steps, losses = read_series("runs.sqlite", info.id, "loss")
    assert steps == list(range(1, 10))
    assert [f"step {s:4d} / {9:4d} | loss {x:.4f}" for s, x in zip(steps, losses)] == printed
    assert (info.name, info.status, info.done, info.steps) == ("model", "finished", 9, 9)
    assert json.loads((workdir / "model.json").read_text())["training"]["run_id"] == info.id
    names = series_names("runs.sqlite", info.id)
    for expected in (
        "lr",
        "max_logit",
        "grad_norm:wte",
        "update_ratio:layer0.mlp.fc2",
        "entropy:layer0.attn.h1",
        "dead:layer0.mlp",
    ):
        assert expected in names
    assert read_series("runs.sqlite", info.id, "lr")[1][0] == 0.01  # the first step uses the full rate


def test_norms_and_ratios_agree_with_two_snapshots(workdir) -> None:
    train_tiny("--steps", "6", "--snapshot-every", "1")
    run_id = only_run().id
    assert snapshot_steps("runs.sqlite", run_id) == [1, 2, 3, 4, 5, 6]
    old, new = read_snapshot("runs.sqlite", run_id, 4), read_snapshot("runs.sqlite", run_id, 5)
    for matrix in ("wte", "layer0.attn.wq", "lm_head"):
        w0 = [x for row in old[matrix]["data"] for x in row]
        w1 = [x for row in new[matrix]["data"] for x in row]
        g1 = [x for row in new[matrix]["grad"] for x in row]
        expected_ratio = math.log10(statistics.pstdev([b - a for a, b in zip(w0, w1)]) / statistics.pstdev(w1))
        series = {
            name: read_series("runs.sqlite", run_id, f"{name}:{matrix}")[1][4]
            for name in ("update_ratio", "grad_norm", "weight_norm")
        }
        assert series["update_ratio"] == pytest.approx(expected_ratio, rel=1e-9)
        assert series["grad_norm"] == pytest.approx(math.sqrt(sum(g * g for g in g1)), rel=1e-12)
        assert series["weight_norm"] == pytest.approx(math.sqrt(sum(w * w for w in w1)), rel=1e-12)
    assert set(new["wte"]) == {"data", "grad", "m", "v"}


def test_an_interrupted_run_keeps_its_rows_and_a_resumed_run_continues_them(workdir, monkeypatch) -> None:
    whole = logged_losses(train_tiny("--steps", "10", "--log-every", "1", "--out", "whole.json", "--name", "whole"))
    with monkeypatch.context() as patch:
        interrupt_at(patch, 4)
        result = mgx("train", "--data", "tiny.txt", "--steps", "10", *SMALL, "--name", "cut")
    one_error(result, 130)
    cut = runs.find_run(runs.list_runs("runs.sqlite"), "cut")
    assert (cut.status, cut.done) == ("interrupted", 4)
    assert snapshot_steps("runs.sqlite", cut.id) == [4]  # the end of what it did
    train_tiny("--resume")
    cut = runs.find_run(runs.list_runs("runs.sqlite"), "cut")
    assert (cut.status, cut.done) == ("finished", 10)
    steps, losses = read_series("runs.sqlite", cut.id, "loss")
    assert steps == list(range(1, 11))
    assert [f"{x:.4f}" for x in losses] == [line.split()[-1] for line in whole]


def test_a_diverged_run_is_marked_so(workdir) -> None:
    result = mgx("train", "--data", "tiny.txt", *SMALL, "--steps", "5", "--lr", "1e30")
    assert result.exit_code == 3
    info = only_run()
    assert info.status == "diverged" and info.done < 5


def test_no_record_writes_no_database_and_a_bad_runs_file_is_refused_before_training(workdir) -> None:
    train_tiny("--steps", "2", "--no-record")
    assert not (workdir / "runs.sqlite").exists()
    (workdir / "notes.txt").write_text("not a database")
    error = one_error(mgx("train", "--data", "tiny.txt", *SMALL, "--steps", "2", "--runs", "notes.txt", "-o", "x.json"))
    assert "notes.txt is not a runs database" in error and "--runs" in error
    assert (workdir / "notes.txt").read_text() == "not a database"


def test_mgx_runs_lists_each_run_and_its_json_is_strict(workdir) -> None:
    train_tiny("--steps", "3")
    train_tiny("--steps", "3", "--seed", "7", "--out", "other.json")
    result = mgx("runs", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(r["name"], r["status"], r["done"]) for r in listed] == [("model", "finished", 3), ("other", "finished", 3)]
    table = mgx("runs")
    assert "model" in table.stdout and "other" in table.stdout and "3/3" in table.stdout
    assert "no runs database at missing.sqlite" in one_error(mgx("runs", "--runs", "missing.sqlite"))


def test_mgx_plot_writes_the_same_bytes_for_the_same_data_and_refuses_bad_series(workdir) -> None:
    train_tiny("--steps", "8")
    for suffix in ("png", "svg"):
        for name in ("a", "b"):
            result = mgx("plot", "loss", "update_ratio:*", "entropy:attn.h0", "-o", f"{name}.{suffix}")
            assert result.exit_code == 0, result.output
        assert (workdir / f"a.{suffix}").read_bytes() == (workdir / f"b.{suffix}").read_bytes()
    assert (workdir / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (workdir / "a.svg").read_text()
    assert "matches nothing recorded" in one_error(mgx("plot", "grad_norm:nothing.here", "-o", "c.png"))
    assert "is not one this tool records" in one_error(mgx("plot", "accuracy"))
    assert "give -o a name ending in .png or .svg" in one_error(mgx("plot", "-o", "plot.pdf"))
    assert "no run named 'zzz'" in one_error(mgx("plot", "--run", "zzz"))
    text = mgx("plot", "loss", "--no-color")
    assert text.exit_code == 0 and "loss" in text.stdout


def _readme_block(after: str, language: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"```{language}\n", text.index(after)) + len(language) + 4
    return text[start : text.index("```", start)]


def test_the_readme_queries_read_the_database(workdir) -> None:
    train_tiny("--steps", "200")
    run_id = runs.find_run(runs.list_runs("runs.sqlite"), "model").id
    steps, losses = read_series("runs.sqlite", run_id, "loss")
    with sqlite3.connect("runs.sqlite") as db:
        rows = db.execute(_readme_block("From the `sqlite3` shell", "sql")).fetchall()
    assert rows == [(100, losses[99]), (200, losses[199])]
    pandas = pytest.importorskip("pandas", reason="pandas (the test extra) runs the README's pandas query")
    namespace: dict = {}
    exec(_readme_block("From pandas", "python"), namespace)
    table = namespace["table"]
    assert list(table.index) == steps and list(table["loss"]) == losses
    assert "update_ratio:wte" in table.columns and pandas is not None
