"""A model's health: dead ReLU units and collapsed heads over many documents, and, from its
recorded run, vanishing or exploding grads, update ratios off the healthy band, and a loss
at initialisation far from ln(vocabulary size).

Each finding names what it is about by tag and the command that shows it. The thresholds:

    dead unit          its ReLU input is never above 0, at any position of any document
    collapsed head     mean normalised attention entropy < 0.1 (one-hot attention)
    saturated head     a weight >= 0.99 on more than half of the queries that see more than one position
    vanishing grads    a matrix's grad norm < 1e-7 at some step
    exploding grads    a matrix's grad norm > 1e4 at some step
    update ratio       a matrix's median log10(std(Δw)/std(w)) over the first half of the run
                       outside [-4, -2] (later the decaying learning rate shrinks every update)
    initial loss       the first step's loss off ln(vocabulary size) by more than 20%
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from microgpt.engine import gc_paused
from microgpt.model import GPT, KVCache
from microgpt.scope import set_tagging
from viz.dynamics import normalised_entropy

COLLAPSED_ENTROPY = 0.1
SATURATED_WEIGHT = 0.99
VANISHING_GRAD = 1e-7
EXPLODING_GRAD = 1e4
UPDATE_RATIO_BAND = (-4.0, -2.0)
INITIAL_LOSS_TOLERANCE = 0.2


@dataclass
class Finding:
    kind: str  # dead_units, collapsed_head, saturated_head, vanishing_grad, exploding_grad, update_ratio, initial_loss
    subject: str  # a tag (layer0.mlp, layer0.attn.h2, wte) or "loss"
    text: str  # one line saying what was found
    command: str  # the command that shows it


@dataclass
class HeadStats:
    head: str  # layer0.attn.h2
    entropy: float  # mean normalised entropy over queries that see more than one position
    saturated: float  # fraction of those queries with a weight >= 0.99


@dataclass
class Health:
    documents: int
    units: dict[str, int] = field(default_factory=dict)  # layer0.mlp -> how many units
    dead: dict[str, list[int]] = field(default_factory=dict)  # layer0.mlp -> dead unit indices
    heads: list[HeadStats] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    run: str | None = None  # the recorded run read, by name

    def to_json(self) -> dict:
        from microgpt.numbers import to_json_number

        out = asdict(self)
        for head in out["heads"]:
            head["entropy"], head["saturated"] = to_json_number(head["entropy"]), to_json_number(head["saturated"])
        return out


def forward_health(model: GPT, docs: Sequence[list[int]]) -> Health:
    """Dead units and head statistics over ``docs`` (token lists), from fused forward passes."""
    c = model.config
    hidden = 4 * c.n_embd
    most = {layer: [-math.inf] * hidden for layer in range(c.n_layer)}  # each unit's largest input
    queries: dict[tuple[int, int], list[list[float]]] = {}
    was = set_tagging(False)  # tags are not needed here: forward passes at full speed
    try:
        with gc_paused():
            for tokens in docs:
                cache = KVCache(c)
                model.document_loss(tokens, "fused", cache)
                for layer, rows in cache.mlp_pre.items():
                    top = most[layer]
                    for row in rows:
                        for unit, x in enumerate(row):
                            if x.data > top[unit] or math.isnan(x.data):
                                top[unit] = x.data
                for key, rows in cache.attention.items():
                    queries.setdefault(key, []).extend([w.data for w in row] for row in rows if len(row) > 1)
    finally:
        set_tagging(was)
    health = Health(len(docs))
    for layer, top in most.items():
        name = f"layer{layer}.mlp"
        health.units[name] = hidden
        health.dead[name] = [unit for unit, x in enumerate(top) if x <= 0]
    for (layer, head), rows in sorted(queries.items()):
        entropy = statistics.fmean(normalised_entropy(row) for row in rows) if rows else math.nan
        saturated = sum(max(row) >= SATURATED_WEIGHT for row in rows) / len(rows) if rows else math.nan
        health.heads.append(HeadStats(f"layer{layer}.attn.h{head}", entropy, saturated))
    return health


def add_forward_findings(health: Health, show: str) -> None:
    """Findings from the forward statistics; ``show`` is the options that choose the model
    in the commands suggested (``--checkpoint model.json``)."""
    for name, dead in health.dead.items():
        if dead:
            shown = ", ".join(f"{name}.post[{unit}]" for unit in dead[:8]) + (" …" if len(dead) > 8 else "")
            share = len(dead) / health.units[name]
            health.findings.append(
                Finding(
                    "dead_units",
                    name,
                    f"{len(dead)} of {health.units[name]} units of {name} ({share:.0%}) never above 0 on any of "
                    f"{health.documents} documents: {shown}",
                    f"mgx inspect {name}.pre{show}",
                )
            )
    for head in health.heads:
        if head.entropy < COLLAPSED_ENTROPY:
            health.findings.append(
                Finding(
                    "collapsed_head",
                    head.head,
                    f"{head.head} has collapsed: mean normalised entropy {head.entropy:.3f} (< {COLLAPSED_ENTROPY})",
                    f"mgx attention{show}",
                )
            )
        elif head.saturated > 0.5:
            health.findings.append(
                Finding(
                    "saturated_head",
                    head.head,
                    f"{head.head} is saturated: a weight >= {SATURATED_WEIGHT} on {head.saturated:.0%} of its queries",
                    f"mgx attention{show}",
                )
            )


def add_run_findings(
    health: Health, run: str, series: dict[str, tuple[list[int], list[float]]], steps: int, vocab_size: int
) -> None:
    """Findings from a recorded run's series ({name: (steps, values)}) over ``steps`` planned."""
    health.run = run
    plot = f"mgx plot --run {run}"
    medians: dict[str, float] = {}  # matrix -> median update ratio over the first half
    for name, (at, values) in series.items():
        kind, _, matrix = name.partition(":")
        if kind == "grad_norm":
            low = [(s, v) for s, v in zip(at, values) if v < VANISHING_GRAD]
            high = [(s, v) for s, v in zip(at, values) if v > EXPLODING_GRAD or math.isnan(v)]
            for what, hits, limit in (("vanishing_grad", low, "< 1e-7"), ("exploding_grad", high, "> 1e4")):
                if hits:
                    step, value = hits[0]
                    health.findings.append(
                        Finding(
                            what,
                            matrix,
                            f"grad norm of {matrix} {limit} at {len(hits)} steps, first step {step} ({value:.3g})",
                            f"{plot} grad_norm:{matrix}",
                        )
                    )
        elif kind == "update_ratio":
            first_half = [v for s, v in zip(at, values) if s <= steps / 2 and math.isfinite(v)]
            if first_half:
                medians[matrix] = statistics.median(first_half)
    lo, hi = UPDATE_RATIO_BAND
    for side, off in (("too slow", {m: x for m, x in medians.items() if x < lo}),
                      ("too fast", {m: x for m, x in medians.items() if x > hi})):  # fmt: skip
        if off:
            listed = ", ".join(f"{matrix} {x:.2f}" for matrix, x in off.items())
            health.findings.append(
                Finding(
                    "update_ratio",
                    ",".join(off),
                    f"update ratios {side}: the median over the first half of the run is outside [{lo:g}, {hi:g}] "
                    f"for {len(off)} of {len(medians)} matrices ({listed})",
                    f"{plot} update_ratio",
                )
            )
    at, losses = series.get("loss", ([], []))
    if at and at[0] == 1:
        expected = math.log(vocab_size)
        if not abs(losses[0] - expected) <= INITIAL_LOSS_TOLERANCE * expected:
            health.findings.append(
                Finding(
                    "initial_loss",
                    "loss",
                    f"the first step's loss {losses[0]:.3f} is far from ln({vocab_size}) = {expected:.3f}, the loss of "
                    "a uniform guess: the initial weights are too large or too small",
                    f"{plot} loss",
                )
            )
