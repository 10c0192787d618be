"""The viewer page (viz/page.py, viz/page_assets, ``mgx graph -o graph.html``, ``mgx view``).

Python-side tests run everywhere; the browser tests drive Debian's chromium through
Playwright, as a user would (keys, clicks, what the screen then says), and skip with the
reason where there is no chromium or no playwright. The page is the default token's graph
('a' at position 0, fused) of the fresh reference model."""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.common import TokenChoice, build_token_graph
from cli.main import app
from microgpt.errors import MicrogptError
from microgpt.scope import parse_tag
from viz.page import page_data, page_html, write_page
from viz.pattern import Pattern
from viz.step import Breakpoint, Stepper
from viz.trace import Trace

runner = CliRunner()
CASES = json.loads((Path(__file__).parent / "pattern_cases.json").read_text(encoding="utf-8"))["cases"]
CHOICE = TokenChoice(token="a", pos=0)


def bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


def fresh_trace(backward: bool) -> Trace:
    return build_token_graph(CHOICE, backward=backward).trace


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    built = build_token_graph(CHOICE, backward=False)
    path = tmp_path_factory.mktemp("page") / "graph.html"
    write_page(path, page_data(built.graph, title="test page"))
    return path


# -- Python side ---------------------------------------------------------------------------
def test_same_inputs_give_byte_identical_html(tmp_path):
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    for out in (a, b):
        result = runner.invoke(app, ["graph", "--token", "a", "--pos", "0", "-o", str(out)])
        assert result.exit_code == 0, result.output
    assert a.read_bytes() == b.read_bytes()


def test_page_data_grads_are_backwards_and_strict_json():
    data = page_data(build_token_graph(CHOICE, backward=False).graph)
    reference = fresh_trace(backward=True)
    assert data["ids"] == reference.ids
    assert [bits(x) for x in data["grad"]] == [bits(n.grad) for n in reference.nodes]
    assert data["order"] == Stepper(reference).order
    json.dumps(data, allow_nan=False)  # strict: no bare NaN or Infinity


def test_page_has_no_remote_reference(page_file):
    text = page_file.read_text(encoding="utf-8")
    for needle in ("<link", "src=", "@import", "url(", "fetch(", "XMLHttpRequest", "https://"):
        assert needle not in text, needle


def test_html_level_scalar_is_refused(tmp_path):
    result = runner.invoke(
        app, ["graph", "--token", "a", "--pos", "0", "--level", "scalar", "-o", str(tmp_path / "g.html")]
    )
    assert result.exit_code == 1
    assert "block or tensor" in result.stderr
    assert not (tmp_path / "g.html").exists()


def test_view_refuses_a_name_not_ending_in_html(tmp_path):
    result = runner.invoke(app, ["view", "--token", "a", "--pos", "0", "-o", str(tmp_path / "g.svg")])
    assert result.exit_code == 1
    assert "-o a name ending in .html" in result.stderr


