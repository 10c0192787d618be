"""The full-screen view of ``mgx step``: a Textual app over a ``viz.step.Stepper``.

All the stepping logic is the Stepper's; this module only draws it and maps keys to it.
Imported only when the full-screen view opens (Textual is slow to import).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from cli.output import plural
from cli.step_cmd import MIN_HEIGHT, MIN_WIDTH, too_small_message
from microgpt.errors import MicrogptError
from viz.step import Breakpoint, Stepper, fmt

LARGEST_SHOWN = 10  # the largest finite |grad|s ranked (fewer when the panel is short)
NONFINITE = "bold red"  # nan, inf and -inf, wherever a number is shown
IDLE = ""  # the status line between messages: the footer lists the keys
FINISHED = "backward is finished: b steps back, j jumps, q quits"

HELP = """\
mgx step: backward, one node at a time

  n  space  →   step: process the next node (all its edges)
  b  ←          step back (undo the last step exactly)
  o             finish this node's tag group (at the group's
                last node: the whole next group)
  c             continue to the next breakpoint (none set:
                run to the end)
  j             jump to a node id or a tag pattern
  t             toggle a breakpoint on this node's tag group
  B             add a breakpoint (or remove one already set):
                a tag pattern, op:NAME, nonfinite, origin, or grad>X
  ?             this help
  q  ctrl+c     quit

Each step applies, for every input of the node,
    child.grad += local ∂ × node.grad
in reverse topological order, exactly as Value.backward.
nan, inf and -inf are shown in red.

