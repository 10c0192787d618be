"""Runs through the mgx command: --resume continues a run as it was saved, a new run never
destroys another run's checkpoint, a diverging run keeps its last good state (exit 3), and a
checkpoint with non-finite weights loads for the views but not for sample or --resume."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli.train_cmd
from cli.main import app
from microgpt import checkpoint as ckpt_io
from microgpt.train import AdamConfig, TrainState, start_run, train
from tests.conftest import TINY_DOCS

runner = CliRunner()
SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8"]
TINY_CONFIG = {"n_embd": 8, "n_head": 2, "block_size": 8}


def mgx(*args: str):
    return runner.invoke(app, list(args))


def one_error(result, code: int = 1) -> str:
    """The one error line of a command that failed cleanly with ``code``."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def logged_losses(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("step")]


def train_tiny(*args: str):
    result = mgx("train", "--data", "tiny.txt", *SMALL, *args)
    assert result.exit_code == 0, result.output
    return result


def interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make the next ``mgx train`` get a Ctrl-C (SIGINT) during step ``step``."""
    real_train = cli.train_cmd.train

    def interrupted_train(*args, on_step, **kwargs):
        def hooked(done: int, loss: float) -> None:
            if done == step:
                signal.raise_signal(signal.SIGINT)  # the handler asks the run to stop after this step
            on_step(done, loss)

        return real_train(*args, on_step=hooked, **kwargs)

    monkeypatch.setattr(cli.train_cmd, "train", interrupted_train)


# -- --resume ----------------------------------------------------------------------------


def test_resume_without_steps_continues_to_the_runs_own_step_count(workdir: Path, monkeypatch) -> None:
    whole = logged_losses(train_tiny("--steps", "12", "--log-every", "1", "--out", "whole.json"))
    with monkeypatch.context() as patch:
        interrupt_at(patch, 5)
        result = mgx("train", "--data", "tiny.txt", "--steps", "12", "--log-every", "1", *SMALL)
    error = one_error(result, 130)
    assert "`mgx train --resume --out model.json`" in error
    result = mgx("train", "--resume", "--out", "model.json", "--log-every", "1")  # as the error says
    assert result.exit_code == 0, result.output
    assert logged_losses(result) == whole[5:]  # step 6 / 12 ... step 12 / 12: the same losses


def test_resume_with_more_steps_extends_a_finished_run_and_names_its_schedule(workdir: Path) -> None:
    train_tiny("--steps", "3")
    result = mgx("train", "--resume", "--steps", "6", "--log-every", "1")
    assert result.exit_code == 0, result.output
    schedule = [line for line in result.stderr.splitlines() if "schedule" in line]
    assert len(schedule) == 1 and "from 3 to 6 steps" in schedule[0] and "6-step schedule" in schedule[0]
    assert [line[:17] for line in logged_losses(result)] == [
        "step    4 /    6 ",
        "step    5 /    6 ",
        "step    6 /    6 ",
    ]
    assert ckpt_io.load(workdir / "model.json").steps == 6


def test_resume_of_a_finished_run_without_steps_asks_for_more(workdir: Path) -> None:
    train_tiny("--steps", "3")
    assert "already done 3 of 3 steps" in one_error(mgx("train", "--resume"))
    assert "finished its 3 steps" in one_error(mgx("train", "--resume", "--steps", "2"))


@pytest.mark.parametrize(
    "option",
    [
        ["--n-embd", "16"],
        ["--n-head", "4"],
        ["--n-layer", "2"],
        ["--block-size", "4"],
        ["--seed", "1"],
        ["--lr", "0.5"],
        ["--granularity", "atomic"],
    ],
)
def test_resume_refuses_options_that_contradict_the_saved_run(workdir: Path, option: list[str]) -> None:
    train_tiny("--steps", "3")
    before = (workdir / "model.json").read_bytes()
    error = one_error(mgx("train", "--resume", "--steps", "4", *option))
    assert f"{option[0]} {option[1]} contradicts the run in model.json" in error
    assert (workdir / "model.json").read_bytes() == before


def test_resume_accepts_options_equal_to_the_saved_run_and_keeps_its_granularity_and_lr(workdir: Path) -> None:
    train_tiny("--steps", "2", "--granularity", "atomic", "--lr", "0.02", "--seed", "3")
    result = mgx("train", "--resume", "--steps", "3", "--seed", "3", "--n-embd", "8", "--lr", "0.02")
    assert result.exit_code == 0, result.output
    resumed = ckpt_io.load(workdir / "model.json")
    assert (resumed.granularity, resumed.adam.lr, resumed.seed, resumed.state.step) == ("atomic", 0.02, 3, 3)
    assert "atomic graphs" in result.stderr


def test_resume_refuses_other_data(workdir: Path) -> None:
    train_tiny("--steps", "2")
    (workdir / "other.txt").write_text("\n".join(reversed(TINY_DOCS)) + "\n")  # same letters, another order
    error = one_error(mgx("train", "--resume", "--steps", "3", "--data", "other.txt"))
    assert "other.txt is not the data the run in model.json trained on" in error


def test_resume_of_a_version_1_checkpoint_continues_it(workdir: Path, monkeypatch) -> None:
    with monkeypatch.context() as patch:
        interrupt_at(patch, 2)
        one_error(mgx("train", "--data", "tiny.txt", "--steps", "4", *SMALL), 130)
    raw = json.loads((workdir / "model.json").read_text())
    raw["version"] = 1
    del raw["training"]["run_id"], raw["training"]["data_sha256"]
    (workdir / "model.json").write_text(json.dumps(raw))
    result = mgx("train", "--resume")
    assert result.exit_code == 0, result.output
    assert not (workdir / "model.1.json").exists()  # its own run: continued in place
    resumed = ckpt_io.load(workdir / "model.json")
    assert resumed.state.step == 4 and resumed.run_id is not None


# -- another run's checkpoint --------------------------------------------------------------


def test_a_new_run_keeps_another_runs_checkpoint_beside_it(workdir: Path) -> None:
    train_tiny("--steps", "2")
    first = (workdir / "model.json").read_bytes()
    result = train_tiny("--steps", "2", "--seed", "7")
    assert "kept the checkpoint of another run that was at model.json as model.1.json" in result.stderr
    assert (workdir / "model.1.json").read_bytes() == first
    second = (workdir / "model.json").read_bytes()
    assert second != first
    train_tiny("--steps", "2")  # the smallest free number
    assert (workdir / "model.1.json").read_bytes() == first
    assert (workdir / "model.2.json").read_bytes() == second


def test_the_readme_main_command_works_twice(workdir: Path) -> None:
    for _ in range(2):
        train_tiny("--steps", "2")
        result = mgx("graph", "--token", "a", "--pos", "0", "-o", "graph.dot")
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in workdir.glob("model*.json")) == ["model.1.json", "model.json"]


def test_ctrl_c_of_a_new_run_keeps_the_other_runs_checkpoint(workdir: Path, monkeypatch) -> None:
    train_tiny("--steps", "2")
    first = (workdir / "model.json").read_bytes()
    interrupt_at(monkeypatch, 3)
    result = mgx("train", "--data", "tiny.txt", "--steps", "50", "--seed", "7", *SMALL)
    assert "interrupted after step 3 of 50" in one_error(result, 130)
    assert (workdir / "model.1.json").read_bytes() == first
    partial = ckpt_io.load(workdir / "model.json")
    assert (partial.state.step, partial.steps, partial.seed) == (3, 50, 7)


def test_a_read_only_checkpoint_is_refused_before_any_work(workdir: Path) -> None:
    train_tiny("--steps", "2")
    path = workdir / "model.json"
    before = path.read_bytes()
    path.chmod(0o444)
    error = one_error(mgx("train", "--data", "tiny.txt", "--steps", "2", *SMALL))
    assert "read-only" in error and "--resume" in error and "remove" in error and "--out" in error
    assert "read-only" in one_error(mgx("train", "--resume", "--steps", "3"))
    assert path.read_bytes() == before and not (workdir / "model.1.json").exists()


@pytest.mark.parametrize("content", [b"{}", b"my notes\n", b'{"format": "microgpt-x-checkpoint", "version": 9}'])
def test_a_file_that_is_not_a_checkpoint_is_refused_before_any_work(workdir: Path, content: bytes) -> None:
    (workdir / "model.json").write_bytes(content)
    error = one_error(mgx("train", "--data", "tiny.txt", "--steps", "2", *SMALL))
    assert "--out" in error and "remove model.json" in error
    assert (workdir / "model.json").read_bytes() == content and not (workdir / "model.1.json").exists()


# -- divergence ----------------------------------------------------------------------------


def test_a_non_finite_loss_stops_naming_step_and_origin_and_keeps_the_last_good_state(workdir: Path) -> None:
    result = mgx("train", "--data", "tiny.txt", "--steps", "50", "--lr", "10", *SMALL)
    error = one_error(result, 3)
    assert "training diverged at step 2 (document 'isabella'): the loss is inf" in error
    assert "starting at loss@pos0 (op log, input 0)" in error and "lower --lr" in error
    assert "`mgx check nan --checkpoint model.json --word isabella --pos 0`" in error
    assert "saved model.json: the last good state, after step 1 of 50" in result.stderr
    # the report of mgx check nan, on the diverged step's whole graph
    assert "\nforward origin: loss@pos0" in result.stderr and "it reached the loss" in result.stderr
    assert "\nbackward origin: the edge probs[" in result.stderr and "(local derivative)" in result.stderr
    kept = ckpt_io.load(workdir / "model.json")
    run = start_run(TINY_DOCS, 42, **TINY_CONFIG)
    with pytest.raises(_Stop):
        train(run.model, run.tokenizer, run.docs, 50, TrainState(), adam=AdamConfig(lr=10), on_step=_stop_after_1)
    assert kept.state.step == 1 and kept.model.weight_data() == run.model.weight_data()


class _Stop(Exception):
    pass


def _stop_after_1(done: int, _loss: float) -> None:
    if done == 1:
        raise _Stop


def test_a_non_finite_gradient_stops_naming_the_parameter(workdir: Path) -> None:
    result = mgx("train", "--data", "tiny.txt", "--steps", "50", "--lr", "1e300", *SMALL)
    error = one_error(result, 3)
    assert "training diverged at step 2 (document 'isabella'): the gradient of wte[0,0] is nan" in error
    kept = ckpt_io.load(workdir / "model.json")
    assert kept.state.step == 1 and not kept.non_finite_weights()


def test_an_update_that_overflows_stops_before_writing_it(workdir: Path) -> None:
    result = mgx("train", "--data", "tiny.txt", "--steps", "50", "--lr", "1e308", *SMALL)
    one_error(result, 3)
    assert not ckpt_io.load(workdir / "model.json").non_finite_weights()


# -- checkpoints with non-finite weights -----------------------------------------------------


@pytest.fixture
def nan_checkpoint(workdir: Path) -> Path:
    train_tiny("--steps", "2", "--out", "nan.json")
    ckpt = ckpt_io.load(workdir / "nan.json")
    ckpt.model.weights["wpe"][1][2].data = math.nan
    ckpt.model.weights["lm_head"][0][0].data = -math.inf
    ckpt_io.save(ckpt, workdir / "nan.json")
    return workdir / "nan.json"


def test_sample_refuses_a_checkpoint_with_non_finite_weights(nan_checkpoint: Path) -> None:
    error = one_error(mgx("sample", "--checkpoint", "nan.json"))
    assert "non-finite weights (first wpe[1,2] = nan, 2 in all)" in error and "cannot be sampled" in error


def test_resume_refuses_a_checkpoint_with_non_finite_weights(nan_checkpoint: Path) -> None:
    before = nan_checkpoint.read_bytes()
    error = one_error(mgx("train", "--resume", "--out", "nan.json", "--steps", "3"))
    assert "non-finite weights (first wpe[1,2] = nan)" in error
    assert nan_checkpoint.read_bytes() == before


def test_the_views_load_it_with_a_one_line_warning(nan_checkpoint: Path) -> None:
    result = mgx("stats", "--checkpoint", "nan.json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "first wpe[1,2] = nan" in warnings[0]


# -- output names, --data with a checkpoint, plurals -------------------------------------------


@pytest.mark.parametrize("command", [["train", "--steps", "1", "--out"], ["graph", "-o"]])
def test_a_300_character_output_name_is_one_line(workdir: Path, command: list[str]) -> None:
    suffix = ".json" if command[0] == "train" else ".svg"
    assert "name is too long" in one_error(mgx(*command, "x" * 300 + suffix))


@pytest.mark.parametrize("option", [["train", "--steps", "1", "--data"], ["sample", "--checkpoint"]])
def test_a_300_character_input_name_is_one_line(workdir: Path, option: list[str]) -> None:
    assert "File name too long" in one_error(mgx(*option, "x" * 300 + ".txt"))


def test_a_long_output_name_that_fits_the_file_system_is_written(workdir: Path) -> None:
    name = "y" * (255 - len(".json")) + ".json"
    train_tiny("--steps", "1", "--out", name)
    assert ckpt_io.load(workdir / name).state.step == 1


def test_a_checkpoint_that_cannot_be_kept_beside_is_refused_before_any_work(workdir: Path) -> None:
    name = "z" * (255 - len(".json")) + ".json"  # z…z.1.json would be too long a name
    train_tiny("--steps", "1", "--out", name)
    before = (workdir / name).read_bytes()
    error = one_error(mgx("train", "--data", "tiny.txt", "--steps", "1", "--out", name, *SMALL))
    assert "cannot be kept beside it" in error and "--out" in error
    assert (workdir / name).read_bytes() == before


@pytest.mark.parametrize("command", [["sample", "--num", "1"], ["stats"]])
def test_data_with_a_checkpoint_is_named_as_not_used(workdir: Path, command: list[str]) -> None:
    train_tiny("--steps", "1")
    result = mgx(*command, "--data", "tiny.txt")
    assert result.exit_code == 0, result.output
    assert "--data tiny.txt is not used: the checkpoint model.json brings its own vocabulary" in result.stderr


def test_counts_of_one_are_singular(workdir: Path) -> None:
    (workdir / "one.txt").write_text("emma\n")
    result = mgx("train", "--data", "one.txt", "--steps", "1", *SMALL)
    assert result.exit_code == 0, result.output
    assert "(1 document," in result.stderr and "; 1 step" in result.stderr
    assert "trained 1 step;" in result.stdout and "documents" not in result.stderr


def test_no_file_is_left_behind_by_a_refused_run(workdir: Path) -> None:
    (workdir / "model.json").write_text("notes")
    one_error(mgx("train", "--data", "tiny.txt", "--steps", "1", *SMALL))
    assert sorted(os.listdir(workdir)) == ["model.json", "tiny.txt"]
