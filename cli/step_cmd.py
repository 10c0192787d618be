"""``mgx step``: step through one token's backward pass, in a full-screen view or as text.

The logic is viz.step.Stepper's; the full-screen view is cli/step_app.py (Textual, imported
only when it opens); ``--print N`` writes N steps as text or JSON lines instead.
"""

from __future__ import annotations

from cli.common import TokenChoice, build_token_graph
from cli.output import console, fail, info, plural

MIN_WIDTH = 80  # the full-screen view's smallest terminal
MIN_HEIGHT = 20


def too_small_message(width: int, height: int) -> str:
    return (
        f"terminal too small ({width}×{height}): mgx step needs at least {MIN_WIDTH}×{MIN_HEIGHT}; "
        "enlarge the window, or print steps as text with mgx step --print N"
    )


def run_step(
    *,
    choice: TokenChoice,
    until: str | None,
    print_steps: int | None,
    as_json: bool,
) -> None:
    import json
    import shutil
    import sys

    from viz.step import Breakpoint, Stepper

    choice.check()
    if print_steps is not None and print_steps < 1:
        fail(f"--print must be at least 1 (steps to print), got {print_steps}")
    if as_json and print_steps is None:
        fail("--json writes the steps --print prints: add --print N")
    bp = Breakpoint.parse(until) if until is not None else None  # a bad --until fails before any work
    if print_steps is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            fail("mgx step's full-screen view needs a terminal: use --print N (with --until PATTERN) for text")
        size = shutil.get_terminal_size()
        if size.columns < MIN_WIDTH or size.lines < MIN_HEIGHT:
            fail(too_small_message(size.columns, size.lines))

    built = build_token_graph(choice, backward=False)
    loaded, spec = built.loaded, built.spec
    tokenizer = loaded.tokenizer
    stepper = Stepper(built.trace)
    what = (
        f"token {tokenizer.token_name(spec.token)} at pos {spec.pos} of {spec.word!r}, "
        f"target {tokenizer.token_name(spec.target)}; {plural(stepper.total, 'step')} ({choice.granularity})"
    )
    info(what)

    first = None
    if bp is not None:
        stepper.add_breakpoint(bp)  # a pattern or op that matches nothing fails here, with suggestions
        first = stepper.run_until([bp])
        if first is None:
            if bp.kind == "nonfinite":
                fail("every value and grad of this graph is finite: --until nonfinite never stops")
            fail(f"backward finished without reaching --until {until!r}: no step hits it in this graph")

    if print_steps is not None:
        records = ([first] if first is not None else []) + stepper.run(print_steps - (first is not None))
        for rec in records:
            if as_json:
                line = json.dumps(stepper.describe(rec), ensure_ascii=False, allow_nan=False)
                console.out(line, highlight=False)
            else:
                console.out(stepper.format(rec), highlight=False)
        return

    from cli.common import resume_collector
    from cli.step_app import StepApp

    resume_collector()  # the full-screen view lives on: let the collector run again

    StepApp(stepper, what).run()
