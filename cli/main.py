"""The ``mgx`` command. Each command imports what it uses inside its body, so that
``mgx --help`` and the light commands start fast (rich + typer are most of start-up).

Ctrl-C at any moment ends with one line and exit 130 (README, "Errors"): while the imports
below run, the ``except`` under them says so; from ``run()`` on, ``cli.output`` does."""

from __future__ import annotations

import sys

try:
    from pathlib import Path
    from typing import Annotated

    import typer
    from typer.core import TyperCommand, TyperGroup

    from cli.common import (
        DEFAULT_CHECKPOINT,
        CheckpointOption,
        DataOption,
        GranularityOption,
        PosOption,
        RunsOption,
        TargetOption,
        TokenChoice,
        TokenOption,
        WordOption,
        load_model,
    )
    from cli.output import fail, info, print_line, stop_on_interrupt, user_errors
except KeyboardInterrupt:  # the same line as cli.output.stop_on_interrupt, which is not imported yet
    sys.stderr.write("error: interrupted before the command started; nothing was written\n")
    raise SystemExit(130) from None


def _without_flag_metavars(params: list) -> list:
    """Flags (--why, --force, --help) take no value, so --help shows no <bool> after them."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    def get_params(self, ctx) -> list:
        return _without_flag_metavars(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx) -> list:
        return _without_flag_metavars(super().get_params(ctx))


app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
    help="microgpt-x: see and debug how a tiny GPT computes and learns, down to the last scalar.",
)


def _version(value: bool) -> None:
    if value:
        from microgpt import __version__

        print_line(f"mgx {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """microgpt-x: see and debug how a tiny GPT computes and learns, down to the last scalar."""


@app.command(cls=Command)
@user_errors
def train(
    data: DataOption = None,
    steps: Annotated[
        int | None, typer.Option(help="Training steps, one document each (default: 1000; with --resume, the run's).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate, decays linearly to 0 (default: 0.01).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed: shuffle, then weights (default: 42).")] = None,
    n_layer: Annotated[int | None, typer.Option(help="Transformer layers (default: 1).")] = None,
    n_embd: Annotated[int | None, typer.Option(help="Embedding width (default: 16).")] = None,
    n_head: Annotated[int | None, typer.Option(help="Attention heads, dividing --n-embd (default: 4).")] = None,
    block_size: Annotated[int | None, typer.Option(help="Longest context in tokens (default: 16).")] = None,
    granularity: Annotated[
        str | None, typer.Option(help="fused (fast) or atomic (the reference's nodes) (default: fused).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write.")] = DEFAULT_CHECKPOINT,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the run saved in --out, with its own options (give none that differ)."),
    ] = False,
    log_every: Annotated[int, typer.Option(help="Print a line every N steps (0: progress bar only).")] = 0,
    runs_path: RunsOption = Path("runs.sqlite"),
    no_record: Annotated[bool, typer.Option("--no-record", help="Record nothing in the runs database.")] = False,
    name: Annotated[
        str | None, typer.Option(help="The run's short name in the runs database (default: --out's stem).")
    ] = None,
    snapshot_every: Annotated[
        int, typer.Option(help="Record every weight, grad and Adam moment every N steps, and at the end.")
    ] = 50,
) -> None:
    """Train the GPT on names with Adam: a resumable checkpoint, every step recorded in runs.sqlite.

    Ctrl-C keeps a checkpoint too; mgx runs and mgx plot read what was recorded.

    A checkpoint of another run at --out is kept beside it (model.json -> model.1.json)."""
    from cli.train_cmd import Recording, RunOptions, run_training

    options = RunOptions(steps, lr, seed, n_layer, n_embd, n_head, block_size, granularity)
    recording = None if no_record else Recording(runs_path, name, snapshot_every)
    run_training(data=data, options=options, out=out, resume=resume, log_every=log_every, recording=recording)


@app.command(cls=Command)
@user_errors
def sample(
    checkpoint: CheckpointOption = None,
    num: Annotated[int, typer.Option(help="How many names.")] = 20,
    temperature: Annotated[float, typer.Option(help="Softmax temperature (> 0; lower is safer).")] = 0.5,
    seed: Annotated[int | None, typer.Option(help="Seed (default: continue the checkpoint's random state).")] = None,
    prefix: Annotated[str, typer.Option(help="Start every name with these letters.")] = "",
    data: DataOption = None,
) -> None:
    """Sample new names, one per line."""
    import random

    from microgpt.train import sample as sample_name

    if num < 1:
        fail(f"--num must be at least 1, got {num}")
    if not temperature > 0:
        fail(f"--temperature must be a positive number, got {temperature}")
    loaded = load_model(checkpoint, data, finite=True)
    rng = loaded.rng if seed is None else random.Random(seed)
    if seed is None:
        info("random state: continued from the model's (pass --seed N for another draw)")
    for _ in range(num):
        print_line(sample_name(loaded.model, loaded.tokenizer, rng, temperature=temperature, prefix=prefix))


@app.command(cls=Command)
@user_errors
def graph(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output file; its extension picks the format: .svg .png .pdf .dot .gv .json .graphml .mmd .html.",
        ),
    ] = Path("graph.svg"),
    token: TokenOption = None,
    pos: PosOption = None,
    word: WordOption = None,
    target: TargetOption = None,
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    granularity: GranularityOption = "fused",
    level: Annotated[
        str, typer.Option(help="block, tensor (a node per tagged vector or matrix) or scalar.")
    ] = "tensor",
    focus: Annotated[
        str | None, typer.Option(help="Draw only nodes whose tag matches this pattern (e.g. attn.h0), plus --hops.")
    ] = None,
    hops: Annotated[int, typer.Option(help="Neighbours of the focus to draw, collapsed.")] = 1,
    edge_grads: Annotated[
        bool, typer.Option("--edge-grads", help="Scalar level: the local derivative on each edge.")
    ] = False,
    rankdir: Annotated[str, typer.Option(help="Direction of the drawing: TB, BT, LR or RL.")] = "TB",
    layout_program: Annotated[
        str | None, typer.Option(help="Program laying out SVG/PNG/PDF (default: dot on PATH, else graphviz-pure).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Draw a large scalar graph without asking.")] = False,
    expand_context: Annotated[
        bool, typer.Option("--expand-context", help="Draw the earlier positions (the KV cache) in full, not collapsed.")
    ] = False,
) -> None:
    """Draw the computation graph of one token (or, with --word and no --pos, of a whole word)."""
    from cli.graph_cmd import graph_command

    graph_command(
        out=out,
        choice=TokenChoice(checkpoint, data, word, pos, token, target, granularity),
        level=level,
        focus=focus,
        hops=hops,
        edge_grads=edge_grads,
        rankdir=rankdir,
        layout_program=layout_program,
        force=force,
        expand_context=expand_context,
    )


@app.command(cls=Command)
@user_errors
def stats(
    token: TokenOption = None,
    pos: PosOption = None,
    word: WordOption = None,
    target: TargetOption = None,
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    granularity: GranularityOption = "fused",
    top: Annotated[int, typer.Option(help="Rows of the per-group table (largest groups first).")] = 25,
) -> None:
    """Count the graph of one token (or a whole word): nodes and edges per op and per tag group, depth, fan-in/out."""
    from cli.graph_cmd import stats_command

    stats_command(
        choice=TokenChoice(checkpoint, data, word, pos, token, target, granularity),
        top=top,
    )


@app.command(cls=Command)
@user_errors
def inspect(
    pattern: Annotated[
        str,
        typer.Argument(
            help="Tag pattern: attn.h0, layer*.mlp.pre, attn.h[01].q, layer0.attn.wq[3,5], k@pos0 (README: Patterns)."
        ),
    ],
    op: Annotated[str | None, typer.Option(help="Keep only nodes made by this op (dot, exp, add, param ...).")] = None,
    limit: Annotated[int, typer.Option(help="Entries shown per group (0: all); the rest are counted.")] = 10,
    sort: Annotated[str, typer.Option(help="order (the graph's), grad or data (largest first), or id.")] = "order",
    depth: Annotated[
        int | None, typer.Option(help="Expand what each node was computed from, N levels (default: 1 for one node).")
    ] = None,
    why: Annotated[
        bool, typer.Option("--why", help="Split each node's grad into its consumers' contributions.")
    ] = False,
    adam: Annotated[
        bool, typer.Option("--adam", help="Add Adam's moments, bias-corrected, and the last update to each weight.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of the tree.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain text, no colours.")] = False,
    width: Annotated[int | None, typer.Option(help="Columns to render in (default: the terminal's).")] = None,
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    word: WordOption = None,
    pos: PosOption = None,
    token: TokenOption = None,
    target: TargetOption = None,
    granularity: GranularityOption = "fused",
) -> None:
    """Show the nodes a tag pattern selects as a tree of data and grad (the graph of one token)."""
    from cli.inspect_cmd import run_inspect

    run_inspect(
        pattern=pattern,
        op=op,
        limit=limit,
        sort=sort,
        depth=depth,
        why=why,
        as_json=as_json,
        no_color=no_color,
        width=width,
        choice=TokenChoice(checkpoint, data, word, pos, token, target, granularity),
        adam=adam,
    )


@app.command(cls=Command)
@user_errors
def view(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the page here (.html); default: a temporary file.")
    ] = None,
    token: TokenOption = None,
    pos: PosOption = None,
    word: WordOption = None,
    target: TargetOption = None,
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    granularity: GranularityOption = "fused",
    level: Annotated[str, typer.Option(help="The view the page opens on: block or tensor.")] = "block",
    focus: Annotated[
        str | None, typer.Option(help="Open on the nodes whose tag matches this pattern (e.g. attn.h0), marked.")
    ] = None,
    layout_program: Annotated[
        str | None, typer.Option(help="Program laying out the views (default: dot on PATH, else graphviz-pure).")
    ] = None,
) -> None:
    """Open the graph in the browser: drill from blocks to scalars, search it, play backprop across it."""
    from cli.view_cmd import view_command

    choice = TokenChoice(checkpoint, data, word, pos, token, target, granularity)
    view_command(out, choice, level, focus, layout_program)


@app.command(cls=Command)
@user_errors
def step(
    token: TokenOption = None,
    pos: PosOption = None,
    word: WordOption = None,
    target: TargetOption = None,
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    granularity: GranularityOption = "fused",
    until: Annotated[
        str | None,
        typer.Option(help="Run to the first step that hits this: a tag pattern, op:NAME, nonfinite, origin or grad>X."),
    ] = None,
    print_steps: Annotated[
        int | None, typer.Option("--print", help="Print N steps as text (no full screen), from the start or --until.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --print: one JSON object per step.")] = False,
) -> None:
    """Step through one token's backward pass node by node: full screen, or --print N as text."""
    from cli.step_cmd import run_step

    run_step(
        choice=TokenChoice(checkpoint, data, word, pos, token, target, granularity),
        until=until,
        print_steps=print_steps,
        as_json=as_json,
    )


