"""May this library be loaded here? Decided once, by identity, before anything loads it.

chrootcheck runs as root on jails that less-trusted users control. A library's constructors run
the moment it is dlopen()ed, so a ``--libcrypto`` is checked before any stage loads it:

- it must not lie inside a jail being scanned, whatever path leads there (``..``, a symlink
  from outside pointing in, the jail named through a symlink, a bind mount of the jail or of a
  folder in it). The library's real ancestors are compared with each jail's root by
  (st_dev, st_ino), and the file's path within its file system (mountinfo's per-mount root)
  with the jail's;
- neither the file nor any folder above it may be writable by another user: owned by root (or
  by the user running chrootcheck), and not group- or world-writable (a sticky folder such as
  /tmp is fine: nobody can replace an entry he does not own).

The path is resolved component by component through O_PATH descriptors (``O_NOFOLLOW``, each
symlink read and followed by us), so the folders checked are the folders the file really sits
in. The file itself ends as an open descriptor: the loader dlopen()s ``/proc/self/fd/N``, so
the file checked is the file loaded, even if someone renames another one into its place.

A library that fails the check is refused unless the user consents
(``--allow-jail-libcrypto``); even then this process never loads it as root: the probe's
children load it after dropping privileges (``chrootcheck.probe.isolated``).
"""

from __future__ import annotations

import os
import re
import stat
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chrootcheck.report.errors import ToolError

if TYPE_CHECKING:
    pass

MAX_SYMLINKS = 40  # Linux's MAXSYMLINKS
_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CONSENT_HINT = (
    "loading code a less-trusted user controls needs explicit consent: "
    "--allow-jail-libcrypto, and then only the probe's unprivileged children load it"
)


@dataclass(frozen=True)
class JailRoot:
    path: str  # as given
    dev: int
    ino: int
    fs_path: tuple[int, str] | None  # (st_dev, path within its file system), from mountinfo


@dataclass(frozen=True)
class CheckedLibrary:
    """A library file, checked and held open. ``concern`` says why root must not load it."""

    path: str  # as the user named it
    real: str  # where it really is (its ancestors as resolved, then its name)
    fd: int  # O_RDONLY, close-on-exec: the file that was checked
    dev: int
    ino: int
    concern: str | None  # None: trusted; else why it is code a less-trusted user controls
    jails: tuple[JailRoot, ...] = ()  # what it was checked against (its siblings are too)


class CheckError(Exception):
    """The path does not lead to a regular file (message: one line, without the path)."""


def jail_roots(jails: Iterable[str]) -> tuple[JailRoot, ...]:
    """The identity of each jail that exists (a missing one is the inspector's error)."""
    roots = []
    for jail in jails:
        try:
            fd = os.open(jail, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except (OSError, ValueError):
            continue
        try:
            st = os.fstat(fd)
            roots.append(JailRoot(jail, st.st_dev, st.st_ino, _fs_path(fd, st.st_dev)))
        finally:
            os.close(fd)
    return tuple(roots)


def check_library(path: str, jails: Sequence[JailRoot] = ()) -> CheckedLibrary:
    """Resolve ``path`` to a regular file and judge it. Raises CheckError when there is no
    such file; the caller closes ``fd`` (or keeps it while the library is loaded)."""
    if not path or "\0" in path:
        raise CheckError("not a file name")
    ancestors, name, fd = _resolve(os.path.join(os.getcwd(), path))
    try:
        file_st = os.fstat(fd)
        real = os.path.join(ancestors[-1][0], name)
        concern = _ownership_concern(ancestors, file_st, real) or _jail_concern(
            ancestors, fd, file_st, jails
        )
    except BaseException:
        os.close(fd)
        raise
    finally:
        for _, d in ancestors:
            os.close(d)
    return CheckedLibrary(path, real, fd, file_st.st_dev, file_st.st_ino, concern, tuple(jails))


def check_folder(path: str, jails: Sequence[JailRoot] = ()) -> str | None:
    """``check_library``'s judgement for a folder whose files OpenSSL reads (a config's
    include folder): why root must not trust it, or None. CheckError when it is not a
    folder."""
    if not path or "\0" in path:
        raise CheckError("not a folder name")
    ancestors, name, fd = _resolve(os.path.join(os.getcwd(), path), folder=True)
    try:
        st = os.fstat(fd)
        real = os.path.join(ancestors[-1][0], name)
        return _ownership_concern(ancestors, st, real) or _jail_concern(ancestors, fd, st, jails)
    finally:
        os.close(fd)
        for _, d in ancestors:
            os.close(d)


def check_mapped(
    name: str, shown: str, inside: str | None, jails: Sequence[JailRoot] = ()
) -> CheckedLibrary:
    """A running process's library through ``/proc/PID/map_files/START-END`` (``name``): the
    very file it mapped, even deleted or replaced, opened by the kernel's reference without
    resolving any path (root only). ``shown``: its path as /proc/PID/maps prints it;
    ``inside``: the jail it lies in (by its path below the process's root), else None. Judged
    by what is left to judge: a file in the jail, or another user's or writable by one, or
    one that still has a name we did not check, is not root's to load."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise CheckError(_reason(e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckError("not a regular file")
        concern = None
        if inside is not None:
            concern = f"it lies inside the jail {inside}"
        elif why := _writable_by_others(st):
            concern = f"another user controls it (the running file is {why})"
        elif st.st_nlink > 0:
            concern = "the running file has another name, whose folders were not checked"
    except BaseException:
        os.close(fd)
        raise
    return CheckedLibrary(name, shown, fd, st.st_dev, st.st_ino, concern, tuple(jails))


def refuse_untrusted(lib: CheckedLibrary, consent: bool, hint: str = CONSENT_HINT) -> None:
    """The one refusal: a library that fails the check, without the user's consent."""
    if lib.concern is not None and not consent:
        raise ToolError(f"refusing to load {lib.path}: {lib.concern}", hint)


# -- resolution -----------------------------------------------------------------------------


def _resolve(path: str, folder: bool = False) -> tuple[list[tuple[str, int]], str, int]:
    """(folder path, O_PATH fd) from / down to the file's folder, its name, an O_RDONLY fd
    (``folder``: the path leads to a folder; an O_PATH fd on it)."""
    parts = deque(p for p in path.split("/") if p not in ("", "."))
    stack: list[tuple[str, int]] = [("/", os.open("/", _O_PATH_DIR))]
    links = 0
    try:
        while parts:
            name = parts.popleft()
            where, dfd = stack[-1]
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[1])
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except OSError as e:
                raise CheckError(_reason(e)) from None
            full = os.path.join(where, name)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise CheckError("too many levels of symbolic links")
                target = os.readlink(name, dir_fd=dfd)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop()[1])
                parts.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            if parts:
                if not stat.S_ISDIR(st.st_mode):
                    raise CheckError("not a directory on the way")
                try:
                    stack.append((full, os.open(name, _O_PATH_DIR, dir_fd=dfd)))
                except OSError as e:
                    raise CheckError(_reason(e)) from None
                continue
            if folder:
                if not stat.S_ISDIR(st.st_mode):
                    raise CheckError("not a folder")
                try:
                    return stack, name, os.open(name, _O_PATH_DIR, dir_fd=dfd)
                except OSError as e:
                    raise CheckError(_reason(e)) from None
            return stack, name, _open_file(name, dfd)
        raise CheckError("is a directory")
    except BaseException:
        for _, d in stack:
            os.close(d)
        raise


