"""The backprop stepper (viz/step.py) and ``mgx step``: the stepper's grads are the engine's at
every step and at the end; undo is exact; breakpoints, jumps and step-over stop where they
should; the text mode and the full-screen view's first screen are snapshot-tested; the
Textual app is driven with its pilot; bad input fails in one line."""

from __future__ import annotations

import asyncio
import heapq
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from microgpt import checkpoint as ckpt_io
from microgpt.engine import Value
from microgpt.errors import MicrogptError
from microgpt.graph import resolve_token, token_graph
from microgpt.train import AdamConfig, TrainState, start_run
from viz.pattern import select
from viz.step import Breakpoint, Stepper
from viz.trace import Trace

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
DOCS = ["emma", "olivia", "ava", "isabella", "sophia"]
runner = CliRunner()


def tiny_run():
    return start_run(DOCS, seed=42, n_embd=8, n_head=2, block_size=8)


def stepper_for(granularity: str = "fused", pos: int = 2, word: str = "emma") -> Stepper:
    run = tiny_run()
    spec = resolve_token(run.tokenizer, 8, word=word, pos=pos)
    return Stepper(Trace(token_graph(run.model, spec, granularity=granularity, backward=False).root))


def engine_grads(granularity: str, pos: int = 2, word: str = "emma") -> list[float]:
    run = tiny_run()
    spec = resolve_token(run.tokenizer, 8, word=word, pos=pos)
    graph = token_graph(run.model, spec, granularity=granularity, backward=True)
    return [node.grad for node in Trace(graph.root).nodes]


def truncated_backward(root: Value, steps: int) -> list[float]:
    """The engine's backward loop (engine.py), stopped after ``steps`` nodes with inputs, on a
    graph built without backward (every leaf's grad starts at 0, as token_graph leaves them)."""
    trace = Trace(root)
    for node in trace.nodes:
        node.grad = 0
    root.grad = 1
    done = 0
    for node in reversed(trace.nodes):
        if not node.children:
            continue
        if done == steps:
            break
        for child, local in zip(node.children, node.local_grads):
            child.grad += local * node.grad
        done += 1
    return [node.grad for node in trace.nodes]


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"snapshot {name} did not exist: written, check it and run again")
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    run = tiny_run()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.json"
    ckpt_io.save(
        ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), TrainState(), 10, 42, "tiny", "fused", run.rng),
        path,
    )
    return path


# -- the stepper is the engine's backward, one node at a time ---------------------------------
@pytest.mark.parametrize("granularity", ["fused", "atomic"])
@pytest.mark.parametrize("pos", [0, 3])
def test_end_state_equals_backward_for_every_node(granularity: str, pos: int) -> None:
    st = stepper_for(granularity, pos)
    expected = engine_grads(granularity, pos)
    assert st.grads[-1] == 1 and st.done == 0
    st.finish()
    assert st.finished and st.done == st.total
    assert len(st.grads) == len(expected)
    # Exact: same order, same arithmetic, same bits (and the same int/float types).
    assert [(type(g), g) for g in st.grads] == [(type(g), g) for g in expected]
    # The graph's Values hold them too, as after Value.backward.
    assert [node.grad for node in st.trace.nodes] == expected


def test_a_step_is_one_node_with_inputs_in_reverse_topological_order() -> None:
    st = stepper_for()
    nodes = st.trace.nodes
    assert st.order == [i for i in reversed(range(len(nodes))) if nodes[i].children]
    assert all(not nodes[i].children for i in range(len(nodes)) if i not in st.step_of)


