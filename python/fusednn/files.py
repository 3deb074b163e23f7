"""Writing files so that a crash never leaves a half-written one behind, and so that
saving never replaces something that is not a plain file.

Every file fusednn writes (``model.save``, ``save_weights``, ``ModelCheckpoint``,
``export_onnx``, the CLI's ``--out``) goes through :func:`write_atomically`:

- the data goes to a temporary file with a short name (``.fdnn-<hex>.tmp``, so a
  target name at the filesystem's 255-byte limit still saves) in the *same*
  directory as the real target, is flushed and fsynced, then renamed over the
  target, and the directory is fsynced: readers (and a crash) see the old file or
  the whole new one, never a part; the temporary file is removed on any error;
- a symlink is written *through*: the rename happens next to the regular file it
  points to (the link itself stays);
- an existing target keeps its permission bits (and, where the process may, its
  owner and group);
- an existing target with more than one hard link is updated *in place* so every
  link sees the new data: the complete new content is first written and fsynced to
  a temporary file, the target's new size is reserved with ``posix_fallocate`` (a
  full disk fails here, with the target untouched), then the content is copied in
  under an exclusive ``flock``. This copy is not atomic against a crash or power
  loss in its middle (the price of keeping the links); concurrent fusednn writers
  are serialised by the lock;
- an existing target that is not a regular file (a directory, FIFO, device node,
  socket) is refused with :class:`NotARegularFileError` before anything is written.
  Inside :func:`allow_streams` (the command line's ``--out``) a FIFO or character
  device (``/dev/null``, ``/dev/stdout``, a pipe) is instead written straight through,
  as a shell's ``>`` would, without a temporary file.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from typing import IO

try:
    import fcntl
except ImportError:  # not POSIX: in-place updates of hard-linked files are not locked
    fcntl = None  # type: ignore[assignment]

_STREAMS_OK: contextvars.ContextVar[bool] = contextvars.ContextVar("fusednn_streams_ok", default=False)


class NotARegularFileError(ValueError):
    """The save target exists and is not a regular file (or a symlink to one), so it
    is not replaced."""


@contextlib.contextmanager
def allow_streams() -> Iterator[None]:
    """Within this block, saving to an existing FIFO or character device writes into it
    directly instead of refusing (used by the command line's ``--out``)."""
    token = _STREAMS_OK.set(True)
    try:
        yield
    finally:
        _STREAMS_OK.reset(token)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_target(path: str | os.PathLike) -> None:
    """Raise :class:`NotARegularFileError` if ``path`` cannot name a file to save to:
    it ends in a path separator or names an existing directory, FIFO, device or
    socket (through any symlinks). Used by the command line to reject ``--out`` early."""
    path = os.fspath(path)
    if not path or path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise NotARegularFileError(f"{path!r} names a directory, not a file to save to")
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISREG(st.st_mode):
        if _STREAMS_OK.get() and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            return
        raise NotARegularFileError(f"{path} is {_kind(st.st_mode)}, not a regular file; refusing to replace it")


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None], overwrite: bool = True) -> None:
    """Call ``write(f)`` on a temporary file next to ``path`` (after resolving
    symlinks), flush it to disk, then rename it to the target in one step; see this
    module's docstring for symlinks, permissions, hard links and special files. With
    ``overwrite=False`` an existing ``path`` raises FileExistsError first."""
    path = os.fspath(path)
    check_target(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    try:
        st: os.stat_result | None = os.stat(path)  # through symlinks, /proc's magic ones too
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):  # FIFO/char device under allow_streams
        with open(path, "wb") as f:  # by its own name: realpath of /dev/stdout on a pipe is no path
            write(f)
        return
    real = os.path.realpath(path)
    directory = os.path.dirname(real)
    tmp = os.path.join(directory, f".fdnn-{secrets.token_hex(6)}.tmp")
    try:
        # 0o666 (not mkstemp's 0o600) so a new file gets the umask's usual mode
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise type(e)(e.errno, f"cannot save {path}: cannot create a file in {directory}: {e.strerror}",
                      directory) from None
    try:
        if st is not None:
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            with contextlib.suppress(OSError):  # only root (or the owner, for the group) may
                os.fchown(fd, st.st_uid, st.st_gid)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if st is not None and st.st_nlink > 1:
            _copy_in_place(tmp, real)
            os.unlink(tmp)
        else:
            os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _copy_in_place(src: str, dst: str) -> None:
    """Overwrite the hard-linked ``dst`` with the complete file ``src`` without
    changing its inode; space is reserved first so a full disk leaves ``dst`` as it was."""
    size = os.path.getsize(src)
    fd = os.open(dst, os.O_WRONLY)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        old_size = os.fstat(fd).st_size
        try:
            if hasattr(os, "posix_fallocate"):  # not on macOS: there a full disk can cut the copy short
                os.posix_fallocate(fd, 0, max(size, 1))
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                os.ftruncate(fd, old_size)
                raise
        with open(src, "rb") as f:
            offset = 0
            while chunk := f.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    n = os.pwrite(fd, view, offset)
                    offset, view = offset + n, view[n:]
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def _fsync_directory(directory: str) -> None:
    # The rename itself is durable only once the directory entry is on disk too.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open directories
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
