"""Wall time of `mgx check grad` on every parameter of the default token's graph (goal: 10 s,
fused), and of the same check in atomic granularity.

Each runs as a user would run it, in a fresh process, in an empty directory (the fresh
seed-42 reference model on the embedded names); prints medians and their ratio to the goal.

    python bench/bench_check.py [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile

from processes import median_seconds, mgx_command  # run as a script: bench/ is on the path

GOAL_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as empty:
        for granularity in ("fused", "atomic"):
            command = mgx_command(["check", "grad", "--granularity", granularity])
            seconds = median_seconds(command, args.runs, empty)
            print(
                f"mgx check grad, {granularity:6s} (3,536 parameters): median {seconds:.2f} s of {args.runs}"
                f" = {seconds / GOAL_SECONDS:.2f}× the {GOAL_SECONDS:g} s goal"
            )


if __name__ == "__main__":
    main()
