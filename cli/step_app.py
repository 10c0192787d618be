"""The full-screen view of ``mgx step``: a Textual app over a ``viz.step.Stepper``.

All the stepping logic is the Stepper's; this module only draws it and maps keys to it.
Imported only when the full-screen view opens (Textual is slow to import).
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from cli.step_cmd import MIN_HEIGHT, MIN_WIDTH, too_small_message
from microgpt.errors import MicrogptError
from viz.step import Breakpoint, Stepper, fmt

NEIGHBOURS_SHOWN = 12  # parents and children listed per side; the rest are counted
LARGEST_SHOWN = 10

HELP = """\
mgx step: backward, one node at a time

  n  space  →   step: process the next node (all its edges)
  b  ←          step back (undo the last step exactly)
  o             step over the rest of this node's tag group
  c             continue to the next breakpoint (or the end)
  j             jump to a node id or a tag pattern
  t             toggle a breakpoint on this node's tag group
  B             add a breakpoint: a tag pattern, op:NAME,
                nonfinite, or grad>X
  ?             this help
  q  ctrl+c     quit

Each step applies, for every input of the node,
    child.grad += local ∂ × node.grad
in reverse topological order, exactly as Value.backward.

Press escape, q or ? to close."""


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
    CSS = """
    #progress { height: 1; background: $boost; padding: 0 1; }
    #main { height: 1fr; }
    #current-box { width: 3fr; border: round $primary; }
    #side { width: 2fr; }
    #neighbours-box { height: 3fr; border: round $secondary; }
    #largest-box { height: 2fr; border: round $secondary; }
    #status { height: 1; padding: 0 1; }
    #prompt { display: none; }
    #too-small { display: none; padding: 1 2; }
    """
    BINDINGS: ClassVar = [
        Binding("n,space,right", "step", "step"),
        Binding("b,left", "back", "back"),
        Binding("o", "over", "over group"),
        Binding("c", "continue", "continue"),
        Binding("j", "jump", "jump"),
        Binding("t", "toggle", "toggle bp"),
        Binding("B", "add_breakpoint", "add bp"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
    ]

    def __init__(self, stepper: Stepper, title: str = "") -> None:
        super().__init__()
        self.stepper = stepper
        self.subtitle = title
        self.texts: dict[str, str] = {}  # the plain text last shown in each panel (tests read it)
        self._prompt_mode: str | None = None

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="progress")
        with Horizontal(id="main"):
            with VerticalScroll(id="current-box"):
                yield Static(id="current")
            with Vertical(id="side"):
                with VerticalScroll(id="neighbours-box"):
                    yield Static(id="neighbours")
                with VerticalScroll(id="largest-box"):
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
        self.refresh_panels()
        self.set_status("n step · b back · o over group · c continue · j jump · t/B breakpoints · ? help · q quit")

    def on_resize(self, event) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        notice = self.query_one("#too-small", Static)
        if small:
            self._set("too-small", Text(too_small_message(width, height), style="bold red"))
        notice.display = small
        self.query_one("#main").display = not small

    # -- drawing -----------------------------------------------------------------------
    def _set(self, name: str, text: Text) -> None:
        self.texts[name] = text.plain
        self.query_one(f"#{name}", Static).update(text)

    def set_status(self, message: str, error: bool = False) -> None:
        self._set("status", Text(message, style="bold red" if error else "dim"))

    def refresh_panels(self) -> None:
        st = self.stepper
        self._set("progress", Text(f"{self.subtitle}  ·  {st.progress()}".lstrip(" ·")))
        self._set("current", self._current_text())
        self._set("neighbours", self._neighbours_text())
        self._set("largest", self._largest_text())

    def _current_text(self) -> Text:
        st = self.stepper
        trace = st.trace
        rec = st.record()
        out = Text()
        if rec is None:
            root = len(trace.nodes) - 1
            out.append("backward has not started\n", style="bold")
            out.append(f"{trace.ids[root]}.grad = 1  (∂loss/∂loss)\n")
            if st.next_node is not None:
                nxt = st.next_node
                out.append(f"next: {trace.ids[nxt]}  {trace.nodes[nxt].op}\n")
            out.append("press n to take the first step, ? for help")
            return out
        node = trace.nodes[rec.node]
        out.append(f"node  {trace.ids[rec.node]}\n", style="bold")
        out.append(f"op    {node.op}   {node.op.derivative}\n")
        out.append(f"tag   {node.tag}\n")
        out.append(f"data  {fmt(node.data)}\n")
        out.append(f"grad  {fmt(st.grads[rec.node])}\n\n")
        out.append("child.grad += local ∂ × node.grad\n", style="bold")
        for u in rec.updates:
            out.append(f"  {trace.ids[u.child]}\n")
            out.append(f"      {fmt(u.before)} + {fmt(u.local_grad)} × {fmt(u.node_grad)} = ")
            out.append(fmt(u.after), style="bold")
            out.append("\n")
        if st.next_node is not None:
            out.append(f"\nnext: {trace.ids[st.next_node]}", style="dim")
        else:
            out.append("\nbackward finished: every grad equals backward()'s", style="dim")
        return out

    def _neighbours_text(self) -> Text:
        st = self.stepper
        trace = st.trace
        node = st.current if st.current is not None else st.next_node
        out = Text()
        if node is None:
            return out
        parents = [e.parent for e in trace.consumers[node]]
        children = [e.child for e in trace.inputs[node]]
        out.append(f"parents of {trace.ids[node]} ({len(parents)})\n", style="bold")
        for i in parents[:NEIGHBOURS_SHOWN]:
            out.append(f"  {trace.ids[i]}  {trace.nodes[i].op}  grad {fmt(st.grads[i])}\n")
        if len(parents) > NEIGHBOURS_SHOWN:
            out.append(f"  … and {len(parents) - NEIGHBOURS_SHOWN} more\n")
        out.append(f"children ({len(children)})\n", style="bold")
        for i in children[:NEIGHBOURS_SHOWN]:
            out.append(f"  {trace.ids[i]}  {trace.nodes[i].op}  data {fmt(trace.nodes[i].data)}")
            out.append(f"  grad {fmt(st.grads[i])}\n")
        if len(children) > NEIGHBOURS_SHOWN:
            out.append(f"  … and {len(children) - NEIGHBOURS_SHOWN} more\n")
        return out

    def _largest_text(self) -> Text:
        st = self.stepper
        out = Text()
        for i, grad in st.largest(LARGEST_SHOWN):
            out.append(f"{fmt(grad):>12}  {st.trace.ids[i]}\n")
        out.append("breakpoints: ", style="bold")
        out.append(", ".join(str(bp) for bp in st.breakpoints) or "none (t or B to add)")
        return out

    # -- actions -----------------------------------------------------------------------
    def action_step(self) -> None:
        if self.stepper.step() is None:
            self.set_status("backward is finished: b steps back, q quits")
        self.refresh_panels()

    def action_back(self) -> None:
        if not self.stepper.step_back():
            self.set_status("at the start: nothing to undo")
        self.refresh_panels()

    def action_over(self) -> None:
        group = self.stepper.current_group()
        done = self.stepper.step_over_group()
        self.set_status(f"stepped over {len(done)} nodes of {group}" if done else "backward is finished")
        self.refresh_panels()

    def action_continue(self) -> None:
        st = self.stepper
        if not st.breakpoints:
            self.set_status("no breakpoints: add one with t or B (continuing would run to the end)", error=True)
            return
        rec = st.run_until()
        if rec is None:
            self.set_status("backward finished without reaching a breakpoint")
        else:
            hit = next(bp for bp in st.breakpoints if st.hits(bp, rec))
            self.set_status(f"stopped at breakpoint: {hit}")
        self.refresh_panels()

    def action_toggle(self) -> None:
        result = self.stepper.toggle_tag_breakpoint()
        if result is None:
            self.set_status("this node has no tag to break on", error=True)
        else:
            bp, on = result
            self.set_status(f"breakpoint {'set' if on else 'removed'}: {bp}")
        self.refresh_panels()

    def action_jump(self) -> None:
        self._open_prompt("jump", "node id or tag pattern (e.g. attn.h0, logits[3]@pos0); enter jumps, escape cancels")

    def action_add_breakpoint(self) -> None:
        self._open_prompt("break", "breakpoint: tag pattern, op:NAME, nonfinite or grad>X; escape cancels")

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
        try:
            if mode == "jump":
                self.stepper.jump(text)
                self.set_status(f"jumped to {text.strip()}")
            elif mode == "break":
                bp = Breakpoint.parse(text)
                self.stepper.add_breakpoint(bp)
                self.set_status(f"breakpoint set: {bp} (c continues to it)")
        except MicrogptError as e:
            self.set_status(str(e), error=True)
        self.refresh_panels()