def test_view_prints_the_path_when_no_browser_opens(tmp_path, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or False)
    out = tmp_path / "v.html"
    result = runner.invoke(app, ["view", "--token", "a", "--pos", "0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert opened == [out.resolve().as_uri()]
    assert f"open {out.resolve()} in one" in result.stdout
    assert out.stat().st_size > 0


def test_view_opens_a_temporary_file_in_the_browser(monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    result = runner.invoke(app, ["view", "--token", "a", "--pos", "0", "--level", "tensor"])
    assert result.exit_code == 0, result.output
    assert len(opened) == 1 and opened[0].startswith("file://") and opened[0].endswith("graph.html")
    assert "no browser" not in result.stdout
    Path(opened[0].removeprefix("file://")).unlink()


def test_notebook_viewer_embeds_the_page():
    from viz.page import show

    viewer = show(build_token_graph(CHOICE, backward=False).graph, title="nb")
    html = viewer._repr_html_()
    assert html.startswith("<iframe srcdoc=") and "graph-data" in html
    assert viewer.html() == page_html(viewer.data)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['pattern']}~{c['tag']}")
def test_pattern_cases_python(case):
    tag = None if case["tag"] is None else parse_tag(case["tag"])
    try:
        got = Pattern.parse(case["pattern"]).matches(tag)
    except MicrogptError:
        got = "error"
    assert got == case["match"]


# -- in the browser -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium): the browser tests need it")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


class Page:
    """The page open in a tab, with the console errors and any request leaving the file."""

    def __init__(self, browser, path: Path) -> None:
        self.tab = browser.new_page(viewport={"width": 1400, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))
        self.tab.on("request", lambda r: self.requests.append(r.url))
        self.tab.goto(path.as_uri())
        self.tab.wait_for_function("() => window.mgx && window.mgx.ready")

    def js(self, expression: str, arg=None):
        return self.tab.evaluate(expression, arg)

    def press(self, key: str, times: int = 1) -> None:
        for _ in range(times):
            self.tab.keyboard.press(key)

    def text(self, selector: str) -> str:
        return self.tab.locator(selector).inner_text()

    def click_item(self, name: str) -> None:
        k = self.js("(name) => window.mgx.items().indexOf(name)", name)
        assert k >= 0, f"{name} not in {self.js('window.mgx.items()')}"
        self.js("(name) => window.mgx.reveal(name)", name)  # as a user pans to it
        self.tab.locator(f'#viewport g.node[data-item="{k}"]').click()


@pytest.fixture
def page(browser, page_file):
    p = Page(browser, page_file)
    yield p
    p.tab.close()


def test_loads_without_console_error_or_request_leaving_the_file(page, page_file):
    assert page.errors == []
    assert page.requests == [page_file.as_uri()]
    assert page.js("window.mgx.viewName()") == "graph"
    assert "layer0.attn@pos0" in page.js("window.mgx.items()")
    assert page.tab.locator("#legend").inner_text().startswith("legend")


def test_boxes_fit_the_screen_and_their_labels_fit_their_boxes(page):
    page.tab.screenshot()  # renders; the checks below read the drawn geometry
    boxes = page.js(
        """() => [...document.querySelectorAll('#viewport g.node')].map((g) => {
            const box = g.querySelector('rect.box').getBoundingClientRect();
            const texts = [...g.querySelectorAll('text:not(.flag)')].map((t) => t.getBoundingClientRect());
            return {box: [box.left, box.top, box.right, box.bottom], texts: texts.map((t) => [t.left, t.right])};
        })"""
    )
    canvas = page.js("(() => { const r = document.getElementById('canvas').getBoundingClientRect(); "
                     "return [r.left, r.top, r.right, r.bottom]; })()")  # fmt: skip
    assert boxes
    for b in boxes:
        left, top, right, bottom = b["box"]
        assert canvas[0] <= left and right <= canvas[2] and canvas[1] <= top and bottom <= canvas[3]
        for t_left, t_right in b["texts"]:
            assert left <= t_left and t_right <= right + 0.5


def test_open_groups_down_to_a_scalar_and_back_up(page):
    top = page.js("window.mgx.items()")
    page.click_item("layer0.attn@pos0")  # a block opens in place: its tensors among the other blocks
    assert page.js("window.mgx.viewName()") == "graph" and page.js("window.mgx.opened()") == "layer0.attn@pos0"
    items = page.js("window.mgx.items()")
    assert "layer0.attn@pos0" not in items and "layer0.attn.h0.q@pos0" in items
    assert set(top) - {"layer0.attn@pos0"} <= set(items)  # the others stay collapsed around it
    assert page.tab.locator("#viewport g.cluster text", has_text="attn@pos0").count() == 1
    assert "open in place" in page.text("#crumbs")
    page.click_item("layer0.attn.h0.q@pos0")
    assert page.js("window.mgx.viewName()") == "layer0.attn.h0.q@pos0"
    page.click_item("layer0.attn.h0.q[1]@pos0")
    assert page.text("#panel-id") == "layer0.attn.h0.q[1]@pos0"
    assert page.text("#panel-op") == "dot"
    assert "local ∂ × upstream = contribution" in page.text("#panel")
    page.press("Escape")  # back where the tensor was opened from: the block open in place
    assert page.js("window.mgx.viewName()") == "graph" and page.js("window.mgx.opened()") == "layer0.attn@pos0"
    page.press("Escape")  # closes it
    assert page.js("window.mgx.opened()") is None and page.js("window.mgx.items()") == top
    page.js("window.mgx.openGroup('layer0.attn.h0.q@pos0')")
    page.tab.locator("#crumbs a", has_text="layer0.attn@pos0").click()  # the block's own view, by the crumbs
    assert page.js("window.mgx.viewName()") == "layer0.attn@pos0" and page.js("window.mgx.opened()") is None
    page.press("Escape")
    assert page.js("window.mgx.viewName()") == "graph"
    assert page.errors == []


def test_keyboard_opens_the_selected_group(page):
    page.tab.locator("#canvas").focus()
    page.press("Tab")
    first = page.js("window.mgx.items()[0]")
    page.press("Enter")
    assert page.js("window.mgx.viewName()") == first
    page.press("Escape")
    assert page.js("window.mgx.viewName()") == "graph"


def test_backprop_played_to_the_end_equals_backward_for_every_grad(page):
    reference = fresh_trace(backward=True)
    page.tab.locator("#speed").fill("240")
    page.tab.locator("#canvas").focus()
    page.press("p")
    page.tab.wait_for_function("() => window.mgx.step() === window.mgx.steps()", timeout=20_000)
    grads = page.js("window.mgx.grads()")
    assert len(grads) == len(reference)
    assert [bits(x) for x in grads] == [bits(n.grad) for n in reference.nodes]
    assert "backward finished" in page.text("#progress")
    assert page.errors == []


def test_step_and_step_back_are_exact(page):
    stepper = Stepper(fresh_trace(backward=False))
    page.tab.locator("#canvas").focus()
    page.press("n", 5)
    after5 = page.js("window.mgx.grads()")
    stepper.run(5)
    assert [bits(x) for x in after5] == [bits(x) for x in stepper.grads]
    page.press("ArrowRight")
    page.press(" ")
    assert page.js("window.mgx.step()") == 7
    page.press("b")
    page.press("ArrowLeft")
    assert page.js("window.mgx.step()") == 5
    assert [bits(x) for x in page.js("window.mgx.grads()")] == [bits(x) for x in after5]
    node = stepper.trace.ids[stepper.order[4]]
    assert node in page.text("#progress")
    assert ".grad += " in page.text("#updates")


@pytest.mark.parametrize("spec", ["op:exp", "attn.h1", "grad>0.5"])
def test_continue_stops_at_the_breakpoint_the_stepper_stops_at(page, spec):
    stepper = Stepper(fresh_trace(backward=False))
    rec = stepper.run_until([Breakpoint.parse(spec)])
    page.tab.locator("#breakpoints").fill(spec)
    page.tab.locator("#canvas").focus()
    page.press("c")
    assert page.js("window.mgx.step()") == rec.number
    assert stepper.trace.ids[rec.node] in page.text("#progress")


def test_step_over_and_jump_keys_match_the_stepper(page):
    stepper = Stepper(fresh_trace(backward=False))
    stepper.step_over_group()
    stepper.step_over_group()
    page.tab.locator("#canvas").focus()
    page.press("o", 2)
    assert page.js("window.mgx.step()") == stepper.done
    stepper.jump("attn.h0")
    page.press("j")
    page.tab.keyboard.type("attn.h0")
    page.press("Enter")
    assert page.js("window.mgx.step()") == stepper.done


def test_help_and_search_keys(page):
    page.tab.locator("#canvas").focus()
    page.press("?")
    assert page.tab.locator("#help").is_visible()
    page.press("Escape")
    assert not page.tab.locator("#help").is_visible()
    page.press("/")
    assert page.js("document.activeElement.id") == "search"
    page.tab.keyboard.type("attn.h0.q")
    page.press("Enter")
    assert page.text("#match-count") == "1 of 4"
    assert page.text("#panel-id") == "layer0.attn.h0.q[0]@pos0"
    assert page.js("window.mgx.viewName()") == "layer0.attn.h0.q@pos0"


@pytest.mark.parametrize("pattern", ["attn.h0", "wq[3,*]", "layer0.mlp", "logits@pos0", "h[01].k", "@pos0"])
def test_search_matches_mgx_inspect_json(page, pattern):
    result = runner.invoke(app, ["inspect", pattern, "--token", "a", "--pos", "0", "--json"])
    assert result.exit_code == 0, result.output
    expected = [node["id"] for node in json.loads(result.stdout)["nodes"]]
    assert page.js("(p) => window.mgx.select(p)", pattern) == expected


def test_pattern_cases_javascript(page):
    got = page.js(
        """(cases) => cases.map((c) => {
            try { return window.mgx.tagMatches(c.pattern, c.tag); } catch (e) { return "error"; }
        })""",
        CASES,
    )
    assert got == [c["match"] for c in CASES]


def test_fill_toggles_to_data_and_nonfinite_is_flagged(browser, tmp_path):
    built = build_token_graph(CHOICE, backward=False)
    bad = next(i for i, n in enumerate(built.trace.nodes) if (n.tag or "").startswith("layer0.attn.h0.q[1]"))
    built.trace.nodes[bad].data = math.nan
    path = tmp_path / "nan.html"
    write_page(path, page_data(built.graph))
    p = Page(browser, path)
    try:
        assert "!" in p.js("document.querySelector('#viewport').textContent")
        before = p.js("document.querySelector('#viewport rect.box').getAttribute('fill')")
        p.tab.locator("#fill").select_option("data")
        after = p.js("document.querySelector('#viewport rect.box').getAttribute('fill')")
        assert before != after
        assert "fill: data" in p.text("#legend")
    finally:
        p.tab.close()


def test_attention_weights_are_each_heads_softmax_rows():
    from viz.attention import attention_weights

    trace = build_token_graph(TokenChoice(word="emma", pos=3), backward=False).trace
    heads = attention_weights(trace)
    assert [h.head for h in heads] == [f"layer0.attn.h{k}" for k in range(4)]
    for head in heads:
        [(pos, cells)] = head.rows  # one token: one query position
        assert pos == 3 and [k for k, _ in cells] == [0, 1, 2, 3]
        assert math.isclose(sum(trace.nodes[i].data for _, i in cells), 1.0, rel_tol=1e-12)
        assert all(trace.ids[i] == f"{head.head}.weights[{k}]@pos3" for k, i in cells)


def test_an_attention_cell_selects_its_weight_node(browser, tmp_path):
    out = tmp_path / "emma.html"
    result = runner.invoke(app, ["graph", "--word", "emma", "--pos", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    p = Page(browser, out)
    try:
        assert p.text("#attention").count("layer0.attn.h") == 4
        assert "BOS\te\tm\tm" in p.tab.locator("#attention table.heat").first.inner_text()  # emma's inputs
        p.tab.locator("#attention td.cell").nth(2).click()
        assert p.text("#panel-id") == "layer0.attn.h0.weights[2]@pos3"
        assert p.js("window.mgx.viewName()") == "layer0.attn.h0.weights[2]@pos3"
        assert p.errors == []
    finally:
        p.tab.close()


NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "view_in_notebook.ipynb"


def run_notebook(path: Path):
    """Run a notebook's code cells in order, as a kernel would; return the last cell's value."""
    import ast

    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    namespace: dict = {}
    value = None
    for cell in cells:
        tree = ast.parse("".join(cell["source"]))
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, str(path), "exec"), namespace)
        value = eval(compile(ast.Expression(last.value), str(path), "eval"), namespace) if last else None
    return value


def test_the_notebook_displays_the_viewer_inline(browser):
    viewer = run_notebook(NOTEBOOK)
    html = viewer._repr_html_()
    tab = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    try:
        tab.set_content(f"<html><body><h1>a notebook cell</h1>{html}</body></html>")
        frame = tab.frame_locator("iframe")
        frame.locator("#crumbs").wait_for()
        assert frame.locator("#crumbs").inner_text() == "graph›layer0.attn@pos2"
        assert "layer0.attn.h0" in frame.locator("#attention").inner_text()
        frame.locator("#canvas").focus()
        frame.locator("#canvas").press("n")
        assert frame.locator("#step-count").inner_text() == "1"
        assert errors == []
    finally:
        tab.close()


def test_an_edge_dot_splits_into_several_splines_is_read():
    from viz.page import _arrow_end, _points

    text = "e,10,0 0,100 2,80 4,60 6,40;e,12,2 6,40 8,30 10,20 11,10"
    assert _points(text, 100) == [0, 0, 2, 20, 4, 40, 6, 60]
    assert _arrow_end(text, 100) == [10, 100]


@pytest.mark.parametrize(
    ("options", "view", "count"),
    [
        (["--level", "tensor"], "layer0.attn@pos0", ""),
        (["--focus", "attn.h1.k"], "layer0.attn.h1.k@pos0", "4 matches"),
    ],
)
def test_level_and_focus_choose_the_view_the_page_opens_on(browser, tmp_path, options, view, count):
    out = tmp_path / "g.html"
    result = runner.invoke(app, ["graph", "--token", "a", "--pos", "0", *options, "-o", str(out)])
    assert result.exit_code == 0, result.output
    p = Page(browser, out)
    try:
        assert p.js("window.mgx.viewName()") == view
        assert p.text("#match-count") == count
        if count:
            assert p.tab.locator("#viewport g.node.match").count() == 4
    finally:
        p.tab.close()


def test_a_view_opened_again_shows_the_grads_of_now(page):
    reference = fresh_trace(backward=True)
    node = "layer0.attn.h0.q[1]@pos0"
    page.js("(id) => window.mgx.showNode(id)", node)
    label = "#viewport g.node.selected text:nth-of-type(5)"  # the flag, then id, op, data, grad
    assert page.tab.locator(label).text_content() == "grad 0"
    page.press("Escape")
    page.js("window.mgx.finish()")
    page.js("(id) => window.mgx.showNode(id)", node)
    assert page.js("window.mgx.viewName()") == "layer0.attn.h0.q@pos0"
    assert page.tab.locator(label).text_content() == f"grad {reference.nodes[reference.id_index[node]].grad:.4g}"


def test_the_page_writes_numbers_as_python_does(page):
    numbers = [
        0.0,
        1.0,
        -1.0,
        0.5,
        123456.0,
        1234.5,
        9999.5,
        0.0001,
        0.00012345,
        1e-05,
        -2.5e-07,
        3.14159,
        1e21,
        5e-324,
    ]
    numbers += [float(x) for x in page.js("window.mgx.grads().slice(0, 200)")]
    got = page.js("(xs) => xs.map((x) => [fmtg(x), fmtg(x, 6)])", numbers)
    assert got == [[f"{x:.4g}", f"{x:.6g}"] for x in numbers]
    assert page.js("[fmtg(NaN), fmtg(Infinity), fmtg(-Infinity)]") == ["nan", "inf", "-inf"]


@pytest.mark.parametrize("program", ["graphviz-pure", "dot"])
def test_every_box_is_placed_inside_its_view(program):
    from viz.render import find_layout_program

    try:
        found = find_layout_program(program)
    except MicrogptError:
        pytest.skip(f"no {program} here")
    data = page_data(build_token_graph(CHOICE, backward=False).graph, layout_program=found)
    assert data["open_views"]
    for view in [*data["views"].values(), *data["open_views"].values()]:
        assert view["items"], view["group"]
        for _t, _ref, x, y, w, h, *_ in view["items"]:
            assert w / 2 - 1 <= x <= view["w"] - w / 2 + 1 and h / 2 - 1 <= y <= view["h"] - h / 2 + 1
        paths = data["edge_paths"][view["paths"]]
        assert len(paths) == len(view["edges"])
        for path, _arrow in paths:
            assert not path or (len(path) - 2) % 6 == 0  # a start point, then cubic Béziers


def test_html_says_which_drawing_options_it_does_not_use(tmp_path):
    out = tmp_path / "g.html"
    result = runner.invoke(
        app, ["graph", "--token", "a", "--pos", "0", "--rankdir", "LR", "--hops", "2", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "--rankdir is for the static drawings" in result.stderr
    assert "--hops is for the static drawings" in result.stderr
    assert "--edge-grads" not in result.stderr


def test_the_panel_shows_a_weights_adam_state_as_inspect_adam_does(browser, workdir):
    from tests.test_runs import train_tiny

    train_tiny("--steps", "3", "--no-record")
    result = runner.invoke(app, ["graph", "--checkpoint", "model.json", "-o", "adam.html"])
    assert result.exit_code == 0, result.output
    inspect = runner.invoke(app, ["inspect", "lm_head[2,3]", "--adam", "--json", "--checkpoint", "model.json"])
    (node,) = json.loads(inspect.stdout)["nodes"]
    p = Page(browser, workdir / "adam.html")
    try:
        p.js("window.mgx.showNode('lm_head[2,3]')")
        shown = p.text("#panel-adam")
        assert "last update" in shown and "m̂" in shown
        assert p.js("(k) => window.mgx.adam(k)", "lm_head[2,3]") == node["adam"]
        p.js("window.mgx.showNode('embed[0]@pos0')")  # not a weight: no Adam table
        assert p.tab.locator("#panel-adam").count() == 0
        assert p.errors == []
    finally:
        p.tab.close()


def test_a_diff_page_is_coloured_by_the_difference(browser, workdir):
    from tests.test_runs import one_error, train_tiny

    train_tiny("--steps", "3", "--no-record")
    args = ["diff", "graph", "--checkpoint", "model.json", "--pos", "2", "--json"]
    result = runner.invoke(app, [*args, "--patch-b", "set:layer0.attn.h1.out=0", "-o", "diff.html"])
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)["first_difference"]
    p = Page(browser, workdir / "diff.html")
    try:
        assert p.js("window.mgx.fill()") == "ddata" and p.errors == []
        p.js("(id) => window.mgx.showNode(id)", first["node"])
        assert p.text("#panel-ddata") == p.js("(x) => fmtg(x, 6)", -num_of(first["a"]))
        p.js("window.mgx.openGroup('embed@pos2')")  # upstream of the edit: nothing differs, all white
        assert set(p.js("window.mgx.itemFills()")) == {"#ffffff"}
    finally:
        p.tab.close()
    result = runner.invoke(
        app, ["diff", "graph", "--checkpoint", "model.json", "--pos", "1", "--pos-b", "2", "-o", "pos.html"]
    )
    assert result.exit_code == 0, result.output
    p = Page(browser, workdir / "pos.html")
    try:
        p.js("window.mgx.showNode('layer0.attn.h0.q[0]@pos1')")  # position 2's graph has no position-1 query
        assert p.text("#panel-compare").startswith("only in A")
        assert "only in A" in p.text("#legend") and p.errors == []
    finally:
        p.tab.close()
    assert "give a name ending in .html" in one_error(
        runner.invoke(app, ["diff", "graph", "--checkpoint", "model.json", "--pos-b", "1", "-o", "d.svg"])
    )


def num_of(x) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(x, x)


def test_comparison_aligns_side_b_by_node_id():
    from viz.page import Comparison

    trace = fresh_trace(backward=True)
    ids = trace.ids
    data_b = [*(n.data + 1 for n in trace.nodes[1:]), 0.5]  # B lacks A's first node and has one more
    grad_b = [*(n.grad for n in trace.nodes[1:]), 0.0]
    compare = Comparison.of("B", ids, [*ids[1:], "extra"], data_b, grad_b)
    assert compare.data[0] is None and compare.only_b == ["extra"]
    out = compare.to_json(trace)
    assert out["only_a"] == 1 and out["delta_data"][1] == trace.nodes[1].data + 1 - trace.nodes[1].data
    assert out["delta_grad"][5] == 0


def test_a_softmax_shared_sum_stays_in_the_tensor_and_each_exp_goes_to_its_weight():
    from viz.page import _tree

    trace = build_token_graph(TokenChoice(word="emma", pos=2), backward=False).trace
    groups, view_of = _tree(trace, 2)
    by_key = {g.key: g for g in groups}
    head = "layer0.attn.h0.weights"
    for k in range(3):  # weights[k] = exp(score[k] - max) * (1 / sum of exps): its own exp chain, then itself
        members = [trace.ids[i] for i in by_key[f"{head}[{k}]@pos2"].members]
        assert members == [f"{head}@pos2#{3 * k + j}" for j in range(3)] + [f"{head}[{k}]@pos2"]
    tensor = groups.index(by_key[f"{head}@pos2"])
    shared = [trace.ids[c] for kind, c in groups[tensor].children if kind == "n"]
    assert shared == [f"{head}@pos2#9", f"{head}@pos2#10"]  # the sum of exps and its reciprocal
    assert all(view_of[trace.id_index[i]] == tensor for i in shared)


def test_alike_views_are_laid_out_once(monkeypatch):
    import viz.page

    laid_out: list[bytes] = []
    runs: list[int] = []  # the graphs given to each run of the layout program
    run = viz.page.subprocess.run

    def counted(command, *, input, **options):
        runs.append(input.count(b"digraph"))
        laid_out.append(input)
        return run(command, input=input, **options)

    monkeypatch.setattr(viz.page.subprocess, "run", counted)
    built = build_token_graph(TokenChoice(word="emma", granularity="atomic"), backward=False)
    data = page_data(built.graph)
    assert len(laid_out) == len(set(laid_out)) < len(data["views"]) / 3
    assert len(data["edge_paths"]) < len(data["views"]) / 3  # and their edges' paths written once
    assert set(runs) == {1}  # each in a run of its own: dot 2.43 lays out a batch's graphs differently run to run
    for view in data["views"].values():  # every laid-out box placed inside its view
        for _t, _ref, x, y, w, h, *_ in view["items"]:
            assert w / 2 - 1 <= x <= view["w"] - w / 2 + 1 and h / 2 - 1 <= y <= view["h"] - h / 2 + 1


def test_the_view_the_player_enters_next_is_drawn_while_it_waits(page):
    # Each step runs as play runs it, with the browser idle in between: no step that takes the
    # view into another group adds anything to the drawing (that view was drawn ahead, off
    # screen), and the view it shows is on screen.
    moves, drawn_in_step, on_screen = page.js(
        """async () => {
            const idle = () => new Promise((r) => requestIdleCallback(() => r(), { timeout: 1000 }));
            const watch = new MutationObserver(() => {});
            watch.observe(document.getElementById('svg'), { childList: true, subtree: true });
            let drawnInStep = 0, moves = 0, onScreen = true;
            const canvas = document.getElementById('canvas').getBoundingClientRect();
            await idle();
            for (let k = 0; k < 150; k++) {
                const view = window.mgx.view();
                watch.takeRecords();
                window.mgx.stepUI();
                for (const r of watch.takeRecords()) {
                    drawnInStep += [...r.addedNodes].filter((n) => n.nodeType === 1).length;
                }
                if (window.mgx.view() !== view) {
                    moves++;
                    const r = document.getElementById('viewport').getBoundingClientRect();
                    onScreen = onScreen && r.right > canvas.left && r.left < canvas.right && r.bottom > canvas.top;
                }
                await idle();
            }
            return [moves, drawnInStep, onScreen];
        }"""
    )
    assert moves > 50 and drawn_in_step == 0 and on_screen
    assert page.js("document.querySelectorAll('#viewport').length") == 1 and page.errors == []


def test_a_weight_matrix_opens_without_its_unreadable_labels_and_zooming_in_draws_them(page):
    page.js("window.mgx.openGroup('layer0.mlp.fc1')")
    items = len(page.js("window.mgx.items()"))
    labels = "#viewport g.node text:not(.flag)"
    assert items > 1000 and page.tab.locator(labels).count() == 0
    page.tab.locator("#canvas").focus()
    for _ in range(20):
        if page.tab.locator(labels).count():
            break
        page.press("+")
    assert page.tab.locator(labels).count() >= 4 * (items - 1)  # the neighbour: three lines
    assert page.tab.locator("#viewport g.node text.name").first.is_visible()
    assert page.errors == []


def test_a_breakpoint_set_from_the_picture_is_listed_marked_hit_and_removed(page):
    node = "layer0.attn.h1.q[2]@pos0"
    page.js("(id) => window.mgx.showNode(id)", node)
    page.tab.locator("#panel-break").check()  # the panel's toggle: a breakpoint at the node's tag
    assert page.tab.locator("#breakpoints").input_value() == node
    assert page.js("window.mgx.breakpointItems()") == [node]
    page.tab.locator("#canvas").focus()
    page.press("Escape")  # the block's view: the dot is on the tensor holding the node
    assert page.js("window.mgx.breakpointItems()") == ["layer0.attn.h1.q@pos0"]
    page.click_item("layer0.mlp@pos0")  # shift+click: a group's key, beside the node's tag
    page.js("window.mgx.openView(0)")
    k = page.js("window.mgx.items().indexOf('layer0.mlp@pos0')")
    page.tab.locator(f'#viewport g.node[data-item="{k}"]').click(modifiers=["Shift"])
    assert page.tab.locator("#breakpoints").input_value() == f"{node}, layer0.mlp@pos0"
    assert page.js("window.mgx.viewName()") == "graph"  # shift+click does not open it
    assert set(page.js("window.mgx.breakpointItems()")) == {"layer0.attn@pos0", "layer0.mlp@pos0"}
    stepper = Stepper(fresh_trace(backward=False))
    rec = stepper.run_until([Breakpoint.parse(node), Breakpoint.parse("layer0.mlp@pos0")])
    page.tab.locator("#canvas").focus()
    page.press("c")
    assert page.js("window.mgx.step()") == rec.number
    page.js("window.mgx.openView(0)")  # the player followed the node into its view
    page.tab.locator(f'#viewport g.node[data-item="{k}"]').click(modifiers=["Shift"])  # off again
    page.js("(id) => window.mgx.showNode(id)", node)
    assert page.tab.locator("#panel-break").is_checked()
    page.tab.locator("#panel-break").uncheck()
    assert page.tab.locator("#breakpoints").input_value() == ""
    assert page.js("window.mgx.breakpointItems()") == [] and page.errors == []


def test_a_large_view_draws_the_edges_to_its_neighbours(page):
    data = page_data(build_token_graph(CHOICE, backward=False).graph)
    large = [v for v in data["views"].values() if v.get("straight")]
    assert large  # laid out without their neighbours, which are placed around them
    for view in large:
        for _t, _ref, x, y, w, h, *_ in view["items"]:
            assert w / 2 - 1 <= x <= view["w"] - w / 2 + 1 and h / 2 - 1 <= y <= view["h"] - h / 2 + 1
    page.js("window.mgx.openGroup('probs[4]@pos0')")
    drawn = page.js(
        """() => [...document.querySelectorAll('#viewport g.edge')].filter((e) => e.querySelector('path'))
            .map((e) => e.getAttribute('data-edge'))"""
    )
    items = page.js("window.mgx.items()")
    edges = data["views"][str(page.js("window.mgx.view()"))]["edges"]
    assert len(items) > 24 and len(drawn) == len(edges)
    assert f"{items.index('logits@pos0')}>{items.index('probs@pos0#1')}" in drawn  # from the neighbour above
    assert f"{items.index('probs[4]@pos0')}>{items.index('loss@pos0')}" in drawn  # to the one below


def test_a_group_open_in_place_counts_every_edge_between_the_items_drawn():
    from viz.page import _tree

    built = build_token_graph(TokenChoice(word="emma"), backward=False)
    trace = built.trace
    data = page_data(built.graph)
    groups, _ = _tree(trace, None)
    assert len(data["open_views"]) >= 5
    for opened, view in data["open_views"].items():
        item_of = {}  # node -> the item drawing it, the brute-force way
        for k, (t, ref, *_) in enumerate(view["items"]):
            for i in groups[ref].members if t == "g" else [ref]:
                item_of[i] = k
        assert len(item_of) == len(trace)  # every node drawn, once
        drawn = {(t, ref) for t, ref, *_ in view["items"]}
        assert set(groups[int(opened)].children) <= drawn and ("g", int(opened)) not in drawn
        counts = {}
        for i, kids in enumerate(trace.child_indices):
            for child in kids:
                if item_of[child] != item_of[i]:
                    counts[(item_of[child], item_of[i])] = counts.get((item_of[child], item_of[i]), 0) + 1
        assert {(a, b): n for a, b, n in view["edges"]} == counts


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("echo 'syntax error in line 3' >&2; exit 1", "(syntax error in line 3)"),
        ("cat >/dev/null; echo notjson", "(no output)"),
    ],
)
def test_a_layout_program_that_fails_or_writes_no_json_is_one_clear_error(tmp_path, script, why):
    program = tmp_path / "layout"
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)
    built = build_token_graph(TokenChoice(token="a", pos=0), backward=False)
    with pytest.raises(MicrogptError) as raised:
        page_data(built.graph, layout_program=str(program))
    assert str(raised.value) == f"layout could not lay out the page's views {why}: write .svg or .dot"
