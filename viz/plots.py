"""Plots of recorded series: to a PNG or SVG file with matplotlib, or as text for a terminal.

Series are chosen as ``kind:pattern`` (README, "The runs database"): ``loss``,
``grad_norm:attn.*``, ``update_ratio:*`` (or just ``update_ratio``); the pattern is the tag
pattern language of ``mgx inspect`` applied to the tag after the colon. Each kind gets its
own panel, stacked with a shared step axis; the raw loss is drawn faint under its moving
average, and the update ratios with the -3 guide line. The same data gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from microgpt.errors import MicrogptError
from microgpt.scope import parse_tag
from viz.dynamics import SERIES_KINDS
from viz.pattern import Pattern

UPDATE_RATIO_GUIDE = -3.0  # log10(std(Δw) / std(w)) near -3: the makemore rule of thumb
PLOT_SUFFIXES = (".png", ".svg")


@dataclass(frozen=True)
class Line:
    """One series of one run, ready to draw."""

    run: str  # the run's name
    series: str  # kind:tag, or a bare kind (loss, lr, max_logit)
    steps: list[int]
    values: list[float]

    @property
    def kind(self) -> str:
        return self.series.split(":", 1)[0]

    @property
    def label(self) -> str:
        return self.series if self.kind == self.series else self.series.split(":", 1)[1]


def choose_series(available: Sequence[str], specs: Sequence[str]) -> list[str]:
    """The names in ``available`` that ``specs`` select, in the order of ``available``;
    a spec that selects nothing is an error naming what there is."""
    chosen: set[str] = set()
    for spec in specs:
        kind, _, pattern = spec.partition(":")
        if kind not in SERIES_KINDS:
            raise MicrogptError(
                f"series {spec!r} is not one this tool records: start it with one of {', '.join(SERIES_KINDS)}"
                " (e.g. loss, grad_norm:attn.*, update_ratio:*)"
            )
        parsed = Pattern.parse(pattern or "*")
        hits = [
            name
            for name in available
            if name.split(":", 1)[0] == kind and (":" not in name or parsed.matches(parse_tag(name.split(":", 1)[1])))
        ]
        if not hits:
            same_kind = sorted({name for name in available if name.split(":", 1)[0] == kind})
            known = ", ".join(same_kind[:6]) + (" ..." if len(same_kind) > 6 else "") if same_kind else "none"
            raise MicrogptError(f"series {spec!r} matches nothing recorded (series of that kind: {known})")
        chosen.update(hits)
    return [name for name in available if name in chosen]


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """The mean of the last ``window`` values at each step (fewer at the start); a NaN or
    infinite value is left out of the windows it falls in."""
    out, kept = [], []
    for i, x in enumerate(values):
        kept.append(x if math.isfinite(x) else None)
        recent = [v for v in kept[max(0, i - window + 1) : i + 1] if v is not None]
        out.append(math.fsum(recent) / len(recent) if recent else math.nan)
    return out


def _panels(lines: Sequence[Line]) -> list[tuple[str, list[Line]]]:
    kinds: dict[str, list[Line]] = {}
    for line in lines:
        kinds.setdefault(line.kind, []).append(line)
    return sorted(kinds.items(), key=lambda item: SERIES_KINDS.index(item[0]))


def _title(kind: str) -> str:
    return {
        "loss": "loss (faint: each step; bold: moving average)",
        "lr": "learning rate",
        "max_logit": "largest |logit|",
        "grad_norm": "grad norm per matrix",
        "weight_norm": "weight norm per matrix",
        "update_ratio": "log10(std(update) / std(weight)); guide at -3",
        "entropy": "attention entropy / log(positions seen), per head",
        "dead": "fraction of MLP units never above 0 over the document",
    }[kind]


@contextmanager
def _pyplot(font_size: float) -> Iterator:
    """matplotlib's pyplot with no display (Agg) and a fixed salt for the SVG's ids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.hashsalt": "mgx", "font.size": font_size}):
        yield plt


def _saved(plt, fig, fmt: str) -> bytes:
    """``fig`` as PNG or SVG bytes, without a date or a version in them: the same data, the same bytes."""
    import io

    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    out = io.BytesIO()
    fig.savefig(out, format=fmt, metadata=metadata, dpi=100)
    plt.close(fig)
    return out.getvalue()


def figure_bytes(lines: Sequence[Line], fmt: str, *, smooth: int = 25, title: str = "") -> bytes:
    """``lines`` drawn as a PNG or SVG (``fmt``), one panel per kind of series."""
    panels = _panels(lines)
    several_runs = len({line.run for line in lines}) > 1
    with _pyplot(font_size=9) as plt:
        fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels) + 0.4), sharex=True, squeeze=False)
        for ax, (kind, panel) in zip(axes[:, 0], panels):
            for n, line in enumerate(panel):
                colour = f"C{n % 10}"
                name = f"{line.run}: {line.label}" if several_runs else line.label
                if kind == "loss":
                    ax.plot(line.steps, line.values, color=colour, alpha=0.25, linewidth=0.6)
                    ax.plot(line.steps, moving_average(line.values, smooth), color=colour, linewidth=1.6, label=name)
                else:
                    ax.plot(line.steps, line.values, color=colour, linewidth=1.0, label=name)
            if kind == "update_ratio":
                ax.axhline(UPDATE_RATIO_GUIDE, color="black", linestyle="--", linewidth=0.8, label="-3 guide")
            ax.set_title(_title(kind), loc="left")
            ax.grid(True, linewidth=0.3)
            if len(panel) > 1 or several_runs or kind == "update_ratio":
                ax.legend(fontsize=7, ncol=2 if len(panel) > 6 else 1, loc="best")
        axes[-1, 0].set_xlabel("step")
        if title:
            fig.suptitle(title, x=0.01, ha="left")
        fig.tight_layout()
        return _saved(plt, fig, fmt)


