"""Walk the whole jail through directory fds and note what a jail audit must see.

Mount points come from /proc/self/mountinfo (it also sees bind mounts of the same file
system, which st_dev cannot). Regular files and folders are counted, not reported; device
nodes, sockets and FIFOs are noted (never opened), copies of libcrypto get their version read
as text (never loaded, never mapped: ``jailfs.open_regular``), unreadable folders and mount
points are noted. Symlinks are never
followed. /proc and /sys at the jail's root are not walked. The walk stays on the jail's file
system unless told.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chrootcheck.jail.fs import RefusedRead, join, open_regular, read_chunks
from chrootcheck.jail.mounts import Mount
from chrootcheck.report.model import WalkStats
from chrootcheck.system import procs
from chrootcheck.system.worker import Channel, Protocol, Worker

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
SKIP_AT_ROOT = frozenset({"proc", "sys"})
# A jail nested deeper than this is pathological; the walk notes it instead of running out of fds.
MAX_DEPTH = 256
PROGRESS_EVERY = 4096
# A jail this large is walked by two processes (the machines here have two cores or more).
SPLIT_AFTER = 8192
LIBCRYPTO_MAX_BYTES = 256 * 1024 * 1024
# Bounded, so a version string cut by a chunk boundary is found in the overlap kept.
_VERSION = re.compile(
    rb"OpenSSL \d{1,4}\.\d{1,4}\.\d{1,4}[a-z]{0,2}(?:-[A-Za-z0-9.+~]{1,64})? {1,2}\d{1,2} "
    rb"[A-Z][a-z]{2} \d{4}"
)
_VERSION_OVERLAP = 128
# A folder of the listing that is gone (ENOENT) or no longer a folder (ENOTDIR; ELOOP: a
# symlink now) when it is opened: a live jail, not an unreadable folder.
_CHANGED = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


@dataclass(frozen=True)
class Met:
    """Something the walk met that a report shows."""

    path: str  # in the jail
    kind: str  # "device" | "socket" | "fifo" | "libcrypto" | "unreadable" | "mount" | "too-deep"
    mode: int = 0
    rdev: int = 0
    size: int = 0
    detail: str = ""
    note: str = ""  # libcrypto: why its version was not read
    # too-deep: ``path`` is the folder where the walk stopped, ``size`` how many sub-folders
    # it did not enter, ``detail`` the first few of their names joined by "/".


@dataclass(frozen=True)
class Counts:
    """The split walk's helper, last message: what it counted (``Met`` messages come first)."""

    entries: int
    directories: int
    unreadable: int
    mounts_skipped: int


# The helper runs only our code (it reads names the jail's owner chose, nothing more); past
# these bounds the parent walks the helper's share itself.
_SPLIT = Protocol(Met, Counts, max_line=1 << 20, max_bytes=256 << 20, max_messages=4_000_000)


@dataclass
class WalkResult:
    met: list[Met] = field(default_factory=list)
    stats: WalkStats = field(default_factory=WalkStats)


def read_libcrypto_version(dir_fd: int, name: str) -> tuple[str | None, int, str]:
    """The version string compiled into a libcrypto, read as bytes (the scan never loads code)
    in chunks: (version or None, size, why it was not read or "").

    The jail's owner controls the file: it may be swapped for a FIFO or a device after the
    listing (named, never opened), truncated while it is read (the read ends early), or huge
    (not read past ``LIBCRYPTO_MAX_BYTES``). Raises FileNotFoundError when it is gone."""
    try:
        fd, st = open_regular(name, dir_fd=dir_fd, limit=LIBCRYPTO_MAX_BYTES)
    except RefusedRead as e:
        if e.errno == errno.ENOENT:  # gone since the listing: the caller skips it
            raise FileNotFoundError(e.errno, e.strerror) from None
        why = e.strerror or str(e)
        if e.mode and not stat.S_ISREG(e.mode):
            why += " (it changed after the folder was listed)"
        return None, e.size, f"not read: {why}"
    try:
        tail = b""
        for chunk in read_chunks(fd, LIBCRYPTO_MAX_BYTES):
            buf = tail + chunk
            found = _VERSION.search(buf)
            if found:
                return found.group(0).decode("ascii"), st.st_size, ""
            tail = buf[-_VERSION_OVERLAP:]
        return None, st.st_size, ""
    except RefusedRead as e:
        return None, st.st_size, f"not read to its end: {e.strerror or e}"
    finally:
        os.close(fd)


def walk(
    root_fd: int,
    *,
    mounts: dict[str, Mount],
    cross_mounts: bool = False,
    progress: Callable[[int], None] | None = None,
    split_after: int | None = SPLIT_AFTER,
) -> WalkResult:
    """Walk the jail. A large jail is split once, after ``split_after`` entries: a forked
    child walks half of the folders still to visit while this process walks the other half
    (threads do not help: the GIL serialises the per-entry work)."""
    started = time.perf_counter()
    w = _Walk(mounts, cross_mounts, progress, split_after)
    try:
        first = os.open(".", O_DIR, dir_fd=root_fd)
    except OSError as e:
        w.met.append(Met("/", "unreadable", detail=e.strerror or str(e)))
        return WalkResult(w.met, WalkStats(unreadable=1))
    w.directories = 1
    try:
        w.drain([(first, "/", w.listing(first, "/", 0))])
        w.join()
    except BaseException:
        w.abandon()  # interrupted (Ctrl-C, SIGTERM): the helper must not walk on alone
        raise
    stats = WalkStats(
        entries=w.entries,
        directories=w.directories,
        unreadable=w.unreadable,
        mounts_skipped=w.mounts_skipped,
        seconds=round(time.perf_counter() - started, 4),
    )
    return WalkResult(w.met, stats)


