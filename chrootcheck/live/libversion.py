"""The OpenSSL version string in a library's (or a static binary's) bytes, read without loading.

Loading a library runs its constructors; a file from a jail or a container is code its owner
controls, and chrootcheck runs as root. So the version is read as data: the ``OpenSSL x.y.z
DD Mon YYYY`` string that ``OpenSSL_version(OPENSSL_VERSION)`` returns is stored verbatim in
libcrypto (and in a binary that links OpenSSL statically).

The file is opened with O_NONBLOCK (a FIFO planted in its place cannot block us), must be a
regular file by fstat, is read with read(2) in chunks up to a size cap, and never mmap'ed: a
file truncated under an mmap raises SIGBUS, which would kill chrootcheck.
"""

from __future__ import annotations

import os
import re
import stat

# 1.0.2k-fips, 1.1.1w (two spaces before the date), 3.0.19, 3.2.0-alpha1 ...
VERSION_RE = re.compile(
    rb"OpenSSL (\d+\.\d+\.\d+[a-z]{0,2}(?:-[0-9A-Za-z.]+)?) {1,2}(\d{1,2} [A-Z][a-z]{2} \d{4})"
)
SIZE_CAP = 128 * 1024 * 1024  # no libcrypto or daemon is near this; a sparse 1 TB file is
CHUNK = 1024 * 1024
_OVERLAP = 64  # a version string cut between two chunks is found in the next one

READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class NotRegular(OSError):
    """The path is not a regular file (a device, a FIFO, a folder ...)."""


def open_regular(path: str, *, dir_fd: int | None = None) -> int:
    """Open a regular file for reading without blocking or following a final symlink.

    ``path`` may be a /proc magic link (/proc/PID/map_files/..., /proc/self/fd/N): those are
    opened as the kernel resolves them (the mapped file itself), which is what we want there;
    callers pass O_PATH descriptors from ``jailfs.resolve`` as /proc/self/fd/N.
    """
    fd = os.open(path, READ_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(0, f"{path}: not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def version_in_fd(fd: int, cap: int = SIZE_CAP) -> str | None:
    """The first OpenSSL version string in the open file, e.g. "OpenSSL 3.0.19 27 Jan 2026"."""
    offset = 0
    tail = b""
    while offset < cap:
        chunk = os.pread(fd, min(CHUNK, cap - offset), offset)
        if not chunk:
            return None
        data = tail + chunk
        m = VERSION_RE.search(data)
        if m is not None:
            return _text(m)
        tail = data[-_OVERLAP:]
        offset += len(chunk)
    return None


def version_of(path: str) -> str | None:
    """Open ``path`` as ``open_regular`` does and read its version string (OSError if not)."""
    fd = open_regular(path)
    try:
        return version_in_fd(fd)
    finally:
        os.close(fd)


def _text(m: re.Match[bytes]) -> str:
    return f"OpenSSL {m.group(1).decode('ascii')} {m.group(2).decode('ascii')}"


def short(version: str | None) -> str:
    """ "OpenSSL 3.0.19 27 Jan 2026" -> "3.0.19" (None -> "unknown")."""
    if not version:
        return "unknown"
    parts = version.split()
    return parts[1] if len(parts) > 1 else version