@pytest.mark.parametrize("granularity", ["fused", "atomic"])
def test_grads_at_every_step_are_the_engines_at_that_step(granularity: str) -> None:
    st = stepper_for(granularity, 1)
    run = tiny_run()
    spec = resolve_token(run.tokenizer, 8, pos=1)
    root = token_graph(run.model, spec, granularity=granularity, backward=False).root
    for k in sorted({0, 1, 2, 7, 50, st.total // 2, st.total - 1, st.total}):
        st.goto(k)
        assert st.grads == truncated_backward(root, k), f"after {k} steps"


def test_each_update_is_child_grad_plus_local_times_node_grad() -> None:
    st = stepper_for()
    for _ in range(40):
        before = list(st.grads)
        rec = st.step()
        assert rec is not None and rec.number == st.done
        node = st.trace.nodes[rec.node]
        assert len(rec.updates) == len(node.children)
        shadow = list(before)
        for u, child, local in zip(rec.updates, node.children, node.local_grads):
            assert st.trace.nodes[u.child] is child and u.local_grad == local
            assert u.node_grad == before[rec.node] and u.before == shadow[u.child]
            shadow[u.child] = u.after
            assert u.after == u.before + local * u.node_grad
        assert shadow == st.grads
        assert st.record() == rec  # recomputed from the history, identical


# -- undo -------------------------------------------------------------------------------------
@pytest.mark.parametrize("granularity", ["fused", "atomic"])
def test_step_back_then_forward_gives_identical_state(granularity: str) -> None:
    st = stepper_for(granularity)
    initial = list(st.grads)
    snapshots = {0: initial}
    records = {}
    for k in range(1, 121):
        records[k] = st.step()
        snapshots[k] = list(st.grads)
    for k in range(119, 59, -1):
        assert st.step_back()
        assert st.grads == snapshots[k] and st.done == k
        assert [n.grad for n in st.trace.nodes] == snapshots[k]
    for k in range(61, 121):
        assert st.step() == records[k]
        assert st.grads == snapshots[k]
    st.goto(0)
    assert st.grads == initial and st.current is None
    assert not st.step_back()


def test_undo_restores_a_child_used_twice_by_one_node() -> None:
    x = Value(3.0)
    y = x * x  # one node, the same child in both slots
    z = y + 1
    trace = Trace(z)
    st = Stepper(trace)
    st.run(2)
    assert x.grad == 6.0
    st.step_back()
    assert x.grad == 0 and st.grads[trace.index[id(x)]] == 0


# -- breakpoints, jumps, step over ---------------------------------------------------------------
def first_step_where(st: Stepper, predicate) -> int:
    fresh = Stepper(st.trace)
    while True:
        rec = fresh.step()
        assert rec is not None, "no step satisfies the predicate"
        if predicate(fresh, rec):
            return rec.number


def test_pattern_breakpoint_stops_at_the_first_matching_node() -> None:
    st = stepper_for()
    hits = set(select(st.trace, "attn.h1"))
    rec = st.run_until([Breakpoint.parse("attn.h1")])
    assert rec is not None and rec.node in hits
    assert rec.number == min(st.step_of[i] for i in hits if i in st.step_of) + 1
    again = st.run_until([Breakpoint.parse("attn.h1")])  # continue: the next one, never the same
    assert again is not None and again.number > rec.number and again.node in hits


def test_op_breakpoint() -> None:
    st = stepper_for()
    rec = st.run_until([Breakpoint.parse("op:exp")])
    assert rec is not None and st.trace.nodes[rec.node].op.name == "exp"
    assert rec.number == first_step_where(st, lambda s, r: s.trace.nodes[r.node].op.name == "exp")


def test_grad_threshold_breakpoint() -> None:
    st = stepper_for()
    bp = Breakpoint.parse("grad>2.5")
    assert bp.threshold == 2.5
    rec = st.run_until([bp])
    assert rec is not None
    big = [abs(st.grads[rec.node])] + [abs(u.after) for u in rec.updates]
    assert max(big) > 2.5
    assert rec.number == first_step_where(
        st, lambda s, r: abs(s.grads[r.node]) > 2.5 or any(abs(u.after) > 2.5 for u in r.updates)
    )
    assert Stepper(st.trace).run_until([Breakpoint.parse("grad>1e300")]) is None  # never hit: runs to the end


def test_nonfinite_breakpoint() -> None:
    x = Value(1e-320)
    y = x.log()  # finite, but its local derivative 1/x overflows to inf
    root = y * 2.0 + 1.0
    st = Stepper(Trace(root))
    rec = st.run_until([Breakpoint.parse("nonfinite")])
    assert rec is not None and st.trace.nodes[rec.node] is y  # the step that writes inf into x.grad
    assert rec.updates[0].after == math.inf
    a = Value(1e200)
    b = a * a  # data overflows to inf: the first step (the root) already sees it
    st = Stepper(Trace(b * 0.5 + 1.0))
    assert st.run_until([Breakpoint("nonfinite")]).number == 1
    finite = Stepper(Trace(Value(2.0) * 3.0))
    assert finite.run_until([Breakpoint("nonfinite")]) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grad>abc", "is not a number"),
        ("grad>-1", "finite number >= 0"),
        ("grad>nan", "finite number >= 0"),
        ("op:", "needs an op name"),
        ("", "empty breakpoint"),
        ("attn..h0", "is not valid"),
    ],
)
def test_bad_breakpoints_are_refused(text: str, message: str) -> None:
    with pytest.raises(MicrogptError, match=message):
        Breakpoint.parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("grad > 0.5", Breakpoint("grad", threshold=0.5)),
        ("GRAD>2", Breakpoint("grad", threshold=2.0)),
        ("op: exp", Breakpoint("op", "exp")),
        ("Op:mul", Breakpoint("op", "mul")),
        ("NonFinite", Breakpoint("nonfinite")),
        ("  nonfinite ", Breakpoint("nonfinite")),
    ],
)
def test_breakpoint_keywords_take_any_case_and_spaces(text: str, expected: Breakpoint) -> None:
    assert Breakpoint.parse(text) == expected


