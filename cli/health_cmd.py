"""``mgx health``: dead units and collapsed heads over many documents, and what the recorded
run says about grads, update ratios and the loss at initialisation."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from rich.text import Text

from cli.common import data_for_vocabulary, documents_of, load_model
from cli.output import console, fail, info, plural


def run_health(*, checkpoint: Path | None, data: Path | None, docs: int, runs_path: Path, as_json: bool) -> None:
    from viz.health import add_forward_findings, forward_health

    if docs < 1:
        fail(f"--docs must be 1 or more, got {docs}")
    loaded = load_model(checkpoint, data_for_vocabulary(checkpoint, data))
    all_docs, source = documents_of(loaded, data)
    tokenizer = loaded.tokenizer
    unknown = sorted({ch for doc in all_docs[:docs] for ch in doc} - set(tokenizer.chars))
    if unknown:
        fail(
            f"the documents of {source} use characters the model does not know ({''.join(unknown)!r}): "
            "pass the --data the model was trained on"
        )
    chosen = [tokenizer.document_tokens(doc) for doc in all_docs[:docs]]
    health = forward_health(loaded.model, chosen)
    show = "" if checkpoint is None else f" --checkpoint {shlex.quote(str(checkpoint))}"
    add_forward_findings(health, show)
    note = _add_run(health, loaded, runs_path)
    if as_json:
        out = health.to_json() | {"data": source, "run_note": note}
        console.print_json(json.dumps(out, allow_nan=False))
        return
    _print(health, loaded.description, source, note)


def _add_run(health, loaded, runs_path: Path) -> str:
    """Read the checkpoint's recorded run into ``health``; returns a note saying what was read."""
    from viz.health import add_run_findings
    from viz.runs import RunsError, list_runs, read_series, series_names

    ckpt = loaded.checkpoint
    if ckpt is None or ckpt.run_id is None:
        return "no recorded run: a fresh model has none"
    try:
        runs = [run for run in list_runs(runs_path) if run.id == ckpt.run_id]
    except RunsError:
        return f"no recorded run: no runs database at {runs_path} (train records one; --runs FILE)"
    if not runs:
        return f"no recorded run: this checkpoint's run is not in {runs_path} (--runs FILE)"
    run = runs[0]
    wanted = [
        name for name in series_names(runs_path, run.id) if name.split(":")[0] in ("loss", "grad_norm", "update_ratio")
    ]
    series = {name: read_series(runs_path, run.id, name) for name in wanted}
    add_run_findings(health, run.name, series, run.steps, loaded.tokenizer.vocab_size)
    return f"run {run.name} in {runs_path} ({plural(run.done, 'step')} recorded)"


def _print(health, model: str, source: str, note: str) -> None:
    info(f"data: {plural(health.documents, 'document')} of {source}; {note}")
    for name, dead in health.dead.items():
        console.print(f"{name}: {len(dead)} of {health.units[name]} units dead (never above 0)")
    console.print("heads: normalised entropy (1 uniform, 0 one-hot), queries with a weight ≥ 0.99")
    for head in health.heads:
        console.print(f"  {head.head}  {head.entropy:.3f}  {head.saturated:4.0%}")
    if not health.findings:
        console.print(
            Text(
                "no findings: every unit fires, no head collapsed"
                + ("; grads, update ratios and the initial loss within bounds" if health.run else ""),
                style="green",
            )
        )
        return
    console.print(Text(f"{plural(len(health.findings), 'finding')}:", style="bold"))
    for finding in health.findings:
        console.print(Text(f"• {finding.text}", style="yellow"))
        console.print(Text(f"  see: {finding.command}", style="dim"))
