"""``mgx train``: the training loop behind a progress bar, a checkpoint, and a clean Ctrl-C.

A run has an id (saved in its checkpoint). Only ``--resume`` continues a run, with the
options it was saved with; a new run never destroys another run's checkpoint: one in the
way at ``--out`` is kept beside it (model.json -> model.1.json) when the new run first
saves, and a read-only file or one that is not a checkpoint is refused before any work.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import check_granularity
from cli.output import check_writable, console, err_console, fail, info, plural
from microgpt import checkpoint as ckpt_io
from microgpt.data import EMBEDDED_SOURCE, Dataset, Tokenizer, embedded_documents, find_dataset, load_documents
from microgpt.errors import MicrogptError
from microgpt.files import target_problem
from microgpt.model import GPTConfig
from microgpt.train import AdamConfig, Diverged, TrainState, start_run, train

if TYPE_CHECKING:
    from viz.runs import StepRecorder

# What a new run uses when an option is not given (the help texts say the same).
DEFAULT_STEPS = 1000
DEFAULT_SEED = 42
DEFAULT_GRANULARITY = "fused"
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class _StopAtStepBoundary(Exception):
    """Raised from the step callback after Ctrl-C, so the run stops between two steps."""


@dataclass
class RunOptions:
    """The options of ``mgx train`` that define a run; None means not given on the command line."""

    steps: int | None = None
    lr: float | None = None
    seed: int | None = None
    n_layer: int | None = None
    n_embd: int | None = None
    n_head: int | None = None
    block_size: int | None = None
    granularity: str | None = None

    def model_config(self) -> dict[str, int]:
        defaults = GPTConfig()
        return {name: _given(getattr(self, name), getattr(defaults, name)) for name in _CONFIG_NAMES}


_CONFIG_NAMES = ("n_layer", "n_embd", "n_head", "block_size")


def _given(value, default):
    return default if value is None else value


@dataclass
class Session:
    """One run being trained: what the checkpoint holds, and the docs in training order."""

    ckpt: ckpt_io.Checkpoint
    docs: list[str]
    ours: set[str | None] = field(default_factory=set)  # run ids whose file at --out this run may replace


@dataclass
class Recording:
    """Where and how a run is recorded (None in place of one: --no-record)."""

    path: Path
    name: str | None = None  # default: --out's stem
    snapshot_every: int = 50


def run_training(
    *, data: Path | None, options: RunOptions, out: Path, resume: bool, log_every: int,
    recording: Recording | None = None,
) -> None:  # fmt: skip
    if options.steps is not None and options.steps < 1:
        fail(f"--steps must be at least 1, got {options.steps}")
    if options.lr is not None and not (math.isfinite(options.lr) and options.lr > 0):
        fail(f"--lr must be a positive number, got {options.lr}")
    if log_every < 0:
        fail(f"--log-every must be 0 (progress bar only) or more, got {log_every}")
    if recording is not None and recording.snapshot_every < 1:
        fail(f"--snapshot-every must be 1 or more steps, got {recording.snapshot_every}")
    if options.granularity is not None:
        check_granularity(options.granularity)
    check_writable(out, "--out", "model.json")
    session = _resumed_run(out, data, options) if resume else _new_run(out, data, options)
    recorder = None if recording is None else _start_recording(session, out, recording)
    _train(session, out, log_every, recorder)


# Every weight is a Python object, and one step's graph holds several nodes per weight, so
# past a few million parameters a step takes minutes and gigabytes: refuse before allocating.
MAX_PARAMETERS = 2_000_000


def _check_size(config: dict[str, int], vocab_size: int) -> None:
    from microgpt.model import weight_shapes

    try:
        shapes = weight_shapes(GPTConfig(vocab_size=vocab_size, **config))
    except MicrogptError:
        return  # GPTConfig's own message comes when the run starts
    count = sum(rows * cols for rows, cols in shapes.values())
    if count > MAX_PARAMETERS:
        fail(
            f"a model of {count:,} parameters is too large for a scalar engine (at most {MAX_PARAMETERS:,}: every "
            "weight is a Python object): choose a smaller --n-embd, --n-layer or --block-size"
        )


def _read_only(path: Path) -> bool:
    mode = path.stat().st_mode
    return not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK)


def _new_run(out: Path, data: Path | None, options: RunOptions) -> Session:
    if out.exists():  # check_writable made sure it is a regular file
        _check_replaceable(out)
    dataset = find_dataset(data)
    _check_size(options.model_config(), Tokenizer.from_documents(dataset.docs).vocab_size)
    seed = _given(options.seed, DEFAULT_SEED)
    run = start_run(dataset.docs, seed, **options.model_config())
    steps = _given(options.steps, DEFAULT_STEPS)
    ckpt = ckpt_io.Checkpoint(
        model=run.model,
        tokenizer=run.tokenizer,
        adam=AdamConfig(lr=_given(options.lr, AdamConfig.lr)),
        state=TrainState(),
        steps=steps,
        seed=seed,
        data_source=dataset.source,
        granularity=_given(options.granularity, DEFAULT_GRANULARITY),
        rng=run.rng,
        data_sha256=ckpt_io.documents_digest(dataset.docs),
    )
    _describe(ckpt, dataset, len(run.docs))
    return Session(ckpt, run.docs, {ckpt.run_id})


def _check_replaceable(out: Path) -> None:
    """A new run may write over another run's checkpoint (it keeps it beside at the first
    save), but not over a read-only file or a file that is not a checkpoint."""
    ways = f"write elsewhere with --out FILE, or remove {out} to replace it"
    try:
        ckpt_io.stored_run_id(out)
    except MicrogptError as e:
        fail(f"--out: {e}, and training would replace it: {ways}")
    if _read_only(out):
        fail(f"--out {out} is a read-only checkpoint: to continue its run make it writable and pass --resume; {ways}")
    problem = target_problem(out.with_name(f"{out.stem}.1{out.suffix}"))
    if problem is not None:  # where the other run's checkpoint will be kept
        fail(f"--out {out} holds another run's checkpoint, which cannot be kept beside it ({problem}): {ways}")


def _resumed_run(out: Path, data: Path | None, options: RunOptions) -> Session:
    if not out.is_file():
        fail(f"--resume: there is no checkpoint at {out} to continue; drop --resume or point --out at one")
    if _read_only(out):
        fail(f"--resume: {out} is read-only, and continuing its run replaces it: make it writable, or copy it first")
    ckpt = ckpt_io.load(out)
    bad = ckpt.non_finite_weights()
    if bad:
        fail(
            f"--resume: {out} holds non-finite weights (first {bad[0].tag} = {bad[0].data}), so its run cannot "
            f"continue: look at it with `mgx inspect {shlex.quote(bad[0].tag)} --checkpoint {shlex.quote(str(out))}`, "
            "or start a new run"
        )
    _check_no_contradiction(ckpt, options, out)
    steps = _resumed_steps(ckpt, options.steps, out)
    dataset = _resumed_dataset(ckpt, data, out)
    config = ckpt.model.config
    run = start_run(dataset.docs, ckpt.seed, **{name: getattr(config, name) for name in _CONFIG_NAMES})
    if run.tokenizer.chars != ckpt.tokenizer.chars:
        fail(f"the data {dataset.source} has another vocabulary than the checkpoint {out}: pass the run's --data")
    ours = {ckpt.run_id}
    if ckpt.run_id is None:  # a version-1 file: the continued run gets an id
        ckpt.run_id = ckpt_io.new_run_id()
        ours.add(ckpt.run_id)
    if ckpt.data_sha256 is None:
        ckpt.data_sha256 = ckpt_io.documents_digest(dataset.docs)
    ckpt.data_source = dataset.source
    info(f"resuming {out} after step {ckpt.state.step} of {steps}")
    if steps != ckpt.steps:
        lr_now = ckpt.adam.lr * (1 - ckpt.state.step / steps)
        info(
            f"extending the run from {ckpt.steps} to {steps} steps: from step {ckpt.state.step + 1} the learning "
            f"rate follows the {steps}-step schedule, lr·(1 − step/{steps}), now {lr_now:.3g} and decaying to 0"
        )
        ckpt.steps = steps
    _describe(ckpt, dataset, len(run.docs))
    return Session(ckpt, run.docs, ours)


def _check_no_contradiction(ckpt: ckpt_io.Checkpoint, options: RunOptions, out: Path) -> None:
    config = ckpt.model.config
    saved = {
        "--lr": (options.lr, ckpt.adam.lr),
        "--seed": (options.seed, ckpt.seed),
        "--granularity": (options.granularity, ckpt.granularity),
        **{f"--{name.replace('_', '-')}": (getattr(options, name), getattr(config, name)) for name in _CONFIG_NAMES},
    }
    for option, (given, value) in saved.items():
        if given is not None and given != value:
            fail(
                f"{option} {given} contradicts the run in {out}, which has {option} {value}: --resume continues "
                f"the run as it was saved, so drop {option}; for a new run, drop --resume and choose another --out"
            )


def _resumed_steps(ckpt: ckpt_io.Checkpoint, steps: int | None, out: Path) -> int:
    """The run's own step count, or a larger --steps that extends it."""
    done = ckpt.state.step
    if steps is None or steps == ckpt.steps:
        if done >= ckpt.steps:
            fail(f"{out} has already done {done} of {ckpt.steps} steps: pass a larger --steps to extend the run")
        return ckpt.steps
    if steps < ckpt.steps and done >= ckpt.steps:
        fail(f"the run in {out} has finished its {ckpt.steps} steps: pass --steps larger than that to extend it")
    if steps < ckpt.steps:
        fail(
            f"--steps {steps} is fewer than the {ckpt.steps} of the run in {out}: drop --steps to finish the run "
            "(Ctrl-C stops it at any step and keeps it), or pass more to extend it"
        )
    return steps