def test_breakpoints_that_match_nothing_are_refused_with_a_hint() -> None:
    st = stepper_for()
    with pytest.raises(MicrogptError, match="did you mean"):
        st.add_breakpoint(Breakpoint.parse("atn.h0"))
    with pytest.raises(MicrogptError, match="the ops here are"):
        st.add_breakpoint(Breakpoint.parse("op:tanh"))
    assert st.breakpoints == []


def test_toggle_breakpoint_on_the_current_tag_group() -> None:
    st = stepper_for()
    st.jump("attn.h0.q")
    group = st.current_group()
    bp, on = st.toggle_tag_breakpoint()
    assert on and st.breakpoints == [Breakpoint("pattern", group)]
    st.goto(0)
    rec = st.run_until()
    assert rec is not None and st.trace.group_of(rec.node) == group
    assert st.toggle_tag_breakpoint() == (bp, False) and st.breakpoints == []


def test_step_over_group_finishes_the_group() -> None:
    st = stepper_for("atomic")
    st.jump("layer0.mlp.fc1")
    group = st.current_group()
    members = [st.step_of[i] for i in st.trace.groups[group] if i in st.step_of]
    before = st.done
    done = st.step_over_group()
    assert done and st.done == max(members) + 1  # the group's last node is the last step taken
    assert [r.number for r in done] == list(range(before + 1, st.done + 1))
    assert st.trace.group_of(st.current) == group


def test_step_over_at_a_groups_last_node_finishes_the_next_group() -> None:
    st = stepper_for("atomic")
    st.jump("layer0.mlp.fc1")
    st.step_over_group()
    finished = st.current_group()
    assert st.group_to_step_over() != finished  # nothing left of it: o means the next node's group
    nxt = st.trace.group_of(st.next_node)
    assert st.group_to_step_over() == nxt
    last = max(st.step_of[i] for i in st.trace.groups[nxt] if i in st.step_of)
    done = st.step_over_group()
    assert len(done) > 1 and st.done == last + 1  # the whole next group, not one step into it
    st.finish()
    assert st.group_to_step_over() is None and st.step_over_group() == []


def test_jump_to_a_node_id_a_leaf_and_a_pattern() -> None:
    st = stepper_for()
    ids = st.trace.ids
    target = st.order[30]
    st.jump(ids[target])
    assert st.current == target and st.done == 31
    st.jump(ids[st.order[5]])  # backwards too
    assert st.done == 6
    leaf = next(i for i in range(len(ids)) if ids[i].startswith("layer0.attn.wq["))
    rec = st.jump(ids[leaf])
    assert rec is not None and any(u.child == leaf for u in rec.updates)
    assert all(not any(u.child == leaf for u in st.record(k).updates) for k in range(1, rec.number))
    st.goto(0)
    rec = st.jump("logits")
    assert rec is not None and rec.node in set(select(st.trace, "logits"))
    with pytest.raises(MicrogptError, match="did you mean"):
        st.jump("logitz")
    with pytest.raises(MicrogptError, match="neither a node id nor a valid tag pattern"):
        st.jump("a..b")


def test_largest_gradients_so_far() -> None:
    st = stepper_for()
    assert st.largest(5) == [(len(st.trace.nodes) - 1, 1)]
    st.run(60)
    expected = heapq.nsmallest(
        7, [(-abs(g), i) for i, g in enumerate(st.grads) if g != 0]
    )  # by |grad|, ties by position
    assert st.largest(7) == [(i, st.grads[i]) for _, i in expected]


def test_progress_line() -> None:
    st = stepper_for()
    assert st.progress() == f"node 0 of {st.total}, group loss@pos2"
    st.finish()
    assert st.progress().endswith("(backward finished)")
    assert st.step() is None


