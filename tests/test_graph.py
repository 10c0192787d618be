"""``viz.dot``, ``viz.nx`` and the ``mgx graph`` / ``mgx stats`` commands: DOT snapshots at
each level on a tiny fixed-seed model, the networkx attributes, every output format through
the CLI, a real SVG render, every bad input, and byte-identical reruns.

Snapshots live in tests/snapshots/; after an intended change, regenerate them with
``UPDATE_SNAPSHOTS=1 pytest tests/test_graph.py`` and review the diff."""

from __future__ import annotations

import json
import math
import os
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pytest
from typer.testing import CliRunner

import cli.graph_cmd as graph_cmd
import viz.render as render
from cli.main import app
from microgpt.data import Tokenizer, embedded_documents
from microgpt.engine import Value
from microgpt.errors import MicrogptError
from microgpt.graph import resolve_token, token_graph
from microgpt.model import GPT, GPTConfig
from microgpt.train import start_run
from viz import style
from viz.dot import display_graph, to_dot
from viz.nx import to_networkx
from viz.trace import Trace

SNAPSHOTS = Path(__file__).parent / "snapshots"
runner = CliRunner()


def tiny_graph(pos: int = 1, granularity: str = "fused"):
    tokenizer = Tokenizer("abc")
    model = GPT.initialise(GPTConfig(vocab_size=4, n_layer=1, n_embd=4, n_head=2, block_size=4), random.Random(7))
    spec = resolve_token(tokenizer, 4, word="abc", pos=pos)
    return token_graph(model, spec, granularity=granularity)


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed: rerun with UPDATE_SNAPSHOTS=1 and review"


# -- DOT snapshots -----------------------------------------------------------------------
@pytest.mark.parametrize("level", ["block", "tensor", "scalar"])
def test_dot_source_at_each_level_matches_its_snapshot(level: str) -> None:
    dot = to_dot(tiny_graph(), level=level, title="tiny · token 'b' at position 1")
    check_snapshot(f"tiny_{level}.dot", dot.source)


def test_focus_with_edge_grads_matches_its_snapshot() -> None:
    dot = to_dot(tiny_graph(), level="scalar", focus="attn.h0", hops=1, edge_grads=True)
    check_snapshot("tiny_scalar_focus_h0.dot", dot.source)


def test_expanded_context_matches_its_snapshot() -> None:
    dot = to_dot(tiny_graph(pos=2), level="tensor", expand_context=True)
    check_snapshot("tiny_tensor_expanded_context.dot", dot.source)


def test_the_same_graph_gives_the_same_source_twice() -> None:
    assert to_dot(tiny_graph(), level="scalar").source == to_dot(tiny_graph(), level="scalar").source


def test_tensor_nodes_show_shape_op_and_statistics() -> None:
    graph = tiny_graph(pos=0)
    source = to_dot(graph).source
    assert '"layer0.attn.h0.q@pos0"' in source
    # inside a cluster titled with its path, a node shows the rest of its name
    assert 'label="layer0.attn.h0"' in source and '"layer0.attn.h0.q@pos0" [label="q@pos0\\n[2], dot\\ndata ' in source
    assert 'label="wq\\n4x4, param' in source
    assert f"loss@pos0\\nscalar, neg\\ndata {graph.root.data:.4g}\\ngrad 1" in source


def test_context_is_collapsed_unless_expanded() -> None:
    graph = tiny_graph(pos=2)
    collapsed = to_dot(graph).source
    assert '"context@pos0"' in collapsed and '"context@pos1"' in collapsed
    assert '"layer0.attn.h0.k@pos0"' not in collapsed
    expanded = to_dot(graph, expand_context=True).source
    assert '"context@pos0"' not in expanded and '"layer0.attn.h0.k@pos0"' in expanded


def test_block_level_has_one_node_per_block_and_parameters_in_their_block() -> None:
    source = to_dot(tiny_graph(pos=0), level="block").source
    for node in ('"embed@pos0"', '"layer0.attn@pos0"', '"layer0.mlp@pos0"', '"lm_head@pos0"', '"loss@pos0"'):
        assert node in source
    attn = source.split('subgraph "cluster_layer0.attn"')[1].split("}")[0]
    assert '"layer0.attn/params"' in attn


def test_focus_keeps_matches_and_collapses_neighbours() -> None:
    source = to_dot(tiny_graph(pos=0), level="scalar", focus="attn.h0.q").source
    assert '"layer0.attn.h0.q[0]@pos0"' in source
    assert '"hop/layer0.attn.wq"' in source and '"hop/layer0.attn.norm@pos0"' in source
    assert "layer0.mlp" not in source


def test_focus_matching_nothing_suggests_near_names() -> None:
    with pytest.raises(MicrogptError, match=r"did you mean attn\.h0"):
        to_dot(tiny_graph(), focus="atn.h0")


def test_no_three_digit_colours() -> None:
    import re

    source = to_dot(tiny_graph(), level="scalar").source
    assert not re.search(r'"#[0-9a-fA-F]{3}"', source)


