"""``mgx train``: the training loop behind a progress bar, a checkpoint, and a clean Ctrl-C."""

from __future__ import annotations

import math
import signal
from pathlib import Path

from cli.common import check_granularity
from cli.output import check_writable, console, err_console, fail, info
from microgpt import checkpoint as ckpt_io
from microgpt.data import EMBEDDED_SOURCE, embedded_documents, find_dataset, load_documents
from microgpt.errors import MicrogptError
from microgpt.train import AdamConfig, NonFiniteLoss, TrainState, start_run, train


class _StopAtStepBoundary(Exception):
    """Raised from the step callback after Ctrl-C, so the run stops between two steps."""


def _resume_dataset(data: Path | None, source: str):
    if data is not None:
        return load_documents(data)
    if source == EMBEDDED_SOURCE:
        return embedded_documents()
    return load_documents(source)


def run_training(
    *,
    data: Path | None,
    steps: int,
    lr: float,
    seed: int,
    n_layer: int,
    n_embd: int,
    n_head: int,
    block_size: int,
    granularity: str,
    out: Path,
    resume: bool,
    log_every: int,
) -> None:
    if steps < 1:
        fail(f"--steps must be at least 1, got {steps}")
    if not (math.isfinite(lr) and lr > 0):
        fail(f"--lr must be a positive number, got {lr}")
    if log_every < 0:
        fail(f"--log-every must be 0 (progress bar only) or more, got {log_every}")
    check_granularity(granularity)
    check_writable(out, "--out", "model.json")

    if resume:
        if not out.is_file():
            fail(f"--resume: there is no checkpoint at {out} to continue; drop --resume or point --out at one")
        ckpt = ckpt_io.load(out)
        dataset = _resume_dataset(data, ckpt.data_source)
        run = start_run(dataset.docs, ckpt.seed, **_config_kwargs(ckpt.model.config))
        if run.tokenizer.chars != ckpt.tokenizer.chars:
            fail(f"the data {dataset.source} has another vocabulary than the checkpoint {out}: pass the run's --data")
        model, tokenizer, rng, state, adam, seed = (
            ckpt.model,
            ckpt.tokenizer,
            ckpt.rng,
            ckpt.state,
            ckpt.adam,
            ckpt.seed,
        )
        if state.step >= steps:
            fail(f"{out} has already done {state.step} of {steps} steps: pass a larger --steps to train on")
        info(f"resuming {out} at step {state.step} of {steps}")
    else:
        dataset = find_dataset(data)
        run = start_run(dataset.docs, seed, n_layer=n_layer, n_embd=n_embd, n_head=n_head, block_size=block_size)
        model, tokenizer, rng, state, adam = run.model, run.tokenizer, run.rng, TrainState(), AdamConfig(lr=lr)
    docs = run.docs
    info(f"data: {dataset.source} ({len(docs):,} documents, {tokenizer.vocab_size} tokens incl. BOS)")
    info(f"model: {len(model.params):,} parameters, {granularity} graphs; {steps} steps")

    def checkpoint() -> ckpt_io.Checkpoint:
        return ckpt_io.Checkpoint(model, tokenizer, adam, state, steps, seed, dataset.source, granularity, rng)

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
    )
    losses: list[float] = []

    def on_step(done: int, loss: float) -> None:
        losses.append(loss)
        progress.update(task, completed=done, loss=f"{loss:.4f}")
        if log_every and (done % log_every == 0 or done == steps):
            console.print(f"step {done:4d} / {steps:4d} | loss {loss:.4f}")
        if interrupted:
            raise _StopAtStepBoundary

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    try:
        with progress:
            task = progress.add_task("train", total=steps, completed=state.step, loss="-")
            train(model, tokenizer, docs, steps, state, adam=adam, granularity=granularity, on_step=on_step)
    except _StopAtStepBoundary:
        ckpt_io.save(checkpoint(), out)
        fail(f"interrupted after step {state.step}; saved {out}: continue with `mgx train --resume --out {out}`", 130)
    except NonFiniteLoss as e:
        fail(f"{e}; nothing was saved")
    except (OverflowError, ValueError, ZeroDivisionError) as e:
        if isinstance(e, MicrogptError):
            raise
        fail(f"arithmetic failed at step {state.step + 1} ({e}): the weights diverged, lower --lr; nothing was saved")
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    ckpt_io.save(checkpoint(), out)
    tail = losses[-min(100, len(losses)) :]
    info(f"saved {out}")
    console.print(f"trained {state.step} steps; mean loss of the last {len(tail)}: {sum(tail) / len(tail):.4f}")


def _config_kwargs(config) -> dict[str, int]:
    return {k: getattr(config, k) for k in ("n_layer", "n_embd", "n_head", "block_size")}
