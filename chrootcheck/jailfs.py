"""The jail's file system as a chrooted process sees it, reached only through directory fds.

``resolve()`` follows a path the way the kernel does after ``chroot(JAIL)``: an absolute symlink
restarts at the jail root, ``..`` stops at the root, more than 40 links is ELOOP. Every step is
an ``openat``/``fstatat``/``readlinkat`` relative to a descriptor inside the jail, with
``O_NOFOLLOW``: a symlink is read as text and resolved by us, never by the host's kernel, so
nothing a jail owner plants can make us touch a host path.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from dataclasses import dataclass, field

# Linux's MAXSYMLINKS: the kernel gives up with ELOOP after 40 links in one lookup.
MAX_SYMLINKS = 40

O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_PATH_ANY = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class JailOpenError(Exception):
    """The jail itself cannot be used (missing, not a folder, unreadable)."""


def open_jail(host_path: str) -> int:
    """An O_PATH descriptor on the jail root. The host path itself is the user's choice, so a
    symlink *to* the jail is followed; nothing inside it ever is."""
    try:
        st = os.stat(host_path)
    except FileNotFoundError:
        raise JailOpenError(f"jail {host_path!r} does not exist") from None
    except PermissionError:
        raise JailOpenError(f"jail {host_path!r} cannot be reached: permission denied") from None
    except OSError as e:
        raise JailOpenError(f"jail {host_path!r} cannot be reached: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise JailOpenError(f"jail {host_path!r} is not a folder")
    try:
        return os.open(host_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise JailOpenError(f"jail {host_path!r} cannot be opened: {e.strerror}") from None


def join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else f"{parent}/{name}"


@dataclass
class Resolution:
    """Where an in-jail path leads. Holds an O_PATH fd on the final object when it exists."""

    requested: str
    path: str  # canonical in-jail path reached (up to the failing component on error)
    error: int | None = None  # errno: ENOENT, ELOOP, ENOTDIR, EACCES; None when found
    failed_at: str | None = None  # in-jail path of the component that failed
    stat: os.stat_result | None = None  # lstat of the final object (never a symlink if followed)
    links: list[tuple[str, str]] = field(default_factory=list)  # (link's in-jail path, target)
    dirs: list[tuple[str, os.stat_result]] = field(default_factory=list)  # folders searched
    fd: int | None = None  # O_PATH|O_NOFOLLOW fd on the final object
    parent_fd: int | None = None  # O_PATH fd on the final object's folder
    name: str | None = None  # final component's name in parent_fd

    @property
    def found(self) -> bool:
        return self.error is None

    @property
    def via_symlink(self) -> bool:
        return bool(self.links)

    def close(self) -> None:
        for fd in (self.fd, self.parent_fd):
            if fd is not None:
                os.close(fd)
        self.fd = self.parent_fd = None

    def __enter__(self) -> Resolution:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve(root_fd: int, path: str, *, follow: bool = True) -> Resolution:
    """Resolve ``path`` inside the jail whose root is ``root_fd``.

    With ``follow`` the final component's symlinks are followed too (as ``open`` does);
    without it the final component is reported as it is (as ``lstat`` does).
    """
    res = Resolution(requested=path, path="/")
    # The stack of folders walked so far: fds and names. '..' pops it and can never go above
    # the root (the kernel's chroot rule), and no '..' is ever opened on disk.
    fds: list[int] = [os.dup(root_fd)]
    names: list[str] = []
    pending: deque[str] = deque(c for c in path.split("/"))
    links = 0

    def here() -> str:
        return "/" + "/".join(names)

    try:
        while pending:
            comp = pending.popleft()
            if comp in ("", "."):
                continue
            if comp == "..":
                if names:
                    os.close(fds.pop())
                    names.pop()
                continue
            is_last = all(c in ("", ".") for c in pending)
            # "dev/urandom/" (a trailing slash or "/.") demands a folder, as the kernel does,
            # and follows a final symlink even for an lstat-like lookup.
            must_be_dir = is_last and bool(pending)
            cur = fds[-1]
            where = join(here(), comp)
            try:
                st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
            except OSError as e:
                res.path, res.error, res.failed_at = where, e.errno, where
                return res
            if stat.S_ISLNK(st.st_mode) and (follow or not is_last or must_be_dir):
                links += 1
                if links > MAX_SYMLINKS:
                    res.path, res.error, res.failed_at = where, errno.ELOOP, where
                    return res
                try:
                    target = os.readlink(comp, dir_fd=cur)
                except OSError as e:
                    res.path, res.error, res.failed_at = where, e.errno, where
                    return res
                res.links.append((where, target))
                if not target:
                    res.path, res.error, res.failed_at = where, errno.ENOENT, where
                    return res
                if target.startswith("/"):
                    while names:
                        os.close(fds.pop())
                        names.pop()
                # A trailing '/' in the target stays an empty component: it demands a folder.
                pending.extendleft(reversed(target.split("/")))
                continue
            if must_be_dir and not stat.S_ISDIR(st.st_mode):
                res.path, res.error, res.failed_at = where, errno.ENOTDIR, where
                return res
            if is_last and not must_be_dir:
                try:
                    fd = os.open(comp, O_PATH_ANY, dir_fd=cur)
                except OSError as e:
                    res.path, res.error, res.failed_at = where, e.errno, where
                    return res
                if not _same(os.fstat(fd), st):
                    os.close(fd)  # swapped under us between fstatat and openat
                    res.path, res.error, res.failed_at = where, errno.EAGAIN, where
                    return res
                res.path, res.stat, res.fd, res.name = where, st, fd, comp
                res.parent_fd = fds.pop()
                return res
            if not stat.S_ISDIR(st.st_mode):
                res.path, res.error, res.failed_at = where, errno.ENOTDIR, where
                return res
            try:
                fd = os.open(comp, O_PATH_DIR, dir_fd=cur)
            except OSError as e:
                res.path, res.error, res.failed_at = where, e.errno, where
                return res
            if not _same(os.fstat(fd), st):
                os.close(fd)
                res.path, res.error, res.failed_at = where, errno.EAGAIN, where
                return res
            fds.append(fd)
            names.append(comp)
            res.dirs.append((where, st))
        # The path named a folder we are in (or the root itself).
        res.path = here()
        res.stat = os.fstat(fds[-1])
        res.fd = fds.pop()
        res.name = names[-1] if names else None
        return res
    finally:
        for fd in fds:
            os.close(fd)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_ino == b.st_ino and a.st_dev == b.st_dev and a.st_mode == b.st_mode


def kind_of(mode: int) -> str:
    """A short word for a file type, as the reports print it."""
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "unknown file type"
