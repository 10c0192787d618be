"""Training and sampling: the reference run digit for digit, checkpoints, resume, Ctrl-C."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from microgpt import checkpoint as ckpt_io
from microgpt.data import load_documents
from microgpt.errors import MicrogptError
from microgpt.train import AdamConfig, TrainState, sample, start_run, train

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAMES = SHARED / "data" / "names.txt"
REFERENCE = SHARED / "reference"
needs_shared = pytest.mark.skipif(not NAMES.is_file(), reason=f"the reference data is absent: {NAMES}")

TINY_DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"]
TINY_CONFIG = {"n_embd": 8, "n_head": 2, "block_size": 8}


def reference_losses() -> list[str]:
    return [line.split()[1] for line in (REFERENCE / "loss-trace.txt").read_text().splitlines()]


def within_one_unit(ours: list[float], printed: list[str]) -> list[tuple[int, str, str]]:
    """Steps whose loss differs from the printed one by more than one unit of the 4th decimal."""
    return [
        (i + 1, f"{loss:.4f}", ref)
        for i, (loss, ref) in enumerate(zip(ours, printed))
        if abs(loss - float(ref)) > 0.00011
    ]


class StopAfter(Exception):
    pass


def run_steps(granularity: str, steps: int) -> list[float]:
    """Train the reference run (1,000-step schedule) and stop after ``steps`` steps."""
    run = start_run(load_documents(NAMES).docs, seed=42)
    losses: list[float] = []

    def on_step(done: int, loss: float) -> None:
        losses.append(loss)
        if done == steps:
            raise StopAfter

    with pytest.raises(StopAfter):
        train(run.model, run.tokenizer, run.docs, 1000, TrainState(), granularity=granularity, on_step=on_step)
    return losses


@needs_shared
@pytest.mark.parametrize("granularity", ["fused", "atomic"])
def test_first_100_steps_reproduce_the_reference_loss_trace(granularity: str) -> None:
    losses = run_steps(granularity, 100)
    assert len(losses) == 100
    assert within_one_unit(losses, reference_losses()[:100]) == []


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("granularity", ["fused", "atomic"])
def test_the_full_reference_run_and_its_samples(granularity: str) -> None:
    run = start_run(load_documents(NAMES).docs, seed=42)
    losses: list[float] = []
    train(
        run.model,
        run.tokenizer,
        run.docs,
        1000,
        TrainState(),
        granularity=granularity,
        on_step=lambda _s, loss: losses.append(loss),
    )
    assert within_one_unit(losses, reference_losses()) == []
    names = [sample(run.model, run.tokenizer, run.rng, temperature=0.5) for _ in range(20)]
    assert names == (REFERENCE / "samples.txt").read_text().split()


def test_adam_matches_the_formula_by_hand() -> None:
    run = start_run(TINY_DOCS, seed=1, **TINY_CONFIG)
    p = run.model.params[0]
    before = p.data
    run.model.document_loss(run.tokenizer.document_tokens("emma")).backward()
    g = p.grad
    state = TrainState()
    from microgpt.train import adam_update

    adam = AdamConfig()
    adam_update(run.model, state, adam, step=0, steps=10)
    m = (1 - adam.beta1) * g
    v = (1 - adam.beta2) * g**2
    m_hat, v_hat = m / (1 - adam.beta1), v / (1 - adam.beta2)
    assert p.data == before - adam.lr * 1.0 * m_hat / (v_hat**0.5 + adam.eps)
    assert p.grad == 0 and state.m[0] == m and state.v[0] == v


def test_the_same_seed_gives_the_same_run_and_another_seed_does_not() -> None:
    def losses(seed: int) -> list[float]:
        run = start_run(TINY_DOCS, seed=seed, **TINY_CONFIG)
        out: list[float] = []
        train(run.model, run.tokenizer, run.docs, 5, TrainState(), on_step=lambda _s, loss: out.append(loss))
        return out

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


def test_checkpoint_round_trip_keeps_everything(tmp_path: Path) -> None:
    run = start_run(TINY_DOCS, seed=7, **TINY_CONFIG)
    state = train(run.model, run.tokenizer, run.docs, 3, TrainState())
    ckpt = ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), state, 10, 7, "tiny", "fused", run.rng)
    path = tmp_path / "m.json"
    ckpt_io.save(ckpt, path)
    loaded = ckpt_io.load(path)
    assert loaded.model.weight_data() == run.model.weight_data()
    assert loaded.state.m == state.m and loaded.state.v == state.v and loaded.state.step == 3
    assert loaded.rng.getstate() == run.rng.getstate()
    assert (loaded.steps, loaded.seed, loaded.data_source, loaded.granularity) == (10, 7, "tiny", "fused")
    assert loaded.tokenizer == run.tokenizer
    assert [p.tag for p in loaded.model.params] == [p.tag for p in run.model.params]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_an_interrupted_run_resumes_to_the_same_losses(tmp_path: Path) -> None:
    def fresh():
        return start_run(TINY_DOCS, seed=5, **TINY_CONFIG)

    whole = fresh()
    expected: list[float] = []
    train(whole.model, whole.tokenizer, whole.docs, 12, TrainState(), on_step=lambda _s, loss: expected.append(loss))

    first = fresh()
    got: list[float] = []
    state = TrainState()

    def stop_at_5(done: int, loss: float) -> None:
        got.append(loss)
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(first.model, first.tokenizer, first.docs, 12, state, on_step=stop_at_5)
    path = tmp_path / "m.json"
    ckpt_io.save(
        ckpt_io.Checkpoint(first.model, first.tokenizer, AdamConfig(), state, 12, 5, "t", "fused", first.rng), path
    )
    resumed = ckpt_io.load(path)
    train(resumed.model, first.tokenizer, first.docs, 12, resumed.state, on_step=lambda _s, loss: got.append(loss))
    assert got == expected
    assert resumed.model.weight_data() == whole.model.weight_data()


def test_sampling_continues_the_random_state_and_respects_the_prefix() -> None:
    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    state = run.rng.getstate()
    first = [sample(run.model, run.tokenizer, run.rng) for _ in range(5)]
    run.rng.setstate(state)
    assert [sample(run.model, run.tokenizer, run.rng) for _ in range(5)] == first
    assert all(sample(run.model, run.tokenizer, random.Random(i), prefix="em").startswith("em") for i in range(5))
    assert all(len(name) <= TINY_CONFIG["block_size"] for name in first)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature must be a positive number"),
        ({"prefix": "xyz"}, "not in the vocabulary"),
        ({"prefix": "emmaemmaemma"}, "fills the whole context"),
    ],
)
def test_bad_sampling_input_is_named(kwargs: dict, message: str) -> None:
    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    with pytest.raises(MicrogptError, match=message):
        sample(run.model, run.tokenizer, run.rng, **kwargs)


def test_bad_training_input_is_named() -> None:
    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    with pytest.raises(MicrogptError, match="steps must be at least 1"):
        train(run.model, run.tokenizer, run.docs, 0, TrainState())


def test_a_diverging_run_stops_naming_the_step() -> None:
    from microgpt.train import NonFiniteLoss

    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    with pytest.raises((NonFiniteLoss, ValueError, OverflowError)) as info:
        train(run.model, run.tokenizer, run.docs, 50, TrainState(), adam=AdamConfig(lr=1e300))
    if isinstance(info.value, NonFiniteLoss):
        assert "at step" in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw.update(format="something-else"), "not a microgpt-x checkpoint"),
        (lambda raw: raw.update(version=99), "version 99"),
        (lambda raw: raw["weights"].pop("wte"), "weights are"),
        (lambda raw: raw["weights"]["wte"][0].pop(), "wte is not a"),
        (lambda raw: raw["weights"]["wpe"][0].__setitem__(0, "x"), "non-number"),
        (lambda raw: raw.update(vocabulary="ab"), "does not match vocab_size"),
        (lambda raw: raw["config"].update(n_head=3), "does not divide"),
        (lambda raw: raw.pop("training"), "no 'training'"),
        (lambda raw: raw.update(random_state=[1, 2]), "random_state is malformed"),
    ],
)
def test_corrupt_or_foreign_checkpoints_are_named(tmp_path: Path, mutate, message: str) -> None:
    run = start_run(TINY_DOCS, seed=2, **TINY_CONFIG)
    ckpt = ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), TrainState(), 10, 2, "t", "fused", run.rng)
    raw = ckpt_io.to_json(ckpt)
    mutate(raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(MicrogptError, match=message):
        ckpt_io.load(path)


def test_a_checkpoint_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b"\x00\xff not json")
    with pytest.raises(MicrogptError, match="not valid JSON"):
        ckpt_io.load(path)
