"""Laying out DOT source with a layout program: the system ``dot`` or ``graphviz-pure``.

The graphviz package's ``pipe()``/``render()`` run a program named ``dot``; graphviz-pure, a
dot-compatible program that pip installs, is named ``graphviz-pure``, so the program chosen
here is run on the DOT source directly. Preference: the program asked for; else ``dot`` on
PATH; else ``graphviz-pure`` (on PATH or beside this Python).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from microgpt.errors import MicrogptError

LAYOUT_PROGRAMS = ("dot", "graphviz-pure")
# What each known program cannot write (graphviz-pure has no PDF renderer).
UNSUPPORTED = {"graphviz-pure": {"pdf"}}
# How long a layout program takes on n nodes: t(n) = t1 * (n / n1) ** k, the power law
# through two measured points per program, (n1, t1) and (n2, t2). Measured on this machine
# (2 shared cores): `<program> -Tsvg` on `to_dot(graph, level="scalar").source` of the
# fresh reference model's graph of token 'a' at position 0, fused (4,024 nodes) and atomic
# (11,223 nodes); the fastest of 3 runs (bench/bench_graph.py times the fused one).
# graphviz-pure 0.2.2 grows about as n**1.8, Debian's dot 2.43 as n**3.3: no slower than
# graphviz-pure on the fused graph, five times slower on the atomic one.
LAYOUT_TIMES = {
    "graphviz-pure": ((4024, 2.4), (11223, 15.6)),
    "dot": ((4024, 2.9), (11223, 84.0)),
}


def estimate_seconds(program: str | None, nodes: int) -> int:
    """Roughly how long ``program`` (graphviz-pure when None; an unknown one as dot) takes to
    lay out ``nodes`` nodes, from the measured ``LAYOUT_TIMES``."""
    name = Path(program).name if program else "graphviz-pure"
    (n1, t1), (n2, t2) = LAYOUT_TIMES.get(name, LAYOUT_TIMES["dot"])
    exponent = math.log(t2 / t1) / math.log(n2 / n1)
    return max(1, round(t1 * (nodes / n1) ** exponent))


def find_layout_program(name: str | None) -> str | None:
    """The program to lay out DOT: ``name`` if given (an error when missing), else ``dot`` on
    PATH, else ``graphviz-pure`` (on PATH or beside this Python); None when there is none."""

    def locate(candidate: str) -> str | None:
        found = shutil.which(candidate)
        if found:
            return found
        beside = Path(sys.executable).parent / candidate
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
        return None

    if name is not None:
        found = locate(name) or (name if Path(name).is_file() and os.access(name, os.X_OK) else None)
        if found is None:
            raise MicrogptError(
                f"layout program {name!r} not found: pass dot (apt-get install graphviz) or graphviz-pure "
                "(pip install graphviz-pure), or write a .dot file"
            )
        return found
    for candidate in LAYOUT_PROGRAMS:
        found = locate(candidate)
        if found:
            return found
    return None


def layout(program: str, source: str, fmt: str) -> bytes:
    """Run ``program -T<fmt>`` on the DOT source; a clear error when it cannot write ``fmt``."""
    short = Path(program).name
    if fmt in UNSUPPORTED.get(short, set()):
        raise MicrogptError(
            f"{short} cannot write .{fmt}: write .svg or .png, or install system Graphviz "
            "(apt-get install graphviz) and pass --layout-program dot"
        )
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch())}  # for the renderers that honour it
    try:
        result = subprocess.run(
            [program, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, check=False, env=env
        )
    except OSError as e:
        raise MicrogptError(f"could not run the layout program {program}: {e.strerror}") from None
    if result.returncode != 0 or not result.stdout:
        stderr = result.stderr.decode("utf-8", "replace")
        if "not recognized" in stderr:
            raise MicrogptError(f"{short} cannot write .{fmt}: write .svg or .png, or pass --layout-program dot")
        last = [line for line in stderr.splitlines() if line.strip()][-1:] or ["no output"]
        raise MicrogptError(f"{short} failed on the graph ({last[0].strip()}): write .dot and inspect it")
    return normalise_pdf_dates(result.stdout) if fmt == "pdf" else result.stdout


def source_date_epoch() -> int:
    """The time a reproducible file records: ``SOURCE_DATE_EPOCH`` when set, else 0 (1970)."""
    try:
        return max(0, int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    except ValueError:
        return 0


_PDF_DATE = re.compile(rb"/(CreationDate|ModDate) \(D:(\d{14})(Z|[+-]\d\d'\d\d'?)\)")


def normalise_pdf_dates(pdf: bytes) -> bytes:
    """The PDF's creation and modification dates set to ``source_date_epoch()``, so that the
    same drawing gives the same bytes: cairo 1.16 (Debian's, under dot -Tpdf) writes the
    time of the run and ignores SOURCE_DATE_EPOCH. Each date keeps its length, so the byte
    offsets in the PDF's cross-reference table stay right."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(source_date_epoch())).encode()

    def fixed(match: re.Match) -> bytes:
        zone = b"Z" if match.group(3) == b"Z" else match.group(3)[:1] + b"00'00'"[: len(match.group(3)) - 1]
        return b"/" + match.group(1) + b" (D:" + stamp + zone + b")"

    return _PDF_DATE.sub(fixed, pdf)
