"""The runs database (viz/runs.py) and the series it records (viz/dynamics.py)."""

from __future__ import annotations

import math
import random
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from viz import dynamics, runs

ROOT = Path(__file__).resolve().parents[1]


def _record(path: Path, run_id: str = "run0001", steps: int = 5, **kwargs) -> runs.Recorder:
    rec = runs.Recorder.start(path, run_id=run_id, steps=steps, config={"n_layer": 1}, **kwargs)
    for step in range(1, steps + 1):
        rec.add(step, {"loss": 4.0 - step / 10, "lr": 0.01 * (1 - step / steps)})
    return rec


def test_a_run_keeps_every_step_and_its_summary(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    rec = _record(db, name="model", seed=42, data="names.txt", granularity="fused")
    rec.finish("finished")
    (info,) = runs.list_runs(db)
    assert (info.name, info.status, info.done, info.seed, info.data) == ("model", "finished", 5, 42, "names.txt")
    assert info.final_loss == pytest.approx(3.5) and info.best_loss == pytest.approx(3.5)
    steps, values = runs.read_series(db, "run0001", "loss")
    assert steps == [1, 2, 3, 4, 5] and values == [4.0 - s / 10 for s in steps]
    assert runs.series_names(db, "run0001") == ["loss", "lr"]


def test_nan_is_kept_as_null_and_read_back_as_nan(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    rec = runs.Recorder.start(db, run_id="run0001", steps=3, config={})
    rec.add(1, {"loss": math.nan, "max_logit": math.inf})
    rec.finish("diverged")
    assert math.isnan(runs.read_series(db, "run0001", "loss")[1][0])
    assert runs.read_series(db, "run0001", "max_logit")[1] == [math.inf]
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT value FROM points WHERE value IS NULL").fetchall() == [(None,)]


def test_names_are_unique_and_runs_are_found_by_name_or_id_prefix(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    _record(db, "aaaa1111", name="model").finish("finished")
    _record(db, "bbbb2222", name="model").finish("interrupted")
    listed = runs.list_runs(db)
    assert [r.name for r in listed] == ["model", "model-2"]
    assert runs.find_run(listed, "model-2").id == "bbbb2222"
    assert runs.find_run(listed, "aaaa").name == "model"
    with pytest.raises(runs.RunsError, match=r"no run named 'nope' \(runs: model, model-2\)"):
        runs.find_run(listed, "nope")


def test_a_resumed_run_continues_its_rows_from_the_checkpoint_step(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    _record(db, steps=5).finish("interrupted")  # the checkpoint was saved after step 3, say
    rec = runs.Recorder.start(db, run_id="run0001", steps=6, config={}, resume_from=3)
    rec.add(4, {"loss": 1.0})
    rec.finish("finished")
    (info,) = runs.list_runs(db)
    assert runs.read_series(db, "run0001", "loss") == ([1, 2, 3, 4], [3.9, 3.8, 3.7, 1.0])
    assert (info.status, info.steps, info.name) == ("finished", 6, "run")


def test_a_killed_run_is_neither_running_nor_finished(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    code = (
        "import os, sys; from viz.runs import Recorder;"
        "r = Recorder.start(sys.argv[1], run_id='dead0001', steps=9, config={}, name='k');"
        "r.add(1, {'loss': 3.0}); r.flush(); os._exit(9)"
    )
    subprocess.run([sys.executable, "-c", code, str(db)], cwd=ROOT, check=False)
    (info,) = runs.list_runs(db)
    assert (info.status, info.done) == ("killed", 1)
    live = runs.Recorder.start(db, run_id="live0001", steps=9, config={})
    assert {r.name: r.status for r in runs.list_runs(db)}["run"] == "running"
    live.finish("finished")


def test_snapshots_round_trip_every_number(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    rng = random.Random(0)
    wte = [[rng.gauss(0, 1) for _ in range(3)] for _ in range(2)]
    wte[1][2] = math.inf
    rec = runs.Recorder.start(db, run_id="run0001", steps=50, config={})
    rec.snapshot(50, {"wte": {"data": wte, "grad": [[0.0] * 3] * 2, "m": [[1e-300] * 3] * 2, "v": [[5.0] * 3] * 2}})
    rec.finish("finished")
    snap = runs.read_snapshot(db, "run0001", 50)
    assert snap["wte"]["data"] == wte and list(snap["wte"]) == ["data", "grad", "m", "v"]
    assert runs.snapshot_steps(db, "run0001") == [50]
    with pytest.raises(runs.RunsError, match=r"no snapshot at step 7 \(snapshots at: 50\)"):
        runs.read_snapshot(db, "run0001", 7)


def test_concurrent_writers_never_corrupt_the_database(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    code = (
        "import sys; from viz.runs import Recorder;"
        "r = Recorder.start(sys.argv[1], run_id=sys.argv[2], steps=300, config={}, name='w');"
        "r.flush_every = 0\n"
        "for s in range(1, 301):\n"
        "    r.add(s, {'loss': s, 'lr': -s})\n"
        "    if s % 100 == 0: r.snapshot(s, {'wte': {'data': [[float(s)] * 8] * 8}})\n"
        "r.finish('finished')"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", code, str(db), f"writer{i}"], cwd=ROOT, stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for w in writers:
        assert w.wait(timeout=120) == 0, w.stderr.read().decode()
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    listed = runs.list_runs(db)
    assert sorted(r.name for r in listed) == ["w", "w-2", "w-3", "w-4"]
    for info in listed:
        assert (info.status, info.done, info.final_loss) == ("finished", 300, 300.0)
        assert runs.read_series(db, info.id, "lr")[1] == [-s for s in range(1, 301)]
        assert runs.snapshot_steps(db, info.id) == [100, 200, 300]


def test_a_new_file_switched_to_wal_by_another_process_at_once_is_waited_for(tmp_path: Path, monkeypatch) -> None:
    """SQLite answers "database is locked" at once, without its busy wait, to a switch to WAL
    while another process switches the same new file (seen with four writers started
    together): the switch is tried again. Here the first two attempts are refused."""
    refused = []

    class Contended(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql == "PRAGMA journal_mode = WAL" and len(refused) < 2:
                refused.append(sql)
                raise sqlite3.OperationalError("database is locked")
            return super().execute(sql, *args)

    connect = sqlite3.connect
    monkeypatch.setattr(runs.sqlite3, "connect", lambda *a, **k: connect(*a, factory=Contended, **k))
    runs.Recorder.start(tmp_path / "runs.sqlite", run_id="x", steps=1, config={}).finish("finished")
    assert len(refused) == 2
    with sqlite3.connect(tmp_path / "runs.sqlite") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_file_that_is_not_a_runs_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    text = tmp_path / "notes.sqlite"
    text.write_text("hello")
    with pytest.raises(runs.RunsError, match="is not a runs database"):
        runs.Recorder.start(text, run_id="x", steps=1, config={})
    assert text.read_text() == "hello"
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE t (x)")
    with pytest.raises(runs.RunsError, match="is not a runs database this version reads"):
        runs.Recorder.start(other, run_id="x", steps=1, config={})
    with sqlite3.connect(other) as raw:
        assert [r[0] for r in raw.execute("SELECT name FROM sqlite_master")] == ["t"]
    with pytest.raises(runs.RunsError, match="no runs database at"):
        runs.list_runs(tmp_path / "missing.sqlite")
    with pytest.raises(runs.RunsError, match="cannot use the runs database"):
        runs.Recorder.start(tmp_path / "no" / "such" / "dir.sqlite", run_id="x", steps=1, config={})


# -- the series ---------------------------------------------------------------------------


def test_std_and_norms_match_the_textbook_formulas() -> None:
    rng = random.Random(1)
    xs = [rng.gauss(0, 0.1) for _ in range(500)]
    assert dynamics.std(xs) == pytest.approx(statistics.pstdev(xs), rel=1e-9)
    before = xs
    after = [x - 0.001 * rng.gauss(0, 1) for x in xs]
    expected = math.log10(statistics.pstdev([a - b for a, b in zip(after, before)]) / statistics.pstdev(after))
    assert dynamics.update_ratio(before, after) == pytest.approx(expected, rel=1e-9)
    assert dynamics.update_ratio(after, after) == -math.inf
    shapes = {"a": (2, 3), "b": (1, 4)}
    slices = dynamics.flat_slices(shapes)
    grads = list(range(10))
    series = dynamics.matrix_series(slices, grads, before[:10], after[:10])
    assert series["grad_norm:a"] == pytest.approx(math.sqrt(sum(g * g for g in range(6))))
    assert series["grad_norm:b"] == pytest.approx(math.sqrt(sum(g * g for g in range(6, 10))))
    assert math.isnan(dynamics.matrix_series(slices, [math.nan] * 10, before[:10], after[:10])["grad_norm:a"])


def test_head_entropy_is_1_for_uniform_and_0_for_one_hot_attention() -> None:
    assert dynamics.head_entropy([[1.0], [0.5, 0.5], [1 / 3] * 3]) == pytest.approx(1.0)
    assert dynamics.head_entropy([[1.0], [1.0, 0.0], [0.0, 0.0, 1.0]]) == 0.0
    assert math.isnan(dynamics.head_entropy([[1.0]]))  # position 0 alone sees one position


def test_dead_fraction_counts_units_never_above_zero() -> None:
    rows = [[-1.0, 0.0, 2.0, -3.0], [-0.5, 0.0, -1.0, 0.1]]
    assert dynamics.dead_fraction(rows) == 0.5  # units 0 and 1


def test_series_of_huge_weights_do_not_overflow() -> None:
    before = [1e300, -1e300, 3e299]
    after = [1.5e300, -1e300, 1e299]
    assert dynamics.std(after) == pytest.approx(statistics.pstdev([x / 1e300 for x in after]) * 1e300)
    assert math.isfinite(dynamics.update_ratio(before, after))


def test_a_seed_beyond_64_bits_is_kept(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    runs.Recorder.start(db, run_id="big", steps=1, config={}, seed=10**30).finish("finished")
    assert runs.list_runs(db)[0].seed == 10**30