def terminal_plot(lines: Sequence[Line], *, width: int, height: int, smooth: int = 25, color: bool = True) -> str:
    """``lines`` as text (plotext), one panel per kind, for a terminal ``width`` columns wide."""
    import plotext

    panels = _panels(lines)
    several_runs = len({line.run for line in lines}) > 1
    out = []
    for kind, panel in panels:
        plotext.clear_figure()
        plotext.plotsize(width, max(8, height // len(panels)))
        if not color:
            plotext.theme("clear")
        for line in panel:
            values = moving_average(line.values, smooth) if kind == "loss" else line.values
            points = [(s, v) for s, v in zip(line.steps, values) if math.isfinite(v)]
            if points:
                name = f"{line.run}: {line.label}" if several_runs else line.label
                plotext.plot([s for s, _ in points], [v for _, v in points], label=name)
        if kind == "update_ratio" and any(line.steps for line in panel):
            plotext.hline(UPDATE_RATIO_GUIDE)
        plotext.title(_title(kind) if kind != "loss" else f"loss (moving average over {smooth} steps)")
        out.append(plotext.build())
    return "\n".join(out)


# -- attention ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionPicture:
    """What the attention views draw: each head's weights over a name as rows of numbers."""

    word: str
    labels: list[str]  # the input token at each position: BOS, then the characters
    heads: list[tuple[str, list[list[float]]]]  # (layer0.attn.h0, rows[query][key])


def attention_picture(trace, word: str, labels: list[str]) -> AttentionPicture:
    """The weights of ``viz.attention.attention_weights`` (the viewer's heatmaps) as numbers."""
    from viz.attention import attention_weights

    heads = [
        (head.head, [[trace.nodes[i].data for _, i in cells] for _, cells in head.rows])
        for head in attention_weights(trace)
    ]
    return AttentionPicture(word, labels, heads)


def attention_figure_bytes(attention: AttentionPicture, fmt: str, title: str = "") -> bytes:
    """Every head's weights as a heatmap (queries down, keys across, the characters as
    labels), layers as rows of the figure and heads as columns."""
    layers = sorted({head.split(".")[0] for head, _ in attention.heads})
    per_layer = len(attention.heads) // len(layers)
    n = len(attention.labels)
    size = 1.0 + 0.28 * n
    with _pyplot(font_size=8) as plt:
        fig, axes = plt.subplots(
            len(layers), per_layer, figsize=(size * per_layer + 1.2, size * len(layers) + 0.6), squeeze=False
        )
        image = None
        for ax, (head, rows) in zip(axes.flat, attention.heads):
            grid = [[row[k] if k < len(row) else math.nan for k in range(n)] for row in rows]
            image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="Blues")
            ax.set_title(head, fontsize=8)
            ax.set_xticks(range(n), attention.labels, fontsize=7)
            ax.set_yticks(range(n), attention.labels, fontsize=7)
            ax.set_xlabel("key", fontsize=7)
            ax.set_ylabel("query", fontsize=7)
        fig.suptitle(title or f"attention over {attention.word!r}", x=0.01, ha="left")
        fig.tight_layout()
        if image is not None:
            fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="weight")
        return _saved(plt, fig, fmt)


def attention_text(attention: AttentionPicture, color: bool = True):
    """Every head as rows of coloured cells (rich Text): each cell the weight in hundredths."""
    from rich.text import Text

    width = max(3, *(len(label) for label in attention.labels)) + 1
    out = Text()
    for head, rows in attention.heads:
        out.append(f"{head}  (query ↓, key →, weight ×100)\n", style="bold")
        out.append(" " * width + "".join(f"{label:>4}" for label in attention.labels) + "\n")
        for label, row in zip(attention.labels, rows):
            out.append(f"{label:>{width - 1}} ")
            for w in row:
                cell = " nan" if math.isnan(w) else f"{round(w * 100):4d}"
                out.append(cell, style=_shade(w) if color else "")
            out.append("\n")
        out.append("\n")
    return out


def _shade(weight: float) -> str:
    """A blue background as deep as the weight (white text on the deeper half)."""
    if math.isnan(weight):
        return "bold red"
    level = max(0.0, min(1.0, weight))
    r, g = round(235 - 200 * level), round(240 - 150 * level)
    text = "white" if level > 0.5 else "black"
    return f"{text} on rgb({r},{g},255)"