# -- mgx step --print ------------------------------------------------------------------------
def mgx(*args: str):
    result = runner.invoke(app, ["step", *args])
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_text_mode_snapshot(tiny_checkpoint: Path) -> None:
    result = mgx("--checkpoint", str(tiny_checkpoint), "--pos", "1", "--until", "attn.h0", "--print", "3")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("step ") and "attn.h0" in lines[0]
    assert sum(line.startswith("step ") for line in lines) == 3
    check_snapshot("step_until_attn_h0.txt", result.stdout)
    again = mgx("--checkpoint", str(tiny_checkpoint), "--pos", "1", "--until", "attn.h0", "--print", "3")
    assert again.stdout == result.stdout  # byte-identical across runs


def test_text_mode_from_the_start_and_json_agree(tiny_checkpoint: Path) -> None:
    text = mgx("--checkpoint", str(tiny_checkpoint), "--print", "4", "--granularity", "atomic")
    as_json = mgx("--checkpoint", str(tiny_checkpoint), "--print", "4", "--granularity", "atomic", "--json")
    assert text.exit_code == 0 and as_json.exit_code == 0, text.stderr + as_json.stderr
    steps = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert steps[0]["id"] == "loss@pos0#2" and steps[0]["grad"] == 1
    headers = [line for line in text.stdout.splitlines() if line.startswith("step ")]
    assert [h.split()[2] for h in headers] == [s["id"] for s in steps]
    check_snapshot("step_print4_atomic.jsonl", as_json.stdout)


def test_json_with_until_starts_at_the_hit(tiny_checkpoint: Path) -> None:
    result = mgx("--checkpoint", str(tiny_checkpoint), "--until", "op:exp", "--print", "2", "--json")
    assert result.exit_code == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["op"] == "exp" and second["step"] == first["step"] + 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--until", "nothing.here", "--print", "2"], "matches no node"),
        (["--until", "atn.h0", "--print", "2"], "did you mean"),
        (["--until", "grad>abc", "--print", "2"], "is not a number"),
        (["--until", "grad>1e300", "--print", "2"], "backward finished without reaching"),
        (["--until", "op:tanh", "--print", "1"], "the ops here are"),
        (["--until", "nonfinite", "--print", "1"], "every value and grad of this graph is finite"),
        (["--print", "0"], "--print must be at least 1"),
        (["--json"], "add --print N"),
        (["--granularity", "coarse", "--print", "1"], "--granularity must be atomic or fused"),
        (["--pos", "9", "--print", "1"], "outside the context"),
        (["--token", "zz", "--print", "1"], ""),
        ([], "needs a terminal"),
    ],
)
def test_bad_input_is_one_line(tiny_checkpoint: Path, args: list[str], message: str) -> None:
    result = mgx("--checkpoint", str(tiny_checkpoint), *args)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert result.stdout == ""


def test_textual_is_imported_only_for_the_full_screen_view(tiny_checkpoint: Path) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cli.main import app\n"
        f"r = CliRunner().invoke(app, ['step', '--checkpoint', {str(tiny_checkpoint)!r}, '--print', '1'])\n"
        "assert r.exit_code == 0, r.stderr\n"
        "print('textual' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the full-screen view, through Textual's pilot ---------------------------------------------------
def make_app():
    from cli.step_app import StepApp

    st = stepper_for()
    return StepApp(st, "token e at pos 2 of 'emma'")


def screen_text(app) -> str:
    return "\n".join(f"== {name} ==\n{app.texts[name]}" for name in ("progress", "current", "neighbours", "largest"))


def test_app_first_screen_snapshot() -> None:
    async def go() -> str:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert app.query_one("#main").display and not app.query_one("#too-small").display
            return screen_text(app)

    text = asyncio.run(go())
    assert "backward has not started" in text
    check_snapshot("step_app_first_screen.txt", text)


