"""Walk the whole jail through directory fds and note what a jail audit must see.

Mount points come from /proc/self/mountinfo (it also sees bind mounts of the same file
system, which st_dev cannot). Regular files and folders are counted, not reported; device nodes, sockets and FIFOs are
noted (never opened), copies of libcrypto get their version read as text (never loaded),
unreadable folders and mount points are noted. Symlinks are never followed. /proc and /sys
at the jail's root are not walked. The walk stays on the jail's file system unless told.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chrootcheck.jailfs import join
from chrootcheck.model import WalkStats
from chrootcheck.mounts import Mount

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
SKIP_AT_ROOT = frozenset({"proc", "sys"})
# A jail nested deeper than this is pathological; the walk notes it instead of running out of fds.
MAX_DEPTH = 256
PROGRESS_EVERY = 4096
LIBCRYPTO_MAX_BYTES = 256 * 1024 * 1024
_VERSION = re.compile(rb"OpenSSL \d+\.\d+\.\d+[a-z]{0,2}(?:-[A-Za-z0-9.+~]+)? {1,2}\d{1,2} [A-Z][a-z]{2} \d{4}")


@dataclass(frozen=True)
class Met:
    """Something the walk met that a report shows."""

    path: str  # in the jail
    kind: str  # "device" | "socket" | "fifo" | "libcrypto" | "unreadable" | "mount" | "too-deep"
    mode: int = 0
    rdev: int = 0
    size: int = 0
    detail: str = ""


@dataclass
class WalkResult:
    met: list[Met] = field(default_factory=list)
    stats: WalkStats = field(default_factory=WalkStats)


def is_libcrypto_name(name: str) -> bool:
    return name.startswith("libcrypto") and ".so" in name


def read_libcrypto_version(dir_fd: int, name: str) -> tuple[str | None, int]:
    """The version string compiled into a libcrypto, read as bytes: the scan never loads code."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None, 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return None, st.st_size
        if st.st_size > LIBCRYPTO_MAX_BYTES:
            return None, st.st_size
        with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as m:
            found = _VERSION.search(m)  # type: ignore[call-overload]
            return (found.group(0).decode("ascii") if found else None), st.st_size
    except (OSError, ValueError):
        return None, 0
    finally:
        os.close(fd)


def walk(
    root_fd: int,
    *,
    mounts: dict[str, Mount],
    cross_mounts: bool = False,
    progress: Callable[[int], None] | None = None,
) -> WalkResult:
    result = WalkResult()
    started = time.perf_counter()
    entries = directories = unreadable = mounts_skipped = 0
    met = result.met
    try:
        first = os.open(".", O_DIR, dir_fd=root_fd)
    except OSError as e:
        met.append(Met("/", "unreadable", detail=e.strerror or str(e)))
        result.stats = WalkStats(unreadable=1)
        return result

    # Depth-first; one open fd per level. Each frame: (fd, in-jail path, sub-folders to visit).
    stack: list[tuple[int, str, list[str]]] = []

    def scan(fd: int, path: str, depth: int) -> list[str]:
        nonlocal entries, unreadable, mounts_skipped
        subdirs: list[str] = []
        try:
            with os.scandir(fd) as it:
                listing = list(it)
        except OSError as e:
            unreadable += 1
            met.append(Met(path, "unreadable", detail=e.strerror or str(e)))
            return subdirs
        before = entries
        entries += len(listing)
        if progress is not None and entries // PROGRESS_EVERY != before // PROGRESS_EVERY:
            progress(entries)
        at_root = path == "/"
        for entry in listing:
            # The hot loop (100k entries): d_type answers is_dir/is_file without a stat.
            try:
                if entry.is_dir(follow_symlinks=False):
                    name = entry.name
                    if at_root and name in SKIP_AT_ROOT:
                        continue
                    if mounts:
                        child = join(path, name)
                        mount = mounts.get(child)
                        if mount is not None and not cross_mounts:
                            mounts_skipped += 1
                            met.append(Met(child, "mount", detail=mount.fstype))
                            continue
                    subdirs.append(name)
                elif entry.is_file(follow_symlinks=False):
                    name = entry.name
                    if name.startswith("libcrypto") and ".so" in name:
                        version, size = read_libcrypto_version(fd, name)
                        met.append(Met(join(path, name), "libcrypto", size=size, detail=version or ""))
                elif not entry.is_symlink():
                    st = entry.stat(follow_symlinks=False)
                    mode = st.st_mode
                    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                        kind = "device"
                    elif stat.S_ISSOCK(mode):
                        kind = "socket"
                    elif stat.S_ISFIFO(mode):
                        kind = "fifo"
                    else:
                        continue
                    met.append(Met(join(path, entry.name), kind, mode=mode, rdev=st.st_rdev))
            except OSError:
                # Gone between the listing and the look (a live jail changes): not a finding.
                continue
        if depth + 1 >= MAX_DEPTH and subdirs:
            met.extend(Met(join(path, n), "too-deep", detail=f"deeper than {MAX_DEPTH} levels")
                       for n in subdirs)
            subdirs = []
        return subdirs

    stack.append((first, "/", scan(first, "/", 0)))
    directories = 1
    try:
        while stack:
            fd, path, todo = stack[-1]
            if not todo:
                os.close(fd)
                stack.pop()
                continue
            name = todo.pop()
            child = join(path, name)
            try:
                cfd = os.open(name, O_DIR, dir_fd=fd)
            except OSError as e:
                unreadable += 1
                met.append(Met(child, "unreadable", detail=e.strerror or str(e)))
                continue
            directories += 1
            stack.append((cfd, child, scan(cfd, child, len(stack))))
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    result.stats = WalkStats(
        entries=entries,
        directories=directories,
        unreadable=unreadable,
        mounts_skipped=mounts_skipped,
        seconds=round(time.perf_counter() - started, 4),
    )
    return result
