"""Writing files so that a crash never leaves a half-written one behind."""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import IO


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None], overwrite: bool = True) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, flush it to disk, then
    rename it to ``path`` in one step: readers see the old file or the whole new
    one, never a part. The temporary file is removed if ``write`` fails. With
    ``overwrite=False`` an existing ``path`` raises FileExistsError first."""
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 (not mkstemp's 0o600) so the file gets the umask's usual mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the directory entry is on disk too.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open directories
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