def test_app_keys_drive_the_stepper() -> None:
    async def go() -> None:
        app = make_app()
        st = app.stepper
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("n", "space", "right")
            assert st.done == 3 and app.texts["progress"].endswith(st.progress())
            rec = st.record()
            assert st.trace.ids[rec.node] in app.texts["current"]
            assert "child.grad += local ∂ × node.grad" in app.texts["current"]
            assert f"node 3 of {st.total}" in app.texts["progress"]
            grads_at_3 = list(st.grads)
            await pilot.press("n", "b", "left")
            assert st.done == 2
            await pilot.press("n")
            assert st.grads == grads_at_3
            # B: a breakpoint typed in the prompt, then c continues to it.
            await pilot.press("B", *"op:exp", "enter")
            assert st.breakpoints == [Breakpoint("op", "exp")] and "breakpoint set: op exp" in app.texts["status"]
            assert "op exp" in app.texts["largest"]
            await pilot.press("c")
            assert st.trace.nodes[st.current].op.name == "exp"
            assert "stopped at breakpoint: op exp" in app.texts["status"]
            # A bad breakpoint: the status line says why; nothing changes.
            await pilot.press("B", *"grad>x", "enter")
            assert "is not a number" in app.texts["status"] and len(st.breakpoints) == 1
            # j: jump to a tag pattern; escape cancels a prompt.
            await pilot.press("j", *"attn.h1", "enter")
            assert st.current in set(select(st.trace, "attn.h1"))
            where = st.done
            await pilot.press("j", *"logits", "escape")
            assert st.done == where and app.texts["status"] == "cancelled"
            # o: step over the rest of the group.
            group = st.current_group()
            await pilot.press("o")
            assert app.texts["status"].startswith(f"finished group {group}: ")
            # t: toggle a breakpoint on the current tag group.
            await pilot.press("t")
            assert "breakpoint set: tag" in app.texts["status"]
            await pilot.press("t")
            assert "breakpoint removed: tag" in app.texts["status"]
            # ? opens the help; escape closes it.
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("escape")
            assert type(app.screen).__name__ != "HelpScreen"
            # The neighbourhood lists the current node's parents and children.
            node = st.current
            assert f"parents of {st.trace.ids[node]}" in app.texts["neighbours"]
            for edge in st.trace.inputs[node][:3]:
                assert st.trace.ids[edge.child] in app.texts["neighbours"]
            assert app.is_running
            await pilot.press("q")
            await pilot.pause()
            assert not app.is_running and app.return_code == 0

    asyncio.run(go())


def test_app_says_when_the_terminal_is_too_small() -> None:
    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(60, 15)) as pilot:
            await pilot.pause()
            assert app.query_one("#too-small").display and not app.query_one("#main").display
            assert "terminal too small (60×15)" in app.texts["too-small"]
            await pilot.resize_terminal(100, 30)
            await pilot.pause()
            assert app.query_one("#main").display and not app.query_one("#too-small").display

    asyncio.run(go())


def test_ctrl_c_quits_the_app_cleanly() -> None:
    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("n", "ctrl+c")
            await pilot.pause()
            assert not app.is_running and app.return_code == 0

    asyncio.run(go())


def test_random_walk_of_steps_and_undos_ends_at_backward() -> None:
    st = stepper_for()
    rng = random.Random(0)
    for _ in range(400):
        if rng.random() < 0.35:
            st.step_back()
        else:
            st.step()
    st.finish()
    assert st.grads == engine_grads("fused")
    assert all(math.isfinite(g) for g in st.grads)


def test_json_writes_non_finite_numbers_as_strings() -> None:
    x = Value(1e-320)
    st = Stepper(Trace(x.log() * 2.0 + 1.0))
    st.run(3)  # the root, the product, then the log: 1/x overflows
    update = st.describe(st.record())["updates"][0]
    assert update["after"] == "Infinity" and update["local_grad"] == "Infinity" and update["before"] == 0.0
    json.dumps(st.describe(st.record()), allow_nan=False)  # strict JSON
    nan = Value(float("nan"))
    st = Stepper(Trace(nan * -1.0 + Value(float("-inf"))))
    st.finish()
    described = [st.describe(st.record(k)) for k in (1, 2)]
    assert [d["data"] for d in described] == ["NaN", "NaN"]
    assert described[1]["updates"][0]["after"] == -1.0  # nan's grad: finite, written by a finite local


# -- non-finite values are data ----------------------------------------------------------------
def test_largest_ranks_finite_grads_and_lists_non_finite_ones_apart() -> None:
    a, b, c, d = Value(1.0), Value(2.0), Value(3.0), Value(4.0)
    root = a * float("nan") + b * 5.0 + c * float("inf") + d * 0.5
    st = Stepper(Trace(root))
    st.finish()
    index = st.trace.index
    # nan compares false to everything: ranked by |grad| it would sit anywhere; here it is apart.
    assert st.largest(1) == [(index[id(b)], 5.0)]
    ranked = st.largest(100)
    assert all(math.isfinite(g) for _, g in ranked)
    assert len(ranked) == sum(1 for g in st.grads if g != 0 and math.isfinite(g))
    bad = st.nonfinite_grads()
    assert [i for i, _ in bad] == sorted([index[id(a)], index[id(c)]])
    assert {repr(g) for _, g in bad} == {"nan", "inf"}


