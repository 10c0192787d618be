"""Checkpoints: one JSON file holding a model and everything needed to resume or sample.

Layout (format ``microgpt-x-checkpoint``, version 2)::

    {"format": ..., "version": 2,
     "config": {GPTConfig fields}, "vocabulary": "abc...z" (BOS is id len(vocabulary)),
     "weights": {"wte": [[...], ...], "layer0.attn.wq": ..., ...},   # names as tags
     "optimizer": {"adam": {lr, beta1, beta2, eps}, "m": {name: matrix}, "v": {name: matrix}},
     "training": {"run_id": "3f2a...", "step": done, "steps": planned, "seed": 42,
                  "data": source, "data_sha256": "...", "granularity": ...},
     "random_state": [version, [624 + 1 ints], gauss_next]}

The run id (random, never from the training's rng) tells one run's file from another's;
``data_sha256`` (of the documents) makes a resumed run train on the same data. Version 1
files (neither) still load. Non-finite numbers are written as "NaN", "Infinity",
"-Infinity" (numbers.py), so the JSON is strict. Written to a temporary file and renamed,
so never half a checkpoint. Loading checks every part and names what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from microgpt.data import Tokenizer
from microgpt.engine import Value, gc_paused
from microgpt.errors import MicrogptError
from microgpt.files import write_atomic
from microgpt.model import GPT, GRANULARITIES, GPTConfig, weight_shapes
from microgpt.numbers import from_json_number, to_json_number
from microgpt.train import AdamConfig, TrainState

FORMAT = "microgpt-x-checkpoint"
VERSION = 2
READS = (1, 2)  # the versions this code loads


def new_run_id() -> str:
    """A fresh run id from the operating system's randomness (never the training's rng)."""
    return uuid.uuid4().hex


def documents_digest(docs: list[str]) -> str:
    """The SHA-256 of the documents in file order, one per line: which data a run trained on."""
    return hashlib.sha256("\n".join(docs).encode("utf-8")).hexdigest()


@dataclass
class Checkpoint:
    model: GPT
    tokenizer: Tokenizer
    adam: AdamConfig
    state: TrainState
    steps: int  # the length of the run the learning-rate schedule decays over
    seed: int
    data_source: str
    granularity: str
    rng: random.Random
    run_id: str | None = field(default_factory=new_run_id)  # None: a version-1 file
    data_sha256: str | None = None  # None: a version-1 file, or not recorded

    def non_finite_weights(self) -> list[Value]:
        """The weights that are NaN or infinite, in the order of ``model.params``."""
        return [p for p in self.model.params if not math.isfinite(p.data)]


def named_matrices(flat: list[float], shapes: dict[str, tuple[int, int]]) -> dict[str, list[list[float]]]:
    """A flat list of numbers (in ``model.params`` order) as the named matrices."""
    out, i = {}, 0
    for name, (rows, cols) in shapes.items():
        out[name] = [flat[i + r * cols : i + (r + 1) * cols] for r in range(rows)]
        i += rows * cols
    return out


def _json_matrices(flat: list[float], shapes: dict[str, tuple[int, int]]) -> dict[str, list[list[float | str]]]:
    """The same, each number as JSON writes it (a non-finite one as "NaN", "Infinity", "-Infinity")."""
    return {name: [[to_json_number(x) for x in row] for row in m] for name, m in named_matrices(flat, shapes).items()}


def to_json(ckpt: Checkpoint) -> dict[str, Any]:
    if ckpt.run_id is None:
        raise MicrogptError("a checkpoint needs a run id to be saved: give it one with new_run_id()")
    shapes = weight_shapes(ckpt.model.config)
    version, internal, gauss_next = ckpt.rng.getstate()
    moments = {}
    if ckpt.state.m:
        moments = {"m": _json_matrices(ckpt.state.m, shapes), "v": _json_matrices(ckpt.state.v, shapes)}
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": ckpt.model.config.to_dict(),
        "vocabulary": ckpt.tokenizer.chars,
        "weights": _json_matrices([p.data for p in ckpt.model.params], shapes),
        "optimizer": {"adam": asdict(ckpt.adam), **moments},
        "training": {
            "run_id": ckpt.run_id,
            "step": ckpt.state.step,
            "steps": ckpt.steps,
            "seed": ckpt.seed,
            "data": ckpt.data_source,
            "data_sha256": ckpt.data_sha256,
            "granularity": ckpt.granularity,
        },
        "random_state": [version, list(internal), gauss_next],
    }


def save(ckpt: Checkpoint, path: str | Path) -> None:
    """Write atomically: a temporary file beside ``path``, then a rename."""
    text = json.dumps(to_json(ckpt), separators=(",", ":"), allow_nan=False)
    write_atomic(Path(path), text)


def _read_json(path: Path, parse: Callable[[str], Any] = json.loads) -> Any:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MicrogptError(f"checkpoint {path} does not exist: train one with `mgx train --out {path}`") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise MicrogptError(
            f"checkpoint {path} is not valid JSON: it is corrupt or not a checkpoint; give another checkpoint, "
            "or train a new one with `mgx train --out NEW.json`"
        ) from None
    except OSError as e:
        raise MicrogptError(
            f"checkpoint {path} cannot be read ({e.strerror or e}): give the path of a checkpoint"
        ) from None


def load(path: str | Path, parse: Callable[[str], Any] = json.loads) -> Checkpoint:
    """Read and check a checkpoint; what is wrong with a damaged one is named, with the fix.
    ``parse`` turns the text into JSON data (the views pass one that skips the Adam moments)."""
    path = Path(path)
    with gc_paused():  # JSON parsing makes a list per row: nothing the collector could free
        raw = _read_json(path, parse)
    try:
        return from_json(raw, str(path))
    except MicrogptError as e:
        fix = "give another checkpoint, or train a new one with `mgx train --out NEW.json`"
        raise MicrogptError(f"{e}; {fix}") from None


def stored_run_id(path: str | Path) -> str | None:
    """The run id of the checkpoint at ``path`` (None for a version-1 file, which has none).
    Raises MicrogptError, naming why, when the file is not a checkpoint this code reads."""
    path = Path(path)
    raw = _read_json(path)
    _check_format(raw, str(path))
    if raw["version"] == 1:
        return None
    return _require(_require(raw, "training", dict, str(path)), "run_id", str, str(path))


def _check_format(raw: Any, where: str) -> None:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise MicrogptError(f"{where} is not a microgpt-x checkpoint (no format {FORMAT!r})")
    version = raw.get("version")
    if isinstance(version, bool) or version not in READS:
        raise MicrogptError(f"{where} is checkpoint version {version!r}; this mgx reads versions 1 and 2")


def _require(raw: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(raw, dict) or key not in raw:
        raise MicrogptError(f"{where} has no {key!r}: the file is not a complete checkpoint")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MicrogptError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


_FLOATS = {float}


def _matrix_flat(matrices: Any, shapes: dict[str, tuple[int, int]], where: str) -> list[float]:
    if not isinstance(matrices, dict) or list(matrices) != list(shapes):
        names = list(matrices) if isinstance(matrices, dict) else type(matrices).__name__
        raise MicrogptError(f"{where}: weights are {names}, expected {list(shapes)}")
    flat: list[float] = []
    for name, (rows, cols) in shapes.items():
        matrix = matrices[name]
        if (
            not isinstance(matrix, list)
            or len(matrix) != rows
            or any(not isinstance(row, list) or len(row) != cols for row in matrix)
        ):
            raise MicrogptError(f"{where}: {name} is not a {rows}×{cols} matrix")
        for row in matrix:
            if set(map(type, row)) == _FLOATS:  # the common row: floats only, taken as they are
                flat.extend(row)
                continue
            for x in row:
                try:
                    flat.append(from_json_number(x))
                except (ValueError, OverflowError):
                    raise MicrogptError(f"{where}: {name} holds a non-number {x!r}") from None
    return flat


def _adam(optimizer: dict, where: str) -> AdamConfig:
    raw = _require(optimizer, "adam", dict, where)
    try:
        adam = AdamConfig(**raw)
    except TypeError as e:
        raise MicrogptError(f"{where}: optimizer.adam is malformed ({e})") from None
    for name, value in asdict(adam).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise MicrogptError(f"{where}: optimizer.adam.{name} is {value!r}, not a finite number")
    return adam


def from_json(raw: Any, where: str) -> Checkpoint:
    _check_format(raw, where)
    version = raw["version"]
    config_raw = _require(raw, "config", dict, where)
    try:
        config = GPTConfig(**config_raw)
    except TypeError as e:
        raise MicrogptError(f"{where}: config is not a GPTConfig ({e})") from None
    chars = _require(raw, "vocabulary", str, where)
    tokenizer = Tokenizer(chars)
    if tokenizer.vocab_size != config.vocab_size or len(set(chars)) != len(chars):
        raise MicrogptError(
            f"{where}: vocabulary of {len(chars)} characters does not match vocab_size {config.vocab_size}"
        )
    shapes = weight_shapes(config)
    weights = named_matrices(_matrix_flat(raw.get("weights"), shapes, where), shapes)
    optimizer = _require(raw, "optimizer", dict, where)
    adam = _adam(optimizer, where)
    training = _require(raw, "training", dict, where)
    step = _require(training, "step", int, where)
    steps = _require(training, "steps", int, where)
    if not 0 <= step <= steps or steps < 1:
        raise MicrogptError(f"{where}: training has done step {step} of {steps}, which is impossible")
    granularity = _require(training, "granularity", str, where)
    if granularity not in GRANULARITIES:
        raise MicrogptError(f"{where}: granularity {granularity!r} is not atomic or fused")
    state = TrainState(step=step)
    if "m" in optimizer:
        state.m = _matrix_flat(optimizer["m"], shapes, where + " optimizer.m")
        state.v = _matrix_flat(optimizer.get("v"), shapes, where + " optimizer.v")
    rng = random.Random()
    try:
        rng_version, internal, gauss_next = _require(raw, "random_state", list, where)
        rng.setstate((rng_version, tuple(internal), gauss_next))
    except (TypeError, ValueError, OverflowError):
        raise MicrogptError(f"{where}: random_state is malformed") from None
    run_id = data_sha256 = None
    if version >= 2:
        run_id = _require(training, "run_id", str, where)
        data_sha256 = _require(training, "data_sha256", (str, type(None)), where)
    with gc_paused():  # a Value per weight: the collector would walk them all, repeatedly
        model = GPT(config, weights)
    return Checkpoint(
        model=model,
        tokenizer=tokenizer,
        adam=adam,
        state=state,
        steps=steps,
        seed=_require(training, "seed", int, where),
        data_source=_require(training, "data", str, where),
        granularity=granularity,
        rng=rng,
        run_id=run_id,
        data_sha256=data_sha256,
    )
