"""The tag pattern language (viz/pattern.py) and the one walk every view reads (viz/trace.py)."""

from __future__ import annotations

import math

import pytest

from microgpt.engine import Value
from microgpt.errors import MicrogptError
from microgpt.graph import resolve_token, token_graph
from microgpt.scope import TagParts, parse_tag
from microgpt.train import start_run
from viz.pattern import Pattern, select, select_or_explain, suggestions
from viz.trace import Summary, Trace

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"]


@pytest.fixture(scope="module")
def trace() -> Trace:
    """The fused graph of the second 'm' of 'emma' (pos 3) in a 2-layer, 2-head model."""
    run = start_run(DOCS, seed=3, n_layer=2, n_embd=8, n_head=2, block_size=8)
    spec = resolve_token(run.tokenizer, 8, pos=3)
    return Trace(token_graph(run.model, spec).root)


def tags(trace: Trace, pattern: str, op: str | None = None) -> set[str]:
    return {trace.nodes[i].tag for i in select(trace, pattern, op)}


@pytest.mark.parametrize(
    ("tag", "parts"),
    [
        ("layer0.attn.wq[3,5]", TagParts("layer0.attn.wq", "3,5", None)),
        ("layer0.attn.h2.weights[1]@pos4", TagParts("layer0.attn.h2.weights", "1", 4)),
        ("loss@pos3", TagParts("loss", None, 3)),
        ("loss", TagParts("loss", None, None)),
    ],
)
def test_parse_tag_splits_path_index_and_position(tag: str, parts: TagParts) -> None:
    assert parse_tag(tag) == parts
    assert parse_tag(tag).group == tag.split("[")[0].split("@")[0] + (
        f"@pos{parts.pos}" if parts.pos is not None else ""
    )


def test_a_suffix_matches_everything_under_it_in_every_layer(trace: Trace) -> None:
    hits = tags(trace, "attn.h0")
    assert hits, "attn.h0 matches something"
    assert all(".attn.h0." in t or t.startswith("attn.h0") for t in hits)
    assert {t.split(".")[0] for t in hits} == {"layer0", "layer1"}
    assert {parse_tag(t).path.split(".")[3] for t in hits} >= {"q", "k", "v", "score", "weights", "out"}
    assert tags(trace, "layer1.attn.h0") == {t for t in hits if t.startswith("layer1.")}


def test_segments_match_whole_segments_only(trace: Trace) -> None:
    assert tags(trace, "att") == set()
    assert tags(trace, "h0.q") == tags(trace, "attn.h0.q")
    assert not any("h0.q" in t for t in tags(trace, "h0.k"))


def test_globs_index_and_exact_elements(trace: Trace) -> None:
    assert tags(trace, "layer*.mlp.pre") == tags(trace, "mlp.pre")
    assert tags(trace, "layer0.attn.wq[3,5]") == {"layer0.attn.wq[3,5]"}
    row = tags(trace, "wq[3,*]")
    assert row == {f"layer{i}.attn.wq[3,{j}]" for i in range(2) for j in range(8)}
    elements = tags(trace, "q[*]")
    assert elements and all(parse_tag(t).index is not None for t in elements)
    assert all(parse_tag(t).path.endswith(".q") for t in elements)


def test_positions_select_where_a_node_was_computed(trace: Trace) -> None:
    cache = tags(trace, "attn.h0.k@pos0")
    assert cache and all(t.endswith("@pos0") and ".h0.k" in t for t in cache)
    assert tags(trace, "attn.h0.k@pos0-2") == tags(trace, "attn.h0.k@pos0") | tags(trace, "attn.h0.k@pos1") | tags(
        trace, "attn.h0.k@pos2"
    )
    assert tags(trace, "wq@pos3") == set()  # parameters have no position
    assert tags(trace, "logits@pos1") == set()  # an earlier position's logits are not in this graph


def test_op_filter_and_match_all(trace: Trace) -> None:
    assert len(select(trace, "*")) == len(trace) == len(select(trace, ""))
    exps = select(trace, "*", op="exp")
    assert exps and all(trace.nodes[i].op.name == "exp" for i in exps)
    assert select(trace, "mlp", op="relu") == [i for i in select(trace, "mlp") if trace.nodes[i].op.name == "relu"]


def test_a_bracket_group_inside_the_path_is_a_glob_character_class(trace: Trace) -> None:
    """README, Patterns: a [..] followed by more of its segment or by "." is a glob."""
    assert tags(trace, "attn.h[01].q") == tags(trace, "attn.h0.q") | tags(trace, "attn.h1.q")
    assert tags(trace, "attn.h[01].q")
    assert tags(trace, "layer[0].attn") == tags(trace, "layer0.attn") != set()
    assert tags(trace, "layer[!0].mlp.pre") == tags(trace, "layer1.mlp.pre") != set()
    assert tags(trace, "attn.h[1].score@pos3") == tags(trace, "attn.h1.score@pos3") != set()
    assert Pattern.parse("attn.h[01].q") == Pattern("attn.h[01].q", ("attn", "h[01]", "q"), None, None)