check_app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    help="Check the graph: gradients against finite differences (grad), where a NaN or inf was born (nan).",
)
app.add_typer(check_app, name="check")


@check_app.command("grad", cls=Command)
@user_errors
def check_grad(
    pattern: Annotated[
        str | None, typer.Argument(help="Tag pattern of the nodes to check (default: every parameter in the graph).")
    ] = None,
    op: Annotated[str | None, typer.Option(help="Keep only nodes made by this op.")] = None,
    step: Annotated[float, typer.Option(help="Finite-difference step (central differences).")] = 1e-6,
    atol: Annotated[float, typer.Option(help="Pass where |analytic − numeric| ≤ atol + rtol·|numeric|.")] = 1e-5,
    rtol: Annotated[float, typer.Option(help="See --atol (PyTorch gradcheck's float64 tolerances).")] = 1e-3,
    limit: Annotated[int, typer.Option(help="Elements listed, worst first (0: all).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of the table.")] = False,
    token: TokenOption = None,
    pos: PosOption = None,
    word: WordOption = None,
    target: TargetOption = None,
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    granularity: GranularityOption = "fused",
) -> None:
    """Prove the gradients right: each analytic grad next to the central finite difference of the loss.

    Exit 0 when every element passes (a kink, a ReLU input within the step of 0, has no verdict); exit 4 when any fails; exit 1 on bad input.
    """  # noqa: E501 (typer keeps a docstring's line breaks: one paragraph, one line)
    from cli.check_cmd import run_check_grad

    run_check_grad(
        choice=TokenChoice(checkpoint, data, word, pos, token, target, granularity),
        pattern=pattern,
        op=op,
        step=step,
        atol=atol,
        rtol=rtol,
        limit=limit,
        as_json=as_json,
    )


