"""What the benchmarks share: the data they use and whole training runs timed as processes.

The reference program is never part of this repository. A benchmark that compares against it
takes its path (``--reference FILE``: the single-file microgpt as published), writes a copy
into a temporary directory with one change, its step count, writes the documents there as
``input.txt`` (the file the program reads; without it, it would try to download one), and runs
it unchanged as its own process.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from microgpt.data import Dataset, embedded_documents, load_documents

ROOT = Path(__file__).resolve().parents[1]
SHARED_NAMES = ROOT.parent / "shared" / "data" / "names.txt"  # used when a ../shared checkout exists

# The reference program's step count: one assignment at the start of a line.
STEP_COUNT = re.compile(r"^num_steps = \d+", re.MULTILINE)
LOSS_LINE = re.compile(r"^step +(\d+) / +\d+ \| loss (\S+)$", re.MULTILINE)
REFERENCE_HINT = (
    "to compare with the reference program, pass its path: --reference PATH/TO/microgpt.py "
    "(the single-file microgpt as published; it is run unchanged but for its step count)"
)


def add_data_arguments(parser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="documents, one a line (default: ../shared/data/names.txt if it exists, else the embedded names)",
    )


def dataset(data: Path | None) -> Dataset:
    if data is not None:
        return load_documents(data)
    if SHARED_NAMES.is_file():
        return load_documents(SHARED_NAMES)
    return embedded_documents()


def write_input(docs: list[str], directory: Path) -> Path:
    """The documents as the reference program reads them: ``input.txt``, one a line."""
    path = directory / "input.txt"
    path.write_text("".join(doc + "\n" for doc in docs), encoding="utf-8")
    return path


def reference_copy(reference: Path, steps: int, directory: Path) -> Path:
    """A copy of the reference program in ``directory`` whose only change is its step count."""
    source = reference.read_text(encoding="utf-8")
    if len(STEP_COUNT.findall(source)) != 1:
        sys.exit(f"{reference}: no single line 'num_steps = N' to change; is it the published microgpt.py?")
    path = directory / "microgpt.py"
    path.write_text(STEP_COUNT.sub(f"num_steps = {steps}", source), encoding="utf-8")
    return path


# The timed processes run with Python's bytecode cache on, as Python does by default. Some
# environments turn it off (PYTHONDONTWRITEBYTECODE); every run would then compile this
# project's modules again, which a user's second run never does. (A program run as a script,
# as the reference is, is compiled on every run either way.)
CHILD_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


@dataclass
class Measured:
    seconds: float  # wall time, start-up included
    peak_bytes: int  # the process's peak resident memory
    stdout: str

    def losses(self) -> list[str]:
        """The losses printed as ``step N / M | loss X``, as printed."""
        return [loss for _, loss in LOSS_LINE.findall(self.stdout)]


def run_process(command: list[str], cwd: Path) -> Measured:
    """Run ``command`` to its end; its wall time and its own peak resident memory (wait4)."""
    out_path = cwd / "stdout.txt"
    with open(out_path, "wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.PIPE, env=CHILD_ENV)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed with exit code {process.returncode}:\n{stderr}")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return Measured(seconds, usage.ru_maxrss * scale, out_path.read_text(encoding="utf-8"))


def mgx_command(args: list[str]) -> list[str]:
    """``mgx ARGS`` as installed beside this Python (else ``python -m cli.main``)."""
    script = Path(sys.executable).with_name("mgx")
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "cli.main", *args]


def median_seconds(command: list[str], runs: int, cwd: str | Path) -> float:
    """The median wall time of ``runs`` runs of ``command``, output discarded, after one untimed
    run (which writes the bytecode cache, as a user's first run does)."""
    quiet = {"cwd": cwd, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": CHILD_ENV}
    subprocess.run(command, **quiet)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, **quiet)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
