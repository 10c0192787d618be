"""The consoles: results on stdout, messages and errors on stderr (so --json pipes stay clean)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")


def info(message: str) -> None:
    """A note on what the command is doing (which model, which data): stderr, dim."""
    err_console.print(f"[dim]{message}[/dim]", markup=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line naming the problem and the fix, then a non-zero exit; never a traceback."""
    err_console.print(f"[bold red]error:[/bold red] {message}", markup=True, soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the package's MicrogptError into a one-line message and exit 1; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from microgpt.errors import MicrogptError

        try:
            return command(*args, **kwargs)
        except MicrogptError as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("interrupted", code=130)

    return wrapper


def check_writable(out: Path, option: str, example: str) -> None:
    """Fail before any work is done when ``out`` cannot be written (``option`` names the flag)."""
    from microgpt.files import IS_A_DIRECTORY, target_problem

    problem = target_problem(out)
    if problem == IS_A_DIRECTORY:
        fail(f"cannot write {out}: it is a directory; give {option} a file name such as {out / example}")
    if problem is not None:
        fail(f"cannot write {out}: {problem}; choose another {option}")


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 document``, ``2 documents``, ``1,000 steps``."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def warn(message: str) -> None:
    """Something the user should know that does not stop the command: one line on stderr,
    printed literally (no markup)."""
    err_console.print(f"warning: {message}", markup=False, style="yellow", soft_wrap=True, highlight=False)