@check_app.command("nan", cls=Command)
@user_errors
def check_nan(
    update: Annotated[
        bool,
        typer.Option(
            "--update", help="A whole training step: with --word NAME, also check the Adam update that follows."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    token: TokenOption = None,
    pos: PosOption = None,
    word: WordOption = None,
    target: TargetOption = None,
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    granularity: GranularityOption = "fused",
) -> None:
    """Find where a NaN or an infinity was born: the forward origin and the backward origin.

    Exit 0 with "all finite" when nothing is; exit 4 when something is; exit 1 on bad input."""
    from cli.check_cmd import run_check_nan

    run_check_nan(
        choice=TokenChoice(checkpoint, data, word, pos, token, target, granularity), update=update, as_json=as_json
    )


@app.command(cls=Command)
@user_errors
def runs(
    runs_path: RunsOption = Path("runs.sqlite"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of the table.")] = False,
) -> None:
    """List the training runs recorded in a runs database: status, steps, final and best loss, data, config."""
    from cli.runs_cmd import run_runs

    run_runs(runs_path=runs_path, as_json=as_json)


@app.command(cls=Command)
@user_errors
def plot(
    series: Annotated[
        list[str] | None,
        typer.Argument(help="Series as kind:pattern: loss, lr, grad_norm:attn.*, update_ratio:*, entropy, dead ..."),
    ] = None,
    run: Annotated[
        list[str] | None,
        typer.Option("--run", help="A run's name or id prefix (repeat to compare; default: the last)."),
    ] = None,
    runs_path: RunsOption = Path("runs.sqlite"),
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Write a .png or .svg (default: draw in the terminal).")
    ] = None,
    smooth: Annotated[int, typer.Option(help="Steps in the loss's moving average.")] = 25,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain text, no colours.")] = False,
) -> None:
    """Plot recorded series of one or more runs: loss, learning rate, norms, update ratios, entropy, dead units."""
    from cli.runs_cmd import run_plot

    run_plot(specs=series or [], run_keys=run or [], runs_path=runs_path, out=out, smooth=smooth, no_color=no_color)


@app.command(cls=Command)
@user_errors
def attention(
    word: WordOption = None,
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    granularity: GranularityOption = "fused",
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Write a .png or .svg (default: coloured cells in the terminal).")
    ] = None,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain text, no colours.")] = False,
) -> None:
    """Every head's attention weights over a name: queries × keys, labelled with the characters."""
    from cli.attention_cmd import run_attention

    run_attention(checkpoint=checkpoint, data=data, word=word, granularity=granularity, out=out, no_color=no_color)


@app.command(cls=Command)
@user_errors
def health(
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    docs: Annotated[int, typer.Option(help="Documents to run the model on, in the run's training order.")] = 200,
    runs_path: RunsOption = Path("runs.sqlite"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of text.")] = False,
) -> None:
    """Dead ReLU units, collapsed heads, vanishing or exploding grads, update ratios off the band, the initial loss."""
    from cli.health_cmd import run_health

    run_health(checkpoint=checkpoint, data=data, docs=docs, runs_path=runs_path, as_json=as_json)


@app.command(cls=Command)
@user_errors
def patch(
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="PATTERN=VALUE: every selected element takes VALUE.")
    ] = None,
    scale: Annotated[
        list[str] | None, typer.Option(help="PATTERN=FACTOR: every selected element times FACTOR.")
    ] = None,
    mean: Annotated[
        list[str] | None, typer.Option(help="PATTERN: each selected element takes its mean over --docs documents.")
    ] = None,
    from_: Annotated[
        tuple[str, str] | None,
        typer.Option("--from", metavar="WORD PATTERN", help="Each selected element takes its value in WORD's graph."),
    ] = None,
    docs: Annotated[int, typer.Option(help="Documents the --mean is taken over.")] = 50,
    backward: Annotated[bool, typer.Option("--backward", help="Also show the grads after the edit.")] = False,
    top: Annotated[int, typer.Option(help="Next tokens and changed nodes shown.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of text.")] = False,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Also write the viewer coloured by what changed (.html).")
    ] = None,
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    word: WordOption = None,
    pos: PosOption = None,
    token: TokenOption = None,
    target: TargetOption = None,
    granularity: GranularityOption = "fused",
) -> None:
    """Replay the graph of one token with edits (set, scale, mean- or activation-patch) and show what changed."""
    from cli.common import data_for_vocabulary
    from cli.patch_cmd import run_patch
    from viz.patch import Edit

    edits = [Edit.assignment("set", text) for text in set_ or []]
    edits += [Edit.assignment("scale", text) for text in scale or []]
    edits += [Edit("mean", pattern) for pattern in mean or []]
    if from_ is not None:
        other, pattern = from_
        edits.append(Edit("from", pattern, word=other))
    run_patch(
        choice=TokenChoice(checkpoint, data_for_vocabulary(checkpoint, data), word, pos, token, target, granularity),
        edits=edits,
        docs=docs,
        backward=backward,
        top=top,
        as_json=as_json,
        data_for_mean=data,
        out=out,
    )


