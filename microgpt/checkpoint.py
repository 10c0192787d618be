"""Checkpoints: one JSON file holding a model and everything needed to resume or sample.

Layout (format ``microgpt-x-checkpoint``, version 1)::

    {"format": ..., "version": 1,
     "config": {GPTConfig fields}, "vocabulary": "abc...z" (BOS is id len(vocabulary)),
     "weights": {"wte": [[...], ...], "layer0.attn.wq": ..., ...},   # names as tags
     "optimizer": {"adam": {lr, beta1, beta2, eps}, "m": {name: matrix}, "v": {name: matrix}},
     "training": {"step": done, "steps": planned, "seed": 42, "data": source, "granularity": ...},
     "random_state": [version, [624 + 1 ints], gauss_next]}

Written to a temporary file in the same directory, then renamed over the target, so a
crash or Ctrl-C never leaves half a checkpoint. Loading checks every part and names what
is wrong.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from microgpt.data import Tokenizer
from microgpt.errors import MicrogptError
from microgpt.files import write_atomic
from microgpt.model import GPT, GPTConfig, weight_shapes
from microgpt.train import AdamConfig, TrainState

FORMAT = "microgpt-x-checkpoint"
VERSION = 1


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


def _split(flat: list[float], shapes: dict[str, tuple[int, int]]) -> dict[str, list[list[float]]]:
    out, i = {}, 0
    for name, (rows, cols) in shapes.items():
        out[name] = [flat[i + r * cols : i + (r + 1) * cols] for r in range(rows)]
        i += rows * cols
    return out


def to_json(ckpt: Checkpoint) -> dict[str, Any]:
    shapes = weight_shapes(ckpt.model.config)
    version, internal, gauss_next = ckpt.rng.getstate()
    moments = {}
    if ckpt.state.m:
        moments = {"m": _split(ckpt.state.m, shapes), "v": _split(ckpt.state.v, shapes)}
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": ckpt.model.config.to_dict(),
        "vocabulary": ckpt.tokenizer.chars,
        "weights": ckpt.model.weight_data(),
        "optimizer": {"adam": asdict(ckpt.adam), **moments},
        "training": {
            "step": ckpt.state.step,
            "steps": ckpt.steps,
            "seed": ckpt.seed,
            "data": ckpt.data_source,
            "granularity": ckpt.granularity,
        },
        "random_state": [version, list(internal), gauss_next],
    }


def save(ckpt: Checkpoint, path: str | Path) -> None:
    """Write atomically: a temporary file beside ``path``, then a rename."""
    path = Path(path)
    text = json.dumps(to_json(ckpt), separators=(",", ":"))
    write_atomic(path, text)


def load(path: str | Path) -> Checkpoint:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MicrogptError(f"checkpoint {path} does not exist: train one with `mgx train --out {path}`") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MicrogptError(f"checkpoint {path} is not valid JSON: it is corrupt or not a checkpoint") from None
    except (IsADirectoryError, PermissionError) as e:
        raise MicrogptError(f"checkpoint {path} cannot be read: {e.strerror}") from None
    return from_json(raw, str(path))


def _require(raw: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(raw, dict) or key not in raw:
        raise MicrogptError(f"{where} has no {key!r}: the file is not a complete checkpoint")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MicrogptError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


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
            for x in row:
                if not isinstance(x, (int, float)) or isinstance(x, bool):
                    raise MicrogptError(f"{where}: {name} holds a non-number {x!r}")
                flat.append(float(x))
    return flat


def from_json(raw: Any, where: str) -> Checkpoint:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise MicrogptError(f"{where} is not a microgpt-x checkpoint (no format {FORMAT!r})")
    if raw.get("version") != VERSION:
        raise MicrogptError(f"{where} is checkpoint version {raw.get('version')!r}; this mgx reads version {VERSION}")
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
    weights = _split(_matrix_flat(raw.get("weights"), shapes, where), shapes)
    optimizer = _require(raw, "optimizer", dict, where)
    try:
        adam = AdamConfig(**_require(optimizer, "adam", dict, where))
    except TypeError as e:
        raise MicrogptError(f"{where}: optimizer.adam is malformed ({e})") from None
    training = _require(raw, "training", dict, where)
    step = _require(training, "step", int, where)
    steps = _require(training, "steps", int, where)
    state = TrainState(step=step)
    if "m" in optimizer:
        state.m = _matrix_flat(optimizer["m"], shapes, where + " optimizer.m")
        state.v = _matrix_flat(optimizer.get("v"), shapes, where + " optimizer.v")
    rng = random.Random()
    try:
        version, internal, gauss_next = _require(raw, "random_state", list, where)
        rng.setstate((version, tuple(internal), gauss_next))
    except (TypeError, ValueError):
        raise MicrogptError(f"{where}: random_state is malformed") from None
    return Checkpoint(
        model=GPT(config, weights),
        tokenizer=tokenizer,
        adam=adam,
        state=state,
        steps=steps,
        seed=_require(training, "seed", int, where),
        data_source=_require(training, "data", str, where),
        granularity=_require(training, "granularity", str, where),
        rng=rng,
    )
