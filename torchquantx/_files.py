"""Writing output files whole or not at all: through a temporary name beside the target, then a rename."""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable


def temporary_path(path: str) -> str:
    """A new hidden file beside `path`, with its extension, to write before renaming it to `path`."""
    stem, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".part{ext}", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    return tmp


def save_atomic(save: Callable[[str], Any], path: str, fn: str = "torchquantx") -> str:
    """Calls save(tmp) with a temporary file beside `path`, then renames it to `path`. A failure (or
    Ctrl-C) leaves neither a partial file nor the temporary one, and an older `path` untouched. The
    file gets a new file's permissions (the umask's). Errors name `fn`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{fn}: folder {folder!r} does not exist; create it first")
    tmp = temporary_path(path)
    try:
        save(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write(path: str, data: bytes, fn: str = "torchquantx") -> str:
    """Writes `data` to `path` through save_atomic."""
    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    return save_atomic(save, path, fn)
