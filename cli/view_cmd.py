"""``mgx graph -o graph.html`` and ``mgx view``: the graph as one self-contained page (viz.page).

``mgx view`` writes the page (to a temporary file without ``-o``) and opens it in the default
browser through ``webbrowser``; where none can be opened it prints the path to open."""

from __future__ import annotations

import tempfile
import webbrowser
from pathlib import Path

from cli.common import TokenChoice
from cli.output import check_writable, fail, info, print_line, status

PAGE_LEVELS = ("block", "tensor")


def check_page_options(level: str) -> None:
    if level not in PAGE_LEVELS:
        fail(
            f"the page opens on block or tensor level, not {level!r}: use --level block or --level tensor "
            "(every scalar stays reachable by opening its groups)"
        )


def unused_page_options(*, hops: int, edge_grads: bool, rankdir: str, expand_context: bool) -> list[str]:
    """One line for each drawing option given that the page does not use."""
    given = [
        ("--hops", hops != 1),
        ("--edge-grads", edge_grads),
        ("--rankdir", rankdir.upper() != "TB"),
        ("--expand-context", expand_context),
    ]
    return [
        f"{name} is for the static drawings: the page lays out each group top to bottom and opens any of them"
        for name, used in given
        if used
    ]


def build_page(
    choice: TokenChoice, level: str, focus: str | None, layout_program: str | None, compare=None, built=None
) -> dict:
    """The page's data for the graph ``mgx graph`` would draw: one token's, or with --word and
    no --pos a whole word's; or for ``built`` (a cli.graph_cmd.Built), the graph a command
    has built already (the side A that ``compare`` was matched against)."""
    from cli.graph_cmd import build
    from microgpt.errors import MicrogptError
    from microgpt.graph import resolve_token
    from viz.page import page_data
    from viz.render import find_layout_program

    check_page_options(level)
    try:
        program = find_layout_program(layout_program)
    except MicrogptError as e:
        fail(str(e))
    if program is None:
        fail("no layout program found to lay out the page: pip install graphviz-pure (or apt-get install graphviz)")
    if built is None:
        built = build(choice, moments=True)
    tokenizer = built.loaded.tokenizer
    if built.pos is None:  # a whole word: its input at every position
        tokens = tokenizer.document_tokens(choice.word)[: built.loaded.model.config.block_size]
    else:
        spec = resolve_token(
            tokenizer, built.loaded.model.config.block_size,
            word=choice.word, pos=choice.pos, token=choice.token, target=choice.target,
        )  # fmt: skip
        tokens = [*spec.context, spec.token]
    labels = [tokenizer.token_name(t) for t in tokens]
    with status("laying out the page's views…"):
        return page_data(
            built.trace,
            title=built.title,
            level=level,
            focus=focus,
            pos=built.pos,
            layout_program=program,
            labels=labels,
            adam=_adam(built),
            compare=compare,
        )


def _adam(built) -> dict | None:
    """Each weight's Adam state, when the model is a checkpoint that has trained (the panel shows it)."""
    from viz.optimizer import adam_states

    ckpt = built.loaded.checkpoint
    if ckpt is None or ckpt.state.step == 0 or not ckpt.state.m:
        return None
    params = [i for i, node in enumerate(built.trace.nodes) if not node.children and node.op.name == "param"]
    return adam_states(built.trace, params, ckpt)


def check_page_out(out: Path, what: str, example: str) -> None:
    """Before any work: ``-o`` must name an .html file that can be written (``what`` says why)."""
    if out.suffix.lower() != ".html":
        fail(f"cannot write {out}: {what}; give a name ending in .html, e.g. {example}")
    check_writable(out, "-o", example)


def write_html(
    out: Path,
    choice: TokenChoice,
    level: str,
    focus: str | None,
    layout_program: str | None,
    compare=None,
    built=None,
) -> None:
    from viz.page import write_page
    from viz.style import counted

    check_page_options(level)
    check_writable(out, "-o", "graph.html")
    data = build_page(choice, level, focus, layout_program, compare, built)
    size = write_page(out, data)
    info(
        f"wrote {out}: {counted(len(data['ids']), 'node')}, {counted(len(data['views']), 'view')}, "
        f"{size / 1e6:.1f} MB (open it in a browser; it needs no network)"
    )


def view_command(
    out: Path | None, choice: TokenChoice, level: str, focus: str | None, layout_program: str | None
) -> None:
    check_page_options(level)
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="mgx-view-")) / "graph.html"
    elif out.suffix.lower() != ".html":
        fail(f"mgx view writes an HTML page: give -o a name ending in .html, e.g. -o {out.with_suffix('.html').name}")
    write_html(out, choice, level, focus, layout_program)
    url = out.resolve().as_uri()
    try:
        opened = webbrowser.open(url)
    except webbrowser.Error:
        opened = False
    if not opened:
        print_line(f"no browser could be opened: open {out.resolve()} in one")
