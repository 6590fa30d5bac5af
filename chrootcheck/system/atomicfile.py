"""Write an output file so that a reader sees the old content or the new one, never half.

node_exporter's textfile collector, a CI upload step or a monitoring agent may read a report
file at any moment. So every ``-o``/``FORMAT=FILE`` output is written to a temporary file in
the same folder (same file system: the rename cannot cross one), flushed with fsync, then
renamed over the target. On any error, and on SIGTERM or SIGHUP while writing (systemd stops a
unit with SIGTERM), the temporary file is removed and the old file is left as it was.

Details:
- the temporary name starts with a dot and ends in ``.tmp`` (``.chrootcheck.prom.1a2b3c.tmp``),
  so collectors that read ``*.prom`` or ``*.json`` never pick it up;
- it is created with O_EXCL and O_NOFOLLOW: a name planted in a shared folder is never
  followed or reused;
- a target that is a symlink is resolved, so the file it points at is replaced and the link
  stays;
- the new file keeps the mode (and, as root, the owner) of the file it replaces, else
  0666 less the umask, as a plain open() would;
- a target that exists and is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO)
  cannot be replaced by a rename: it is written in place, as before.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TextIO

_TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class AtomicFile:
    """A text stream for ``path``; ``commit()`` puts it in place, ``discard()`` removes it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.temp: str | None = None
        target = os.path.realpath(path)
        try:
            st: os.stat_result | None = os.stat(target)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            self.stream: TextIO = open(path, "w", encoding="utf-8")
            self.target = path
            return
        self.target = target
        folder, name = os.path.split(target)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        while True:
            temp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(temp, flags, 0o666)  # the umask applies, as for open()
            except FileExistsError:
                continue
            break
        self.temp = temp
        try:
            if st is not None:
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                if os.geteuid() == 0:
                    os.fchown(fd, st.st_uid, st.st_gid)
            self.stream = os.fdopen(fd, "w", encoding="utf-8")
        except BaseException:
            os.close(fd)
            self.discard()
            raise

    def commit(self) -> None:
        self.stream.flush()
        if self.temp is None:
            self.stream.close()
            return
        os.fsync(self.stream.fileno())
        self.stream.close()
        os.rename(self.temp, self.target)
        self.temp = None
        _fsync_folder(os.path.dirname(self.target))

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
            self.temp = None


def _fsync_folder(folder: str) -> None:
    # The rename itself is durable only once the folder is synced; best effort (some file
    # systems refuse fsync on a directory), the content is already in place.
    with contextlib.suppress(OSError):
        fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt inside the block (the default action would
    kill the process on the spot and leave a temporary file behind); restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in _TERMINATING}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def check_folder(path: str) -> str | None:
    """Why ``path`` cannot be written, in a few words; None when its folder looks writable.
    Checked before a scan, so that a long probe run is not wasted on an unwritable -o."""
    target = os.path.realpath(path)
    if os.path.isdir(target):
        return "it is a folder"
    if os.path.exists(target) and not os.path.isfile(target):  # /dev/null: written in place
        return None if os.access(target, os.W_OK) else "it is not writable"
    folder = os.path.dirname(target) or "."
    if not os.path.exists(folder):
        return f"the folder {folder} does not exist"
    if not os.path.isdir(folder):
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        return f"the folder {folder} is " + (
            "on a read-only file system" if read_only else "not writable"
        )
    return None