# -- networkx ------------------------------------------------------------------------------
def test_networkx_nodes_and_edges_carry_the_values() -> None:
    graph = tiny_graph(pos=0)
    trace = Trace(graph.root)
    g = to_networkx(trace)
    assert g.number_of_nodes() == len(trace)
    root = g.nodes[trace.ids[-1]]
    assert (root["op"], root["tag"], root["data"], root["grad"]) == ("neg", "loss@pos0", graph.root.data, 1.0)
    # every multi-edge (dot(x, x) in RMSNorm) is one edge whose local_grad sums the slots
    for e in trace.edges:
        data = g.edges[trace.ids[e.child], trace.ids[e.parent]]
        assert data["count"] >= 1
    assert sum(d["count"] for _, _, d in g.edges(data=True)) == len(trace.edges)
    doubled = [d for _, _, d in g.edges(data=True) if d["count"] == 2]
    assert doubled, "RMSNorm's dot(x, x) should give edges used twice"
    back = nx.node_link_graph(json.loads(json.dumps(nx.node_link_data(g, edges="edges"))), edges="edges")
    assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))


def test_networkx_graph_is_a_dag_whose_longest_path_is_the_trace_depth() -> None:
    trace = Trace(tiny_graph().root)
    g = to_networkx(trace)
    assert nx.is_directed_acyclic_graph(g)
    assert nx.dag_longest_path_length(g) == trace.depth()


# -- the CLI ---------------------------------------------------------------------------------
@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def mgx(*args: str):
    return runner.invoke(app, list(args))


def test_the_users_example_writes_an_svg(here: Path) -> None:
    result = mgx("graph", "--token", "a", "--pos", "0", "-o", "graph.svg")
    assert result.exit_code == 0, result.output
    root = ET.parse(here / "graph.svg").getroot()
    assert root.tag.endswith("svg")
    text = " ".join(t for t in root.itertext())
    assert "layer0.attn.h0.q@pos0" in text and "loss@pos0" in text
    assert "token 'a' at position 0" in text
    assert "data " in text and "grad " in text


@pytest.mark.parametrize("ext", [".dot", ".gv", ".svg", ".png", ".json", ".graphml"])
def test_each_format_is_written(here: Path, ext: str) -> None:
    result = mgx("graph", "--level", "block", "-o", f"out{ext}")
    assert result.exit_code == 0, result.output
    payload = (here / f"out{ext}").read_bytes()
    if ext in (".dot", ".gv"):
        assert payload.startswith(b"digraph microgpt {")
    elif ext == ".png":
        assert payload.startswith(b"\x89PNG")
    elif ext == ".json":
        assert {"nodes", "edges"} <= set(json.loads(payload))
    else:
        ET.fromstring(payload)
    assert not [p for p in here.iterdir() if p.name.endswith(".tmp")]


def test_graphml_round_trips_through_networkx(here: Path) -> None:
    assert mgx("graph", "--level", "scalar", "--force", "-o", "g.graphml").exit_code == 0
    g = nx.read_graphml(here / "g.graphml")
    node = next(d for _, d in g.nodes(data=True) if d["grad"] == 1.0 and d["tag"] == "loss@pos0")
    assert node["op"] == "neg" and node["grad"] == 1.0 and math.isfinite(node["data"])


def test_scalar_focus_with_edge_grads_renders(here: Path) -> None:
    result = mgx("graph", "--level", "scalar", "--focus", "attn.h0", "--pos", "2", "--edge-grads", "-o", "h0.svg")
    assert result.exit_code == 0, result.output
    text = " ".join(ET.parse(here / "h0.svg").getroot().itertext())
    assert "layer0.attn.h0.weights[0]@pos2" in text and "context@pos0" in text


def test_a_whole_word_at_block_level(here: Path) -> None:
    result = mgx("graph", "--word", "emma", "--level", "block", "-o", "w.dot")
    assert result.exit_code == 0, result.output
    source = (here / "w.dot").read_text()
    assert '"layer0.attn@pos4"' in source and "word 'emma'" in source and "context" not in source
    # the mean loss is computed outside any position: a block of its own, not "parameters"
    assert 'loss [label="loss\\n3 nodes' in source and "θ loss parameters" not in source


def test_two_runs_are_byte_identical(here: Path) -> None:
    for name in ("a", "b"):
        assert mgx("graph", "--pos", "2", "-o", f"{name}.dot").exit_code == 0
        assert mgx("graph", "--pos", "2", "-o", f"{name}.svg").exit_code == 0
    assert (here / "a.dot").read_bytes() == (here / "b.dot").read_bytes()
    assert (here / "a.svg").read_bytes() == (here / "b.svg").read_bytes()


