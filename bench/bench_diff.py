"""Wall time of `mgx diff` and `mgx patch` as a user runs them (issue 14's goals: two token
graphs diffed in 1 s, two checkpoints in 0.5 s), each a fresh process, medians.

Trains two checkpoints of the default model a few steps apart in a temporary directory
(the embedded names unless --data), then times:
  mgx diff weights early.json late.json
  mgx diff graph --checkpoint late.json --checkpoint-b early.json     (the default token)
  mgx diff graph --checkpoint late.json --patch-b set:layer0.attn.h2.out=0
  mgx patch --checkpoint late.json --set layer0.attn.h2.out=0

    python bench/bench_diff.py [--runs 5] [--data FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile

from processes import add_data_arguments, dataset, median_seconds, mgx_command  # bench/ is on the path

CASES = {
    "diff weights (two checkpoints)": (["diff", "weights", "early.json", "late.json"], 0.5),
    "diff graph (two checkpoints, one token)": (
        ["diff", "graph", "--checkpoint", "late.json", "--checkpoint-b", "early.json"],
        1.0,
    ),
    "diff graph (a patched replay)": (
        ["diff", "graph", "--checkpoint", "late.json", "--patch-b", "set:layer0.attn.h2.out=0"],
        1.0,
    ),
    "patch --set layer0.attn.h2.out=0": (["patch", "--checkpoint", "late.json", "--set", "layer0.attn.h2.out=0"], None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    add_data_arguments(parser)
    args = parser.parse_args()
    data = dataset(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        names = f"{tmp}/names.txt"
        with open(names, "w", encoding="utf-8") as f:
            f.writelines(doc + "\n" for doc in data.docs)
        for out, steps in (("early.json", "20"), ("late.json", "40")):
            train = ["train", "--steps", steps, "--data", names, "-o", out, "--no-record"]
            subprocess.run(mgx_command(train), cwd=tmp, check=True, capture_output=True)
        print(f"default model on {data.source}; median wall time of {args.runs} whole processes")
        for name, (command, goal) in CASES.items():
            seconds = median_seconds(mgx_command(command), args.runs, tmp)
            verdict = "" if goal is None else f"  goal ≤ {goal:g} s: {'met' if seconds <= goal else 'MISSED'}"
            print(f"  {name:42s} {seconds:5.2f} s{verdict}")


if __name__ == "__main__":
    main()
