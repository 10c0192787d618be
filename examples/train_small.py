"""Train a small GPT on names for a few hundred steps and sample from it.

    python examples/train_small.py

Uses the same pieces as `mgx train`: the reference's random-number order (seed, shuffle,
weights), Adam with a linearly decaying learning rate, and a callback for progress.
"""

from microgpt.data import find_dataset
from microgpt.train import TrainState, sample, start_run, train

dataset = find_dataset()
run = start_run(dataset.docs, seed=42, n_embd=16, n_head=4)
print(f"data: {dataset.source} ({len(run.docs):,} names); {len(run.model.params):,} parameters")


def report(step: int, loss: float) -> None:
    if step % 50 == 0:
        print(f"step {step:4d} | loss {loss:.4f}")


train(run.model, run.tokenizer, run.docs, steps=300, state=TrainState(), on_step=report)
print("samples:", ", ".join(sample(run.model, run.tokenizer, run.rng, temperature=0.5) for _ in range(10)))