def test_stats_prints_counts(here: Path) -> None:
    result = mgx("stats", "--token", "a", "--pos", "0", "--top", "3")
    assert result.exit_code == 0, result.output
    for words in ("nodes", "4,024", "edges", "7,589", "depth", "per op", "param", "per tag group", "largest fan-in"):
        assert words in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", "zz"], "not in the vocabulary"),
        (["--pos", "16"], "outside the context"),
        (["--focus", "atn.h0"], "did you mean attn.h0"),
        (["--level", "huge"], "--level must be"),
        (["--rankdir", "up"], "--rankdir must be"),
        (["-o", "graph.txt"], "unknown output extension"),
        (["-o", "missing/graph.svg"], "does not exist"),
        (["-o", "adir.svg"], "is a directory"),
        (["-o", "graph.pdf"], "cannot write .pdf"),
        (["--layout-program", "no-such-layout-program", "-o", "g.svg"], "not found"),
        (["--level", "scalar", "-o", "g.svg"], "--force"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(here: Path, args: list[str], message: str) -> None:
    if "graph.pdf" in args and render.find_layout_program(None).endswith("/dot"):
        pytest.skip("system dot writes PDF")
    (here / "adir.svg").mkdir()
    result = mgx("graph", *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not [p for p in here.iterdir() if p.is_file() and p.suffix in (".svg", ".txt", ".pdf", ".tmp")]


def test_without_a_layout_program_the_dot_is_written_with_a_hint(here: Path, monkeypatch) -> None:
    monkeypatch.setattr(render, "LAYOUT_PROGRAMS", ("no-such-layout-program",))
    result = mgx("graph", "-o", "graph.svg")
    assert result.exit_code == 0, result.output
    assert (here / "graph.dot").read_text().startswith("digraph")
    assert not (here / "graph.svg").exists()
    assert "pip install graphviz-pure" in result.stderr


def test_scalar_over_the_threshold_draws_with_force(here: Path, monkeypatch) -> None:
    monkeypatch.setattr(graph_cmd, "SCALAR_CONFIRM_NODES", 10)
    result = mgx("graph", "--level", "scalar", "--force", "-o", "s.dot")
    assert result.exit_code == 0, result.output


# -- context order (defect 9) --------------------------------------------------------------
def laid_out(source: str, program: str) -> dict[str, tuple[float, float]]:
    """Each node's label position (x, y) in the SVG that ``program`` lays out."""
    svg = ET.fromstring(render.layout(program, source, "svg"))
    ns = "{http://www.w3.org/2000/svg}"
    out = {}
    for g in svg.iter(f"{ns}g"):
        title = g.find(f"{ns}title")
        if g.get("class") == "node" and title is not None:
            text = g.find(f"{ns}text")
            out[title.text] = (float(text.get("x")), float(text.get("y")))
    return out


def laid_out_x(source: str, program: str) -> dict[str, float]:
    """The x of each node's centre in the SVG that ``program`` lays out."""
    return {name: x for name, (x, _) in laid_out(source, program).items()}


def layout_programs() -> list[str]:
    found = [render.find_layout_program("graphviz-pure")]
    dot = render.shutil.which("dot")
    return [*found, dot] if dot else found


@pytest.mark.parametrize(("word", "pos"), [("isabella", 3), ("isabella", 5)])
@pytest.mark.parametrize("level", ["block", "tensor"])
def test_context_nodes_are_drawn_in_position_order(word: str, pos: int, level: str) -> None:
    run = start_run(embedded_documents().docs)
    spec = resolve_token(run.tokenizer, run.model.config.block_size, word=word, pos=pos)
    source = to_dot(token_graph(run.model, spec), level=level).source
    for program in layout_programs():
        x = laid_out_x(source, program)
        context = [f"context@pos{p}" for p in range(pos)]
        assert sorted(context, key=x.__getitem__) == context, f"{Path(program).name}: {sorted(context, key=x.get)}"


# -- .json and .graphml hold the drawing's nodes (defect 3) -------------------------------
def dot_node_names(source: str) -> set[str]:
    """The node statements of DOT source, legend and layout helpers left out."""
    import re

    names = {m.group(1) or m.group(2) for m in re.finditer(r'^\t+(?:"([^"]+)"|(\w+)) \[', source, re.M)}
    return {n for n in names if not n.startswith("legend/") and n not in ("graph", "node", "edge")}


@pytest.mark.parametrize(
    "options",
    [
        ["--level", "block"],
        ["--level", "tensor"],
        ["--level", "scalar", "--force"],
        ["--level", "tensor", "--focus", "attn.h1", "--hops", "2"],
        ["--level", "scalar", "--focus", "attn.h0.q[1]"],
        ["--level", "tensor", "--expand-context"],
    ],
)
def test_json_and_graphml_hold_the_nodes_the_drawing_shows(here: Path, options: list[str]) -> None:
    for ext in (".dot", ".json", ".graphml"):
        result = mgx("graph", "--pos", "2", *options, "-o", f"g{ext}")
        assert result.exit_code == 0, result.output
    drawn = dot_node_names((here / "g.dot").read_text())
    document = json.loads((here / "g.json").read_text())
    assert {n["id"] for n in document["nodes"]} == drawn
    assert set(nx.read_graphml(here / "g.graphml").nodes) == drawn
    assert document["graph"]["level"] == options[1]


def test_each_level_writes_a_different_json(here: Path) -> None:
    payloads = set()
    for level in ("block", "tensor", "scalar"):
        assert mgx("graph", "--level", level, "--force", "-o", f"{level}.json").exit_code == 0
        payloads.add((here / f"{level}.json").read_bytes())
    assert len(payloads) == 3


def test_to_networkx_takes_the_drawings_options() -> None:
    graph = tiny_graph(pos=2)
    whole = to_networkx(graph)
    assert whole.number_of_nodes() == len(Trace(graph.root))
    tensor = to_networkx(graph, level="tensor", expand_context=False)
    assert set(tensor.nodes) == set(display_graph(graph, "tensor").nodes)
    attrs = tensor.nodes["layer0.attn.h0.q@pos2"]
    assert (attrs["kind"], attrs["nodes"], attrs["shape"], attrs["op"]) == ("tensor", 2, "[2]", "dot")
    assert attrs["data_min"] <= attrs["data_mean"] <= attrs["data_max"] and attrs["data_nan"] == 0
    assert tensor.nodes["context@pos0"]["kind"] == "context"
    assert all("local_grad" not in d and d["count"] >= 1 for _, _, d in tensor.edges(data=True))
    focused = to_networkx(graph, level="scalar", focus="attn.h0.q", hops=0)
    assert set(focused.nodes) == {"layer0.attn.h0.q[0]@pos2", "layer0.attn.h0.q[1]@pos2"}


# -- options a drawing does not use are noted (defect 7) ----------------------------------
@pytest.mark.parametrize(
    ("args", "note"),
    [
        (["--level", "tensor", "--edge-grads", "-o", "g.dot"], "--edge-grads labels the edges of scalar-level"),
        (["--level", "block", "--edge-grads", "-o", "g.dot"], "not used at block level"),
        (["--level", "scalar", "--focus", "attn.h0", "--edge-grads", "-o", "g.json"], "carry local_grad anyway"),
        (["--hops", "3", "-o", "g.dot"], "--hops counts neighbours of --focus"),
        (["--rankdir", "LR", "-o", "g.graphml"], "--rankdir is for drawings"),
    ],
)
def test_an_option_the_output_does_not_use_is_noted_in_one_line(here: Path, args: list[str], note: str) -> None:
    result = mgx("graph", *args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if note in line]
    assert len(lines) == 1, result.stderr


def test_an_option_the_output_uses_is_not_noted(here: Path) -> None:
    result = mgx("graph", "--level", "scalar", "--focus", "attn.h0", "--edge-grads", "--hops", "2", "-o", "g.dot")
    assert result.exit_code == 0, result.output
    assert "not used" not in result.stderr and "--edge-grads" not in result.stderr


# -- non-finite values are data -------------------------------------------------------------
SMALL = {"n_embd": 8, "n_head": 2, "block_size": 8}
DOCS = ["emma", "olivia", "ava", "isabella", "sophia"]


def nonfinite_checkpoint(path: Path, case: str) -> Path:
    """``nan``: one query weight set to nan by hand. ``underflow``: the real case, lm_head
    weights so large that the target's probability underflows to 0 and the loss is inf."""
    from microgpt import checkpoint as ckpt_io
    from microgpt.train import AdamConfig, TrainState

    run = start_run(DOCS, seed=42, **SMALL)
    for p in run.model.params:
        if case == "nan" and p.tag == "layer0.attn.wq[1,3]":
            p.data = math.nan
        if case == "underflow" and p.tag.startswith("lm_head"):
            p.data *= 3000
    ckpt = ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), TrainState(), 10, 42, "test", "fused", run.rng)
    ckpt_io.save(ckpt, path)
    return path