def _open_file(name: str, dfd: int) -> int:
    # O_PATH first: nothing is opened for reading (a FIFO would block, a device could react)
    # until fstat says it is a regular file; reopening through /proc keeps the same inode.
    try:
        pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as e:
        raise CheckError(_reason(e)) from None
    try:
        mode = os.fstat(pfd).st_mode
        if stat.S_ISDIR(mode):
            raise CheckError("is a directory")
        if stat.S_ISLNK(mode):
            raise CheckError("changed while it was checked")
        if not stat.S_ISREG(mode):
            raise CheckError("not a regular file")
        try:
            return os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise CheckError(_reason(e)) from None
    finally:
        os.close(pfd)


def _reason(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    return (e.strerror or str(e)).lower()


# -- the judgement --------------------------------------------------------------------------


def _writable_by_others(st: os.stat_result) -> str | None:
    mode = st.st_mode
    if st.st_uid not in (0, os.geteuid()):
        return f"owned by uid {st.st_uid}"
    if stat.S_ISDIR(mode) and mode & stat.S_ISVTX:
        return None  # sticky (/tmp): others cannot replace what they do not own
    if mode & stat.S_IWOTH:
        return "writable by every user"
    if mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid()):
        return f"writable by group {st.st_gid}"
    return None


def _ownership_concern(
    ancestors: list[tuple[str, int]], file_st: os.stat_result, real: str
) -> str | None:
    why = _writable_by_others(file_st)
    if why:
        return f"another user controls it ({real} is {why})"
    for where, dfd in ancestors:
        why = _writable_by_others(os.fstat(dfd))
        if why:
            return f"another user controls it (the folder {where} is {why})"
    return None


def _jail_concern(
    ancestors: list[tuple[str, int]], fd: int, file_st: os.stat_result, jails: Sequence[JailRoot]
) -> str | None:
    if not jails:
        return None
    ids = {(s.st_dev, s.st_ino) for s in (os.fstat(d) for _, d in ancestors)}
    for jail in jails:
        if (jail.dev, jail.ino) in ids:
            return f"it lies inside the jail {jail.path}"
    # A folder of the jail bind-mounted elsewhere: the same files under another mount, whose
    # ancestors are not the jail's. mountinfo's root field gives both paths within the file
    # system; a file below the jail's path there is in the jail.
    mine = _fs_path(fd, file_st.st_dev)
    for jail in jails:
        if mine is None or jail.fs_path is None or mine[0] != jail.fs_path[0]:
            continue
        base = jail.fs_path[1].rstrip("/") + "/"
        if mine[1].startswith(base):
            return f"it lies inside the jail {jail.path} (reached through a bind mount)"
    return None


_OCTAL = re.compile(r"\\([0-7]{3})")


def _fs_path(fd: int, dev: int) -> tuple[int, str] | None:
    """(st_dev, the path of the open file within its file system), or None if unknown."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
            mnt_id = next((ln.split()[1] for ln in f if ln.startswith("mnt_id:")), None)
        where = os.readlink(f"/proc/self/fd/{fd}")
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            fields = next((ln.split() for ln in f if ln.split(" ", 1)[0] == mnt_id), None)
    except (OSError, IndexError, StopIteration):
        return None
    if fields is None or len(fields) < 5 or where.endswith(" (deleted)"):
        return None
    root, point = (_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), x) for x in fields[3:5])
    if point == "/":
        rest = where
    elif where == point or where.startswith(point + "/"):
        rest = where[len(point) :]
    else:
        return None
    return dev, os.path.normpath(root.rstrip("/") + "/" + rest.lstrip("/"))


# -- a library chosen once for a whole run -------------------------------------------------