# One frame of the depth-first walk: an open folder, its in-jail path, sub-folders to visit.
Frame = tuple[int, str, list[str]]


class _Walk:
    def __init__(
        self,
        mounts: dict[str, Mount],
        cross_mounts: bool,
        progress: Callable[[int], None] | None,
        split_after: int | None,
    ) -> None:
        self.mounts = mounts
        self.cross_mounts = cross_mounts
        self.progress = progress
        self.split_after = split_after
        self.met: list[Met] = []
        self.entries = self.directories = self.unreadable = self.mounts_skipped = 0
        # After a split: the helper, and its share kept in reserve (dup'ed folder fds), walked
        # here if the helper fails.
        self.child: tuple[Worker, list[Frame]] | None = None

    def drain(self, stack: list[Frame]) -> None:
        """Depth-first, one open fd per level; closes every fd of ``stack``."""
        try:
            while stack:
                if self.split_after is not None and self.entries >= self.split_after:
                    self.split_after = None
                    self.split(stack)
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
                    if e.errno in _CHANGED:  # no longer a folder since the listing: skip
                        continue
                    self.unreadable += 1
                    self.met.append(Met(child, "unreadable", detail=e.strerror or str(e)))
                    continue
                self.directories += 1
                # The depth from the path, not the stack: a split walk's stack starts deep.
                stack.append((cfd, child, self.listing(cfd, child, child.count("/"))))
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def split(self, stack: list[Frame]) -> None:
        import threading

        # fork() in a threaded process (rich's progress thread) could inherit a held lock.
        if threading.active_count() > 1:
            return
        shares: list[Frame] = []
        for fd, path, todo in stack:
            give = todo[1::2]
            if give:
                todo[:] = todo[0::2]
                shares.append((fd, path, give))
        if not shares:
            return
        reserve = [(os.dup(fd), path, list(give)) for fd, path, give in shares]

        def helper(out: Channel) -> None:  # in the forked helper
            for fd, _, _ in reserve:
                os.close(fd)
            own = {fd for fd, _, _ in shares}
            for fd, _, _ in stack:  # the parent's frames: not ours to walk
                if fd not in own:
                    os.close(fd)
            self.met, self.progress = [], None
            self.entries = self.directories = self.unreadable = self.mounts_skipped = 0
            self.drain([(fd, path, give) for fd, path, give in shares])
            for met in self.met:
                out.send(met)
            out.send(Counts(self.entries, self.directories, self.unreadable, self.mounts_skipped))

        try:
            # The helper dies with this process (PDEATHSIG); it is recorded before any signal
            # can interrupt, so that ``abandon`` finds it.
            with procs.signals_deferred():
                self.child = (Worker.start(helper, _SPLIT), reserve)
        except OSError:
            self.child = None
            for fd, path, give in reserve:  # no fork: walk it all here
                self.drain([(fd, path, give)])

    def abandon(self) -> None:
        """Kill and reap the helper after an exception; its share is not needed any more."""
        if self.child is None:
            return
        helper, reserve = self.child
        self.child = None
        helper.kill()
        helper.reap()
        for fd, _, _ in reserve:
            os.close(fd)

    def join(self) -> None:
        if self.child is None:
            return
        helper, reserve = self.child
        outcome = helper.finish()  # an exception here: walk() abandons the helper
        self.child = None
        counts = outcome.first(Counts)
        if not outcome.ok or counts is None:  # any failure of the helper: walk its share here
            for fd, path, give in reserve:
                self.drain([(fd, path, give)])
            return
        for fd, _, _ in reserve:
            os.close(fd)
        self.met.extend(outcome.all(Met))
        self.entries += counts.entries
        self.directories += counts.directories
        self.unreadable += counts.unreadable
        self.mounts_skipped += counts.mounts_skipped

    def listing(self, fd: int, path: str, depth: int) -> list[str]:
        """List one folder: note what matters, return the sub-folders to visit."""
        subdirs: list[str] = []
        met = self.met
        try:
            with os.scandir(fd) as it:
                listing = list(it)
        except OSError as e:
            self.unreadable += 1
            met.append(Met(path, "unreadable", detail=e.strerror or str(e)))
            return subdirs
        before = self.entries
        self.entries += len(listing)
        if self.progress is not None and self.entries // PROGRESS_EVERY != before // PROGRESS_EVERY:
            self.progress(self.entries)
        at_root = path == "/"
        mounts = self.mounts
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
                        if mount is not None and not self.cross_mounts:
                            self.mounts_skipped += 1
                            met.append(Met(child, "mount", detail=mount.fstype))
                            continue
                    subdirs.append(name)
                elif entry.is_file(follow_symlinks=False):
                    name = entry.name
                    if name.startswith("libcrypto") and ".so" in name:
                        version, size, note = read_libcrypto_version(fd, name)
                        met.append(
                            Met(
                                join(path, name),
                                "libcrypto",
                                size=size,
                                detail=version or "",
                                note=note,
                            )
                        )
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
            # One note per folder where the walk stops: how many sub-folders, the first few.
            first = sorted(subdirs)[:3]
            met.append(Met(path, "too-deep", size=len(subdirs), detail="/".join(first)))
            subdirs = []
        return subdirs
