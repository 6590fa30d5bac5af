"""Looking at another mount namespace from its root: a container, or a chroot inside one.

A forked child (``system.worker``) joins the namespace with setns(2), which sets its root to
the namespace's root (as ``nsenter -m`` does), looks (stat "/", or resolves a path with
``jailfs.resolve`` and reads a version string) and answers with one typed message. The child
runs no code but ours, touches no process and exits at once; it needs root (CAP_SYS_ADMIN and
CAP_SYS_CHROOT). Answers are cached per namespace inode for one listing: ``forget`` drops
them before the next one, since the kernel reuses the inode of a namespace that is gone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chrootcheck.jail import fs as jailfs
from chrootcheck.live import libversion
from chrootcheck.system import libc, worker


@dataclass(frozen=True)
class RootIs:
    """The namespace's root directory."""

    dev: int
    ino: int


@dataclass(frozen=True)
class FileIs:
    """Where a path leads from the namespace's root (``dev``/``ino`` when found)."""

    found: bool
    path: str
    dev: int | None = None
    ino: int | None = None
    version: str | None = None


_ANSWER = worker.Protocol(RootIs, FileIs, max_line=64 << 10, max_bytes=64 << 10, max_messages=1)
_ROOTS: dict[int, tuple[int, int] | None] = {}
_FILES: dict[tuple[int, str], dict[str, Any] | None] = {}


def forget() -> None:
    """Drop the cached answers (a new listing: a namespace seen before may be another now)."""
    _ROOTS.clear()
    _FILES.clear()


def namespace_root(pid: int, ns_inode: int) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the root of the mount namespace PID is in; None if unknown."""
    if ns_inode not in _ROOTS:

        def look() -> RootIs:
            st = os.stat("/")
            return RootIs(st.st_dev, st.st_ino)

        got = _in_namespace(pid, ns_inode, look)
        _ROOTS[ns_inode] = (got.dev, got.ino) if isinstance(got, RootIs) else None
    return _ROOTS[ns_inode]


def file_in_namespace(pid: int, ns_inode: int, path: str) -> dict[str, Any] | None:
    """What ``path`` resolves to from that namespace's root: {"found", "path", "dev", "ino",
    "version"} (the version string only for a regular file), or None if we cannot look."""
    key = (ns_inode, path)
    if key not in _FILES:

        def look() -> FileIs:
            root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            with jailfs.resolve(root, path) as res:
                if not res.found or res.stat is None or res.fd is None:
                    return FileIs(False, res.path)
                version = None
                if stat.S_ISREG(res.stat.st_mode):
                    fd = libversion.open_regular(f"/proc/self/fd/{res.fd}")
                    version = libversion.version_in_fd(fd)
                return FileIs(True, res.path, res.stat.st_dev, res.stat.st_ino, version)

        got = _in_namespace(pid, ns_inode, look)
        if not isinstance(got, FileIs):
            _FILES[key] = None
        elif not got.found:
            _FILES[key] = {"found": False, "path": got.path}
        else:
            _FILES[key] = {
                "found": True,
                "path": got.path,
                "dev": got.dev,
                "ino": got.ino,
                "version": got.version,
            }
    return _FILES[key]


def _in_namespace(
    pid: int, ns_inode: int, look: Callable[[], object], timeout: float = 5.0
) -> object | None:
    """The message ``look`` returns, run in a child inside PID's mount namespace; None if that
    cannot be done (the pid is gone or reused, no privilege, no answer in time)."""
    try:
        ns_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(ns_fd).st_ino != ns_inode:
            return None  # the pid was reused meanwhile
        libc.load()  # before the fork: the child opens no library

        def child(out: worker.Channel) -> None:
            libc.setns(ns_fd, libc.CLONE_NEWNS)
            out.send(look())

        outcome = worker.run(child, _ANSWER, timeout)
        return outcome.messages[0] if outcome.ok and outcome.messages else None
    finally:
        os.close(ns_fd)