def _resumed_dataset(ckpt: ckpt_io.Checkpoint, data: Path | None, out: Path) -> Dataset:
    source = ckpt.data_source
    if data is not None:
        dataset = load_documents(data)
    elif source == EMBEDDED_SOURCE:
        dataset = embedded_documents()
    elif not Path(source).is_file():
        fail(f"the run in {out} trained on {source}, which is not here: pass --data with that file")
    else:
        dataset = load_documents(source)
    if ckpt.data_sha256 is not None and ckpt_io.documents_digest(dataset.docs) != ckpt.data_sha256:
        fail(
            f"{dataset.source} is not the data the run in {out} trained on ({source}, other documents): "
            "pass --data with that data, or start a new run"
        )
    return dataset


def _describe(ckpt: ckpt_io.Checkpoint, dataset: Dataset, n_docs: int) -> None:
    info(f"data: {dataset.source} ({plural(n_docs, 'document')}, {ckpt.tokenizer.vocab_size} tokens incl. BOS)")
    params = len(ckpt.model.params)
    info(f"model: {plural(params, 'parameter')}, {ckpt.granularity} graphs; {plural(ckpt.steps, 'step')}")


def keep_aside(path: Path) -> Path:
    """Keep the file at ``path`` under the smallest free name beside it (model.json ->
    model.1.json) and return that name; ``path`` itself stays until it is replaced.

    A hard link where the file system allows one (it fails if the name was taken in the
    meantime, so nothing is ever overwritten), else a rename."""
    n = 1
    while True:
        aside = path.with_name(f"{path.stem}.{n}{path.suffix}")
        if not os.path.lexists(aside):
            try:
                os.link(path, aside)
                return aside
            except FileExistsError:
                pass
            except OSError:  # no hard links here (or not allowed): move the file instead
                if not os.path.lexists(aside):
                    os.rename(path, aside)
                    return aside
        n += 1


