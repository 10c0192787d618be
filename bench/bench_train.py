"""Training as a user runs it, whole processes side by side with the reference program.

    python bench/bench_train.py --reference PATH/TO/microgpt.py [--steps 200] [--pairs 3] [--data FILE]

Each round runs, one after the other, the reference program (a temporary copy with only its
step count changed, reading the same documents as ``input.txt``), ``mgx train --steps N``
(fused, the default) and ``mgx train --steps N --granularity atomic``, each as a fresh
process: start-up, data, training, and the checkpoint (mgx) or the 20 names the program
samples at its end (the reference) are all timed. Each program also runs for 1 step, to show
those fixed costs. The rounds rotate their order; the report gives the median wall time of
each program, per step, the median of the rounds' ratios to the reference, each process's
peak resident memory (its own, from wait4), and then, from this process, the nodes and edges
of the graphs those steps build and bytes per node.

Two more untimed runs check that the programs did the same work: mgx with ``--log-every 1``
prints the reference program's lines, and every loss must agree at every printed digit.
Without ``--reference`` only this project's figures are printed.

Goals: fused at most 0.05× the reference's time, atomic at least 2× faster than it, and peak
memory at or below the reference's.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from processes import (
    REFERENCE_HINT,
    Measured,
    add_data_arguments,
    dataset,
    mgx_command,
    reference_copy,
    run_process,
    write_input,
)

from microgpt.engine import gc_paused, recording, topological_order
from microgpt.train import start_run

FUSED_GOAL, ATOMIC_GOAL = 0.05, 0.5  # the largest ratio of wall times to the reference that meets each goal


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def step_graph(model, tokens: list[int], granularity: str):
    """The graph a training step builds: fused is lean and ends in one cross-entropy node
    (engine.recording, GPT.training_loss)."""
    if granularity == "fused":
        with recording(lean=True):
            return model.training_loss(tokens)
    return model.document_loss(tokens, granularity)


def graph_sizes(docs: list[str], steps: int, granularity: str) -> tuple[float, float]:
    """Mean nodes and edges per step over the first ``steps`` steps (a graph's shape depends
    only on the document's length)."""
    run = start_run(docs, seed=42)
    by_length: dict[int, tuple[int, int]] = {}
    nodes = edges = 0
    for step in range(steps):
        tokens = run.tokenizer.document_tokens(run.docs[step % len(run.docs)])
        if len(tokens) not in by_length:
            with gc_paused():
                order = topological_order(step_graph(run.model, tokens, granularity))
                by_length[len(tokens)] = (len(order), sum(len(v.children) for v in order))
                del order
        n, e = by_length[len(tokens)]
        nodes, edges = nodes + n, edges + e
    return nodes / steps, edges / steps


def bytes_per_node(docs: list[str], granularity: str) -> float:
    """Traced bytes of the first step's forward graph over the nodes it made (tracemalloc;
    built while the previous graph is alive, as in training, so shared tags are not counted)."""
    from bench_engine import traced_bytes

    run = start_run(docs, seed=42)
    tokens = run.tokenizer.document_tokens(run.docs[0])
    params = {id(p) for p in run.model.params}
    size, loss = traced_bytes(lambda: step_graph(run.model, tokens, granularity), warm=True)
    made = sum(1 for v in topological_order(loss) if id(v) not in params)
    return size / made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, help="the reference program, microgpt.py as published")
    parser.add_argument("--steps", type=int, default=200, help="training steps per run (default 200)")
    parser.add_argument("--pairs", type=int, default=3, help="timed rounds; medians are reported (default 3)")
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.pairs < 1:
        parser.error("--steps and --pairs must be at least 1")
    data = dataset(args.data)
    print(
        f"training benchmark: Python {sys.version.split()[0]}, data {data.source} ({len(data.docs):,} documents), "
        f"{args.steps} steps a run, {args.pairs} rounds, whole processes (Python's bytecode cache on, its default)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)  # mgx runs here; the reference in its own directory, beside its input.txt
        ref_dir = directory / "reference"
        ref_dir.mkdir()
        input_txt = write_input(data.docs, ref_dir)
        common = ["train", "--steps", str(args.steps), "--data", str(input_txt), "-o", str(directory / "model.json")]
        programs: dict[str, list[str]] = {}
        cwd = {name: directory for name in ("mgx fused (default)", "mgx atomic", "mgx, 1 step")}
        if args.reference is not None:
            programs["reference"] = [sys.executable, str(reference_copy(args.reference, args.steps, ref_dir))]
            # Start-up, data, one step and its closing 20 samples: its cost besides the steps.
            one_dir = directory / "reference-1"
            one_dir.mkdir()
            write_input(data.docs, one_dir)
            programs["reference, 1 step"] = [sys.executable, str(reference_copy(args.reference, 1, one_dir))]
            cwd |= {"reference": ref_dir, "reference, 1 step": one_dir}
        programs["mgx fused (default)"] = mgx_command(common)
        programs["mgx atomic"] = mgx_command([*common, "--granularity", "atomic"])
        # Start-up, data, one step and the checkpoint: what a run costs besides its steps.
        programs["mgx, 1 step"] = mgx_command(["train", "--steps", "1", *common[3:]])

        run_process(programs["mgx, 1 step"], directory)  # untimed: writes the bytecode cache (processes.CHILD_ENV)
        results: dict[str, list[Measured]] = {name: [] for name in programs}
        names = list(programs)
        for round_ in range(args.pairs):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                (directory / "model.json").unlink(missing_ok=True)
                gc.collect()
                results[name].append(run_process(programs[name], cwd[name]))

        same = None
        if "reference" in programs:
            expected = results["reference"][0].losses()
            checks = {}
            for name in ("mgx fused (default)", "mgx atomic"):
                (directory / "model.json").unlink(missing_ok=True)
                checks[name] = run_process([*programs[name], "--log-every", "1"], directory).losses()
            same = len(expected) == args.steps and all(losses == expected for losses in checks.values())

    print(f"\n{'program':22} {'median wall':>12} {'per step':>9} {'ratio':>7} {'speed-up':>9} {'peak RSS':>10}")
    medians = {}
    for name, runs in results.items():
        wall = statistics.median(r.seconds for r in runs)
        peak = statistics.median(r.peak_bytes for r in runs)
        medians[name] = (wall, peak)
        steps = 1 if name.endswith("1 step") else args.steps
        ratio = speed = "-"
        if "reference" in results and steps == args.steps:
            # the median of the rounds' ratios: each round's programs ran back to back
            ratios = [r.seconds / ref.seconds for r, ref in zip(runs, results["reference"])]
            ratio, speed = f"{statistics.median(ratios):.3f}×", f"{1 / statistics.median(ratios):.1f}×"
            medians[name] = (statistics.median(ratios), peak)
        print(f"{name:22} {wall:10.2f} s {wall / steps * 1e3:6.1f} ms {ratio:>7} {speed:>9} {mib(peak):>10}")
    for name, runs in results.items():
        print(f"  {name}: {', '.join(f'{r.seconds:.2f} s' for r in runs)}")

    print(f"\ngraphs of the first {args.steps} steps (mean per step):")
    for granularity in ("fused", "atomic"):
        nodes, edges = graph_sizes(data.docs, args.steps, granularity)
        per_node = bytes_per_node(data.docs, granularity)
        print(f"  {granularity:7} {nodes:9,.0f} nodes {edges:9,.0f} edges   {per_node:6.1f} bytes a node (first step)")
    print("  (the reference program builds the atomic graph: the same nodes and edges; fused training ends in")
    print("  one cross-entropy node where the views show each position's softmax, log and the mean)")

    if "reference" not in results:
        print(f"\n{REFERENCE_HINT}")
        return
    print(f"\nthe losses of all {args.steps} steps agree at every printed digit: {'yes' if same else 'NO'}")
    fused, atomic = medians["mgx fused (default)"], medians["mgx atomic"]  # (ratio, peak)
    ref_peak = medians["reference"][1]
    rows = [
        (f"fused ≤ {FUSED_GOAL}× the reference's time", f"{fused[0]:.3f}×", fused[0] <= FUSED_GOAL),
        ("atomic ≥ 2× faster than the reference", f"{1 / atomic[0]:.2f}×", atomic[0] <= ATOMIC_GOAL),
        ("fused peak memory ≤ the reference's", f"{mib(fused[1])} vs {mib(ref_peak)}", fused[1] <= ref_peak),
        ("atomic peak memory ≤ the reference's", f"{mib(atomic[1])} vs {mib(ref_peak)}", atomic[1] <= ref_peak),
    ]
    print("goals:")
    for goal, measured, passed in rows:
        print(f"  {'PASS' if passed else 'MISS'}  {goal:40} {measured}")


if __name__ == "__main__":
    main()
