"""How fast `mgx graph` is: the user's example end to end, the DOT source of the full scalar
graph, and the layout programs on it. Prints seconds; run with `python bench/bench_graph.py`.

Goals (issue "mgx graph"): the example under 2 s wall, Python start-up included; the DOT
source of the full scalar graph of one token under 1 s."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from microgpt.data import embedded_documents
from microgpt.graph import resolve_token, token_graph
from microgpt.train import start_run
from viz.dot import to_dot
from viz.render import find_layout_program
from viz.trace import Trace

MGX = Path(sys.executable).parent / "mgx"


def median_seconds(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [str(MGX), "graph", "--token", "a", "--pos", "0", "-o", "graph.svg"]
        wall = median_seconds(lambda: subprocess.run(command, cwd=tmp, check=True, capture_output=True))
        print(f"mgx graph --token a --pos 0 -o graph.svg: {wall:.2f} s wall (median of 5; goal < 2 s)")

        run = start_run(embedded_documents().docs)
        for granularity in ("fused", "atomic"):
            spec = resolve_token(run.tokenizer, run.model.config.block_size, token="a", pos=0)
            trace = Trace(token_graph(run.model, spec, granularity=granularity).root)
            sources = []
            build = median_seconds(lambda t=trace, s=sources: s.append(to_dot(t, level="scalar").source), repeat=3)
            print(f"DOT source, full scalar graph ({granularity}, {len(trace):,} nodes): {build:.2f} s (goal < 1 s)")
            if granularity == "fused":
                dot_file = Path(tmp) / "scalar.dot"
                dot_file.write_text(sources[-1], encoding="utf-8")
                for name in ("graphviz-pure", "dot"):
                    program = shutil.which(name) or (find_layout_program(name) if name == "graphviz-pure" else None)
                    if program is None:
                        print(f"layout by {name}: not installed")
                        continue
                    start = time.perf_counter()
                    subprocess.run(
                        [program, "-Tsvg", "-o", str(Path(tmp) / f"{name}.svg"), str(dot_file)],
                        check=True,
                        capture_output=True,
                    )
                    print(f"layout by {name}, {len(trace):,} scalar nodes to SVG: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