diff_app = typer.Typer(
    cls=Group, no_args_is_help=True, help="Compare two sets of weights, or two graphs, scalar by scalar."
)
app.add_typer(diff_app, name="diff")


@diff_app.command("weights", cls=Command)
@user_errors
def diff_weights(
    a: Annotated[str, typer.Argument(help="A checkpoint file, or RUN@STEP: a snapshot of a recorded run.")],
    b: Annotated[str, typer.Argument(help="The other side, the same way.")],
    pattern: Annotated[
        str | None, typer.Option(help="Only the weights this tag pattern selects: attn.wq, mlp.fc1[3,*] ...")
    ] = None,
    top: Annotated[int, typer.Option(help="Largest changed elements listed, per matrix and overall.")] = 10,
    runs_path: RunsOption = Path("runs.sqlite"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of the table.")] = False,
) -> None:
    """Per weight matrix: the norms of each side and of the change, the largest changes by tag, Adam's moments."""
    from cli.diff_cmd import run_diff_weights

    run_diff_weights(a=a, b=b, pattern=pattern, top=top, runs_path=runs_path, as_json=as_json)


@diff_app.command("graph", cls=Command)
@user_errors
def diff_graph(
    checkpoint: CheckpointOption = None,
    data: DataOption = None,
    word: WordOption = None,
    pos: PosOption = None,
    token: TokenOption = None,
    target: TargetOption = None,
    granularity: GranularityOption = "fused",
    checkpoint_b: Annotated[Path | None, typer.Option(help="Side B's checkpoint (default: A's).")] = None,
    word_b: Annotated[str | None, typer.Option(help="Side B's word (default: A's).")] = None,
    pos_b: Annotated[int | None, typer.Option(help="Side B's position (default: A's).")] = None,
    token_b: Annotated[str | None, typer.Option(help="Side B's token (default: A's).")] = None,
    target_b: Annotated[str | None, typer.Option(help="Side B's target (default: A's).")] = None,
    patch_b: Annotated[
        str | None, typer.Option(help="Side B is A replayed with this edit: set:PATTERN=VALUE or scale:PATTERN=FACTOR.")
    ] = None,
    tolerance: Annotated[float, typer.Option(help="Relative difference below which two values count as equal.")] = 0.0,
    top: Annotated[int, typer.Option(help="Tensors listed, largest difference first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of the table.")] = False,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Also write the viewer coloured by the difference (.html).")
    ] = None,
) -> None:
    """Two token graphs node by node (matched by id): two checkpoints, two tokens or words, or a patched replay."""
    from cli.diff_cmd import run_diff_graph

    b = {"checkpoint": checkpoint_b, "word": word_b, "pos": pos_b, "token": token_b, "target": target_b}
    run_diff_graph(
        choice=TokenChoice(checkpoint, data, word, pos, token, target, granularity),
        b=b,
        patch_b=patch_b,
        tolerance=tolerance,
        top=top,
        as_json=as_json,
        out=out,
    )