def _save(session: Session, out: Path) -> None:
    """Write the checkpoint; another run's checkpoint in the way is kept beside it first."""
    kept = None
    if os.path.lexists(out):
        try:
            theirs = ckpt_io.stored_run_id(out)
        except MicrogptError:
            theirs = "not a checkpoint"
        if theirs not in session.ours:
            kept = keep_aside(out)
    ckpt_io.save(session.ckpt, out)
    session.ours = {session.ckpt.run_id}
    if kept is not None:
        info(f"kept the checkpoint of another run that was at {out} as {kept}")


def _look_hint(e: Diverged, ckpt: ckpt_io.Checkpoint, quoted_out: str) -> str:
    """The view that shows where a non-finite loss starts, in the saved (last good) model."""
    from microgpt.scope import parse_tag

    if e.origin is None or e.document is None:
        return ""
    pos = parse_tag(e.origin).pos
    if pos is None:
        return ""
    atomic = " --granularity atomic" if ckpt.granularity == "atomic" else ""
    return (
        f"; see where it starts with `mgx check nan --checkpoint {quoted_out} "
        f"--word {shlex.quote(e.document)} --pos {pos}{atomic}`"
    )


def _origin_report(ckpt: ckpt_io.Checkpoint, e: Diverged) -> list[str]:
    """What ``mgx check nan`` says of the diverged step's graph: rebuilt from the saved state
    (the step changed nothing), its forward and backward origins."""
    if e.document is None:
        return []
    from cli.check_cmd import backward_lines, forward_lines
    from microgpt.graph import word_graph
    from viz.check import backward_origin, forward_origin
    from viz.trace import Trace

    tokens = ckpt.tokenizer.document_tokens(e.document)
    trace = Trace(*word_graph(ckpt.model, tokens, granularity=ckpt.granularity))
    ckpt.model.zero_grad()
    return forward_lines(trace, forward_origin(trace)) + backward_lines(trace, backward_origin(trace))


