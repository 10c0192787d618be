"""The mgx command: train, sample, --version, and every bad input, through CliRunner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from microgpt import checkpoint as ckpt_io

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
TINY = "emma\nolivia\nava\nisabella\nsophia\nmia\namelia\n"
SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.txt").write_text(TINY)
    return tmp_path


def mgx(*args: str):
    return runner.invoke(app, list(args))


def test_version_and_help() -> None:
    from microgpt import __version__

    result = mgx("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"mgx {__version__}"
    result = mgx("--help")
    assert result.exit_code == 0
    assert "train" in result.stdout and "sample" in result.stdout


def test_python_dash_m_cli_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "cli", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mgx ")


def test_train_logs_in_the_reference_format_then_sample_uses_the_checkpoint(workdir: Path) -> None:
    result = mgx("train", "--data", "tiny.txt", "--steps", "6", "--log-every", "2", *SMALL)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("step")]
    assert [line[:15] for line in lines] == ["step    2 /    ", "step    4 /    ", "step    6 /    "]
    assert lines[0].startswith("step    2 /    6 | loss ")
    assert (workdir / "model.json").is_file()
    assert "tiny.txt" in result.stderr  # says which data set

    result = mgx("sample", "--num", "4")
    assert result.exit_code == 0, result.output
    assert "checkpoint model.json" in result.stderr
    names = result.stdout.splitlines()
    assert len(names) == 4 and all(set(name) <= set("emaolivbsphy") for name in names)
    assert mgx("sample", "--num", "4").stdout == result.stdout  # the saved state, so the same names
    assert mgx("sample", "--num", "4", "--seed", "1").exit_code == 0


def test_sample_without_a_checkpoint_uses_a_fresh_model_and_says_so(workdir: Path) -> None:
    result = mgx("sample", "--num", "2")
    assert result.exit_code == 0, result.output
    assert "fresh model" in result.stderr and "embedded census first names" in result.stderr


def test_resume_of_a_finished_run_asks_for_more_steps(workdir: Path) -> None:
    assert mgx("train", "--data", "tiny.txt", "--steps", "3", "--out", "m.json", *SMALL).exit_code == 0
    result = mgx("train", "--data", "tiny.txt", "--steps", "3", "--out", "m.json", "--resume")
    assert result.exit_code == 1
    assert "already done 3 of 3 steps" in result.stderr


def test_ctrl_c_keeps_a_checkpoint_that_resumes_to_the_same_losses(workdir: Path) -> None:
    # long enough that the run cannot finish before the signal arrives, however fast a step is
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "cli", "train", "--data", "tiny.txt", "--log-every", "1", *SMALL]
    whole = subprocess.run([*args, "--steps", "2000", "--out", "whole.json"], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    expected = [line for line in whole.stdout.splitlines() if line.startswith("step")]

    proc = subprocess.Popen(
        [*args, "--steps", "2000", "--out", "cut.json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    for line in proc.stdout:  # type: ignore[union-attr]
        seen.append(line.rstrip("\n"))
        if len(seen) == 20:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=60)
    seen += [line for line in out.splitlines() if line.startswith("step")]
    assert proc.returncode == 130, err
    assert "interrupted after step" in err and "--resume" in err and "Traceback" not in err
    assert 20 <= len(seen) < 2000
    resumed = subprocess.run(
        [*args, "--steps", "2000", "--out", "cut.json", "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    seen += [line for line in resumed.stdout.splitlines() if line.startswith("step")]
    assert seen == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--steps", "0"], "--steps must be at least 1"),
        (["train", "--steps", "-5"], "--steps must be at least 1"),
        (["train", "--lr", "0"], "--lr must be a positive number"),
        (["train", "--lr", "-1"], "--lr must be a positive number"),
        (["train", "--lr", "nan"], "--lr must be a positive number"),
        (["train", "--n-head", "3"], "n_head 3 does not divide n_embd 16"),
        (["train", "--granularity", "huge"], "--granularity must be atomic or fused"),
        (["train", "--data", "missing.txt"], "data file missing.txt does not exist"),
        (["train", "--data", "empty.txt"], "has no documents"),
        (["train", "--data", "latin1.txt"], "is not UTF-8"),
        (["train", "--out", "nodir/model.json"], "directory nodir does not exist"),
        (["train", "--resume", "--out", "none.json"], "no checkpoint at none.json"),
        (["sample", "--checkpoint", "missing.json"], "checkpoint missing.json does not exist"),
        (["sample", "--checkpoint", "corrupt.json"], "is not valid JSON"),
        (["sample", "--checkpoint", "foreign.json"], "not a microgpt-x checkpoint"),
        (["sample", "--temperature", "0"], "--temperature must be a positive number"),
        (["sample", "--num", "0"], "--num must be at least 1"),
        (["sample", "--prefix", "Q"], "not in the vocabulary"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(workdir: Path, args: list[str], message: str) -> None:
    (workdir / "empty.txt").write_text("\n  \n")
    (workdir / "latin1.txt").write_bytes("zoë\n".encode("latin-1"))
    (workdir / "corrupt.json").write_text('{"format": "microgpt-x-checkpoint", "vers')
    (workdir / "foreign.json").write_text('{"hello": 1}')
    result = mgx(*args)
    assert result.exit_code != 0
    assert message in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "model.json").exists()  # nothing written


def test_unwritable_output_directory_is_named_before_training(workdir: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write to a read-only directory")
    locked = workdir / "locked"
    locked.mkdir(mode=0o500)
    result = mgx("train", "--steps", "1", "--out", "locked/model.json")
    assert result.exit_code == 1 and "not writable" in result.stderr


def test_output_path_that_is_a_directory_is_named(workdir: Path) -> None:
    (workdir / "adir").mkdir()
    result = mgx("train", "--steps", "1", "--out", "adir")
    assert result.exit_code == 1 and "is a directory" in result.stderr


SHARED = ROOT.parent / "shared"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "names.txt").is_file(), reason=f"the reference data is absent: {SHARED}")
def test_the_readme_flow_reproduces_the_reference_run(workdir: Path) -> None:
    """`mgx train --data names.txt --log-every 1` prints the reference's loss trace, and then
    `mgx sample --num 20 --temperature 0.5` prints its 20 names."""
    names = str(SHARED / "data" / "names.txt")
    result = mgx("train", "--data", names, "--log-every", "1")
    assert result.exit_code == 0, result.output
    printed = [line.split("loss ")[1] for line in result.stdout.splitlines() if line.startswith("step")]
    reference = [line.split()[1] for line in (SHARED / "reference" / "loss-trace.txt").read_text().splitlines()]
    assert len(printed) == 1000
    assert [
        (i, a, b) for i, (a, b) in enumerate(zip(printed, reference), 1) if abs(float(a) - float(b)) > 0.00011
    ] == []
    result = mgx("sample", "--num", "20", "--temperature", "0.5")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == (SHARED / "reference" / "samples.txt").read_text().split()


# -- user text is printed literally (defect 1) ----------------------------------------------
def error_line(result) -> str:
    """The one error line of a failed command; its other stderr lines are notes, never a traceback."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0], result.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("args", "literal"),
    [
        (["inspect", "[/x]"], "pattern '[/x]' matches no node"),
        (["sample", "-c", "[/x].json"], "checkpoint [/x].json does not exist"),
        (["graph", "--token", "[/]", "-o", "g.dot"], "token '[/]' is not in the vocabulary"),
        (["graph", "-o", "[/a]/g.svg"], "directory [/a] does not exist"),
        (["train", "--data", "names[v2].txt"], "data file names[v2].txt does not exist"),
        (["inspect", "wq[3"], "an optional [index] and @posN"),
        (["inspect", "h0", "--word", "[bold]x"], "'[]' in '[bold]x' is not in the vocabulary"),
        (["step", "--print", "1", "--until", "op:[red]"], "op '[red]'"),
    ],
)
def test_user_text_in_an_error_is_printed_literally(workdir: Path, args: list[str], literal: str) -> None:
    assert literal in error_line(mgx(*args))


