"""``mgx attention``: every head's attention weights over a name, as heatmaps or coloured cells."""

from __future__ import annotations

from pathlib import Path

from cli.output import console, plural


def run_attention(*, checkpoint, data, word: str | None, granularity: str, out: Path | None, no_color: bool) -> None:
    from cli.common import check_granularity, load_model
    from cli.output import check_writable, fail, info
    from microgpt.errors import MicrogptError
    from microgpt.files import write_atomic
    from microgpt.graph import DEFAULT_WORD, word_graph
    from viz.plots import PLOT_SUFFIXES, attention_figure_bytes, attention_picture, attention_text
    from viz.trace import Trace

    check_granularity(granularity)
    word = DEFAULT_WORD if word is None else word
    if out is not None:
        if out.suffix.lower() not in PLOT_SUFFIXES:
            fail(f"cannot draw to {out}: give -o a name ending in .png or .svg (e.g. attention.png)")
        check_writable(out, "-o", "attention.png")
    loaded = load_model(checkpoint, data)
    tokenizer = loaded.tokenizer
    unknown = sorted(set(word) - set(tokenizer.chars))
    if not word or unknown:
        raise MicrogptError(
            f"word {word!r} is empty or has characters outside the vocabulary ({''.join(unknown)!r}): "
            f"use only {tokenizer.chars!r}, e.g. --word emma"
        )
    tokens = tokenizer.document_tokens(word)[: loaded.model.config.block_size + 1]
    trace = Trace(*word_graph(loaded.model, tokens, granularity=granularity, backward=False))
    labels = [tokenizer.token_name(t) for t in tokens[:-1]]
    attention = attention_picture(trace, word, labels)
    if out is None:
        console.print(attention_text(attention, color=not no_color))
        return
    write_atomic(out, attention_figure_bytes(attention, out.suffix.lower()[1:]))
    info(f"wrote {out}: {plural(len(attention.heads), 'head')} over {word!r}")
