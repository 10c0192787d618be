"""mgx check grad and mgx check nan, through the CLI: tables, strict JSON, and exit codes that
tell a finding (4) from bad input (1)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from microgpt.engine import EXP, Value

runner = CliRunner()
TINY = "emma\nolivia\nava\nisabella\nsophia\nmia\namelia\n"
SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8"]


def mgx(*args: str):
    return runner.invoke(app, list(args))


def strict_json(text: str):
    def refuse(token: str):
        raise AssertionError(f"bare {token} in JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.txt").write_text(TINY)
    result = mgx("train", "--data", "tiny.txt", "--steps", "5", *SMALL)
    assert result.exit_code == 0, result.output
    return tmp_path / "model.json"


def test_check_grad_passes_on_a_trained_model_and_lists_the_worst_first(trained: Path) -> None:
    result = mgx("check", "grad", "--limit", "3", "--pos", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["node", "analytic", "numeric"]
    assert len([line for line in lines if "pass (" in line]) == 3
    assert "more (--limit 0 shows all)" in result.stdout
    assert "per tensor:" in result.stdout and "layer0.attn.wq" in result.stdout
    assert "0 fail" in result.stderr


def test_check_grad_of_a_pattern_checks_activations_too(trained: Path) -> None:
    result = mgx("check", "grad", "attn.h0.score", "--pos", "3", "--json")
    assert result.exit_code == 0, result.output
    document = strict_json(result.stdout)
    assert document["checked"] == document["passed"] + document["kinks"] > 0
    assert all(e["id"].startswith("layer0.attn.h0.score") for e in document["elements"])
    assert any(e["id"] == "layer0.attn.h0.score[2]@pos3" for e in document["elements"])
    assert all(e["verdict"] in ("pass", "kink") for e in document["elements"])


@pytest.mark.parametrize("granularity", ["atomic", "fused"])
def test_a_wrong_derivative_is_a_finding_named_with_its_path(
    trained: Path, granularity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def wrong_exp(self: Value) -> Value:
        out = math.exp(self.data)
        return Value(out, (self,), (1.5 * out,), EXP)

    monkeypatch.setattr(Value, "exp", wrong_exp)
    result = mgx("check", "grad", "--pos", "2", "--granularity", granularity)
    assert result.exit_code == 4, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "gradients disagree with finite differences; worst " in last
    assert "came by (largest contributions first" in result.stderr and "← " in result.stderr
    assert "FAIL (" in result.stdout

    result = mgx("check", "grad", "--pos", "2", "--granularity", granularity, "--json")
    assert result.exit_code == 4
    document = strict_json(result.stdout)
    assert document["failed"] > 0 and document["elements"][0]["verdict"] == "FAIL"
    assert document["why"]["id"] == document["elements"][0]["id"] and document["why"]["contributions"]


def huge_head(checkpoint: Path, factor: float = 1e5) -> None:
    """Scale lm_head until some target's probability underflows to 0 (an infinite loss)."""
    raw = json.loads(checkpoint.read_text())
    raw["weights"]["lm_head"] = [[x * factor for x in row] for row in raw["weights"]["lm_head"]]
    checkpoint.write_text(json.dumps(raw))


def test_check_nan_says_all_finite_and_exits_0(trained: Path) -> None:
    result = mgx("check", "nan", "--pos", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "forward: all finite"
    assert "all finite" in result.stderr


def test_check_nan_finds_an_underflowed_probability_in_both_passes(trained: Path) -> None:
    huge_head(trained)
    found = None
    for target in "aeilmosvBOS".replace("BOS", ""):
        result = mgx("check", "nan", "--pos", "1", "--target", target, "--json")
        if result.exit_code == 4:
            found = strict_json(result.stdout)
            break
        assert result.exit_code == 0, result.output
    assert found is not None, "no target's probability underflowed"
    assert found["forward"]["op"] == "log" and found["forward"]["origin"].startswith("loss@pos1")
    assert found["forward"]["data"] == "-Infinity" and found["forward"]["reached_loss"]
    assert found["backward"]["reason"] == "local derivative" and found["backward"]["local_grad"] == "Infinity"
    assert found["backward"]["child"].startswith("probs[")

    text = mgx("check", "nan", "--pos", "1", "--target", target)
    assert text.exit_code == 4
    assert text.stdout.startswith("forward origin: loss@pos1")
    assert "backward origin: the edge probs[" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "grad", "--step", "0"], "--step must be a positive number"),
        (["check", "grad", "--atol", "-1"], "--atol and --rtol must be 0 or more"),
        (["check", "grad", "--limit", "-2"], "--limit must be 0"),
        (["check", "grad", "attn.nothing"], "matches no node"),
        (["check", "grad", "--op", "exp"], "no parameter of this graph matches --op 'exp'"),
    ],
)
def test_bad_input_to_check_is_one_line_and_exit_1(trained: Path, args: list[str], message: str) -> None:
    result = mgx(*args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]


def test_check_nan_update_checks_the_adam_step_that_follows(trained: Path) -> None:
    result = mgx("check", "nan", "--word", "emma", "--update")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "update: every weight Adam writes is finite"

    raw = json.loads(trained.read_text())
    vocabulary = raw["vocabulary"]
    unused = vocabulary.index(next(ch for ch in vocabulary if ch not in "emma"))  # its grad is 0
    raw["optimizer"]["m"]["wte"][unused][0] = 1e308  # a first moment that overflows the step
    raw["optimizer"]["v"]["wte"][unused][0] = 0.0
    raw["training"]["steps"] = 1000
    trained.write_text(json.dumps(raw))
    result = mgx("check", "nan", "--word", "emma", "--update", "--json")
    assert result.exit_code == 4, result.output
    update = strict_json(result.stdout)["update"]
    assert not update["finite"]
    assert f"the update would make wte[{unused},0] -inf (its grad 0, Adam's moments m " in update["problem"]


def test_check_nan_update_needs_a_whole_name(trained: Path) -> None:
    result = mgx("check", "nan", "--update", "--pos", "1")
    assert result.exit_code == 1
    assert "give --word NAME, no --pos" in result.stderr