def test_a_control_character_in_a_file_name_keeps_the_error_on_one_line(workdir: Path) -> None:
    line = error_line(mgx("sample", "-c", "a\nb\x1b[31m.json"))
    assert "checkpoint a\\nb\\x1b[31m.json does not exist" in line


def test_notes_and_sampled_names_are_printed_literally(workdir: Path) -> None:
    """A data file named with markup, holding names made of markup characters."""
    (workdir / "[bold]names.txt").write_text("[/]\n[/]]\n")
    result = mgx("sample", "--data", "[bold]names.txt", "--num", "30", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "vocabulary from [bold]names.txt" in result.stderr
    names = result.stdout.splitlines()
    assert len(names) == 30 and all(set(name) <= set("[/]") for name in names)
    assert any("[/]" in name for name in names)  # a closing tag that closes nothing, to rich markup


def test_the_output_helpers_print_literally_on_one_line() -> None:
    from cli.output import one_line, plural

    assert one_line("[/x] ok") == "[/x] ok"
    assert one_line("a\nb\r\x1b\u2028") == "a\\nb\\r\\x1b\\u2028"
    assert (plural(1, "document"), plural(2, "document"), plural(1234, "node")) == (
        "1 document",
        "2 documents",
        "1,234 nodes",
    )
    assert plural(1, "entry", "entries") + " " + plural(0, "entry", "entries") == "1 entry 0 entries"


# -- options a user gets wrong (defects 7 and 10) -------------------------------------------
@pytest.mark.parametrize("command", ["graph", "stats", "inspect", "step"])
def test_an_empty_word_is_refused(workdir: Path, command: str) -> None:
    args = {"graph": ["-o", "g.dot"], "inspect": ["h0"], "step": ["--print", "1"]}.get(command, [])
    line = error_line(mgx(command, *args, "--word", ""))
    assert "--word is empty" in line and "--word emma" in line
    assert not (workdir / "g.dot").exists()


def test_a_word_outside_the_vocabulary_names_the_characters(workdir: Path) -> None:
    line = error_line(mgx("inspect", "h0", "--word", "Zoë"))
    assert "'Zë' in 'Zoë' is not in the vocabulary" in line


@pytest.mark.parametrize(
    "command",
    [[], ["train"], ["sample"], ["graph"], ["stats"], ["inspect"], ["step"], ["check"], ["check", "grad"]],
)
def test_help_shows_no_metavar_on_flags(command: list[str]) -> None:
    result = mgx(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout and "--help" in result.stdout
    if command == ["train"]:
        assert "--no-resume" not in result.stdout


# -- Ctrl-C before a command's body runs (defect 5) -------------------------------------------
INTERRUPT_AT_IMPORT = """
import builtins
real_import = builtins.__import__
def interrupted_import(name, *args, **kwargs):
    if name == "typer":
        raise KeyboardInterrupt
    return real_import(name, *args, **kwargs)
builtins.__import__ = interrupted_import
from cli.main import run
"""
INTERRUPT_WHILE_PARSING = """
import os, signal, sys
from typer.core import TyperGroup
real_make_context = TyperGroup.make_context
def make_context(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came while typer reads the command line
    return real_make_context(self, *args, **kwargs)
TyperGroup.make_context = make_context
from cli.main import run
sys.argv = ["mgx", "stats"]
run()
"""


@pytest.mark.parametrize("script", [INTERRUPT_AT_IMPORT, INTERRUPT_WHILE_PARSING], ids=["imports", "parsing"])
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(script: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 130, result.stderr
    assert result.stderr == "error: interrupted before the command started; nothing was written\n"
    assert result.stdout == ""


def test_a_title_holding_a_file_name_is_printed_literally(workdir: Path) -> None:
    """stats prints a title with the checkpoint's path; "[/x].json" is the file x].json in a directory "["."""
    assert mgx("train", "--data", "tiny.txt", "--steps", "1", "-o", "m.json", *SMALL).exit_code == 0
    (workdir / "[").mkdir()
    (workdir / "m.json").rename(workdir / "[/x].json")
    result = mgx("stats", "-c", "[/x].json", "--top", "1")
    assert result.exit_code == 0, result.output
    assert "checkpoint [/x].json (step 1 of 1)" in result.stdout


def test_running_out_of_memory_is_one_line_naming_what_to_shrink(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `mgx train --n-embd 100000` ends on a machine without 1.2e11 Values' worth of memory."""
    from microgpt.model import GPT

    def too_big(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(GPT, "__init__", too_big)
    line = error_line(mgx("train", "--data", "tiny.txt", "--steps", "1", "-o", "m.json", *SMALL))
    assert line.startswith("error: ran out of memory") and "--n-embd" in line
    assert not (workdir / "m.json").exists()


def test_the_dot_fallback_never_replaces_a_file_silently(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import viz.render

    monkeypatch.setattr(viz.render, "find_layout_program", lambda name: None)  # no dot, no graphviz-pure
    (workdir / "g.dot").write_text("my own drawing\n")
    result = mgx("graph", "-o", "g.svg", "--level", "block")
    kept = [p.name for p in workdir.iterdir() if p.is_file() and p.read_text() == "my own drawing\n"]
    assert kept, result.stderr  # still g.dot, or moved beside it
    assert result.exit_code == 1 and "g.dot, where the DOT source would go instead, already exists" in result.stderr
    assert not (workdir / "g.svg").exists()


def test_an_output_name_that_is_only_an_extension_is_refused(workdir: Path) -> None:
    result = mgx("graph", "-o", ".svg")
    assert result.exit_code == 1
    assert "-o .svg has no file name before its extension: give one, e.g. -o graph.svg" in result.stderr


def test_a_closed_stdout_does_not_stop_training_or_lose_the_checkpoint(workdir: Path) -> None:
    """`mgx train --log-every 1 | head -2`: the reader leaves; the run finishes and saves."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "cli", "train", "--data", "tiny.txt", "--log-every", "1", "--steps", "60", *SMALL]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    err = proc.stderr.read()  # type: ignore[union-attr]
    assert proc.wait(timeout=120) == 0, err
    assert first.startswith("step    1 /   60 | loss ")
    assert "saved model.json" in err and "Traceback" not in err
    assert ckpt_io.load(workdir / "model.json").state.step == 60


def test_a_model_too_large_for_the_scalar_engine_is_refused_before_allocating(workdir: Path) -> None:
    result = mgx("train", "--data", "tiny.txt", "--n-embd", "100000", "--n-head", "1", "-o", "big.json")
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("error: a model of 120,") and "parameters is too large" in line and "--n-embd" in line
    assert not (workdir / "big.json").exists()


def test_a_named_command_is_built_alone_and_behaves_as_in_the_whole_app() -> None:
    """mgx builds only the command it runs (cli.main.app_for): its help, and its usage errors,
    are the whole app's; what names no command gets the whole app."""
    from cli.main import app_for

    names = [info.callback.__name__ for info in app.registered_commands] + [g.name for g in app.registered_groups]
    assert len(names) >= 14
    for name in names:
        alone = app_for([name, "--help"])
        assert alone is not app
        assert len(alone.registered_commands) + len(alone.registered_groups) == 1
        for args in ([name, "--help"], [name, "--no-such-option"]):
            assert runner.invoke(alone, args).output == runner.invoke(app, args).output, args
    for args in ([], ["--version"], ["--help"], ["trian"], ["--version", "train"]):
        assert app_for(args) is app
