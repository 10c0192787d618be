"""Benchmark ``mgx step`` on the reference configuration: time to the first screen, time per step.

The reference configuration: a fresh model (seed 42: 1 layer, 16 wide, 4 heads, context
16) on the reference data (../shared/data/names.txt when present, else the data set
``mgx`` would use), the default token (BOS at pos 0 of "emma"), fused granularity; and,
as a heavier case, the last position of "emma" in atomic granularity.

- first screen: a fresh Python process that imports what ``mgx step`` imports, loads the
  model, builds the graph without backward, builds the Trace and Stepper, and mounts the
  Textual app headless (``App.run_test``), timed from before the process starts to its exit
  (so interpreter start-up and exit are included: an upper bound). Goal < 1.5 s.
- per step, in one process with the app mounted (120×40):
  * the stepper alone (``Stepper.step``);
  * the stepper plus rebuilding every panel (``refresh_panels``: what the app does per key);
  * a key press through Textual's pilot (``pilot.press("n")``: the key event, the action,
    the repaint), wall time and CPU time, and the same for a key bound to nothing, which is
    the pilot's own overhead (it sleeps until the app's refresh timers go idle, so its wall
    time is mostly waiting); the CPU difference is the app's own work per step. In a real
    terminal a step shows at the next frame after that work (Textual paints at 60 fps).
  Goal < 50 ms per step.
- the same per step on the case a debugger is opened for: the fresh model with every weight
  ×300, so the target's probability underflows to 0, the loss is inf and backward fills the
  graph with nan and ±inf (the panels then also list the non-finite grads).

Medians of the repeats, printed with PASS / MISS.

    python bench/bench_step.py            # about 20 s
    python bench/bench_step.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DATA = ROOT.parent / "shared" / "data" / "names.txt"
FIRST_SCREEN_GOAL = 1.5
STEP_GOAL = 0.050

FIRST_SCREEN_SCRIPT = """
import asyncio
from microgpt.data import find_dataset
from microgpt.graph import resolve_token, token_graph
from microgpt.train import start_run
from viz.step import Stepper
from viz.trace import Trace
from cli.step_app import StepApp

data = {data!r}
run = start_run(find_dataset(data).docs)
spec = resolve_token(run.tokenizer, run.model.config.block_size)
stepper = Stepper(Trace(token_graph(run.model, spec, backward=False).root))
app = StepApp(stepper, "bench")

async def mount():
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert "backward has not started" in app.texts["current"]

asyncio.run(mount())
"""


def data_path() -> str | None:
    return str(REFERENCE_DATA) if REFERENCE_DATA.is_file() else None


def first_screen(repeats: int) -> list[float]:
    script = FIRST_SCREEN_SCRIPT.format(data=data_path())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return times


def per_step(granularity: str, pos: int, steps: int, scale: float = 1.0) -> dict[str, float]:
    from cli.step_app import StepApp
    from microgpt.data import find_dataset
    from microgpt.graph import resolve_token, token_graph
    from microgpt.train import start_run
    from viz.step import Stepper
    from viz.trace import Trace

    run = start_run(find_dataset(data_path()).docs)
    for p in run.model.params:
        p.data *= scale
    spec = resolve_token(run.tokenizer, run.model.config.block_size, pos=pos)
    start = time.perf_counter()
    graph = token_graph(run.model, spec, granularity=granularity, backward=False)
    trace = Trace(graph.root)
    stepper = Stepper(trace)
    build = time.perf_counter() - start

    alone = []
    for _ in range(min(steps, stepper.total)):
        t = time.perf_counter()
        stepper.step()
        alone.append(time.perf_counter() - t)
    stepper.goto(0)

    app = StepApp(stepper, "bench")
    panels: list[float] = []
    press: list[float] = []
    idle: list[float] = []
    press_cpu: list[float] = []
    idle_cpu: list[float] = []

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            for _ in range(steps):
                t = time.perf_counter()
                stepper.step()
                app.refresh_panels()
                panels.append(time.perf_counter() - t)
            stepper.goto(0)
            app.refresh_panels()
            await pilot.pause()
            for _ in range(steps):  # round-robin: a step, then a key bound to nothing
                t, c = time.perf_counter(), time.process_time()
                await pilot.press("n")
                press.append(time.perf_counter() - t)
                press_cpu.append(time.process_time() - c)
                t, c = time.perf_counter(), time.process_time()
                await pilot.press("x")
                idle.append(time.perf_counter() - t)
                idle_cpu.append(time.process_time() - c)

    asyncio.run(drive())
    return {
        "loss": graph.root.data,
        "nodes": len(trace),
        "steps": stepper.total,
        "build": build,
        "alone": statistics.median(alone),
        "panels": statistics.median(panels),
        "press": statistics.median(press),
        "idle": statistics.median(idle),
        "press_cpu": statistics.median(press_cpu),
        "idle_cpu": statistics.median(idle_cpu),
    }


def verdict(value: float, goal: float) -> str:
    return "PASS" if value < goal else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats, steps = (3, 20) if args.quick else (7, 60)

    print(f"data: {data_path() or 'the data set mgx would use here'}")
    screens = first_screen(repeats)
    first = statistics.median(screens)
    print(f"first screen (fresh process, fused, pos 0), median of {repeats}: {first * 1000:.0f} ms")
    print(f"  goal < {FIRST_SCREEN_GOAL * 1000:.0f} ms: {verdict(first, FIRST_SCREEN_GOAL)}")
    for granularity, pos, scale in (("fused", 0, 1.0), ("atomic", 4, 1.0), ("fused", 0, 300.0)):
        r = per_step(granularity, pos, steps, scale)
        cpu = r["press_cpu"] - r["idle_cpu"]
        weights = f", weights ×{scale:g}" if scale != 1 else ""
        print(
            f"\n{granularity}, pos {pos}{weights}: loss {r['loss']:.4g}, {r['nodes']:,} nodes, {r['steps']:,} steps; "
            f"graph+trace+stepper {r['build'] * 1000:.1f} ms"
        )
        print(f"  Stepper.step alone                       {r['alone'] * 1e6:8.1f} µs")
        print(f"  step + refresh_panels                    {r['panels'] * 1000:8.2f} ms")
        print(f"  pilot.press('n'): wall / CPU             {r['press'] * 1000:8.1f} / {r['press_cpu'] * 1000:.1f} ms")
        print(f"  pilot.press('x'), unbound: wall / CPU    {r['idle'] * 1000:8.1f} / {r['idle_cpu'] * 1000:.1f} ms")
        print(f"  the app's CPU per step (n - x)           {cpu * 1000:8.1f} ms")
        print(
            f"  goal < {STEP_GOAL * 1000:.0f} ms per step: app's CPU per step {verdict(cpu, STEP_GOAL)}; "
            f"pilot wall time per key {verdict(r['press'], STEP_GOAL)} (includes its idle waits)"
        )


if __name__ == "__main__":
    main()
