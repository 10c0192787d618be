"""`mgx inspect` and viz/tree.py: the exact text of the tree, JSON against the graph, the
chain-rule lines, gradient provenance summing to the grad, and every bad input."""

from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli.main import app
from microgpt import checkpoint as ckpt_io
from microgpt.engine import Value
from microgpt.graph import resolve_token, token_graph
from microgpt.train import AdamConfig, TrainState, start_run
from viz.pattern import select
from viz.trace import Summary, Trace
from viz.tree import build_tree, input_contributions, order_nodes, provenance, to_json, use_head

DOCS = ["emma", "olivia", "ava", "isabella", "sophia"]
SMALL = {"n_embd": 8, "n_head": 2, "block_size": 8}
SNAPSHOTS = Path(__file__).parent / "snapshots"
runner = CliRunner()


def small_trace(pos: int = 2, granularity: str = "fused") -> Trace:
    run = start_run(DOCS, seed=42, **SMALL)
    spec = resolve_token(run.tokenizer, SMALL["block_size"], pos=pos)
    return Trace(token_graph(run.model, spec, granularity=granularity).root)


@pytest.fixture(scope="module")
def trace() -> Trace:
    return small_trace()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = start_run(DOCS, seed=42, **SMALL)
    path = tmp_path_factory.mktemp("ckpt") / "small.json"
    ckpt = ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), TrainState(), 10, 42, "test", "fused", run.rng)
    ckpt_io.save(ckpt, path)
    return path


def render(tree: object, width: int = 120) -> str:
    out = io.StringIO()
    Console(file=out, color_system=None, width=width).print(tree)
    return out.getvalue()


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("MGX_UPDATE_SNAPSHOTS"):
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing snapshot {path}: run with MGX_UPDATE_SNAPSHOTS=1 once and review it"
    assert text == path.read_text(encoding="utf-8")


# -- the tree, exact text ------------------------------------------------------------------
def test_tree_of_a_head_exact_text(trace: Trace) -> None:
    tree = build_tree(trace, select(trace, "attn.h1"), title="attn.h1", limit=3, color=False)
    check_snapshot("inspect_h1_limit3", render(tree))


def test_tree_sorted_by_grad_exact_text(trace: Trace) -> None:
    tree = build_tree(trace, select(trace, "mlp.pre"), title="mlp.pre", limit=4, sort="grad", color=False)
    check_snapshot("inspect_mlp_pre_grad", render(tree, width=100))


def test_one_node_depth_2_exact_text(trace: Trace) -> None:
    tree = build_tree(trace, select(trace, "attn.h0.score[1]"), title="score[1]", depth=2, limit=4, color=False)
    check_snapshot("inspect_score_depth2", render(tree))


def test_why_of_a_parameter_exact_text(trace: Trace) -> None:
    tree = build_tree(trace, select(trace, "attn.wk[5,2]"), title="wk[5,2]", depth=0, why=True, color=False)
    check_snapshot("inspect_wk_why", render(tree))


def test_rendering_is_byte_identical_across_runs() -> None:
    a = render(build_tree(small_trace(), select(small_trace(), "attn"), title="t", sort="grad", why=True))
    b = render(build_tree(small_trace(), select(small_trace(), "attn"), title="t", sort="grad", why=True))
    assert a == b


def test_colour_marks_sign_and_magnitude(trace: Trace) -> None:
    out = io.StringIO()
    Console(file=out, color_system="standard", width=200).print(
        build_tree(trace, select(trace, "attn.h0.v"), title="v")
    )
    text = out.getvalue()
    assert "\x1b[" in text
    assert "\x1b[1;32m" in text or "\x1b[1;31m" in text  # the largest grads bold green / red


