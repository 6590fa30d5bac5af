"""The jail's file system as a chrooted process sees it, reached only through directory fds.

``resolve()`` follows a path the way the kernel does after ``chroot(JAIL)``: an absolute symlink
restarts at the jail root, ``..`` stops at the root, more than 40 links is ELOOP. Every step is
an ``openat``/``fstatat``/``readlinkat`` relative to a descriptor inside the jail, with
``O_NOFOLLOW``: a symlink is read as text and resolved by us, never by the host's kernel, so
nothing a jail owner plants can make us touch a host path.

``open_regular()`` / ``read_regular()`` are the only way chrootcheck reads the content of a file
someone else controls (a libcrypto copy in the jail, openssl.cnf and its includes): the node is
pinned with ``O_PATH`` and typed with ``fstat`` before anything opens it for reading, so a FIFO
or a device swapped in after a listing is named, never opened; the read is capped, never mapped
(a file truncated under an ``mmap`` kills the reader with SIGBUS).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

# Linux's MAXSYMLINKS: the kernel gives up with ELOOP after 40 links in one lookup.
MAX_SYMLINKS = 40

O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_PATH_ANY = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


# A lookup step whose node is swapped under us (fstatat said one thing, openat or readlinkat met
# another) is retried this many times per resolve() before the path counts as changing.
MAX_RETRIES = 16
# Errors that contradict the fstatat just made (readlinkat: EINVAL "not a symlink"; opening a
# folder: ENOTDIR, ELOOP "a symlink now"; ENOENT "gone"; EAGAIN: another inode): proof that the
# node changed, even if a second swap has put the first one back by the time we look again.
_CONTRADICTIONS = frozenset({errno.EINVAL, errno.ENOTDIR, errno.ELOOP, errno.ENOENT, errno.EAGAIN})
READ_CHUNK = 1 << 20


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
    retries = 0

    def here() -> str:
        return "/" + "/".join(names)

    def fail(where: str, err: int | None) -> Resolution:
        res.path, res.error, res.failed_at = where, err or errno.EIO, where
        return res

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
            final = is_last and not must_be_dir
            cur = fds[-1]
            where = join(here(), comp)
            try:
                st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
            except OSError as e:
                return fail(where, e.errno)
            # A step that fails after the fstatat, on a node that is no longer the one it saw
            # (a live jail: a symlink replaced by a file between fstatat and readlinkat gives
            # EINVAL), is a race, not an answer: look at the component again, a bounded number
            # of times, then say it is changing (EAGAIN).
            err: int | None = None
            if stat.S_ISLNK(st.st_mode) and (follow or not is_last or must_be_dir):
                try:
                    target = os.readlink(comp, dir_fd=cur)
                except OSError as e:
                    err = e.errno
                else:
                    links += 1
                    if links > MAX_SYMLINKS:
                        return fail(where, errno.ELOOP)
                    res.links.append((where, target))
                    if not target:
                        return fail(where, errno.ENOENT)
                    if target.startswith("/"):
                        while names:
                            os.close(fds.pop())
                            names.pop()
                    # A trailing '/' in the target stays an empty component: it demands a
                    # folder.
                    pending.extendleft(reversed(target.split("/")))
                    continue
            elif not final and not stat.S_ISDIR(st.st_mode):
                return fail(where, errno.ENOTDIR)
            else:
                try:
                    fd = os.open(comp, O_PATH_ANY if final else O_PATH_DIR, dir_fd=cur)
                except OSError as e:
                    err = e.errno
                else:
                    if _same(os.fstat(fd), st):
                        if final:
                            res.path, res.stat, res.fd, res.name = where, st, fd, comp
                            res.parent_fd = fds.pop()
                            return res
                        fds.append(fd)
                        names.append(comp)
                        res.dirs.append((where, st))
                        continue
                    os.close(fd)  # swapped under us between fstatat and openat
                    err = errno.EAGAIN
            assert err is not None
            if err not in _CONTRADICTIONS and not _changed(comp, cur, st):
                return fail(where, err)
            retries += 1
            if retries > MAX_RETRIES:
                return fail(where, errno.EAGAIN)
            pending.appendleft(comp)
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


def _changed(name: str, dir_fd: int, before: os.stat_result) -> bool:
    """Whether ``name`` is no longer the node ``before`` described (or is gone)."""
    try:
        return not _same(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), before)
    except OSError:
        return True


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


# -- reading files that someone else controls --------------------------------------------------


class RefusedRead(OSError):
    """A file that was not read (or not to its end), with the reason a report shows.

    ``errno`` is the system's error when there was one (ENOENT, EACCES ...), else ``EINVAL``
    (not a regular file) or ``EFBIG`` (over the cap); ``strerror`` is the reason in words;
    ``mode`` and ``size`` describe the node when it was seen.
    """

    def __init__(self, err: int | None, reason: str, *, mode: int = 0, size: int = 0) -> None:
        super().__init__(err, reason)
        self.mode = mode
        self.size = size


def _bytes_text(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n} bytes"


def open_regular(
    name: str, *, dir_fd: int | None = None, follow: bool = False, limit: int
) -> tuple[int, os.stat_result]:
    """A read-only descriptor on the regular file ``name`` (relative to ``dir_fd``), and its
    fstat. Raises ``RefusedRead`` with the reason otherwise; the caller closes the fd.

    The node is first pinned with ``O_PATH`` (which opens nothing: no driver's open, no FIFO
    rendezvous) and typed by ``fstat`` on that descriptor; only a regular file of at most
    ``limit`` bytes is then opened for reading, through ``/proc/self/fd`` (the very inode that
    was checked, whatever the name leads to by then), with ``O_NONBLOCK`` and ``O_NOCTTY``.
    A symlink is never followed unless ``follow`` (host paths the administrator chose).
    """
    flags = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        pinned = os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        raise RefusedRead(e.errno, f"cannot open: {e.strerror or e}") from None
    try:
        st = os.fstat(pinned)
        if not stat.S_ISREG(st.st_mode):
            raise RefusedRead(
                errno.EINVAL, f"a {kind_of(st.st_mode)}, not a regular file", mode=st.st_mode
            )
        if st.st_size > limit:
            raise RefusedRead(
                errno.EFBIG,
                f"{st.st_size} bytes, more than the {_bytes_text(limit)} chrootcheck reads",
                mode=st.st_mode,
                size=st.st_size,
            )
        try:
            fd = os.open(
                f"/proc/self/fd/{pinned}",
                os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
            )
        except OSError as e:
            why = e.strerror or str(e)
            if e.errno == errno.ENOENT:  # the pinned inode is there: /proc is not
                why = "/proc is not mounted, and nothing is opened for reading without it"
            raise RefusedRead(
                e.errno, f"cannot open: {why}", mode=st.st_mode, size=st.st_size
            ) from None
    finally:
        os.close(pinned)
    return fd, st


def read_chunks(fd: int, limit: int, chunk: int = READ_CHUNK) -> Iterator[bytes]:
    """The file's bytes in pieces, never more than ``limit`` in all. A file that shrinks while
    it is read simply ends early (read(2) returns 0; no mapping, so no SIGBUS)."""
    left = limit
    while left > 0:
        try:
            data = os.read(fd, min(chunk, left))
        except OSError as e:
            raise RefusedRead(e.errno, f"read failed: {e.strerror or e}") from None
        if not data:
            return
        left -= len(data)
        yield data


def read_regular(
    name: str, *, dir_fd: int | None = None, follow: bool = False, limit: int
) -> bytes:
    """All of a regular file of at most ``limit`` bytes (see ``open_regular``). A file that
    grows past ``limit`` while it is read is refused, not cut."""
    fd, st = open_regular(name, dir_fd=dir_fd, follow=follow, limit=limit)
    try:
        data = b"".join(read_chunks(fd, limit + 1))
    finally:
        os.close(fd)
    if len(data) > limit:
        raise RefusedRead(
            errno.EFBIG,
            f"grew past the {_bytes_text(limit)} chrootcheck reads while it was read",
            mode=st.st_mode,
            size=len(data),
        )
    return data