def app_for(args: list[str]) -> typer.Typer:
    """``app`` with only the command that ``args`` name: typer reads the signature of every
    command it has before it runs one (about 20 ms for all of them, on every start), so a
    named command is built alone. Anything else (no command, an option first, a misspelt
    command) gets the whole app, whose help and errors list every command."""
    name = args[0] if args else None
    commands = [info for info in app.registered_commands if (info.name or info.callback.__name__) == name]
    groups = [info for info in app.registered_groups if info.name == name]
    if not commands and not groups:
        return app
    alone = typer.Typer(cls=Group, no_args_is_help=True, add_completion=False, help=app.info.help)
    alone.registered_callback = app.registered_callback
    alone.registered_commands, alone.registered_groups = commands, groups
    return alone


def run() -> None:
    """The ``mgx`` entry point: Ctrl-C before a command's body runs (typer's parsing) is one
    line and exit 130; inside the body, the command's own handling applies (cli.output)."""
    import gc
    import signal

    signal.signal(signal.SIGINT, stop_on_interrupt)
    try:
        app_for(sys.argv[1:])()
    finally:
        # The process ends now, and Python's last collection would walk every object the
        # command made (typer's, rich's, a model's, a graph's) to free what ends with it
        # anyway: set them apart, about 50 ms off every command. Files are closed by then.
        gc.freeze()


if __name__ == "__main__":
    run()