def test_grad_breakpoint_stops_on_nan() -> None:
    x = Value(2.0)
    root = (x * float("nan")) * 0.1 + 1.0  # every |grad| is small but one is nan
    st = Stepper(Trace(root))
    rec = st.run_until([Breakpoint.parse("grad>100")])
    assert rec is not None and any(math.isnan(u.after) for u in rec.updates)


def test_nonfinite_breakpoint_on_a_model_with_a_nan_weight() -> None:
    run = tiny_run()
    run.model.weights["lm_head"][0][0].data = float("nan")
    spec = resolve_token(run.tokenizer, 8, word="emma", pos=2)
    st = Stepper(Trace(token_graph(run.model, spec, backward=False).root))
    assert math.isnan(st.trace.nodes[-1].data)  # the loss
    rec = st.run_until([Breakpoint("nonfinite")])
    assert rec is not None and rec.number == 1
    st.finish()
    assert st.nonfinite_grads()  # and the stepper ran to the end through them


def poisoned_checkpoint(tmp_path: Path, change) -> Path:
    """A checkpoint of the tiny run after ``change(model)``."""
    run = tiny_run()
    change(run.model)
    path = tmp_path / "poisoned.json"
    ckpt_io.save(
        ckpt_io.Checkpoint(run.model, run.tokenizer, AdamConfig(), TrainState(), 10, 42, "tiny", "fused", run.rng),
        path,
    )
    return path


def nan_weight(model) -> None:
    model.weights["lm_head"][0][0].data = float("nan")


def huge_weights(model) -> None:
    """Weights large enough that the target's probability underflows to 0: the loss is inf."""
    for p in model.params:
        p.data *= 300