def _start_recording(session: Session, out: Path, recording: Recording) -> StepRecorder:
    from viz.runs import Recorder, StepRecorder

    ckpt = session.ckpt
    config = {name: getattr(ckpt.model.config, name) for name in (*_CONFIG_NAMES, "vocab_size")}
    config["lr"] = ckpt.adam.lr
    db = Recorder.start(
        recording.path,
        run_id=ckpt.run_id,
        steps=ckpt.steps,
        config=config,
        name=recording.name or out.stem,
        checkpoint=str(out),
        data=ckpt.data_source,
        data_sha256=ckpt.data_sha256,
        seed=ckpt.seed,
        granularity=ckpt.granularity,
        resume_from=ckpt.state.step,
    )
    info(f"recording every step in {recording.path} as run {db.name} (mgx plot --run {db.name}; --no-record to skip)")
    return StepRecorder(db, ckpt.model.config, ckpt.state, recording.snapshot_every)


def _finish(recorder: StepRecorder | None, status: str) -> None:
    if recorder is not None:
        recorder.finish(status)


def _train(session: Session, out: Path, log_every: int, recorder: StepRecorder | None = None) -> None:
    ckpt = session.ckpt
    state, steps = ckpt.state, ckpt.steps
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    interrupted = False

    def on_sigint(signum, frame) -> None:  # finish the step in progress, then stop
        nonlocal interrupted
        interrupted = True

    progress = Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        # Redrawn from here, ten times a second at most: rich's own refresh thread would take
        # the interpreter from the training loop ten times a second, drawing or not.
        auto_refresh=False,
    )
    losses: list[float] = []
    drawn = time.monotonic()

    def on_step(done: int, loss: float) -> None:
        nonlocal drawn
        losses.append(loss)
        progress.update(task, completed=done, loss=f"{loss:.4f}")
        if time.monotonic() - drawn >= 0.1:
            progress.refresh()
            drawn = time.monotonic()
        if log_every and (done % log_every == 0 or done == steps):
            console.print(f"step {done:4d} / {steps:4d} | loss {loss:.4f}")
        if interrupted:
            raise _StopAtStepBoundary

    quoted = shlex.quote(str(out))
    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    try:
        with progress:
            task = progress.add_task("train", total=steps, completed=state.step, loss="-")
            train(
                ckpt.model,
                ckpt.tokenizer,
                session.docs,
                steps,
                state,
                adam=ckpt.adam,
                granularity=ckpt.granularity,
                on_step=on_step,
                on_detail=None if recorder is None else recorder.on_detail,
            )
    except _StopAtStepBoundary:
        _save(session, out)
        _finish(recorder, "interrupted")
        fail(
            f"interrupted after step {state.step} of {steps}; saved {out}: continue with "
            f"`mgx train --resume --out {quoted}`",
            EXIT_INTERRUPTED,
        )
    except Diverged as e:
        _save(session, out)
        _finish(recorder, "diverged")
        info(f"saved {out}: the last good state, after step {state.step} of {steps} (step {e.step} changed nothing)")
        for line in _origin_report(ckpt, e):
            info(line)
        fail(f"{e}: start a new run with a lower --lr{_look_hint(e, ckpt, quoted)}", EXIT_DIVERGED)
    except KeyboardInterrupt:
        _finish(recorder, "interrupted")
        raise
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    _save(session, out)
    _finish(recorder, "finished")
    tail = losses[-min(100, len(losses)) :]
    info(f"saved {out}")
    console.print(
        f"trained {plural(state.step, 'step')}; mean loss of the last {plural(len(tail), 'step')}: "
        f"{sum(tail) / len(tail):.4f}"
    )
