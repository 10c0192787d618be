"""The shape of the code: imports point one way (cli -> viz -> microgpt), the core uses only
the standard library and stays short enough to read in one sitting, and `mgx` starts fast
because each command imports only what it uses."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# microgpt/: engine, model, data, training, checkpoints. Raised from 1,500 when the op table
# gained its forward and local rules, the replay and IEEE-754 arithmetic (issues 9 and 10),
# runs and divergence in training and checkpoints (issue 9), and training's recorded
# backward and class-based scopes (issue 11), and the step detail a run records (issue 13);
# then untagged scopes that cost nothing (issue 11), the Update Adam returns (issue 13), and
# backward's set-free sort and retain_graph, which keep atomic training's peak memory under
# the reference program's (issue 11); then fused training's lean recording (issue 11).
CORE_LINE_BUDGET = 2045


def imported_modules(package: str) -> dict[str, set[str]]:
    """Top-level module names each file of ``package`` imports."""
    out = {}
    for path in sorted((ROOT / package).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        out[path.name] = names
    return out


def test_the_core_imports_only_the_standard_library() -> None:
    for filename, names in imported_modules("microgpt").items():
        foreign = {n for n in names if n != "microgpt" and n not in sys.stdlib_module_names and n != "__future__"}
        assert foreign == set(), f"microgpt/{filename} imports {foreign}"


def test_imports_point_one_way() -> None:
    for filename, names in imported_modules("viz").items():
        assert "cli" not in names, f"viz/{filename} imports cli"
    for filename, names in imported_modules("microgpt").items():
        assert not names & {"viz", "cli"}, f"microgpt/{filename} imports {names & {'viz', 'cli'}}"


def test_the_core_fits_its_line_budget() -> None:
    lines = sum(len(path.read_text().splitlines()) for path in (ROOT / "microgpt").glob("*.py"))
    assert lines <= CORE_LINE_BUDGET, f"microgpt/ has {lines} lines, over its budget of {CORE_LINE_BUDGET}"


def test_mgx_help_imports_no_heavy_package() -> None:
    code = (
        "import sys; from cli.main import app; "
        "heavy = {'networkx', 'graphviz', 'textual', 'viz.dot', 'viz.tree', 'viz.step'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
