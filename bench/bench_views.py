"""Wall time of every view, whole process, on models of 1, 2 and 4 layers (64 wide).

For each depth it trains a checkpoint for two steps (``mgx train --n-layer L --n-embd 64
--steps 2``, in a temporary directory), then runs each view as a user would, in a fresh
process, several times, and prints the median. The views of one token should take at most
1 s at 4 layers and those of a whole name at most 3 s; the nodes column shows the graph's
size, so a cost that grows with it (linear) shows as a roughly constant time per node.
A second table gives the processes' CPU time (user + system, the layout program's
included), which other work sharing the cores disturbs far less than the wall time.

    python bench/bench_views.py [--runs 3] [--layers 1 2 4]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from processes import mgx_command  # run as a script: bench/ is on the path

# (name, arguments, goal in seconds at 4 layers)
VIEWS = [
    ("inspect attn.h0", ["inspect", "attn.h0", "--no-color"], 1.0),
    ("step --print 3", ["step", "--print", "3"], 1.0),
    ("graph --token a --pos 0 -o g.svg", ["graph", "--token", "a", "--pos", "0", "-o", "g.svg"], 1.0),
    ("stats", ["stats"], 1.0),
    ("graph --word emma --level block -o g.svg", ["graph", "--word", "emma", "--level", "block", "-o", "g.svg"], 3.0),
    ("stats --word emma", ["stats", "--word", "emma"], 3.0),
]
WIDTH = 64


def graph_nodes(cwd: str, word: bool) -> int:
    """The node count ``mgx stats`` reports for the token's (or the word's) graph."""
    args = mgx_command(["stats", "--top", "1"]) + (["--word", "emma"] if word else [])
    text = subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout
    match = re.search(r"│ nodes\s*│\s*([\d,]+)", text)
    return int(match[1].replace(",", "")) if match else 0


def median_times(command: list[str], runs: int, cwd: str) -> tuple[float, float]:
    """The median wall time and the median CPU time (user + system) of ``runs`` runs."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="whole-process runs per view (the median is shown)")
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    repo = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # Python's bytecode cache on, its default (processes.CHILD_ENV)
    results: dict[int, dict[str, tuple[float, float]]] = {}
    sizes: dict[int, tuple[int, int]] = {}
    for layers in args.layers:
        with tempfile.TemporaryDirectory() as cwd:
            train = ["train", "--n-layer", str(layers), "--n-embd", str(WIDTH), "--steps", "2"]
            subprocess.run(mgx_command(train), cwd=cwd, check=True, capture_output=True)
            sizes[layers] = (graph_nodes(cwd, word=False), graph_nodes(cwd, word=True))
            results[layers] = {name: median_times(mgx_command(argv), args.runs, cwd) for name, argv, _ in VIEWS}
    header = "".join(f"{f'{n} layer' + ('s' if n > 1 else ''):>12}" for n in args.layers)
    sizes_row = "".join(f"{f'{t // 1000}k/{w // 1000}k':>12}" for t, w in (sizes[n] for n in args.layers))
    for k, what in enumerate(("wall time", "CPU time (user + system)")):
        print(f"{what}: median of {args.runs} whole-process runs, models {WIDTH} wide; nodes: token graph / word graph")
        print(f"{'view':<44}{header}   goal at 4 layers")
        print(f"{'nodes':<44}{sizes_row}")
        for name, _, goal in VIEWS:
            row = "".join(f"{results[n][name][k]:>11.2f}s" for n in args.layers)
            verdict = ""
            if 4 in results:
                verdict = f"   ≤ {goal:.0f} s: {'meets' if results[4][name][k] <= goal else 'MISSES'}"
            print(f"{name:<44}{row}{verdict}")
        print()


if __name__ == "__main__":
    main()