def strict_json(text: str) -> object:
    def refuse(token: str) -> object:
        raise AssertionError(f"bare {token} in JSON")

    return json.loads(text, parse_constant=refuse)


NONFINITE_STRINGS = {"NaN", "Infinity", "-Infinity"}


@pytest.mark.parametrize("case", ["nan", "underflow"])
@pytest.mark.parametrize("level", ["block", "tensor", "scalar"])
def test_graph_shows_non_finite_values_at_every_level_and_format(here: Path, case: str, level: str) -> None:
    checkpoint = str(nonfinite_checkpoint(here / "bad.json", case))
    formats = [".dot", ".svg", ".png", ".json", ".graphml"]
    if render.find_layout_program(None).endswith("/dot"):
        formats.append(".pdf")
    for ext in formats:
        result = mgx("graph", "-c", checkpoint, "--pos", "2", "--level", level, "--force", "-o", f"g{ext}")
        assert result.exit_code == 0, result.output
    source = (here / "g.dot").read_text()
    assert f'fillcolor="{style.NONFINITE_FILL}"' in source and style.NONFINITE_LABEL in source
    if case == "underflow":
        assert "loss inf" in source  # the title
    words = set(re.findall(r"\b-?(?:nan|inf)\b", source))
    assert words, "no nan or inf in the labels"
    svg_text = " ".join(ET.parse(here / "g.svg").getroot().itertext())
    assert re.search(r"\b(?:nan|inf)\b", svg_text)
    document = strict_json((here / "g.json").read_text())
    numbers = [v for n in document["nodes"] for k, v in n.items() if k.startswith(("data", "grad"))]
    assert NONFINITE_STRINGS & set(numbers) or any(
        n.get(f"{w}_{c}", 0) for n in document["nodes"] for w in ("data", "grad") for c in ("nan", "posinf", "neginf")
    )
    graphml_text = (here / "g.graphml").read_text()
    assert not re.search(r">-?(?:nan|inf)<", graphml_text)  # Python's spelling is not GraphML's
    g = nx.read_graphml(here / "g.graphml")
    values = [v for _, d in g.nodes(data=True) for k, v in d.items() if isinstance(v, float)]
    if level == "scalar":
        assert re.search(r">(?:NaN|INF|-INF)<", graphml_text)
        assert any(not math.isfinite(v) for v in values)


