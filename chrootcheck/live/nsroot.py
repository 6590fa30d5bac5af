"""Looking at another mount namespace from its root: a container, or a chroot inside one.

A forked child joins the namespace with setns(2), which sets its root to the namespace's root
(as ``nsenter -m`` does), looks (stat "/", or resolves a path with ``jailfs.resolve`` and reads
a version string) and writes one JSON line on a pipe. The child runs no code but ours, touches
no process and exits at once; it needs root (CAP_SYS_ADMIN and CAP_SYS_CHROOT). Answers are
cached per namespace inode for one listing: ``forget`` drops them before the next one, since the
kernel reuses the inode of a namespace that is gone.
"""

from __future__ import annotations

import json
import os
import select
import stat
import time
from collections.abc import Callable
from typing import Any

from chrootcheck.jail import fs as jailfs
from chrootcheck.live import libversion
from chrootcheck.live.cdefs import CLONE_NEWNS, libc

_ROOTS: dict[int, tuple[int, int] | None] = {}
_FILES: dict[tuple[int, str], dict[str, Any] | None] = {}


def forget() -> None:
    """Drop the cached answers (a new listing: a namespace seen before may be another now)."""
    _ROOTS.clear()
    _FILES.clear()


def namespace_root(pid: int, ns_inode: int) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the root of the mount namespace PID is in; None if unknown."""
    if ns_inode not in _ROOTS:

        def look() -> Any:
            st = os.stat("/")
            return [st.st_dev, st.st_ino]

        got = _in_namespace(pid, ns_inode, look)
        _ROOTS[ns_inode] = (int(got[0]), int(got[1])) if isinstance(got, list) else None
    return _ROOTS[ns_inode]


def file_in_namespace(pid: int, ns_inode: int, path: str) -> dict[str, Any] | None:
    """What ``path`` resolves to from that namespace's root: {"found", "path", "dev", "ino",
    "version"} (the version string only for a regular file), or None if we cannot look."""
    key = (ns_inode, path)
    if key not in _FILES:

        def look() -> Any:
            root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            with jailfs.resolve(root, path) as res:
                if not res.found or res.stat is None or res.fd is None:
                    return {"found": False, "path": res.path}
                version = None
                if stat.S_ISREG(res.stat.st_mode):
                    fd = libversion.open_regular(f"/proc/self/fd/{res.fd}")
                    version = libversion.version_in_fd(fd)
                return {
                    "found": True,
                    "path": res.path,
                    "dev": res.stat.st_dev,
                    "ino": res.stat.st_ino,
                    "version": version,
                }

        got = _in_namespace(pid, ns_inode, look)
        _FILES[key] = got if isinstance(got, dict) else None
    return _FILES[key]


def _in_namespace(pid: int, ns_inode: int, look: Callable[[], Any], timeout: float = 5.0) -> Any:
    try:
        ns_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(ns_fd).st_ino != ns_inode:
            return None  # the pid was reused meanwhile
        return _ask_child(ns_fd, look, timeout)
    finally:
        os.close(ns_fd)


def _ask_child(ns_fd: int, look: Callable[[], Any], timeout: float) -> Any:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python-level cleanup, never returns
        code = 1
        try:
            os.close(r)
            if int(libc().setns(ns_fd, CLONE_NEWNS)) == 0:
                os.write(w, (json.dumps(look()) + "\n").encode())
                code = 0
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        try:
            os.kill(pid, 9)  # our own child, if it is still there
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    try:
        return json.loads(data)
    except ValueError:
        return None