Press escape, q or ? to close."""


def number(x: float, style: str = "", width: int = 0) -> Text:
    """A number as the views print it (right-aligned in ``width``), flagged when it is nan, inf or -inf."""
    text = fmt(x)
    return Text(" " * (width - len(text))).append(text, style=style if math.isfinite(x) else NONFINITE)


def line(*parts: str | Text, style: str = "") -> Text:
    """One line of a panel from plain strings (literal, never markup) and styled Texts."""
    out = Text(style=style)
    for part in parts:
        if isinstance(part, Text):
            out.append_text(part)
        else:
            out.append(part)
    return out


def counted(indices: list[int]) -> list[tuple[int, int]]:
    """Each index once, in first-seen order, with how many times it occurs (dot(x, x) uses x twice)."""
    return list(Counter(indices).items())


@dataclass
class Section:
    """A list in a panel: header lines, items (each one or more lines), and how many items there
    are in all (a builder may stop early once no more could be shown). Items that do not fit
    become one "… N more" line, unless none fit and the header already gives the count."""

    header: list[Text]
    items: list[list[Text]]
    total: int
    noun: tuple[str, str]  # singular and plural: "… 1 more update", "… 3 more updates"
    header_counts: bool = True  # the header states ``total``


class Panel(VerticalScroll):
    """A box whose lists are cut to its size: when its size changes, the app redraws them."""

    def on_resize(self) -> None:
        if isinstance(self.app, StepApp):
            self.app.refresh_panels()


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar = [Binding("escape,q,question_mark", "dismiss_help", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help { width: 64; height: auto; border: round $accent; padding: 0 1; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        yield Static(Text(HELP), id="help")

    def action_dismiss_help(self) -> None:
        self.dismiss()


class StepApp(App[None]):
    TITLE = "mgx step"
    AUTO_FOCUS = None  # keys go to the app's bindings until the prompt opens
    ENABLE_COMMAND_PALETTE = False  # ctrl+p would open Textual's own commands; the footer needs the room
    CSS = """
    #progress { height: 1; background: $boost; padding: 0 1; }
    #main { height: 1fr; }
    Panel { scrollbar-gutter: stable; scrollbar-size-vertical: 1; }  /* the width lists are fitted to */
    #current-box { width: 3fr; border: round $primary; }
    #side { width: 2fr; }
    #neighbours-box { height: 3fr; border: round $secondary; }
    #largest-box { height: 2fr; border: round $secondary; }
    #status { height: auto; min-height: 1; max-height: 3; padding: 0 1; }
    #prompt { display: none; }
    #too-small { display: none; padding: 1 2; }
    """
    BINDINGS: ClassVar = [
        Binding("n,space,right", "step", "step"),
        Binding("b,left", "back", "back"),
        Binding("o", "over", "over"),
        Binding("c", "continue", "continue"),
        Binding("j", "jump", "jump"),
        Binding("t", "toggle", "tag bp"),
        Binding("B", "add_breakpoint", "bp"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
    ]

    def __init__(self, stepper: Stepper, title: str = "") -> None:
        super().__init__()
        self.stepper = stepper
        self.subtitle = title
        self.texts: dict[str, str] = {}  # the plain text last shown in each panel (tests read it)
        self.styled: dict[str, Text] = {}  # and with its styles
        self._prompt_mode: str | None = None

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="progress")
        with Horizontal(id="main"):
            with Panel(id="current-box"):
                yield Static(id="current")
            with Vertical(id="side"):
                with Panel(id="neighbours-box"):
                    yield Static(id="neighbours")
                with Panel(id="largest-box"):
                    yield Static(id="largest")
        yield Static(id="too-small")
        yield Static(id="status")
        yield Input(id="prompt", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#current-box").border_title = "current step"
        self.query_one("#neighbours-box").border_title = "neighbourhood"
        self.query_one("#largest-box").border_title = "largest |grad| so far · breakpoints"
        self._check_size(self.size.width, self.size.height)
        self.show()  # drawn again by each Panel once it has its size

    def on_resize(self, event) -> None:
        self._check_size(event.size.width, event.size.height)

    @property
    def too_small(self) -> bool:
        return self.size.width < MIN_WIDTH or self.size.height < MIN_HEIGHT

    def _check_size(self, width: int, height: int) -> None:
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        notice = self.query_one("#too-small", Static)
        if small:
            self._set("too-small", Text(too_small_message(width, height), style="bold red"))
            if self._prompt_mode is not None:
                self._close_prompt()
                self.set_status("cancelled: the terminal became too small")
        notice.display = small
        self.query_one("#main").display = not small
        self.refresh_bindings()  # the footer shows only the keys that act

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While the terminal is too small nothing is shown, so only quitting acts."""
        return action == "quit" or not self.too_small

    # -- drawing -----------------------------------------------------------------------
    def _set(self, name: str, text: Text) -> None:
        self.texts[name] = text.plain
        self.styled[name] = text
        self.query_one(f"#{name}", Static).update(text)

    def set_status(self, message: str, error: bool = False) -> None:
        self._set("status", Text(message, style="bold red" if error else "dim"))

    def show(self, message: str = IDLE, error: bool = False) -> None:
        """Redraw after an action: every panel, and the status line with this action's message
        (blank when it has none), so no message outlives the action that wrote it."""
        self.refresh_panels()
        self.set_status(message, error)

    def refresh_panels(self) -> None:
        st = self.stepper
        self._set("progress", Text(f"{self.subtitle}  ·  {st.progress()}".lstrip(" ·")))
        self._set("current", self._current_text())
        self._set("neighbours", self._neighbours_text())
        self._set("largest", self._largest_text())

    def _room(self, box: str) -> tuple[int, int] | None:
        """The width and height a panel shows, or None before the first layout."""
        region = self.query_one(f"#{box}").scrollable_content_region
        return (region.width, region.height) if region.width > 0 and region.height > 0 else None

    def _fit(self, box: str, head: list[Text], sections: list[Section], tail: list[Text]) -> Text:
        """The panel's lines: head, each section cut to what the panel shows (the rest counted on
        a "… N more" line, the room shared out evenly), then tail. Lines are measured as the
        panel wraps them."""
        room = self._room(box)
        if room is None:  # not laid out yet: everything (refreshed once it is)
            return _join(head, sections, [len(s.items) for s in sections], tail)
        width, height = room
        rules = self.query_one(f"#{box} Static").styles

        def rows(lines: list[Text]) -> int:
            return sum(1 if t.cell_len <= width else Content.from_rich_text(t).get_height(rules, width) for t in lines)

        free = height - rows(head) - rows(tail) - sum(rows(s.header) for s in sections)
        return _join(head, sections, _fill(free, sections, rows), tail)

    def _current_text(self) -> Text:
        st = self.stepper
        trace = st.trace
        rec = st.record()
        if rec is None:
            root = len(trace.nodes) - 1
            head = [
                Text("backward has not started", style="bold"),
                line(f"{trace.ids[root]} = ", number(trace.nodes[root].data), "  (the loss)"),
                line(f"{trace.ids[root]}.grad = 1  (∂loss/∂loss)"),
            ]
            if st.next_node is not None:
                nxt = st.next_node
                head.append(line(f"next: {trace.ids[nxt]}  {trace.nodes[nxt].op}"))
            head.append(Text("press n to take the first step, ? for help"))
            return self._fit("current-box", head, [], [])
        node = trace.nodes[rec.node]
        head = [
            Text(f"node  {trace.ids[rec.node]}", style="bold"),
            line(f"op    {node.op}   {node.op.derivative}"),
            line(f"tag   {node.tag}"),
            line("data  ", number(node.data)),
            line("grad  ", number(st.grads[rec.node])),
            Text(""),
        ]
        updates = [
            [
                line(f"  {trace.ids[u.child]}"),
                line(
                    "      ",
                    number(u.before),
                    " + ",
                    number(u.local_grad),
                    " × ",
                    number(u.node_grad),
                    " = ",
                    number(u.after, style="bold"),
                ),
            ]
            for u in rec.updates
        ]
        header = [Text("child.grad += local ∂ × node.grad", style="bold")]
        section = Section(header, updates, len(updates), ("update", "updates"), header_counts=False)
        if st.next_node is not None:
            tail = [Text(""), Text(f"next: {trace.ids[st.next_node]}", style="dim")]
        else:
            tail = [Text(""), Text("backward finished: every grad equals backward()'s", style="dim")]
        return self._fit("current-box", head, [section], tail)

    def _neighbours_text(self) -> Text:
        st = self.stepper
        trace = st.trace
        node = st.current if st.current is not None else st.next_node
        if node is None:
            return Text()
        room = self._room("neighbours-box")
        cap = room[1] if room else len(trace.nodes)  # no more items than rows: each takes one at least
        parents = counted([e.parent for e in trace.consumers[node]])
        children = counted([e.child for e in trace.inputs[node]])

        def times(k: int) -> str:
            return f"  ×{k}" if k > 1 else ""

        parent_items = [
            [line(f"  {trace.ids[i]}  {trace.nodes[i].op}  grad ", number(st.grads[i]), times(k))]
            for i, k in parents[:cap]
        ]
        child_items = [
            [
                line(
                    f"  {trace.ids[i]}  {trace.nodes[i].op}  data ",
                    number(trace.nodes[i].data),
                    "  grad ",
                    number(st.grads[i]),
                    times(k),
                )
            ]
            for i, k in children[:cap]
        ]
        parents_header = Text(f"parents of {trace.ids[node]} ({len(parents)})", style="bold")
        children_header = Text(f"children ({len(children)})", style="bold")
        sections = [
            Section([parents_header], parent_items, len(parents), ("parent", "parents")),
            Section([children_header], child_items, len(children), ("child", "children")),
        ]
        return self._fit("neighbours-box", [], sections, [])

    def _largest_text(self) -> Text:
        st = self.stepper
        ids = st.trace.ids
        room = self._room("largest-box")
        cap = room[1] if room else len(ids)
        sections = []
        bad = st.nonfinite_grads()
        if bad:
            kinds = Counter(fmt(g) for _, g in bad)
            summary = ", ".join(f"{kinds[k]} {k}" for k in ("nan", "inf", "-inf") if kinds[k])
            items = [[line(number(g, width=12), f"  {ids[i]}")] for i, g in bad[:cap]]
            header = Text(f"non-finite: {summary}", style=NONFINITE)
            sections.append(Section([header], items, len(bad), ("non-finite", "non-finite")))
        ranked = sum(1 for g in st.grads if g != 0 and math.isfinite(g))
        items = [[line(number(g, width=12), f"  {ids[i]}")] for i, g in st.largest(min(LARGEST_SHOWN, cap))]
        if bad:  # two lists: say which is which
            header = [Text(f"finite grads: {ranked} non-zero", style="bold")]
            sections.append(Section(header, items, min(ranked, LARGEST_SHOWN), ("grad", "grads")))
        else:
            sections.append(Section([], items, min(ranked, LARGEST_SHOWN), ("grad", "grads"), header_counts=False))
        if st.breakpoints:
            header = [Text(f"breakpoints ({len(st.breakpoints)})", style="bold")]
            items = [[line(f"  {bp}")] for bp in st.breakpoints]
            sections.append(Section(header, items, len(items), ("breakpoint", "breakpoints")))
        else:
            sections.append(Section([Text("no breakpoints (t or B adds)", style="bold")], [], 0, ("", "")))
        return self._fit("largest-box", [], sections, [])

    # -- actions -----------------------------------------------------------------------
    def action_step(self) -> None:
        if self.stepper.step() is None:
            self.show(FINISHED)
        else:
            self.show()

    def action_back(self) -> None:
        if self.stepper.step_back():
            self.show()
        else:
            self.show("at the start: nothing to undo")

    def action_over(self) -> None:
        st = self.stepper
        group = st.group_to_step_over()
        if group is None:
            self.show(FINISHED)
            return
        done = st.step_over_group()
        self.show(f"finished group {group}: {plural(len(done), 'step')}, to node {st.done} of {st.total}")

    def action_continue(self) -> None:
        st = self.stepper
        if st.finished:
            self.show(FINISHED)
            return
        rec = st.run_until()
        if rec is not None:
            hit = next(bp for bp in st.breakpoints if st.hits(bp, rec))
            self.show(f"stopped at breakpoint: {hit}")
        elif st.breakpoints:
            self.show("ran to the end of backward: no step hit a breakpoint")
        else:
            self.show("no breakpoints set, so ran to the end of backward (t or B sets one)")

    def action_toggle(self) -> None:
        result = self.stepper.toggle_tag_breakpoint()
        if result is None:
            self.show("this node has no tag to break on", error=True)
        else:
            bp, on = result
            self.show(f"breakpoint {'set' if on else 'removed'}: {bp}")

    def action_jump(self) -> None:
        self._open_prompt("jump", "node id or tag pattern, e.g. attn.h0 or logits[3]@pos0 (escape cancels)")

    def action_add_breakpoint(self) -> None:
        self._open_prompt("break", "breakpoint to toggle: tag pattern, op:NAME, nonfinite, origin or grad>X")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # -- the prompt ----------------------------------------------------------------------
    def _open_prompt(self, mode: str, placeholder: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self._prompt_mode = mode
        prompt.placeholder = placeholder
        prompt.value = ""
        prompt.disabled = False
        prompt.display = True
        prompt.focus()

    def _close_prompt(self) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.display = False
        prompt.disabled = True
        self._prompt_mode = None
        self.set_focus(None)

    def on_key(self, event) -> None:
        if self._prompt_mode is not None and event.key == "escape":
            self._close_prompt()
            self.set_status("cancelled")
            event.stop()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        mode, text = self._prompt_mode, event.value
        self._close_prompt()
        st = self.stepper
        try:
            if mode == "jump":
                rec = st.jump(text)
                where = f"step {rec.number}, {st.trace.ids[rec.node]}" if rec is not None else "the start"
                self.show(f"jumped to {where}")
            elif mode == "break":
                bp = Breakpoint.parse(text)
                if bp in st.breakpoints:
                    st.breakpoints.remove(bp)
                    self.show(f"breakpoint removed: {bp}")
                else:
                    st.add_breakpoint(bp)
                    self.show(f"breakpoint set: {bp} (c continues to it)")
        except MicrogptError as e:
            self.show(str(e), error=True)


def _more_line(section: Section, shown: int) -> Text | None:
    """The line that ends a section showing ``shown`` items: "… N more", or None."""
    left = section.total - shown
    if not left or (not shown and section.header_counts):
        return None
    noun = section.noun[0] if left == 1 else section.noun[1]
    return Text(f"  … {left} more {noun}" if shown else f"  … {left} {noun}", style="dim")


def _fill(free: int, sections: list[Section], rows: Callable[[list[Text]], int]) -> list[int]:
    """How many items of each section fit in ``free`` rows (``rows`` measures lines as the panel
    wraps them): one item at a time to each list in turn, so a long list does not crowd out the
    others; the "… N more" line counts too."""
    sizes = [[rows(item) for item in s.items] for s in sections]
    shown = [0] * len(sections)

    def cost(j: int, k: int) -> int:
        more = _more_line(sections[j], k)
        return sum(sizes[j][:k]) + (rows([more]) if more is not None else 0)

    used = sum(cost(j, 0) for j in range(len(sections)))
    growing = [j for j in range(len(sections)) if sizes[j]]
    while growing:
        for j in list(growing):
            k = shown[j]
            extra = cost(j, k + 1) - cost(j, k)
            if used + extra > free:
                growing.remove(j)
                continue
            used += extra
            shown[j] = k + 1
            if shown[j] == len(sizes[j]):
                growing.remove(j)
    return shown


def _join(head: list[Text], sections: list[Section], shown: list[int], tail: list[Text]) -> Text:
    lines = list(head)
    for s, k in zip(sections, shown):
        lines += s.header
        for item in s.items[:k]:
            lines += item
        more = _more_line(s, k)
        if more is not None:
            lines.append(more)
    lines += tail
    return Text("\n").join(lines)