def test_graphml_and_json_spell_each_non_finite_number_their_way() -> None:
    from viz.nx import graphml, node_link_json

    g = nx.DiGraph()
    g.add_node("a", data=math.nan, grad=math.inf)
    g.add_node("b", data=-math.inf, grad=1.5)
    document = strict_json(node_link_json(g))
    assert [(n["data"], n["grad"]) for n in document["nodes"]] == [("NaN", "Infinity"), ("-Infinity", 1.5)]
    text = graphml(g)
    assert ">NaN<" in text and ">INF<" in text and ">-INF<" in text
    back = nx.parse_graphml(text)
    assert math.isnan(back.nodes["a"]["data"]) and back.nodes["a"]["grad"] == math.inf
    assert back.nodes["b"]["data"] == -math.inf


@pytest.mark.parametrize("case", ["nan", "underflow"])
def test_stats_counts_non_finite_nodes_and_names_the_first(here: Path, case: str) -> None:
    checkpoint = str(nonfinite_checkpoint(here / "bad.json", case))
    result = runner.invoke(app, ["stats", "-c", checkpoint, "--pos", "2"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = result.stdout
    data_count = re.search(r"nodes with non-finite data \(nan, ±inf\) │\s+([\d,]+)", text)
    assert data_count and int(data_count.group(1).replace(",", "")) > 0, text
    if case == "nan":
        assert re.search(r"first, in forward order\s+│\s+layer0\.attn\.wq\[1,3\] = nan", text), text
    else:
        assert "loss inf" in text


def test_stats_of_a_finite_graph_says_zero(here: Path) -> None:
    result = runner.invoke(app, ["stats"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert re.search(r"nodes with non-finite data \(nan, ±inf\) │\s+0 ", result.stdout)
    assert "first, in" not in result.stdout


def test_dot_labels_count_non_finite_values_apart() -> None:
    values = [Value(x, tag=f"v[{k}]") for k, x in enumerate([1.0, math.nan, -2.0, math.inf])]
    root = values[0] + values[1] + values[2] + values[3]
    source = to_dot(root, level="tensor").source
    assert "v\\n[4], leaf\\ndata -2 to 1, mean -0.5, norm 2.236, 1 nan, 1 inf\\ngrad 0 to 0" in source
    finite = to_dot(tiny_graph(), level="tensor").source
    assert style.NONFINITE_FILL not in finite and style.NONFINITE_LABEL not in finite


# -- the same inputs give the same bytes, PDF included (defect 8) ------------------------------
needs_system_dot = pytest.mark.skipif(render.shutil.which("dot") is None, reason="needs system Graphviz (dot)")


@needs_system_dot
def test_two_pdf_runs_a_second_apart_are_byte_identical(here: Path) -> None:
    import time

    for name in ("a", "b"):
        result = mgx("graph", "--level", "block", "--layout-program", "dot", "-o", f"{name}.pdf")
        assert result.exit_code == 0, result.output
        time.sleep(1.1)  # cairo writes the creation date to the second
    a, b = (here / "a.pdf").read_bytes(), (here / "b.pdf").read_bytes()
    assert a.startswith(b"%PDF") and a == b
    assert b"/CreationDate (D:19700101000000Z)" in a


def test_two_png_runs_are_byte_identical(here: Path) -> None:
    for name in ("a", "b"):
        assert mgx("graph", "--level", "block", "-o", f"{name}.png").exit_code == 0
    assert (here / "a.png").read_bytes() == (here / "b.png").read_bytes()


def test_pdf_dates_are_normalised_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    pdf = b"1 0 obj << /Producer (cairo) /CreationDate (D:20260101123456Z) /ModDate (D:20260101123456+01'00') >>"
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    fixed = render.normalise_pdf_dates(pdf)
    assert fixed == pdf.replace(b"20260101123456Z", b"19700101000000Z").replace(
        b"20260101123456+01'00'", b"19700101000000+00'00'"
    )
    assert len(fixed) == len(pdf)  # the cross-reference offsets stay right
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert b"(D:19700102000000Z)" in render.normalise_pdf_dates(pdf)


# -- notebook display without a system dot (defect 2) ----------------------------------------
@pytest.fixture
def no_system_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with no program on it: graphviz-pure is still found beside this Python."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_a_drawing_displays_in_a_notebook_without_system_dot(no_system_dot: None) -> None:
    import graphviz

    drawing = to_dot(tiny_graph(), level="tensor")
    with pytest.raises(graphviz.ExecutableNotFound):  # what a plain Digraph does here
        graphviz.Digraph(body=drawing.body)._repr_mimebundle_()
    bundle = drawing._repr_mimebundle_()
    assert list(bundle) == ["image/svg+xml"]
    assert "layer0.attn.h0.q@pos1" in " ".join(ET.fromstring(bundle["image/svg+xml"]).itertext())
    png = drawing._repr_mimebundle_(include=["image/png"])["image/png"]
    assert png.startswith(b"\x89PNG")
    assert drawing.draw("svg") == bundle["image/svg+xml"].encode("utf-8")


def test_without_any_layout_program_a_notebook_shows_the_source_and_a_hint(monkeypatch) -> None:
    monkeypatch.setattr(render, "LAYOUT_PROGRAMS", ("no-such-layout-program",))
    drawing = to_dot(tiny_graph(), level="block")
    bundle = drawing._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    assert "pip install graphviz-pure" in bundle["text/plain"] and drawing.source in bundle["text/plain"]
    with pytest.raises(MicrogptError, match="no layout program"):
        drawing.draw("svg")


# -- the layout estimate comes from measured times (defect 9) -----------------------------------
def test_layout_estimates_follow_the_measured_times() -> None:
    # the full fused scalar graph (4,024 nodes) took 2.9 s with dot and 2.4 s with graphviz-pure
    # here; the estimate said 8 s for dot
    assert render.estimate_seconds("/usr/bin/dot", 4024) == 3
    assert render.estimate_seconds("graphviz-pure", 4024) == 2
    for program, points in render.LAYOUT_TIMES.items():
        for nodes, seconds in points:
            assert render.estimate_seconds(program, nodes) == round(seconds)
    assert render.estimate_seconds(None, 100) == 1


def test_the_question_before_a_big_scalar_drawing_gives_the_estimate(here: Path) -> None:
    result = mgx("graph", "--level", "scalar", "--layout-program", "graphviz-pure", "-o", "g.svg")
    assert result.exit_code == 1
    expected = render.estimate_seconds("graphviz-pure", 4024)
    assert f"about 4,024 nodes; laying it out takes roughly {expected} s with graphviz-pure" in result.stderr


# -- counted nouns (defect 10) ---------------------------------------------------------------
def test_counts_of_one_are_singular_in_labels_and_messages(here: Path) -> None:
    from microgpt.scope import scope

    w = Value(0.5, tag="w[0]")
    x = Value(2.0, tag="x[0]")
    with scope("y"):
        y = w * x
    source = to_dot(y, level="scalar", focus="w", hops=1).source
    assert "(1 node, collapsed)" in source and "1 nodes" not in source
    block = to_dot(tiny_graph(pos=1), level="block").source
    assert " 1 nodes" not in block and " 1 params" not in block
    result = mgx("graph", "--level", "block", "--focus", "loss", "--hops", "0", "-o", "g.json")
    assert result.exit_code == 0, result.output
    assert re.search(r"wrote g\.json: \d+ nodes?, \d+ edges? ", result.stderr)
    assert not re.search(r"\b1 (nodes|edges)\b", result.stderr)


# -- views that scale with the model (issue 11) ----------------------------------------------
@pytest.mark.parametrize("level", ["block", "tensor", "scalar"])
@pytest.mark.parametrize("fmt", ["dot", "networkx"])
def test_a_view_builds_no_edge_objects(level: str, fmt: str) -> None:
    """Display edges are counted from the child indices: the per-edge objects of a 4-layer
    graph (hundreds of thousands) cost more than the rest of the drawing."""
    trace = Trace(tiny_graph().root)
    if fmt == "dot":
        to_dot(trace, level=level, edge_grads=True, focus="attn.h0" if level == "scalar" else None)
    else:
        to_networkx(trace, level=level)
    assert "edges" not in trace.__dict__ and "consumers" not in trace.__dict__


def test_stats_builds_no_edge_objects(monkeypatch: pytest.MonkeyPatch, here: Path) -> None:
    built: list[Trace] = []
    real = graph_cmd.build

    def spy(choice):
        result = real(choice)
        built.append(result.trace)
        return result

    monkeypatch.setattr(graph_cmd, "build", spy)
    result = mgx("stats", "--word", "ava")
    assert result.exit_code == 0, result.output
    assert "edges" not in built[0].__dict__ and "consumers" not in built[0].__dict__


def test_counts_from_child_indices_agree_with_the_edges() -> None:
    trace = Trace(tiny_graph(pos=2).root)
    edges = trace.edges
    assert trace.edge_count == len(edges)
    fan_out = [0] * len(trace)
    for e in edges:
        fan_out[e.child] += 1
    assert trace.fan_out == fan_out
    assert [[(e.child, e.slot) for e in inputs] for inputs in trace.inputs] == [
        [(c, slot) for slot, c in enumerate(children)] for children in trace.child_indices
    ]
    level = [0] * len(trace)
    for e in edges:
        level[e.parent] = max(level[e.parent], level[e.child] + 1)
    assert trace.depth() == level[-1]


def test_groups_and_indices_agree_with_parsing_every_tag() -> None:
    from microgpt.scope import parse_tag

    trace = Trace(tiny_graph(pos=2).root)
    for i, tag in enumerate(trace.tags):
        parts = None if tag is None else parse_tag(tag)
        assert trace.group_of(i) == ("(untagged)" if parts is None else parts.group)
        assert trace.element_indices[i] == (None if parts is None else parts.index)
        assert trace.tag_parts[i] == parts
        assert i in trace.groups[trace.group_of(i)]


# -- labels fit their boxes with graphviz-pure (issue 12) -----------------------------------
def laid_out_labels(source: str) -> tuple[list[tuple[str, float, list[dict]]], str]:
    """Each node graphviz-pure lays out: its name, its width in points and its text lines
    (the ``T`` operations of ``-Tjson``, each with the width the program measured)."""
    import subprocess

    program = render.find_layout_program("graphviz-pure")
    result = subprocess.run([program, "-Tjson"], input=source.encode("utf-8"), capture_output=True, check=True)
    document = json.loads(result.stdout)
    out = []
    for obj in document["objects"]:
        if "nodes" in obj or "_ldraw_" not in obj:  # a cluster, or a node without a label
            continue
        size = next(op["size"] for op in obj["_ldraw_"] if op["op"] == "F")
        lines = [{**op, "size": size} for op in obj["_ldraw_"] if op["op"] == "T"]
        out.append((obj["name"], float(obj["width"]) * 72, lines))
    return out, result.stderr.decode("utf-8")


def assert_labels_fit(source: str) -> None:
    nodes, _ = laid_out_labels(source)
    assert nodes
    for name, width, lines in nodes:
        for line in lines:
            text = line["text"]
            needed = style.text_width(text, line["size"]) + 2 * style.NODE_MARGIN * 72
            assert needed <= width + 0.01, f"{name}: {text!r} needs {needed:.1f} pt, its box is {width:.1f} pt"
            if text.isascii():  # graphviz-pure measures ASCII with Helvetica's widths, as style does
                assert style.text_width(text, line["size"]) == pytest.approx(line["width"], abs=0.05), text


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--level", "block"],
        ["--level", "block", "--pos", "3"],
        ["--word", "emma", "--level", "block"],
        ["--word", "emma"],
        ["--level", "scalar", "--focus", "attn.h0", "--pos", "2", "--edge-grads"],
    ],
    ids=["tensor", "block", "block-context", "word-block", "word-tensor", "scalar-focus"],
)
def test_every_label_of_the_default_pictures_fits_its_box_with_graphviz_pure(here: Path, options: list[str]) -> None:
    result = mgx("graph", *options, "-o", "g.dot")
    assert result.exit_code == 0, result.output
    source = (here / "g.dot").read_text()
    assert_labels_fit(source)
    _, warnings = laid_out_labels(source)
    assert warnings == ""  # graphviz-pure warned "no value for width of non-ASCII character 194"


def test_a_label_with_other_characters_gets_a_box_wide_enough() -> None:
    """A user's word can hold any character: graphviz-pure counts each of its bytes as a space."""
    w = Value(0.5, tag="café…ΣΣΣΣ‖‖‖‖‖‖‖‖‖‖‖‖[0]")
    source = to_dot(w * Value(2.0, tag="x[0]"), level="tensor").source
    assert "width=" in source
    assert_labels_fit(source)


def test_text_width_follows_helvetica() -> None:
    assert style.text_width("Wi", 10) == pytest.approx(9.44 + 2.22)
    assert style.text_width("ab\nabc", 100) == pytest.approx(55.6 + 55.6 + 50)
    assert style.label_width("plain", 10) is None
    assert float(style.label_width("…", 10)) >= 10 / 72 + 0.22


# -- Mermaid (issue 12) -------------------------------------------------------------------------
MERMAID_NODE = re.compile(r'^\s+(n\d+)\["([^"]*)"\]$')
MERMAID_EDGE = re.compile(r"^\s+(n\d+) --> (n\d+)$")


def mermaid_structure(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The nodes (id -> label) and edges of a flowchart, checking its structure as it goes:
    one ``flowchart`` line, subgraphs opened and closed in pairs, every line a known form."""
    from viz.mermaid import _ESCAPES

    lines = text.splitlines()
    if lines[0] == "---":
        end = lines.index("---", 1)
        assert [line.split(":", 1)[0] for line in lines[1:end]] == ["title"]
        json.loads(lines[1].split(": ", 1)[1])  # a double-quoted YAML string is a JSON string
        lines = lines[end + 1 :]
    assert re.fullmatch(r"flowchart (TB|BT|LR|RL)", lines[0])
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    depth = 0
    for line in lines[1:]:
        if node := MERMAID_NODE.match(line):
            assert node.group(1) not in nodes, f"{node.group(1)} declared twice"
            nodes[node.group(1)] = node.group(2)
            assert not set(node.group(2).replace("<br/>", "")) & (set(_ESCAPES) - {"#"}), line
        elif edge := MERMAID_EDGE.match(line):
            edges.append((edge.group(1), edge.group(2)))
        elif re.fullmatch(r'\s+subgraph c\d+\["[^"]*"\]', line):
            depth += 1
        elif line.strip() == "end":
            depth -= 1
            assert depth >= 0
        else:
            assert re.fullmatch(r"\s+(classDef|class|style|linkStyle) \S+ \S+", line), line
    assert depth == 0
    for a, b in edges:
        assert a in nodes and b in nodes, f"edge {a} --> {b} has an end never declared"
    return nodes, edges


def test_mermaid_block_level_matches_its_snapshot() -> None:
    from viz.mermaid import to_mermaid

    text = to_mermaid(tiny_graph(), title="tiny | token 'b' at position 1")
    check_snapshot("tiny_block.mmd", text)
    nodes, edges = mermaid_structure(text)
    shown = display_graph(tiny_graph(), "block")
    assert len(nodes) == len(shown.nodes)
    assert len(edges) == len(to_networkx(tiny_graph(), level="block", expand_context=False).edges) > 0


def test_mermaid_escapes_what_would_end_a_label() -> None:
    from viz.mermaid import to_mermaid

    w = Value(0.5, tag='we"ird<x>#1&y[0]')
    text = to_mermaid(w * Value(math.nan, tag="end[0]"), title='a "quoted" title: # <b>')
    nodes, edges = mermaid_structure(text)
    assert any(label.startswith("we#quot;ird#lt;x#gt;#35;1#amp;y<br/>") for label in nodes.values())
    assert 'subgraph c1["we#quot;ird#lt;x#gt;#35;1#amp;y"]' in text  # a subgraph titled "end" is no keyword
    assert f"fill:{style.NONFINITE_FILL}" in text and len(edges) == 2


def test_mgx_graph_writes_a_mermaid_flowchart(here: Path) -> None:
    for name in ("a", "b"):
        result = mgx("graph", "--word", "emma", "--rankdir", "LR", "-o", f"{name}.mmd")
        assert result.exit_code == 0, result.output
    text = (here / "a.mmd").read_text()
    assert text == (here / "b.mmd").read_text()
    nodes, _ = mermaid_structure(text)
    assert text.splitlines()[3] == "flowchart LR" and "word 'emma'" in text.splitlines()[1]
    labels = [label.split("<br/>")[0] for label in nodes.values()]
    assert [f"layer0.attn@pos{p}" for p in range(5)] == [x for x in labels if x.startswith("layer0.attn@")]
    assert "linkStyle" in text and f"stroke:{style.BLOCK_COLOUR['attn']}" in text  # attention along the row
    result = mgx("graph", "--level", "scalar", "--focus", "attn", "-o", "c.mmd")
    assert result.exit_code == 0 and "a .mmd file is the block level" in result.stderr
    assert "a .mmd file is the whole block level" in result.stderr


# -- reading order (issue 12) ------------------------------------------------------------------
def test_reading_rows_put_each_block_of_a_word_on_one_row_in_position_order() -> None:
    from microgpt.graph import word_graph
    from viz.dot import key_edge_counts, reading_rows, stage_key

    tokenizer = Tokenizer("abc")
    model = GPT.initialise(GPTConfig(vocab_size=4, n_layer=1, n_embd=4, n_head=2, block_size=4), random.Random(7))
    graph = display_graph(Trace(*word_graph(model, tokenizer.document_tokens("abc"))), "block")
    rows = {tuple(names) for names, chained in reading_rows(graph, list(key_edge_counts(graph.trace, graph.keys)))}
    positions = range(4)
    assert ("layer0.attn/params", *(f"layer0.attn@pos{p}" for p in positions)) in rows
    assert ("embed/params", *(f"embed@pos{p}" for p in positions)) in rows
    assert tuple(f"loss@pos{p}" for p in positions) in rows
    model_order = ["embed", "layer0.attn", "layer0.mlp", "layer2", "layer10", "lm_head", "probs", "loss"]
    assert sorted(reversed(model_order), key=stage_key) == model_order


def test_a_whole_word_is_laid_out_left_to_right_and_top_to_bottom() -> None:
    """The diagonal strip, measured: each position's blocks were one rank lower than the last's."""
    from microgpt.graph import word_graph

    run = start_run(embedded_documents().docs)
    root, _ = word_graph(run.model, run.tokenizer.document_tokens("emma"))
    source = to_dot(root, level="block").source
    for program in layout_programs():
        at = laid_out(source, program)
        name = Path(program).name
        for block in ("embed", "layer0.attn", "layer0.mlp", "lm_head", "probs", "loss"):
            row = [at[f"{block}@pos{p}"] for p in range(5)]
            assert len({y for _, y in row}) == 1, f"{name}: {block} not on one row"
            assert [x for x, _ in row] == sorted(x for x, _ in row), f"{name}: {block} not in position order"
        ys = [at[f"{block}@pos0"][1] for block in ("embed", "layer0.attn", "layer0.mlp", "lm_head", "probs", "loss")]
        assert ys == sorted(ys), f"{name}: the blocks are not top to bottom"
        assert at["loss"][1] > ys[-1]


def test_a_word_view_sorts_its_graph_once_for_backward_and_the_view(monkeypatch, tmp_path) -> None:
    """graph/stats --word: one topological sort serves the backward pass and the Trace."""
    import microgpt.engine
    import microgpt.graph
    import viz.trace
    from cli.common import TokenChoice
    from cli.graph_cmd import build

    sorts = []
    modules = (
        (viz.trace, "topological_order"),
        (microgpt.graph, "topological_order"),
        (microgpt.engine, "_computed_order"),
    )
    for module, name in modules:

        def counted(root, original=getattr(module, name), name=name):
            sorts.append(name)
            return original(root)

        monkeypatch.setattr(module, name, counted)
    monkeypatch.chdir(tmp_path)
    built = build(TokenChoice(word="abc"))
    assert sorts == ["topological_order"]
    assert built.trace.root.grad == 1 and any(p.grad != 0 for p in built.trace.nodes if p.op.name == "param")
