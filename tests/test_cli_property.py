"""The README's error policy, held by every command against random input (hypothesis).

Each example runs one ``mgx`` command in-process (CliRunner on cli.main.app) in a fresh
directory holding a tiny trained checkpoint, ``model.json``: random tag patterns, words,
tokens, positions and option values, random bytes as data files and as checkpoints
(and valid checkpoints with one part broken), user text full of markup characters.
After every command:

- never a traceback: the only exception is SystemExit;
- a failure is one ``error:`` line, the last on stderr (notes may come before it), with a
  non-zero exit code of the policy; typer's own usage errors (2) keep typer's format;
- the message is written for a user, not an exception's text (no ``[Errno``, no class names);
- no file is left half-written: no ``.*.tmp`` remains, an output exists only on success,
  and a JSON output is strict JSON;
- the checkpoint of another run is not lost: its bytes are still in some file of the
  directory (moved beside, perhaps), unless the command resumed that very run.

Tiny models and a fixed, derandomized example budget keep it deterministic and well under
a minute.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.dom import minidom

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()
TINY = "emma\nolivia\nava\nisabella\nsophia\nmia\namelia\n"
SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8"]
EXIT_CODES = {1, 2, 3, 4, 130}
NOT_A_MESSAGE = re.compile(r"\[Errno|Traceback|\b[A-Z][a-z]+(Error|Exception)\b|^error:\s*$")

PROPERTY = settings(
    max_examples=400,
    derandomize=True,  # the same examples on every run and in CI
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Trained(bytes):
    """The bytes of a tiny checkpoint trained by the CLI: the other run whose file must survive."""

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"<a trained checkpoint, {len(self):,} bytes>"


@pytest.fixture(scope="module")
def trained() -> Trained:
    with tempfile.TemporaryDirectory() as tmp, chdir(Path(tmp)):
        Path("tiny.txt").write_text(TINY)
        result = runner.invoke(app, ["train", "--data", "tiny.txt", "--steps", "3", *SMALL])
        assert result.exit_code == 0, result.output
        return Trained(Path("model.json").read_bytes())


@contextmanager
def chdir(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


# -- what a user types ------------------------------------------------------------------------
def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """Good values seven times in eight, so a command often gets past its checks and deeper."""
    return st.integers(0, 7).flatmap(lambda i: bad if i == 0 else good)


MARKUP = ["[/x]", "[/]", "[bold]", "[red]x[/red]", "names[v2].txt", "[", "]", "\\[", "[b]", "@", "*"]
markup_text = st.one_of(
    st.sampled_from(MARKUP),
    st.text(alphabet="[]/@*?.,!-_:=aemo019 \n\t\x1bé日", max_size=12),
)
segments = st.sampled_from(
    ["attn", "h0", "h1", "h[01]", "layer*", "layer[0]", "q", "k", "wq", "mlp", "pre", "*", "?", "logits", "loss"]
)
indices = mostly(
    st.sampled_from(["", "[3,5]", "[*]", "[0]", "[1,*]", "[[0-1],2]"]), st.sampled_from(["[", "[]", "[/x]"])
)
positions = mostly(
    st.sampled_from(["", "@pos0", "@pos1-3", "@pos*"]), st.sampled_from(["@pos3-1", "@posx", "@pos99999999999", "@"])
)
patterns = mostly(
    st.builds(
        lambda segs, index, pos: ".".join(segs) + index + pos, st.lists(segments, max_size=3), indices, positions
    ),
    markup_text,
)
words = mostly(st.sampled_from(["emma", "ava", "mia", "sophia", "a" * 30]), st.one_of(st.just(""), markup_text))
tokens = mostly(
    st.sampled_from(["a", "m", "BOS", "bos", "e"]), st.one_of(st.sampled_from(["", "ab", "é"]), markup_text)
)
counts = mostly(st.integers(0, 12), st.sampled_from([-1, 10**30, -(10**30)]))
floats = mostly(
    st.sampled_from(["0.5", "2", "1e308", "0.01"]), st.sampled_from(["0", "-1", "nan", "inf", "1e-320", "x"])
)
file_names = st.one_of(
    st.sampled_from(["out", "[/a]", "[bold]g", "a b", "é", "-", "adir", "missing/x", "n" * 300]),
    markup_text.filter(lambda name: ".." not in name and not name.startswith("/")),  # stay in the directory
)


@st.composite
def checkpoints(draw, trained: bytes) -> bytes:
    """Random bytes, or the trained checkpoint with one part broken."""
    kind = draw(st.sampled_from(["bytes", "truncated", "broken", "intact"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "truncated":
        return trained[: draw(st.integers(0, len(trained) - 1))]
    if kind == "intact":
        return trained
    raw = json.loads(trained)
    where = draw(
        st.sampled_from(["version", "config", "vocabulary", "weights", "optimizer", "training", "random_state"])
    )
    value = draw(
        st.sampled_from([None, "x", -1, 0, 2, 1e308, [], {}, "NaN", "Infinity", "[/x]", True, [[1.0]], {"n_embd": 0}])
    )
    if where == "weights" and draw(st.booleans()):
        name = draw(st.sampled_from(sorted(raw["weights"])))
        raw["weights"][name][0][0] = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", 1e308, "x", None]))
    elif where == "config" and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(raw["config"])))
        raw["config"][key] = value
    else:
        raw[where] = value
    return json.dumps(raw).encode()


data_files = st.one_of(
    st.binary(max_size=80),
    st.lists(st.one_of(st.sampled_from(["emma", "ava", "", "  ", "[/x]", "é"]), markup_text), max_size=6).map(
        lambda lines: "\n".join(lines).encode()
    ),
)


# -- running one command ---------------------------------------------------------------------
@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


def token_options(draw) -> list[str]:
    args: list[str] = []
    if draw(st.booleans()):
        args += ["--word", draw(words)]
    if draw(st.booleans()):
        args += ["--pos", str(draw(counts))]
    if draw(st.integers(0, 3)) == 0:
        args += ["--token", draw(tokens)]
    if draw(st.integers(0, 3)) == 0:
        args += ["--target", draw(tokens)]
    if draw(st.integers(0, 5)) == 0:
        args += ["--granularity", draw(mostly(st.sampled_from(["atomic", "fused"]), st.sampled_from(["[/x]", ""])))]
    return args


def model_options(draw, trained: bytes, files: dict[str, bytes]) -> list[str]:
    choice = draw(st.sampled_from(["default"] * 4 + ["file", "file", "missing", "directory", "data", "data"]))
    if choice == "file":
        name = draw(mostly(st.sampled_from(["m", "[/x]", "a b", "é"]), file_names)) + ".json"
        if not name.startswith("missing/"):  # "[/x].json" is the file x].json in a directory [
            files[name] = draw(checkpoints(trained))
        return ["-c", name]
    if choice == "missing":
        return ["-c", draw(file_names) + ".json"]
    if choice == "directory":
        return ["-c", "adir"]
    if choice == "data":
        name = draw(mostly(st.sampled_from(["d", "names[v2]", "[bold]d"]), file_names)) + ".txt"
        if not name.startswith("missing/"):
            files[name] = draw(data_files)
        os_remove = draw(st.booleans())  # without model.json, a fresh model from --data
        if os_remove:
            files["model.json"] = b""  # marker: remove it
        return ["--data", name]
    return []


@st.composite
def commands(draw, trained: bytes) -> tuple[list[str], dict[str, bytes]]:
    files: dict[str, bytes] = {}
    command = draw(st.sampled_from(["inspect", "graph", "stats", "step", "sample", "train", "check"]))
    if command == "inspect":
        args = ["inspect", draw(patterns), *token_options(draw), *model_options(draw, trained, files)]
        if draw(st.booleans()):
            args += ["--limit", str(draw(counts))]
        if draw(st.integers(0, 3)) == 0:  # small: the tree of inputs grows about 2.6x a level
            args += ["--depth", str(draw(st.integers(-1, 3)))]
        if draw(st.integers(0, 3)) == 0:
            args += [
                "--op",
                draw(mostly(st.sampled_from(["dot", "exp", "relu", "mul"]), st.sampled_from(["", "[/x]"]))),
            ]
        if draw(st.integers(0, 3)) == 0:
            args += ["--sort", draw(mostly(st.sampled_from(["grad", "data", "id", "order"]), st.just("[b]")))]
        args += draw(st.sampled_from([[], ["--json"], ["--why"], ["--no-color", "--width", "60"]]))
    elif command == "graph":
        suffix = draw(
            mostly(st.sampled_from([".dot", ".gv", ".json", ".graphml", ".svg"]), st.sampled_from([".txt", ""]))
        )
        name = draw(mostly(st.sampled_from(["g", "[/a]", "[bold]g", "a b", "é"]), file_names))
        args = ["graph", "-o", name + suffix, *token_options(draw), *model_options(draw, trained, files)]
        levels = ["block"] if suffix == ".svg" else ["block", "tensor", "scalar"]  # layout takes time
        args += ["--level", draw(mostly(st.sampled_from(levels), st.just("[/x]")))]
        if draw(st.booleans()):
            args += ["--focus", draw(patterns), "--hops", str(draw(mostly(st.integers(0, 3), st.just(-1))))]
        args += draw(st.sampled_from([[], ["--edge-grads"], ["--expand-context"], ["--rankdir", "lr"]]))
    elif command == "stats":
        args = ["stats", *token_options(draw), *model_options(draw, trained, files)]
        if draw(st.booleans()):
            args += ["--top", str(draw(counts))]
    elif command == "step":
        args = ["step", "--print", str(draw(mostly(st.integers(1, 4), st.integers(-1, 0)))), *token_options(draw)]
        args += model_options(draw, trained, files)
        if draw(st.booleans()):
            until = draw(
                mostly(st.one_of(patterns, st.sampled_from(["nonfinite", "op:exp", "grad>0.01"])), st.just("op:"))
            )
            args += ["--until", until]
        if draw(st.booleans()):
            args += ["--json"]
    elif command == "check":
        if draw(st.booleans()):
            args = ["check", "nan", *token_options(draw), *model_options(draw, trained, files)]
        else:
            args = ["check", "grad", *token_options(draw), *model_options(draw, trained, files)]
            args += draw(mostly(st.builds(lambda p: [p], patterns), st.just([])))
            if draw(st.integers(0, 3)) == 0:
                option = draw(st.sampled_from(["--step", "--atol", "--rtol"]))
                args += [option, draw(mostly(st.sampled_from(["1e-6", "1e-3", "0"]), floats))]
            if draw(st.integers(0, 3)) == 0:
                args += ["--limit", str(draw(counts))]
        if draw(st.booleans()):
            args += ["--json"]
    elif command == "sample":
        args = [
            "sample",
            "--num",
            str(draw(mostly(st.integers(1, 3), st.integers(-1, 0)))),
            *model_options(draw, trained, files),
        ]
        args += ["--temperature", draw(floats)]
        if draw(st.booleans()):
            args += ["--prefix", draw(words)]
        if draw(st.booleans()):
            args += ["--seed", str(draw(counts))]
    else:
        data = draw(mostly(st.sampled_from(["d", "names[v2]", "[bold]d"]), file_names)) + ".txt"
        if not data.startswith("missing/"):
            files[data] = draw(mostly(st.just(TINY.encode()), data_files))
        args = ["train", "--data", data, "--steps", str(draw(mostly(st.integers(1, 3), st.integers(-1, 0)))), *SMALL]
        # writing over model.json, another run's checkpoint, is the test after this one's
        args += [
            "-o",
            draw(
                mostly(
                    st.sampled_from(["run.json", "[/a].json", "é.json"]), st.sampled_from(["adir", "missing/m.json"])
                )
            ),
        ]
        if draw(st.integers(0, 3)) == 0:
            args += ["--resume"]
        if draw(st.integers(0, 2)) == 0:
            args += ["--lr", draw(floats)]
        if draw(st.integers(0, 3)) == 0:
            args += ["--seed", str(draw(counts))]
    return args, files


def run_in_fresh_directory(args: list[str], files: dict[str, bytes], trained: bytes) -> tuple[Outcome, Path, dict]:
    tmp = Path(tempfile.mkdtemp(prefix="mgx-property-"))
    (tmp / "model.json").write_bytes(trained)
    (tmp / "adir").mkdir()
    for name, payload in files.items():
        if name == "model.json" and payload == b"":
            (tmp / "model.json").unlink()
        else:
            try:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(payload)
            except OSError:
                pass  # a name that is a directory here, or under a file: the command meets it as it is
    before = {p.relative_to(tmp): p.read_bytes() for p in tmp.rglob("*") if p.is_file()}
    with chdir(tmp):
        result = runner.invoke(app, args)
    return Outcome(result.exit_code, result.stdout, result.stderr, result.exception), tmp, before


def check_policy(args: list[str], outcome: Outcome, tmp: Path, before: dict, trained: bytes) -> None:
    shown = f"mgx {' '.join(map(repr, args))}\n--- stderr:\n{outcome.stderr}"
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), (
        f"{shown}\n{type(outcome.exception).__name__}: {outcome.exception}"
    )
    if outcome.exit_code != 0:
        assert outcome.exit_code in EXIT_CODES, shown
        if outcome.exit_code == 2:  # typer's own usage error, in typer's format
            assert "Usage:" in outcome.stderr and "Traceback" not in outcome.stderr, shown
        else:
            lines = [line for line in outcome.stderr.splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("error:")]
            assert len(errors) == 1 and lines[-1] == errors[0], shown
            assert not NOT_A_MESSAGE.search(errors[0]), f"not a message for a user: {shown}"
    stray = [str(p.relative_to(tmp)) for p in tmp.rglob(".*.tmp")]
    assert stray == [], f"half-written files {stray}: {shown}"
    after = {p.relative_to(tmp): p for p in tmp.rglob("*") if p.is_file()}
    created = [path for path in after if path not in before]
    if outcome.exit_code != 0 and args[0] != "train":
        assert created == [], f"a failed command left {created}: {shown}"
    for path in created:
        if path.suffix == ".json" and args[0] == "graph":
            json.loads(after[path].read_text(), parse_constant=_refuse_bare_constant)
        if path.suffix == ".graphml":
            minidom.parseString(after[path].read_bytes())
    resumed_the_run = args[0] == "train" and "--resume" in args
    if before.get(Path("model.json")) == trained and not resumed_the_run:
        kept = any(p.read_bytes() == trained for p in after.values())
        assert kept, f"the checkpoint of another run was lost: {shown}"


def _refuse_bare_constant(token: str) -> float:
    raise AssertionError(f"bare {token} in a JSON output: write it as a string")


def check(args: list[str], files: dict[str, bytes], trained: bytes) -> None:
    outcome, tmp, before = run_in_fresh_directory(args, files, trained)
    try:
        check_policy(args, outcome, tmp, before, trained)
    finally:
        for path in sorted(tmp.rglob("*"), reverse=True):
            path.chmod(0o700) if path.is_dir() else None
            path.rmdir() if path.is_dir() else path.unlink()
        tmp.rmdir()


# -- the properties ----------------------------------------------------------------------------
@PROPERTY
@given(data=st.data())
def test_every_command_keeps_the_error_policy(trained: bytes, data: st.DataObject) -> None:
    args, files = data.draw(commands(trained))
    check(args, files, trained)


@settings(PROPERTY, max_examples=15)
@given(data=st.data())
def test_training_never_loses_another_runs_checkpoint(trained: bytes, data: st.DataObject) -> None:
    """model.json holds another run; a new run to the default --out, or to -o model.json, keeps it."""
    args = ["train", "--data", "tiny.txt", "--steps", str(data.draw(st.integers(1, 2))), *SMALL]
    args += data.draw(st.sampled_from([[], ["-o", "model.json"], ["--resume"], ["--resume", "--steps", "5"]]))
    args += data.draw(st.sampled_from([[], ["--seed", "7"], ["--lr", "1e300"]]))
    check(args, {"tiny.txt": TINY.encode()}, trained)


@settings(PROPERTY, max_examples=25)
@given(data=st.data())
def test_the_views_read_any_pattern_word_and_token(trained: bytes, data: st.DataObject) -> None:
    """inspect, the most pattern-heavy command, always against the trained model."""
    args = ["inspect", data.draw(patterns), *token_options(data.draw)]
    check(args, {}, trained)


@settings(PROPERTY, max_examples=25)
@given(payload=st.data())
def test_any_bytes_as_a_checkpoint_or_data_file(trained: bytes, payload: st.DataObject) -> None:
    as_checkpoint = payload.draw(st.booleans())
    if as_checkpoint:
        command = payload.draw(st.sampled_from([["sample", "--num", "1"], ["stats"], ["inspect", "loss"]]))
        args = [*command, "-c", "given.json"]
        files = {"given.json": payload.draw(checkpoints(trained))}
    else:
        args = ["train", "--data", "given.txt", "--steps", "1", *SMALL, "-o", "new.json"]
        files = {"given.txt": payload.draw(data_files)}
    check(args, files, trained)


# -- names and weights at the limits ----------------------------------------------------------
LONG_NAME = "n" * 300  # longer than a file name may be (ENAMETOOLONG)


@settings(PROPERTY, max_examples=8)
@given(data=st.data())
def test_a_name_too_long_for_the_file_system_is_one_line(trained: bytes, data: st.DataObject) -> None:
    args = data.draw(
        st.sampled_from(
            [
                ["train", "--data", "tiny.txt", "--steps", "1", *SMALL, "-o", LONG_NAME + ".json"],
                ["graph", "-o", LONG_NAME + ".dot"],
                ["sample", "-c", LONG_NAME + ".json"],
                ["train", "--data", LONG_NAME + ".txt", "--steps", "1", *SMALL, "-o", "run.json"],
            ]
        )
    )
    check(args, {"tiny.txt": TINY.encode()}, trained)


@settings(PROPERTY, max_examples=8)
@given(data=st.data())
def test_weights_so_large_that_the_logits_overflow(trained: bytes, data: st.DataObject) -> None:
    """Finite weights (1e308) whose products overflow: the views show nan; sample says why it cannot."""
    raw = json.loads(trained)
    name = data.draw(st.sampled_from(["lm_head", "layer0.attn.wq", "layer0.mlp.fc1"]))
    raw["weights"][name] = [[1e308] * len(row) for row in raw["weights"][name]]
    command = data.draw(st.sampled_from([["sample", "--num", "2"], ["stats"], ["inspect", "probs"], ["check", "nan"]]))
    check([*command, "-c", "huge.json"], {"huge.json": json.dumps(raw).encode()}, trained)
