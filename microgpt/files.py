"""Writing files so that a crash or Ctrl-C never leaves half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from microgpt.errors import MicrogptError


def write_atomic(path: str | Path, payload: bytes | str) -> None:
    """Write through a temporary file beside ``path`` and a rename: never half a file."""
    path = Path(path)
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise MicrogptError(f"cannot write {path}: it is a directory; give a file name inside it")
    if not directory.is_dir():
        raise MicrogptError(f"cannot write {path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
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