def test_a_bracket_group_that_ends_the_path_is_the_element_index(trace: Trace) -> None:
    """The other side of the rule: at the end of the pattern, or just before @pos, [..] is the index."""
    assert Pattern.parse("attn.h[01]") == Pattern("attn.h[01]", ("attn", "h"), "01", None)
    assert Pattern.parse("q[1]@pos3") == Pattern("q[1]@pos3", ("q",), "1", (3, 3))
    both = Pattern.parse("attn.h[01].q[*]")  # a glob segment and an index
    assert (both.segments, both.index) == (("attn", "h[01]", "q"), "*")
    assert tags(trace, "attn.h[01].q[*]") == {t for t in tags(trace, "attn.h[01].q") if parse_tag(t).index}
    assert tags(trace, "wq[[0-1],5]") == {f"layer{i}.attn.wq[{r},5]" for i in range(2) for r in range(2)}
    assert tags(trace, "wq[3, 5]") == tags(trace, "wq[3,5]")  # spaces in an index are dropped
    # the index reading of attn.h[01] matches nothing; the error names the glob to write instead
    assert tags(trace, "attn.h[01]") == set()
    assert tags(trace, "attn.h[01].*") == tags(trace, "attn.h0") | tags(trace, "attn.h1")
    with pytest.raises(MicrogptError, match=r"last \[01\] is read as an element index.*write attn\.h\[01\]\.\*@pos3"):
        select_or_explain(trace, "attn.h[01]@pos3")


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("attn..h0", "a segment is empty"),
        (".attn", "a segment is empty"),
        ("attn.", "a segment is empty"),
        ("wq[3", "the '[' at character 3 is not closed"),
        ("attn.h[01.q", "the '[' at character 7 is not closed"),
        ("wq]", "the ']' at character 3 closes no '['"),
        ("wq[]", "the [index] is empty"),
        ("attn@posx", "after '@' write posN"),
        ("attn@pos1@pos2", "after '@' write posN"),
        ("k@pos3-1", "@pos3-1 is an empty range (did you mean @pos1-3?)"),
    ],
)
def test_malformed_patterns_say_why_with_examples(bad: str, why: str) -> None:
    with pytest.raises(MicrogptError, match="is not valid") as raised:
        Pattern.parse(bad)
    assert why in str(raised.value)
    assert "an optional [index] and @posN" in str(raised.value)


def test_a_pattern_matching_nothing_suggests_near_names(trace: Trace) -> None:
    assert "attn.h0" in suggestions(trace, "atn.h0")
    with pytest.raises(MicrogptError, match=r"matches no node.*did you mean.*attn\.h0"):
        select_or_explain(trace, "atn.h0")
    with pytest.raises(MicrogptError, match="with op 'relu'"):
        select_or_explain(trace, "attn.h0", op="relu")


# -- Trace --------------------------------------------------------------------------------
def test_trace_ids_are_unique_stable_and_tag_based(trace: Trace) -> None:
    assert len(set(trace.ids)) == len(trace.ids)
    again = Trace(trace.root)
    assert again.ids == trace.ids
    for node, node_id in zip(trace.nodes, trace.ids):
        assert node_id == node.tag or node_id.startswith(f"{node.tag}#")
        assert ":" not in node_id
    assert trace.ids[-1] == "loss@pos3#2"  # the root: neg of log, third node tagged loss@pos3
    assert (
        trace.id_index["layer0.attn.wq[3,5]"]
        == trace.index[id(next(n for n in trace.nodes if n.tag == "layer0.attn.wq[3,5]"))]
    )


def test_trace_edges_consumers_and_inputs_agree_with_the_values(trace: Trace) -> None:
    assert len(trace.edges) == sum(len(n.children) for n in trace.nodes)
    for i, node in enumerate(trace.nodes):
        assert [trace.nodes[e.child] for e in trace.inputs[i]] == list(node.children)
        assert [e.local_grad for e in trace.inputs[i]] == list(node.local_grads)
        for e in trace.consumers[i]:
            assert trace.nodes[e.parent].children[e.slot] is node
    # topological: every child before its parent
    assert all(e.child < e.parent for e in trace.edges)


def test_groups_and_their_outputs(trace: Trace) -> None:
    group = "layer0.attn.h1.q@pos3"
    outputs = trace.group_outputs(group)
    assert [trace.nodes[i].tag for i in outputs] == [f"layer0.attn.h1.q[{j}]@pos3" for j in range(4)]
    score = trace.group_outputs("layer0.attn.h0.score@pos3")
    assert [trace.nodes[i].tag for i in score] == [f"layer0.attn.h0.score[{t}]@pos3" for t in range(4)]
    assert trace.group_outputs("loss@pos3") == [len(trace) - 1]  # the root
    assert sum(len(members) for members in trace.groups.values()) == len(trace)


def test_depth_is_the_longest_path_from_a_leaf() -> None:
    a = Value(1.0)
    chain = a
    for _ in range(5):
        chain = chain * 2.0
    root = chain + a
    assert Trace(root).depth() == 6


def test_summary_of_numbers() -> None:
    s = Summary.of([3.0, -4.0])
    assert (s.count, s.min, s.mean, s.max, s.norm) == (2, -4.0, -0.5, 3.0, 5.0)
    assert math.isnan(Summary.of([]).mean)
