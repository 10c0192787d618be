"""Whole training steps (forward, backward, Adam), side by side with the reference design.

    python bench/bench_train.py [--steps 50] [--data names.txt]

Runs the first ``--steps`` steps of the reference run (seed 42, the 1,000-step schedule) three
ways in one process: the reference design as its script runs it (bench/reference_microgpt.py,
cyclic GC on), microgpt fused, and microgpt atomic. Prints the median seconds per step, the
ratios, and checks that all three printed the same losses (so they did the same work).
Goal (issue 3): fused about 28 ms or less per step here, beside the atomic figure.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference_microgpt as ref

from microgpt.data import find_dataset, load_documents
from microgpt.train import TrainState, start_run, train

DEFAULT_NAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "names.txt"
SCHEDULE = 1000  # the learning rate decays over the reference's 1,000 steps


def reference_steps(docs: list[str], steps: int) -> tuple[list[float], list[float]]:
    """The reference script's training loop, unchanged: GC on, Adam inline."""
    ref.setup(docs)
    lr, beta1, beta2, eps = 0.01, 0.85, 0.99, 1e-8
    m = [0.0] * len(ref.params)
    v = [0.0] * len(ref.params)
    times, losses = [], []
    for step in range(steps):
        start = time.perf_counter()
        loss = ref.document_loss(ref.docs[step % len(ref.docs)])
        loss.backward()
        lr_t = lr * (1 - step / SCHEDULE)
        for i, p in enumerate(ref.params):
            m[i] = beta1 * m[i] + (1 - beta1) * p.grad
            v[i] = beta2 * v[i] + (1 - beta2) * p.grad**2
            m_hat = m[i] / (1 - beta1 ** (step + 1))
            v_hat = v[i] / (1 - beta2 ** (step + 1))
            p.data -= lr_t * m_hat / (v_hat**0.5 + eps)
            p.grad = 0
        times.append(time.perf_counter() - start)
        losses.append(loss.data)
    return times, losses


class _Stop(Exception):
    pass


def microgpt_steps(docs: list[str], steps: int, granularity: str) -> tuple[list[float], list[float]]:
    run = start_run(docs, seed=42)
    times, losses = [], []
    last = time.perf_counter()

    def on_step(done: int, loss: float) -> None:
        nonlocal last
        now = time.perf_counter()
        times.append(now - last)
        losses.append(loss)
        last = now
        if done == steps:
            raise _Stop

    gc.collect()
    last = time.perf_counter()
    try:
        train(run.model, run.tokenizer, run.docs, SCHEDULE, TrainState(), granularity=granularity, on_step=on_step)
    except _Stop:
        pass
    return times, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="steps of the reference run to time (default 50)")
    parser.add_argument("--data", type=Path, default=None, help="names file (default: ../shared's names.txt)")
    args = parser.parse_args()
    dataset = load_documents(args.data or DEFAULT_NAMES) if (args.data or DEFAULT_NAMES.is_file()) else find_dataset()
    print(f"training-step benchmark: Python {sys.version.split()[0]}, data {dataset.source}, first {args.steps} steps")

    results = {}
    for name, runner in (
        ("reference (GC on, as its script runs)", lambda: reference_steps(dataset.docs, args.steps)),
        ("microgpt fused", lambda: microgpt_steps(dataset.docs, args.steps, "fused")),
        ("microgpt atomic", lambda: microgpt_steps(dataset.docs, args.steps, "atomic")),
    ):
        gc.collect()
        results[name] = runner()

    base = statistics.median(results["reference (GC on, as its script runs)"][0])
    print(f"\n{'variant':40} {'median/step':>12} {'min':>10} {'speed-up':>9}")
    for name, (times, _) in results.items():
        median = statistics.median(times)
        print(f"{name:40} {median * 1e3:9.1f} ms {min(times) * 1e3:7.1f} ms {base / median:8.2f}×")

    printed = {name: [f"{loss:.4f}" for loss in losses] for name, (_, losses) in results.items()}
    same = len({tuple(p) for p in printed.values()}) == 1
    print(f"\nthe three runs printed the same {args.steps} losses: {'yes' if same else 'NO'}")
    fused = statistics.median(results["microgpt fused"][0])
    print(f"goal: fused ≤ 28 ms per step here: {'PASS' if fused <= 0.028 else 'MISS'} ({fused * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
