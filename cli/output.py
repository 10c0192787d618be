"""The consoles: results on stdout, messages and errors on stderr (so --json pipes stay clean).

Everything printed here is literal: file names, patterns, words and tokens reach the
terminal as typed, never through rich markup (``[/x]`` is text, not a closing tag), and a
control character (a newline in a file name) is shown escaped, so a message stays one line.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from viz.style import counted as plural  # noqa: F401  (one plural rule for every message and label)


# markup=False: a plain string printed here (a title holding a file name, a table cell) is text;
# style comes from rich Text and Style objects, never from [..] in a string.
class _ResultsConsole(Console):
    """stdout. Where its reader has gone (``mgx train --log-every 1 | head``), rich would exit
    with status 1 on the spot, and a training run would die without its checkpoint: the
    rest of the results go nowhere instead, and the command finishes its work."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


console = _ResultsConsole(highlight=False, markup=False)
err_console = Console(stderr=True, highlight=False, markup=False)

P = ParamSpec("P")
R = TypeVar("R")

ERROR_PREFIX = Text("error:", style="bold red")
INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)
INTERRUPTED_AT_START = "interrupted before the command started; nothing was written"
OUT_OF_MEMORY = (
    "ran out of memory: the model or its graph is too large for this machine; train a smaller model "
    "(--n-embd, --n-layer, --block-size) or look at a smaller graph (one --pos, a shorter --word)"
)


def one_line(text: str) -> str:
    """``text`` with its line breaks and control characters written as Python escapes (``\\n``)."""
    if text.isprintable():
        return text
    return "".join(repr(ch)[1:-1] if unicodedata.category(ch) in _ESCAPED else ch for ch in text)


_ESCAPED = ("Cc", "Zl", "Zp")  # control characters (newline, ESC), line and paragraph separators


def print_line(text: str) -> None:
    """One result line on stdout, literally (a sampled name, a data line)."""
    console.print(Text(one_line(text)), soft_wrap=True)


def status(message: str):
    """A spinner on stderr while something slow runs (``with status(...):``), its text literal."""
    return err_console.status(Text(one_line(message)))


def info(message: str) -> None:
    """A note on what the command is doing (which model, which data): stderr, dim, literal."""
    err_console.print(Text(one_line(message), style="dim"), soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line naming the problem and the fix, then a non-zero exit; never a traceback.
    The message is printed literally: user text in it is never read as markup."""
    err_console.print(Text.assemble(ERROR_PREFIX, " ", one_line(message)), soft_wrap=True)
    raise typer.Exit(code)


def stop_on_interrupt(signum: int, frame: object) -> None:
    """SIGINT outside a command's body (start-up, typer's parsing): one line, exit 130.
    Nothing has been written yet, so there is nothing to keep."""
    sys.stderr.write(f"error: {INTERRUPTED_AT_START}\n")
    sys.stderr.flush()
    raise SystemExit(INTERRUPTED)


def _set_sigint(handler: Callable | int) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the package's MicrogptError (and running out of memory) into a one-line message and
    exit 1; Ctrl-C into exit 130.

    ``mgx`` (``cli.main.run``) stops on Ctrl-C during start-up with one line; once a command's
    body runs, Ctrl-C raises KeyboardInterrupt again, so the body can keep what it has
    (training saves its checkpoint) before it exits. After the body, the command has done
    its work and only exits: a late Ctrl-C no longer stops it."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from microgpt.errors import MicrogptError

        started_by_run = signal.getsignal(signal.SIGINT) is stop_on_interrupt
        try:
            if started_by_run:
                _set_sigint(signal.default_int_handler)
            return command(*args, **kwargs)
        except MicrogptError as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("interrupted (Ctrl-C); no file is left half-written", code=INTERRUPTED)
        except MemoryError:
            fail(OUT_OF_MEMORY)
        finally:
            if started_by_run:
                _set_sigint(signal.SIG_IGN)

    return wrapper


def check_writable(out: Path, option: str, example: str) -> None:
    """Fail before any work is done when ``out`` cannot be written (``option`` names the flag)."""
    from microgpt.files import IS_A_DIRECTORY, target_problem

    problem = target_problem(out)
    if problem == IS_A_DIRECTORY:
        fail(f"cannot write {out}: it is a directory; give {option} a file name such as {out / example}")
    if problem is not None:
        fail(f"cannot write {out}: {problem}; choose another {option}")


def warn(message: str) -> None:
    """Something the user should know that does not stop the command: one line on stderr,
    printed literally (no markup)."""
    err_console.print(Text(f"warning: {one_line(message)}", style="yellow"), soft_wrap=True)