def strict_json(line: str) -> dict:
    def refuse(token: str):
        raise AssertionError(f"bare {token} in JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize("granularity", ["fused", "atomic"])
@pytest.mark.parametrize("change", [nan_weight, huge_weights])
def test_end_state_equals_backward_on_non_finite_models(change, granularity: str) -> None:
    def graph():
        run = tiny_run()
        change(run.model)
        spec = resolve_token(run.tokenizer, 8, word="emma", pos=2)
        return token_graph(run.model, spec, granularity=granularity, backward=False)

    st = Stepper(Trace(graph().root))
    st.finish()
    root = graph().root
    root.backward()
    expected = [node.grad for node in Trace(root).nodes]
    assert [repr(g) for g in st.grads] == [repr(g) for g in expected]  # nan == nan, as text
    assert st.nonfinite_grads()


def test_print_and_json_show_nan(tmp_path: Path) -> None:
    path = poisoned_checkpoint(tmp_path, nan_weight)
    text = mgx("--checkpoint", str(path), "--pos", "2", "--print", "3")
    assert text.exit_code == 0, text.stderr
    first = text.stdout.splitlines()[0]
    assert "data=nan" in first
    as_json = mgx("--checkpoint", str(path), "--pos", "2", "--print", "3", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    steps = [strict_json(line) for line in as_json.stdout.splitlines()]
    assert steps[0]["data"] == "NaN" and steps[2]["grad"] == "NaN"
    until = mgx("--checkpoint", str(path), "--pos", "2", "--until", "nonfinite", "--print", "1", "--json")
    assert until.exit_code == 0 and strict_json(until.stdout)["step"] == 1


def test_a_model_whose_loss_is_inf_can_be_stepped(tmp_path: Path) -> None:
    path = poisoned_checkpoint(tmp_path, huge_weights)
    text = mgx("--checkpoint", str(path), "--pos", "2", "--print", "2")
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "data=inf" in lines[0]  # the loss: -log(0)
    assert "data=-inf" in text.stdout  # log(0)
    as_json = mgx("--checkpoint", str(path), "--pos", "2", "--print", "2", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    steps = [strict_json(line) for line in as_json.stdout.splitlines()]
    assert steps[0]["data"] == "Infinity" and steps[1]["data"] == "-Infinity"
    update = steps[1]["updates"][0]  # probs[target].grad += (1/0) × -1
    assert update["local_grad"] == "Infinity" and update["after"] == "-Infinity"


# -- the full-screen view: what a new user tripped on ---------------------------------------------
def app_for(stepper: Stepper):
    from cli.step_app import StepApp

    return StepApp(stepper, "test")


def run_app(app, size, script) -> None:
    async def go() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await script(pilot)

    asyncio.run(go())


def test_app_continue_without_breakpoints_runs_to_the_end() -> None:
    app = make_app()
    st = app.stepper

    async def script(pilot) -> None:
        await pilot.press("c")
        assert st.finished
        assert "no breakpoints set, so ran to the end" in app.texts["status"]
        await pilot.press("c")
        assert st.finished and "backward is finished" in app.texts["status"]

    run_app(app, (120, 40), script)


def test_app_over_names_the_group_it_finished() -> None:
    app = make_app()
    st = app.stepper

    async def script(pilot) -> None:
        await pilot.press("n")
        assert st.current_group() == "loss@pos2"
        await pilot.press("o")  # one step of the loss group was left
        assert app.texts["status"].startswith("finished group loss@pos2: 1 step,")
        await pilot.press("o")  # at the loss group's last node: the next group is the one finished
        group = st.current_group()
        assert group != "loss@pos2"
        assert app.texts["status"].startswith(f"finished group {group}: ")

    run_app(app, (120, 40), script)


def test_app_status_lines_do_not_outlive_their_action() -> None:
    from cli.step_app import IDLE

    app = make_app()
    st = app.stepper

    async def script(pilot) -> None:
        await pilot.press("B", *"op:exp", "enter", "c")
        assert "stopped at breakpoint" in app.texts["status"]
        await pilot.press("n")
        assert app.texts["status"] == IDLE
        await pilot.press("B", *"grad>x", "enter")
        assert "is not a number" in app.texts["status"]
        await pilot.press("b")
        assert app.texts["status"] == IDLE
        await pilot.press("t", "n")
        assert app.texts["status"] == IDLE
        st.goto(0)
        await pilot.press("b")
        assert app.texts["status"] == "at the start: nothing to undo"
        await pilot.press("n")
        assert app.texts["status"] == IDLE

    run_app(app, (120, 40), script)


def test_app_jump_with_an_empty_prompt_does_nothing() -> None:
    app = make_app()
    st = app.stepper

    async def script(pilot) -> None:
        await pilot.press("n", "n")
        await pilot.press("j", "enter")
        assert st.done == 2
        assert "nothing to jump to" in app.texts["status"]
        await pilot.press("j", "space", "space", "enter")
        assert st.done == 2

    run_app(app, (120, 40), script)
    with pytest.raises(MicrogptError, match="nothing to jump to"):
        stepper_for().jump("  ")


def test_app_lists_a_child_used_twice_once() -> None:
    app = make_app()
    st = app.stepper
    # RMSNorm's sum of squares is dot(x, x): each input is both of a product's children.
    node = next(i for i in st.order if len({e.child for e in st.trace.inputs[i]}) < len(st.trace.inputs[i]))
    twice = st.trace.inputs[node][0].child

    async def script(pilot) -> None:
        st.goto(st.step_of[node] + 1)
        app.refresh_panels()
        await pilot.pause()
        lines = app.texts["neighbours"].splitlines()
        listed = [line for line in lines if line.startswith(f"  {st.trace.ids[twice]}  ")]
        assert len(listed) == 1 and listed[0].endswith("×2")
        distinct = len({e.child for e in st.trace.inputs[node]})
        assert f"children ({distinct})" in lines

    run_app(app, (120, 40), script)


def test_app_long_lists_end_with_how_many_more() -> None:
    app = make_app()
    st = app.stepper
    wide = max(st.order, key=lambda i: len(st.trace.inputs[i]))
    n = len(st.trace.inputs[wide])
    assert n >= 16

    async def script(pilot) -> None:
        st.goto(st.step_of[wide] + 1)
        app.refresh_panels()
        await pilot.pause()
        text = app.texts["current"]
        shown = sum(1 for u in st.record().updates if f"  {st.trace.ids[u.child]}\n" in text + "\n")
        assert 0 < shown < n
        assert f"… {n - shown} more updates" in text
        for box in ("current-box", "neighbours-box", "largest-box"):
            assert app.query_one(f"#{box}").max_scroll_y == 0, box  # nothing below the panel's edge
        await pilot.resize_terminal(120, 60)  # taller: more of them, and the count follows
        await pilot.pause()
        more = sum(1 for u in st.record().updates if f"  {st.trace.ids[u.child]}\n" in app.texts["current"] + "\n")
        assert more > shown and (more == n or f"… {n - more} more updates" in app.texts["current"])

    run_app(app, (80, 20), script)


def test_app_keys_do_nothing_while_the_terminal_is_too_small() -> None:
    app = make_app()
    st = app.stepper

    async def script(pilot) -> None:
        await pilot.press("n")
        await pilot.resize_terminal(60, 15)
        await pilot.pause()
        await pilot.press("n", "space", "b", "o", "c", "j", "t", "B", "question_mark")
        await pilot.pause()
        assert st.done == 1 and not st.breakpoints
        assert type(app.screen).__name__ != "HelpScreen" and not app.query_one("#prompt").display
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        await pilot.press("n")
        assert st.done == 2
        await pilot.press("j")  # a prompt open when the window shrinks is cancelled
        await pilot.resize_terminal(60, 15)
        await pilot.pause()
        await pilot.press("enter")
        assert st.done == 2 and not app.query_one("#prompt").display
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running

    run_app(app, (100, 30), script)


def test_app_b_removes_a_breakpoint_already_set() -> None:
    app = make_app()
    st = app.stepper

    async def script(pilot) -> None:
        await pilot.press("B", *"grad>1", "enter")
        assert st.breakpoints == [Breakpoint("grad", threshold=1.0)]
        await pilot.press("B", *"grad>1", "enter")
        assert st.breakpoints == [] and "breakpoint removed: |grad| > 1" in app.texts["status"]

    run_app(app, (120, 40), script)


@pytest.mark.parametrize(("change", "loss"), [(nan_weight, "nan"), (huge_weights, "inf")])
def test_app_shows_non_finite_values_flagged(change, loss: str) -> None:
    from cli.step_app import NONFINITE

    run = tiny_run()
    change(run.model)
    spec = resolve_token(run.tokenizer, 8, word="emma", pos=2)
    app = app_for(Stepper(Trace(token_graph(run.model, spec, backward=False).root)))
    st = app.stepper

    def flagged(name: str) -> set[str]:
        text = app.styled[name]
        return {text.plain[span.start : span.end] for span in text.spans if span.style == NONFINITE}

    async def script(pilot) -> None:
        assert loss in flagged("current")  # the loss, before the first step
        await pilot.press("B", *"nonfinite", "enter", "c")
        assert st.done == 1 and "stopped at breakpoint: non-finite value" in app.texts["status"]
        assert f"data  {loss}" in app.texts["current"] and loss in flagged("current")
        await pilot.press("n", "n")
        assert flagged("neighbours")
        assert "non-finite: " in app.texts["largest"] and flagged("largest") & {"nan", "inf", "-inf"}
        assert "1" in app.texts["largest"]  # the loss's finite grad is still ranked
        await pilot.press("c", "c")
        assert st.done == 5  # nonfinite stops at every step once the value has spread
        await pilot.press("B", *"nonfinite", "enter", "c")
        assert st.finished  # no breakpoint left: to the end, through every non-finite step
        assert app.texts["current"].endswith("backward finished: every grad equals backward()'s")
        await pilot.resize_terminal(80, 20)  # the smallest screen: every list cut to fit, counted
        await pilot.pause()
        for box in ("current-box", "neighbours-box", "largest-box"):
            assert app.query_one(f"#{box}").max_scroll_y == 0, box
        assert "more non-finite" in app.texts["largest"]

    run_app(app, (120, 40), script)


def test_app_long_messages_wrap_and_every_key_fits_the_footer() -> None:
    app = make_app()

    async def script(pilot) -> None:
        await pilot.press("j", *"a..b", "enter")
        message = app.texts["status"]
        assert len(message) > 80 and "try e.g. attn.h0 or logits[3]@pos0" in message
        assert app.query_one("#status").size.height >= 2  # shown whole, not cut at the edge
        await pilot.press("n")
        assert app.query_one("#status").size.height == 1
        keys = {key.key: key.region for key in app.query("FooterKey")}
        assert {"n", "b", "o", "c", "j", "t", "B", "question_mark", "q"} <= set(keys)
        assert all(region.right <= 80 for region in keys.values())  # q quit is on screen

    run_app(app, (80, 20), script)
