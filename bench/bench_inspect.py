"""Wall time of `mgx inspect attn.h0` on the reference configuration (goal: under 1 s).

Runs the command as a user would, in a fresh process, in an empty directory (so the model
is the fresh seed-42 reference model on the embedded names), several times; prints the
median and its ratio to a bare `python -c pass` start-up measured in the same run.

    python bench/bench_inspect.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from processes import median_seconds, mgx_command  # run as a script: bench/ is on the path

GOAL_SECONDS = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    repo = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as cwd:
        bare = median_seconds([sys.executable, "-c", "pass"], args.runs, cwd)
        help_ = median_seconds(mgx_command(["--help"]), args.runs, cwd)
        inspect = median_seconds(mgx_command(["inspect", "attn.h0", "--no-color"]), args.runs, cwd)
        why = median_seconds(mgx_command(["inspect", "attn.wq", "--why", "--no-color"]), args.runs, cwd)
    print(f"median of {args.runs} runs each")
    print(f"python -c pass                    {bare * 1000:8.1f} ms")
    print(f"mgx --help                        {help_ * 1000:8.1f} ms  ({help_ / bare:.1f}× bare start-up)")
    print(f"mgx inspect attn.h0               {inspect * 1000:8.1f} ms  ({inspect / bare:.1f}× bare start-up)")
    print(f"mgx inspect attn.wq --why         {why * 1000:8.1f} ms  ({why / bare:.1f}× bare start-up)")
    verdict = "meets" if inspect < GOAL_SECONDS else "MISSES"
    print(
        f"goal: mgx inspect attn.h0 under {GOAL_SECONDS:.0f} s: {verdict} ({inspect / GOAL_SECONDS:.2f} of the budget)"
    )


if __name__ == "__main__":
    main()