# -- limit and sort ------------------------------------------------------------------------
def test_limit_hides_and_counts(trace: Trace) -> None:
    selection = select(trace, "attn.h0.weights")
    text = render(build_tree(trace, selection, title="w", limit=2, color=False))
    assert len(selection) == 14
    assert "… 12 more hidden (--limit to show)" in text
    assert text.count("layer0.attn.h0.weights") == 3  # the group line and the two leaves shown
    assert "more hidden" not in render(build_tree(trace, selection, title="w", limit=None, color=False))


def test_sort_grad_puts_largest_magnitude_first(trace: Trace) -> None:
    selection = select(trace, "logits")
    ordered = order_nodes(trace, selection, "grad")
    mags = [abs(trace.nodes[i].grad) for i in ordered]
    assert mags == sorted(mags, reverse=True)
    text = render(build_tree(trace, selection, title="logits", sort="grad", limit=1, color=False))
    assert trace.ids[ordered[0]] in text
    assert all(trace.ids[i] not in text for i in ordered[1:])


def test_sort_id_orders_numbers_as_numbers(trace: Trace) -> None:
    ids = [trace.ids[i] for i in order_nodes(trace, select(trace, "mlp.pre"), "id")]
    assert ids[:3] == ["layer0.mlp.pre[0]@pos2", "layer0.mlp.pre[1]@pos2", "layer0.mlp.pre[2]@pos2"]
    assert ids.index("layer0.mlp.pre[9]@pos2") < ids.index("layer0.mlp.pre[10]@pos2")


# -- JSON against the graph ----------------------------------------------------------------
def test_json_matches_the_graph(trace: Trace) -> None:
    selection = select(trace, "attn.h0")
    doc = json.loads(json.dumps(to_json(trace, selection, title="t")))
    assert [n["id"] for n in doc["nodes"]] == [trace.ids[i] for i in selection]
    for entry, i in zip(doc["nodes"], selection):
        node = trace.nodes[i]
        assert (entry["tag"], entry["op"], entry["data"], entry["grad"]) == (
            node.tag,
            str(node.op),
            node.data,
            node.grad,
        )
    groups = doc["groups"]
    assert groups["size"] == len(selection)
    (head,) = groups["groups"]
    assert head["path"] == "layer0.attn.h0"
    q = next(g for g in head["groups"] if g["name"] == "q@pos2")
    q_nodes = [trace.nodes[i] for i in select(trace, "attn.h0.q")]
    assert q["size"] == 4 and q["summary_over"] == "outputs"
    assert q["data"]["max"] == max(n.data for n in q_nodes)
    assert math.isclose(q["grad"]["norm"], math.sqrt(sum(n.grad**2 for n in q_nodes)))


def test_json_depth_and_why_follow_the_edges(trace: Trace) -> None:
    (i,) = select(trace, "attn.h0.score[1]")
    doc = to_json(trace, [i], depth=2, why=True)
    (entry,) = doc["nodes"]
    node = trace.nodes[i]
    assert [c["id"] for c in entry["inputs"]] == [trace.ids[trace.index[id(c)]] for c in node.children]
    for c, local in zip(entry["inputs"], node.local_grads):
        assert c["contribution"] == local * node.grad
    assert "inputs" in entry["inputs"][0]  # the dot under the div, expanded a second level
    assert math.isclose(entry["why"]["sum"], node.grad, rel_tol=1e-12, abs_tol=1e-18)


# -- the chain rule and provenance ---------------------------------------------------------
def test_depth_lines_show_local_times_upstream(trace: Trace) -> None:
    (i,) = select(trace, "attn.h0.score[1]")
    text = render(build_tree(trace, [i], title="t", depth=1, color=False), width=200)
    lines = [line for line in text.splitlines() if "←" in line]
    assert len(lines) == len(trace.inputs[i])
    for line, c in zip(lines, input_contributions(trace, i)):
        match = re.search(r"local ∂ (\S+) × upstream grad (\S+) = (\S+)", line)
        assert match, line
        local, upstream, value = (float(x) for x in match.groups())
        assert math.isclose(local * upstream, value, rel_tol=2e-3)
        assert math.isclose(value, c.value, rel_tol=1e-3)
        assert upstream == float(f"{trace.nodes[i].grad:.4g}")


