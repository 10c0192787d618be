"""What every command that needs a model shares: where the model comes from, and which token.

A command takes ``--checkpoint``; without it, ``model.json`` in the working directory when
it exists, else a freshly initialised model (seed 42) whose vocabulary comes from the data
set training would use here. It always says which it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from cli.output import fail, info, warn

DEFAULT_CHECKPOINT = Path("model.json")

CheckpointOption = Annotated[
    Path | None,
    typer.Option("--checkpoint", "-c", help="Model checkpoint (default: model.json if present, else a fresh model)."),
]
DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="Documents, one per line, UTF-8 (default: names.txt here, else the embedded names)."),
]
WordOption = Annotated[
    str | None, typer.Option("--word", help="The name whose tokens give the context and target (default: emma).")
]
PosOption = Annotated[int | None, typer.Option("--pos", help="Position of the token in the word (default: 0).")]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="The input token at --pos: a character or BOS (default: the word's).")
]
TargetOption = Annotated[
    str | None, typer.Option("--target", help="The token to predict: a character or BOS (default: the word's next).")
]
GranularityOption = Annotated[
    str, typer.Option("--granularity", help="atomic (the reference's nodes) or fused (one node per dot product).")
]
RunsOption = Annotated[
    Path, typer.Option("--runs", help="The runs database (SQLite) training records every step into.")
]


@dataclass
class LoadedModel:
    model: object  # microgpt.GPT
    tokenizer: object  # microgpt.Tokenizer
    rng: object  # random.Random: the state sampling continues from
    description: str  # "checkpoint model.json (step 1000)" or "a fresh model (seed 42) ..."
    checkpoint: object = None  # microgpt.checkpoint.Checkpoint; None for a fresh model


def pause_collector() -> None:
    """Turn Python's cyclic garbage collector off for the rest of this command.

    A view builds one large acyclic graph (a Value per weight and per intermediate, an edge
    per input) and exits; reference counting frees all of it, while the collector would walk
    the whole growing heap again and again as it is built, which took most of a view's time
    on a 4-layer model. A long-lived command (the full-screen stepper) calls
    ``resume_collector`` once its graph is built."""
    import gc

    gc.disable()


def resume_collector() -> None:
    """Turn the collector back on, leaving everything built so far out of its walks."""
    import gc

    gc.freeze()
    gc.enable()


def data_for_vocabulary(checkpoint: Path | None, data: Path | None) -> Path | None:
    """``data`` where load_model makes a fresh model from it, else None: for the commands
    that also read --data's documents (health, patch --mean), so no note says it is unused."""
    return data if checkpoint is None and not DEFAULT_CHECKPOINT.is_file() else None


def documents_of(loaded, data: Path | None) -> tuple[list[str], str]:
    """The documents to look at: the run's own data when the checkpoint names one that is
    here, else --data or the default data set; in the run's training order."""
    from microgpt.data import EMBEDDED_SOURCE, embedded_documents, find_dataset, load_documents

    ckpt = loaded.checkpoint
    if data is None and ckpt is not None:
        source = ckpt.data_source
        if source == EMBEDDED_SOURCE:
            dataset = embedded_documents()
        elif source and Path(source).is_file():
            dataset = load_documents(source)
        else:
            dataset = find_dataset(None)
    else:
        dataset = find_dataset(data)
    docs = list(dataset.docs)
    import random

    random.Random(ckpt.seed if ckpt is not None else 42).shuffle(docs)
    return docs, dataset.source


def load_model(
    checkpoint: Path | None, data: Path | None = None, *, finite: bool = False, moments: bool = False
) -> LoadedModel:
    """The checkpoint given; else model.json here; else a fresh model. Says which on stderr.

    A checkpoint with non-finite weights loads with a one-line warning naming the first
    (the views show such weights); with ``finite=True`` (sampling) it is refused. The
    collector stays off from here on (``pause_collector``)."""
    import shlex

    from microgpt import checkpoint as ckpt_io
    from microgpt.data import find_dataset
    from microgpt.train import start_run

    pause_collector()
    if checkpoint is None and DEFAULT_CHECKPOINT.is_file():
        checkpoint = DEFAULT_CHECKPOINT
    if checkpoint is not None:
        # a view or a sample uses the weights alone; --adam and diff need Adam's moments too
        ckpt = ckpt_io.load(checkpoint) if moments else ckpt_io.load(checkpoint, parse_without_moments)
        description = f"checkpoint {checkpoint} (step {ckpt.state.step} of {ckpt.steps})"
        loaded = LoadedModel(ckpt.model, ckpt.tokenizer, ckpt.rng, description, ckpt)
    else:
        dataset = find_dataset(data)
        run = start_run(dataset.docs)
        description = f"a fresh model (seed 42, untrained), vocabulary from {dataset.source}"
        loaded = LoadedModel(run.model, run.tokenizer, run.rng, description)
    info(f"model: {loaded.description}")
    if checkpoint is not None:
        if data is not None:
            info(f"--data {data} is not used: the checkpoint {checkpoint} brings its own vocabulary")
        bad = ckpt.non_finite_weights()
        if bad:
            what = f"{checkpoint} holds non-finite weights (first {bad[0].tag} = {bad[0].data}, {len(bad):,} in all)"
            look = f"mgx inspect {shlex.quote(bad[0].tag)} --checkpoint {shlex.quote(str(checkpoint))}"
            if finite:
                fail(f"{what}, so it cannot be sampled: look at them with `{look}`, or sample another checkpoint")
            warn(f"{what}: the views show them; sample and train --resume refuse this checkpoint")
    return loaded


