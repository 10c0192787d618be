"""What recording every step costs training (the runs database, issue 13's goal: <= 10%).

Two measures, side by side in one run, rounds interleaved, medians:
- in process, the CPU time of N training steps with and without the recorder that
  ``mgx train`` uses (viz.runs.StepRecorder: the series of every step, snapshots every 50);
- whole processes, ``mgx train --steps N`` against ``mgx train --steps N --no-record``.

    python bench/bench_record.py [--steps 200] [--rounds 5] [--data FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import add_data_arguments, dataset, mgx_command, run_process
from microgpt.train import TrainState, start_run, train
from viz.runs import Recorder, StepRecorder


def in_process(docs: list[str], steps: int, record: bool, directory: Path) -> float:
    run = start_run(docs, 42)
    state = TrainState()
    recorder = None
    if record:
        db = Recorder.start(directory / "runs.sqlite", run_id=f"bench{time.monotonic_ns()}", steps=steps, config={})
        recorder = StepRecorder(db, run.model.config, state)
    start = time.process_time()
    train(run.model, run.tokenizer, run.docs, steps, state, on_detail=None if recorder is None else recorder.on_detail)
    if recorder is not None:
        recorder.finish("finished")
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    add_data_arguments(parser)
    args = parser.parse_args()
    data = dataset(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        data_file = directory / "names.txt"
        data_file.write_text("".join(doc + "\n" for doc in data.docs), encoding="utf-8")
        plain, recorded, plain_wall, recorded_wall = [], [], [], []
        for _ in range(args.rounds):
            plain.append(in_process(data.docs, args.steps, False, directory))
            recorded.append(in_process(data.docs, args.steps, True, directory))
            base = ["train", "--steps", str(args.steps), "--data", str(data_file), "-o", "bench.json"]
            plain_wall.append(run_process(mgx_command([*base, "--no-record"]), directory).seconds)
            recorded_wall.append(run_process(mgx_command([*base, "--runs", "bench.sqlite"]), directory).seconds)
    p, r = statistics.median(plain), statistics.median(recorded)
    pw, rw = statistics.median(plain_wall), statistics.median(recorded_wall)
    print(f"{args.steps} steps of {data.source}, median of {args.rounds} interleaved rounds")
    print(f"in process (CPU):     plain {p / args.steps * 1e3:.2f} ms/step, recorded {r / args.steps * 1e3:.2f} "
          f"ms/step: recording adds {r / p - 1:+.1%} (goal <= +10%)")  # fmt: skip
    print(f"whole mgx train (wall): --no-record {pw:.2f} s, recorded {rw:.2f} s: {rw / pw - 1:+.1%}")


if __name__ == "__main__":
    main()
