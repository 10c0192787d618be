"""Writing files so that a crash or Ctrl-C never leaves half of one."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from microgpt.errors import MicrogptError

IS_A_DIRECTORY = "it is a directory"


def target_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be written as a file (e.g. "it is a directory"), or None.

    The checks that need no writing, so a command can make them before any work."""
    path = Path(path)
    directory = path.parent
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        return f"{directory} is not a directory"
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return f"its name is too long for the file system ({len(str(path))} characters)"
        return e.strerror or str(e)
    if st is not None and stat.S_ISDIR(st.st_mode):
        return IS_A_DIRECTORY
    if st is not None and not stat.S_ISREG(st.st_mode):
        return "it exists and is not a regular file"
    if not directory.is_dir():
        return f"directory {directory} does not exist"
    if not os.access(directory, os.W_OK):
        return f"directory {directory} is not writable"
    return None


def write_atomic(path: str | Path, payload: bytes | str) -> None:
    """Write through a temporary file beside ``path`` and a rename: never half a file."""
    path = Path(path)
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    problem = target_problem(path)
    if problem is not None:
        fix = "give a file name inside it" if problem == IS_A_DIRECTORY else "choose another path"
        raise MicrogptError(f"cannot write {path}: {problem}; {fix}")
    try:
        # a short prefix: the temporary name must fit wherever the target's name fits
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:32]}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise MicrogptError(f"cannot write {path}: {e.strerror}; choose a writable path") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result is an ordinary file
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise MicrogptError(f"cannot write {path}: {e.strerror}; choose a writable path") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