@pytest.mark.parametrize(
    "pattern",
    [
        "attn.wq[1,3]",
        "attn.wk[5,2]",
        "attn.wo[1,5]",
        "wte[2,0]",
        "embed.norm[3]@pos1",
        "attn.h0.k[2]@pos0",
        "logits[3]",
    ],
)
@pytest.mark.parametrize("granularity", ["fused", "atomic"])
def test_provenance_sums_to_the_grad(pattern: str, granularity: str) -> None:
    trace = small_trace(granularity=granularity)
    (i,) = select(trace, pattern)
    prov = provenance(trace, i)
    grad = trace.nodes[i].grad
    assert prov.contributions, "every non-root node here has a consumer"
    assert math.isclose(prov.total, grad, rel_tol=1e-9, abs_tol=1e-15)
    mags = [abs(c.value) for c in prov.contributions]
    assert mags == sorted(mags, reverse=True)
    if trace.nodes[i].op.name == "param":
        assert math.isclose(math.fsum(v for _, v in prov.by_pos), grad, rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(math.fsum(v for _, v in prov.by_head), grad, rel_tol=1e-9, abs_tol=1e-15)


def test_parameter_uses_land_in_the_right_head_and_position(trace: Trace) -> None:
    # head_dim 4: row 5 of wk is head 1's k[1]; wk is used at every position of the context
    (wk,) = select(trace, "attn.wk[5,2]")
    prov = provenance(trace, wk)
    assert sorted(pos for pos, _ in prov.by_pos) == [0, 1, 2]
    assert [head for head, _ in prov.by_head] == ["h1"]
    # wo's column 5 multiplies head 1's output: the head comes from the operand it meets
    (wo,) = select(trace, "attn.wo[1,5]")
    (use,) = trace.consumers[wo]
    assert use_head(trace, use) == "h1"
    # an embedding belongs to no head
    (wte,) = select(trace, "wte[2,0]")
    assert [head for head, _ in provenance(trace, wte).by_head] == [None]


def test_why_of_the_root_says_so(trace: Trace) -> None:
    text = render(build_tree(trace, [len(trace) - 1], title="loss", why=True, depth=0, color=False))
    assert "this is the root (the loss)" in text


# -- the command ---------------------------------------------------------------------------
def invoke(*args: str) -> object:
    return runner.invoke(app, ["inspect", *args])


def test_cli_inspect_attn_h0_as_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no model.json, no names.txt: the fresh reference model
    result = invoke("attn.h0")
    assert result.exit_code == 0, result.stderr
    assert "a fresh model (seed 42" in result.stderr
    assert result.stdout.startswith("attn.h0: 25 of ")
    assert "token BOS at pos 0 of 'emma' → target e" in result.stdout
    assert "layer0.attn.h0.q[0]@pos0  dot" in result.stdout


def test_cli_tree_matches_the_library(checkpoint: Path, trace: Trace) -> None:
    result = invoke("attn.h1.v", "-c", str(checkpoint), "--pos", "2", "--no-color", "--width", "120")
    assert result.exit_code == 0, result.stderr
    for i in select(trace, "attn.h1.v"):
        assert f"{trace.ids[i]}  dot  data {trace.nodes[i].data:+.4g}  grad {trace.nodes[i].grad:+.4g}" in result.stdout
    assert "\x1b[" not in result.stdout


def test_cli_json_is_the_graph(checkpoint: Path, trace: Trace) -> None:
    result = invoke("mlp.post", "-c", str(checkpoint), "--pos", "2", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    selection = select(trace, "mlp.post")
    assert [(n["id"], n["data"], n["grad"]) for n in doc["nodes"]] == [
        (trace.ids[i], trace.nodes[i].data, trace.nodes[i].grad) for i in selection
    ]


def test_cli_op_filter_limit_sort_depth_why(checkpoint: Path) -> None:
    result = invoke("attn.h0", "-c", str(checkpoint), "--pos", "1", "--op", "exp", "--no-color")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("attn.h0 --op exp: 2 of ")
    result = invoke("logits", "-c", str(checkpoint), "--sort", "grad", "--limit", "2", "--no-color")
    assert "more hidden" in result.stdout
    result = invoke("loss", "-c", str(checkpoint), "--depth", "2", "--no-color", "--width", "200")
    assert result.exit_code == 0, result.stderr
    assert "local ∂" in result.stdout and "× upstream grad" in result.stdout
    result = invoke("attn.wq[1,3]", "-c", str(checkpoint), "--why", "--no-color", "--width", "200")
    assert result.exit_code == 0, result.stderr
    assert "by position: pos0" in result.stdout and "by head: h0" in result.stdout


def test_cli_atomic_granularity_has_more_nodes(checkpoint: Path) -> None:
    fused = json.loads(invoke("attn.h0", "-c", str(checkpoint), "--json").stdout)
    atomic = json.loads(invoke("attn.h0", "-c", str(checkpoint), "--json", "--granularity", "atomic").stdout)
    assert atomic["graph_size"] > fused["graph_size"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attn.h9"], "matches no node in this graph: did you mean"),
        (["atn.h0"], "did you mean attn.h0"),
        (["attn.h0", "--token", "%"], "token '%' is not in the vocabulary"),
        (["attn.h0", "--target", "zz"], "token 'zz' is not in the vocabulary"),
        (["attn.h0", "--pos", "9"], "outside the context"),
        (["attn.h0", "--pos", "5"], "past the end of 'emma'"),
        (["attn.h0", "--word", "em9"], "not in the vocabulary"),
        (["attn.h0", "--op", "expp"], "--op 'expp' is not an op: did you mean exp"),
        (["attn.h0", "--sort", "size"], "--sort 'size' is not a sort"),
        (["attn.h0", "--limit", "-1"], "--limit must be 0"),
        (["attn.h0", "--depth", "-2"], "--depth must be 0 or more"),
        (["attn.h0", "--width", "3"], "--width must be at least 40"),
        (["attn.h0", "--granularity", "tiny"], "--granularity must be atomic or fused, got 'tiny'"),
        (["attn[..", "--no-color"], "is not valid"),
        (["loss", "--op", "dot"], "with op 'dot' matches no node"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(checkpoint: Path, args: list[str], message: str) -> None:
    result = invoke(*args, "-c", str(checkpoint))
    assert result.exit_code == 1, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_missing_checkpoint(tmp_path: Path) -> None:
    result = invoke("attn.h0", "-c", str(tmp_path / "nope.json"))
    assert result.exit_code == 1
    assert "checkpoint" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


# -- non-finite values are data ----------------------------------------------------------------
NAN, INF = float("nan"), float("inf")


def strict_json(text: str) -> object:
    """Parse JSON refusing the bare NaN / Infinity tokens Python's json would accept."""

    def refuse(token: str) -> object:
        raise AssertionError(f"bare {token} in JSON")

    return json.loads(text, parse_constant=refuse)


def blown_up_run():
    """The real case: lm_head weights so large that the target's probability underflows to 0,
    so the loss at the position is inf."""
    run = start_run(DOCS, seed=42, **SMALL)
    for p in run.model.params:
        if p.tag.startswith("lm_head"):
            p.data *= 3000
    return run


def nan_weight_run():
    """One query weight set to nan by hand: part of the graph is nan, the rest finite."""
    run = start_run(DOCS, seed=42, **SMALL)
    next(p for p in run.model.params if p.tag == "layer0.attn.wq[1,3]").data = NAN
    return run


def save_checkpoint(run, path: Path) -> Path:
    ckpt = ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), TrainState(), 10, 42, "test", "fused", run.rng)
    ckpt_io.save(ckpt, path)
    return path


def test_summary_does_not_depend_on_where_a_nan_sits() -> None:
    numbers = [0.5, NAN, -2.0, INF, 3.0, -INF, NAN]
    summaries = {Summary.of(numbers[k:] + numbers[:k]) for k in range(len(numbers))}
    summaries |= {Summary.of(reversed(numbers))}
    (s,) = summaries
    assert (s.count, s.finite, s.nan, s.posinf, s.neginf) == (7, 3, 2, 1, 1)
    assert (s.min, s.mean, s.max) == (-2.0, 0.5, 3.0)
    assert math.isclose(s.norm, math.sqrt(0.25 + 4 + 9))
    assert math.isnan(Summary.of([INF, NAN]).min) and Summary.of([INF, NAN]).finite == 0
    assert Summary.of([1e308, 1e308]).mean == 1e308  # no OverflowError from the sum


def hand_trace() -> Trace:
    a = Value(INF, tag="x[0]")
    b = Value(2.0, tag="x[1]")
    c = Value(NAN, tag="x[2]")
    d = Value(-INF, tag="x[3]")
    return Trace(sum_values([a, b, c, d, Value(1.5, tag="x[4]")]))


def sum_values(values: list[Value]) -> Value:
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def test_tree_shows_nan_and_infinities_and_counts_them() -> None:
    trace = hand_trace()
    text = render(build_tree(trace, select(trace, "x"), title="x", color=False))
    assert "x[0]  leaf  data inf" in text and "x[2]  leaf  data nan" in text and "x[3]  leaf  data -inf" in text
    # the summary covers the finite values and counts the rest, whatever the order
    assert "data min/mean/max +1.5/+1.75/+2 norm 2.5 · 1 nan · 1 inf · 1 -inf" in text


def test_tree_flags_non_finite_values_in_colour() -> None:
    trace = hand_trace()
    out = io.StringIO()
    Console(file=out, color_system="standard", width=200).print(build_tree(trace, select(trace, "x"), title="x"))
    text = out.getvalue()
    flag = "\x1b[1;7;31m"  # bold reverse red
    for word in ("inf", "nan", "-inf", "1 nan", "1 inf", "1 -inf"):
        assert f"{flag}{word}\x1b[0m" in text, word
    assert f"{flag}+2\x1b[0m" not in text and f"{flag}+1.5\x1b[0m" not in text


def test_json_writes_non_finite_numbers_as_strings() -> None:
    trace = hand_trace()
    doc = strict_json(json.dumps(to_json(trace, select(trace, "x"), title="x"), allow_nan=False))
    assert [n["data"] for n in doc["nodes"]] == ["Infinity", 2.0, "NaN", "-Infinity", 1.5]
    summary = doc["groups"]["groups"][0]["data"]
    assert summary == {
        "count": 5, "finite": 2, "min": 1.5, "mean": 1.75, "max": 2.0, "norm": 2.5, "nan": 1, "posinf": 1, "neginf": 1,
    }  # fmt: skip
    only = to_json(trace, select(trace, "x[2]"), title="x")["groups"]["groups"][0]["data"]
    assert (only["min"], only["nan"], only["finite"]) == (None, 1, 0)  # nothing finite to summarise


def test_why_with_infinite_contributions_does_not_raise() -> None:
    x = Value(1.0, tag="w")
    y = x * INF
    z = x * -INF
    root = y + z  # w's grad: inf + -inf = nan, as float arithmetic gives it
    root.backward()
    trace = Trace(root)
    text = render(build_tree(trace, select(trace, "w"), title="w", why=True, color=False), width=200)
    assert "grad nan = Σ over 2 consumers of local ∂ × its grad = nan" in text
    assert to_json(trace, select(trace, "w"), why=True)["nodes"][0]["why"]["sum"] == "NaN"


def test_cli_inspect_on_a_nan_weight(tmp_path: Path) -> None:
    path = save_checkpoint(nan_weight_run(), tmp_path / "nan.json")
    result = invoke("attn.wq[1,3]", "-c", str(path), "--no-color", "--why", "--width", "200")
    assert result.exit_code == 0, result.output
    assert "layer0.attn.wq[1,3]  param  data nan  grad nan" in result.stdout
    result = invoke("attn.h0", "-c", str(path), "--json")
    assert result.exit_code == 0, result.output
    doc = strict_json(result.stdout)
    assert "NaN" in {n["data"] for n in doc["nodes"]}


def test_cli_inspect_when_the_target_probability_underflows(tmp_path: Path) -> None:
    path = save_checkpoint(blown_up_run(), tmp_path / "huge.json")
    result = invoke("loss", "-c", str(path), "--pos", "2", "--no-color", "--width", "200")
    assert result.exit_code == 0, result.output
    assert "loss inf" in result.stdout.splitlines()[0] and "data inf" in result.stdout
    result = invoke("probs", "-c", str(path), "--pos", "2", "--json")
    assert result.exit_code == 0, result.output
    doc = strict_json(result.stdout)
    grads = {n["grad"] for n in doc["nodes"]}
    assert grads & {"NaN", "Infinity", "-Infinity"}, grads


def test_a_deep_depth_expands_each_shared_node_once(trace: Trace) -> None:
    root = [len(trace) - 1]
    text = render(build_tree(trace, root, depth=60, limit=None))
    arrows = text.count("← ")
    assert arrows <= len(trace.edges) + 1  # each node's inputs once: at most one line per edge
    assert "its inputs are shown above" in text
    document = to_json(trace, root, depth=60)
    flat = json.dumps(document)
    assert flat.count('"inputs_above": true') > 0 and flat.count('"slot"') <= len(trace.edges)


# -- views that scale with the model (issue 11) ----------------------------------------------
@pytest.mark.parametrize(
    "pattern",
    ["attn.h0", "wq[3,*]", "q[*]", "layer*.mlp.*", "attn.h[01].q@pos1", "k@pos0-1", "*", "logits[2]", "wte"],
)
def test_select_per_group_agrees_with_matching_every_node(trace: Trace, pattern: str) -> None:
    from microgpt.scope import parse_tag
    from viz.pattern import Pattern, select

    parsed = Pattern.parse(pattern)
    expected = [i for i, tag in enumerate(trace.tags) if parsed.matches(None if tag is None else parse_tag(tag))]
    assert select(trace, pattern) == expected
    assert select(trace, pattern, "param") == [i for i in expected if trace.nodes[i].op.name == "param"]


def test_select_parses_one_tag_per_group_not_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """Path and position are the same for every node of a group: a pattern without an index is
    matched once per group (a 4-layer model has 200,000 parameter tags in a few dozen groups)."""
    import viz.trace
    from viz.pattern import select

    parsed: list[str] = []
    real = viz.trace.parse_tag

    def counting(tag: str):
        parsed.append(tag)
        return real(tag)

    monkeypatch.setattr(viz.trace, "parse_tag", counting)
    fresh = small_trace()
    assert select(fresh, "attn.h0")
    assert len(parsed) <= len(fresh.groups) < len(set(fresh.tags))


def test_the_stepper_opens_without_reading_every_edge() -> None:
    """Opening the stepper looks up no node's inputs: a step looks up its own node's."""
    from viz.step import Stepper

    class CountingIndex(dict):
        lookups = 0

        def __getitem__(self, key):
            CountingIndex.lookups += 1
            return super().__getitem__(key)

    fresh = small_trace()
    fresh.index = CountingIndex(fresh.index)
    stepper = Stepper(fresh)
    assert CountingIndex.lookups == 0
    record = stepper.step()
    assert record is not None and CountingIndex.lookups == len(fresh.nodes[record.node].children)
