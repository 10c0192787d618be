"""The engine's own figures: one forward + backward, tagging, memory.

Measures, in one process and one run, the forward + backward of one training step on the
first document of the reference run (seed 42 shuffle of names.txt: "yuheng"):

- microgpt in atomic and fused granularity, inside ``engine.gc_paused()`` as the library
  runs a step, and atomic with the GC on, to show what the pause is worth;
- what tagging costs (``set_tagging(False)`` against on);
- bytes per node and per edge of each graph (tracemalloc), and bytes per binary node;
- optionally (``--deep``) a deep atomic graph, to show backward raises no RecursionError;

and prints a table of the engine's goals with PASS / MISS. Variants are timed round-robin
(one run of each per repeat, GC collected and gradients zeroed, untimed, before each run),
and the median is reported. Freeing the graph is not timed.

    python bench/bench_engine.py                       # about 15 s
    python bench/bench_engine.py --quick               # 3 repeats, about 8 s
    python bench/bench_engine.py --repeats 21 --deep   # + the deep case: ~1.5 min, ~9 GB of RAM

The reference program is compared with as a whole process, by ``bench/bench_train.py
--reference FILE``: its per-step cost cannot be isolated from a single run's start-up and
the names it samples at its end, which vary with its weights.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from processes import add_data_arguments, dataset

from microgpt.engine import Value, gc_paused, topological_order
from microgpt.model import GPT, GPTConfig
from microgpt.scope import scope, set_tagging
from microgpt.train import start_run

COMPARISON_HINT = (
    "this engine alone; the comparison with the reference program is whole training runs: "
    "python bench/bench_train.py --reference PATH/TO/microgpt.py"
)
FUSED_SECONDS_GOAL, ATOMIC_SECONDS_GOAL = 0.028, 0.2  # forward + backward of "yuheng"
TAGGING_OVERHEAD_GOAL = 0.10
BINARY_NODE_BYTES_GOAL = 216


def graph_size(root: Value) -> tuple[int, int]:
    """(nodes, edges) of the graph under ``root``."""
    with gc_paused():
        order = topological_order(root)
        return len(order), sum(len(v.children) for v in order)


# -- timing ---------------------------------------------------------------------------------


class Variant:
    """One thing to time: ``build()`` returns a loss; ``run()`` times build + backward."""

    def __init__(
        self, name: str, build: Callable[[], object], zero: Callable[[], None], pause_gc: bool, tagging: bool = True
    ) -> None:
        self.name, self.build, self.zero, self.pause_gc, self.tagging = name, build, zero, pause_gc, tagging
        self.times: list[float] = []

    def run(self) -> float:
        self.zero()
        gc.collect()
        previous_tagging = set_tagging(self.tagging)
        try:
            if self.pause_gc:
                with gc_paused():
                    start = time.perf_counter()
                    loss = self.build()
                    loss.backward()
                    elapsed = time.perf_counter() - start
            else:
                gc.enable()
                start = time.perf_counter()
                loss = self.build()
                loss.backward()
                elapsed = time.perf_counter() - start
        finally:
            set_tagging(previous_tagging)
        del loss
        return elapsed

    @property
    def median(self) -> float:
        return statistics.median(self.times)


# -- memory ---------------------------------------------------------------------------------


def drain_freelists() -> list:
    """Take the floats and small tuples CPython keeps for reuse, so that every object the
    measured code makes is a fresh, traced allocation. Keep the result alive while measuring."""
    held: list = [float(i) + 0.5 for i in range(1000)]
    for size in range(1, 21):
        held += [tuple(range(i, i + size)) for i in range(2500)]
    return held


def traced_bytes(build: Callable[[], object], warm: bool = False) -> tuple[int, object]:
    """(bytes still allocated after ``build()``, its result), GC paused, tracemalloc on.

    ``warm``: build once untraced first and keep it alive while measuring, as a training
    loop holds the last step's graph while it builds the next, so the tag strings (one per
    scope and labelled element, shared by all the nodes made there) exist already; measured
    cold, they and the resizing of the interned-string table would be counted too."""
    gc.collect()
    with gc_paused():
        previous = build() if warm else None
        held = drain_freelists()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            result = build()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        del held, previous
    return after - before, result


def bytes_per_node(make: Callable[[Value, Value], Value], a: list, b: list, n: int) -> float:
    """Traced bytes per node of nodes ``make(a[i], b[i])`` built from existing leaves: the
    slope between building n and 2n of them, so fixed costs (the frame, the counter) cancel."""
    k = len(a)

    def size(count: int) -> int:
        out: list = [None] * count

        def build() -> None:
            for i in range(count):
                out[i] = make(a[i % k], b[i % k])

        return traced_bytes(build)[0]

    return (size(2 * n) - size(n)) / n


# -- the deep case --------------------------------------------------------------------------


def deep_case() -> None:
    config = GPTConfig(vocab_size=27, n_layer=4, n_embd=64, n_head=4, block_size=64)
    rng = random.Random(42)
    model = GPT.initialise(config, rng)
    tokens = [26] + [rng.randrange(26) for _ in range(63)] + [26]  # BOS, 63 random letters, BOS
    print(
        f"\nDeep graph: {config.n_layer} layers, n_embd {config.n_embd}, {config.n_head} heads, "
        f"block_size {config.block_size}, a 63-letter document, atomic"
    )
    with gc_paused():  # also while counting and freeing: GC passes over ~10⁸ objects take minutes
        start = time.perf_counter()
        loss = model.document_loss(tokens, "atomic")
        built = time.perf_counter()
        loss.backward()
        done = time.perf_counter()
        nodes = len(topological_order(loss))
        counted = time.perf_counter()
        del loss
        freed = time.perf_counter()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"  forward {built - start:.1f} s + backward {done - built:.1f} s = {done - start:.1f} s, "
        f"{nodes:,} nodes, no RecursionError"
    )
    print(
        f"  (then counting the nodes {counted - done:.1f} s, freeing the graph {freed - counted:.1f} s; "
        f"peak RSS {peak_gib:.1f} GiB)"
    )


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per variant; the median is reported")
    parser.add_argument("--quick", action="store_true", help="3 repeats, a smaller binary-node measurement")
    parser.add_argument(
        "--deep",
        action="store_true",
        help="also the deep atomic graph (4 layers, width 64, 63 positions): ~1.5 min, ~9 GB",
    )
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    if repeats < 1:
        parser.error("--repeats must be at least 1")

    data = dataset(args.data)
    docs = list(data.docs)
    run = start_run(docs, seed=42)  # the reference's order: seed 42, shuffle, then the weights
    doc, tokenizer, model = run.docs[0], run.tokenizer, run.model
    tokens = tokenizer.document_tokens(doc)

    atomic = lambda: model.document_loss(tokens, "atomic")  # noqa: E731
    fused = lambda: model.document_loss(tokens, "fused")  # noqa: E731
    # In each repeat, every variant runs once, in this order; each untagged run follows its
    # tagged twin, and tagging's cost is the median of those pairs' ratios.
    variants = {
        "atomic": Variant("atomic", atomic, model.zero_grad, pause_gc=True),
        "atomic_untagged": Variant("atomic, untagged", atomic, model.zero_grad, pause_gc=True, tagging=False),
        "atomic_gc": Variant("atomic, GC on", atomic, model.zero_grad, pause_gc=False),
        "fused": Variant("fused", fused, model.zero_grad, pause_gc=True),
        "fused_untagged": Variant("fused, untagged", fused, model.zero_grad, pause_gc=True, tagging=False),
    }

    print(f"microgpt engine benchmark: Python {sys.version.split()[0]}, data {data.source}")
    print(
        f"document {doc!r} ({len(tokens) - 1} positions), forward + backward, "
        f"median of {repeats} runs, variants interleaved"
    )

    atomic_loss, fused_loss = atomic(), fused()
    sizes = {"atomic": graph_size(atomic_loss), "fused": graph_size(fused_loss)}
    print(f"loss: atomic {atomic_loss.data!r}, fused {fused_loss.data!r}")
    if atomic_loss.data != fused_loss.data:
        print("WARNING: the losses differ")
    del atomic_loss, fused_loss

    gc_was_enabled = gc.isenabled()
    try:
        for variant in variants.values():  # warm-up: interned tags, pow ops, caches
            variant.run()
        for _ in range(repeats):
            for variant in variants.values():
                variant.times.append(variant.run())
    finally:
        if gc_was_enabled:
            gc.enable()
        else:
            gc.disable()

    print(f"\n{'variant':<22} {'median':>10} {'min':>10} {'nodes':>9} {'edges':>9} {'ns/edge':>8}")
    for key, variant in variants.items():
        nodes, edges = sizes[key.split("_")[0]]
        print(
            f"{variant.name:<22} {variant.median * 1e3:8.1f} ms {min(variant.times) * 1e3:7.1f} ms "
            f"{nodes:>9,} {edges:>9,} {variant.median / edges * 1e9:8,.0f}"
        )
    gc_gain = variants["atomic_gc"].median / variants["atomic"].median
    print(f"  pausing the GC: atomic {gc_gain:.2f}× faster than with the GC on")

    tag_overhead = {}
    for key in ("fused", "atomic"):
        on, off = variants[key], variants[f"{key}_untagged"]
        ratio = statistics.median(a / b for a, b in zip(on.times, off.times))
        tag_overhead[key] = ratio - 1
        print(
            f"  tagging, {key}: {on.median * 1e3:.1f} ms on, {off.median * 1e3:.1f} ms off; "
            f"median ratio of the pairs {ratio:.3f} ({tag_overhead[key]:+.1%})"
        )

    # Memory: the graph as the forward pass builds it (grads not yet written).
    print("\nMemory (tracemalloc; the forward's graph, built while the previous one is alive;")
    print("        nodes made = the graph's nodes but the parameters, which exist before)")
    param_ids = {id(p) for p in model.params}
    for name, build in (("atomic", atomic), ("fused", fused)):
        size, loss = traced_bytes(build, warm=True)
        order = topological_order(loss)
        new_nodes = sum(1 for v in order if id(v) not in param_ids)
        edges = sum(len(v.children) for v in order)
        print(
            f"  {name:<10} {size / 2**20:6.2f} MiB: {size / new_nodes:6.1f} bytes per node "
            f"({new_nodes:,} made), {size / edges:6.1f} bytes per edge"
        )
        del loss, order

    n = 20_000 if args.quick else 200_000
    leaves_a = [Value(random.random()) for _ in range(1000)]
    leaves_b = [Value(random.random()) for _ in range(1000)]
    mul_bytes = bytes_per_node(lambda a, b: a * b, leaves_a, leaves_b, n)
    with scope("bench.tagged"):
        mul_bytes_tagged = bytes_per_node(lambda a, b: a * b, leaves_a, leaves_b, n)
    add_bytes = bytes_per_node(lambda a, b: a + b, leaves_a, leaves_b, n)
    print(
        f"  binary nodes, {n:,} built from existing leaves: mul {mul_bytes:.1f} bytes "
        f"({mul_bytes_tagged:.1f} inside a scope), add {add_bytes:.1f}"
    )

    if args.deep:
        deep_case()
    else:
        print(
            "\nDeep graph (4 layers, width 64, 63 positions, ~28 M atomic nodes): skipped, "
            "run with --deep (~1.5 min, ~9 GB)"
        )

    rows = [
        (
            f"fused forward+backward ≤ {FUSED_SECONDS_GOAL * 1e3:g} ms",
            f"{variants['fused'].median * 1e3:.1f} ms",
            variants["fused"].median <= FUSED_SECONDS_GOAL,
        ),
        (
            f"atomic forward+backward ≤ {ATOMIC_SECONDS_GOAL:g} s",
            f"{variants['atomic'].median * 1e3:.1f} ms",
            variants["atomic"].median <= ATOMIC_SECONDS_GOAL,
        ),
        (
            f"tagging overhead, fused < {TAGGING_OVERHEAD_GOAL:.0%}",
            f"{tag_overhead['fused']:+.1%}",
            tag_overhead["fused"] < TAGGING_OVERHEAD_GOAL,
        ),
        (
            f"tagging overhead, atomic < {TAGGING_OVERHEAD_GOAL:.0%}",
            f"{tag_overhead['atomic']:+.1%}",
            tag_overhead["atomic"] < TAGGING_OVERHEAD_GOAL,
        ),
        (
            f"≤ {BINARY_NODE_BYTES_GOAL} bytes per binary node, atomic",
            f"{mul_bytes:.1f} bytes",
            mul_bytes <= BINARY_NODE_BYTES_GOAL,
        ),
    ]
    print("\nGoals")
    for goal, measured, passed in rows:
        print(f"  {'PASS' if passed else 'MISS'}  {goal:<48} {measured}")
    print(f"\n{COMPARISON_HINT}")


if __name__ == "__main__":
    main()
