"""Wall time of every view, whole process, on models of 1, 2 and 4 layers (64 wide).

For each depth it trains a checkpoint for two steps (``mgx train --n-layer L --n-embd 64
--steps 2``, in a temporary directory), then runs each view as a user would, in a fresh
process, several times, and prints the median. The views of one token should take at most
1 s at 4 layers and those of a whole name at most 3 s; the nodes column shows the graph's
size, so a cost that grows with it (linear) shows as a roughly constant time per node.

    python bench/bench_views.py [--runs 3] [--layers 1 2 4]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

from processes import median_seconds, mgx_command  # run as a script: bench/ is on the path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="whole-process runs per view (the median is shown)")
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    repo = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
    results: dict[int, dict[str, float]] = {}
    sizes: dict[int, tuple[int, int]] = {}
    for layers in args.layers:
        with tempfile.TemporaryDirectory() as cwd:
            train = ["train", "--n-layer", str(layers), "--n-embd", str(WIDTH), "--steps", "2"]
            subprocess.run(mgx_command(train), cwd=cwd, check=True, capture_output=True)
            sizes[layers] = (graph_nodes(cwd, word=False), graph_nodes(cwd, word=True))
            results[layers] = {name: median_seconds(mgx_command(argv), args.runs, cwd) for name, argv, _ in VIEWS}
    print(f"median of {args.runs} whole-process runs, models {WIDTH} wide; nodes: token graph / word graph")
    header = "".join(f"{f'{n} layer' + ('s' if n > 1 else ''):>12}" for n in args.layers)
    print(f"{'view':<44}{header}   goal at 4 layers")
    sizes_row = "".join(f"{f'{t // 1000}k/{w // 1000}k':>12}" for t, w in (sizes[n] for n in args.layers))
    print(f"{'nodes':<44}{sizes_row}")
    for name, _, goal in VIEWS:
        row = "".join(f"{results[n][name]:>11.2f}s" for n in args.layers)
        verdict = ""
        if 4 in results:
            verdict = f"   ≤ {goal:.0f} s: {'meets' if results[4][name] <= goal else 'MISSES'}"
        print(f"{name:<44}{row}{verdict}")


if __name__ == "__main__":
    main()