# -- reading a checkpoint without its Adam moments --------------------------------------------
# The moments (optimizer.m and optimizer.v) are two thirds of a checkpoint and only a resumed
# run uses them. The views and sampling read the file with ``parse_without_moments``: the json
# module's own scanner reads every other value, and the moments are stepped over, after
# counts that show they hold names and numbers alone. The Checkpoint then has no moments
# (``state.m`` empty) and every other part is checked as always. Any text not laid out as mgx
# writes it (compact, plain-number moments) is parsed whole, so a damaged file fails with
# the same one-line error as ever.


def parse_without_moments(text: str) -> object:
    """``json.loads(text)``, without optimizer.m and optimizer.v where the text allows."""
    import json

    try:
        raw, end = _members(text, 0, {"optimizer": {"m": None, "v": None}}, json.JSONDecoder().scan_once)
        if end == len(text):
            return raw
    except (ValueError, IndexError, StopIteration, RecursionError):
        pass
    return json.loads(text)


def _members(text: str, i: int, special: dict, scan) -> tuple[dict, int]:
    """The object at ``text[i]`` and where it ends. The values of the keys in ``special`` are
    objects read the same way (a dict: its own special keys) or stepped over (None); the
    others are read by ``scan`` (the json module's)."""
    from json.decoder import scanstring

    if text[i] != "{":
        raise ValueError("not an object")
    out, i = {}, i + 1
    if text[i] == "}":
        return out, i + 1
    while True:
        if text[i] != '"':
            raise ValueError("not a key")
        key, i = scanstring(text, i + 1)
        if text[i] != ":":
            raise ValueError("no colon")
        if key not in special:
            out[key], i = scan(text, i + 1)
        elif special[key] is None:
            out.pop(key, None)  # a repeated key: the last one wins, as with json.loads
            i = _end_of_matrices(text, i + 1)
        else:
            out[key], i = _members(text, i + 1, special[key], scan)
        if text[i] == "}":
            return out, i + 1
        if text[i] != ",":
            raise ValueError("no comma")
        i += 1


def _end_of_matrices(text: str, i: int) -> int:
    """Where ``{"wte":[[0.1,...],...],...}`` at ``text[i]`` ends: its only strings are the
    names, which hold no brace, so at the first "}"; the counts check that every string is a
    name (a key before a colon) and the brackets pair up, else the walk gives up."""
    end = text.index("}", i) + 1

    def count(char: str) -> int:
        return text.count(char, i, end)

    if text[i] != "{" or count("\\") or count('"') != 2 * count(":") or count("[") != count("]"):
        raise ValueError("not plain matrices")
    return end


@dataclass(frozen=True)
class TokenChoice:
    """Which model and which token's graph a view is about, as typed on the command line."""

    checkpoint: Path | None = None
    data: Path | None = None
    word: str | None = None
    pos: int | None = None
    token: str | None = None
    target: str | None = None
    granularity: str = "fused"

    def check(self) -> None:
        """The checks that need no model, so bad options fail before any work."""
        check_granularity(self.granularity)
        if self.word is not None and not self.word:
            fail("--word is empty: give a name of at least one character, e.g. --word emma (the default)")


def check_granularity(granularity: str) -> None:
    from microgpt.model import GRANULARITIES

    if granularity not in GRANULARITIES:
        fail(f"--granularity must be atomic or fused, got {granularity!r}")


@dataclass
class BuiltGraph:
    loaded: LoadedModel
    spec: object  # microgpt.graph.TokenSpec
    graph: object  # microgpt.graph.TokenGraph
    trace: object  # viz.trace.Trace


def build_token_graph(choice: TokenChoice, *, backward: bool = True, moments: bool = False) -> BuiltGraph:
    """Load the model, resolve the token with the defaults of microgpt.graph, build its graph."""
    from microgpt.graph import resolve_token, token_graph
    from viz.trace import Trace

    choice.check()
    loaded = load_model(choice.checkpoint, choice.data, moments=moments)
    model = loaded.model
    spec = resolve_token(
        loaded.tokenizer, model.config.block_size,
        word=choice.word, pos=choice.pos, token=choice.token, target=choice.target,
    )  # fmt: skip
    graph = token_graph(model, spec, granularity=choice.granularity, backward=backward)
    return BuiltGraph(loaded, spec, graph, Trace(graph.root, graph.order))
