"""What every discover parser shares: the result type, the tree under ``--root`` (every path
resolved inside it, each file read once), include bookkeeping, and the user database read as
files (so tests can point it at a fake etc tree).

The tree may belong to someone else (a container image, a mounted disk) while chrootcheck runs
as root: a path in it is resolved the way a process chrooted into it would see it, with
``jailfs.resolve`` (absolute symlinks restart at the tree's root, ``..`` stops there, every
step through a directory fd with ``O_NOFOLLOW``), so nothing planted in the tree leads to a
host file. Files are opened non-blocking, only when regular, and read up to a size cap.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import stat
from dataclasses import dataclass, field

from chrootcheck.jail.fs import (
    RefusedRead,
    Resolution,
    open_jail,
    open_regular,
    read_chunks,
    resolve,
)
from chrootcheck.openssl.hsm import DaemonLoads, EngineKey
from chrootcheck.report.model import Notice, NoticeKind, Stage

MAX_CONFIG_SIZE = 8 * 1024 * 1024
MAX_GLOB = 1000  # files one include pattern may name; more are left out, with a note
MAX_DEPTH = 16  # nested includes (each file is read once, so only a long chain gets here)
_MISSING = (errno.ENOENT, errno.ENOTDIR)


@dataclass(frozen=True)
class DiscoveredJail:
    path: str  # the jail as the daemon's config names it (a host path, without the root prefix)
    daemon: str  # haproxy, unbound, named, postfix, sshd, or a systemd unit name
    source_file: str  # the file that says so (without the root prefix)
    line: int
    user: str | None  # the user the daemon runs as inside the jail, when its config says
    note: str | None = None
    # systemd PrivateDevices=yes: the service gets its own /dev with random and urandom, so
    # the jail's on-disk /dev is never used: device findings do not apply.
    provides_devices: bool = False
    exists: bool | None = None  # filled by discover(): whether the folder exists under root
    # filled by discover(): the folder the path leads to inside the root (symlinks resolved
    # there, never on the host), when it exists
    resolved: str | None = None
    unit: str | None = None  # the systemd unit (name.service) that configures it, if one does
    # The daemon profile (report.daemons), "NAME:MODE": the probe's prediction joins it with
    # the measured triggers. A parser that knows the mode sets it; discover() fills the rest.
    profile: str | None = None
    # The key the daemon loads through an engine before its chroot (stunnel's engine settings):
    # the late loads follow its module, the late-load probe uses it.
    engine_key: EngineKey | None = None
    # The engines and providers the daemon's own config loads (haproxy's ssl-engine ...).
    loads: DaemonLoads | None = None


class Notes:
    """Collects notices (unreadable files ...); missing config files are normal, not noted."""

    def __init__(self) -> None:
        self.items: list[Notice] = []

    def add(self, message: str, kind: NoticeKind = NoticeKind.NOTE) -> None:
        self.items.append(Notice(kind, Stage.DISCOVER, message))


def under(root: str, path: str) -> str:
    """``path`` (absolute, as the host's daemons see it) inside the tree at ``root``. Only for
    paths already resolved inside the tree (``Tree.resolve``): no symlink left to follow."""
    if root in ("", "/"):
        return path
    return os.path.join(root, path.lstrip("/"))


class Tree:
    """The configuration tree under ``root`` for one discover run.

    Every path is resolved inside it by ``jailfs.resolve``; each file is read at most once per
    run (by its resolved path, whatever name reached it), and a note about it is given once.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.fd = open_jail(root)  # JailOpenError when the root itself cannot be used
        self._texts: dict[str, str | None] = {}  # resolved path -> text (None: not read)
        # How notes say where a resolved path is: with --root, inside that tree.
        self.inside = "" if root in ("", "/") else "inside the tree "

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, path: str, *, follow: bool = True) -> Resolution:
        """Where ``path`` leads inside the tree (the caller closes the result)."""
        return resolve(self.fd, path, follow=follow)

    def folder(self, path: str) -> str | None:
        """The resolved in-tree path of ``path`` when it is a folder, else None."""
        with self.resolve(path) as res:
            if res.found and res.stat is not None and stat.S_ISDIR(res.stat.st_mode):
                return res.path
            return None

    def exists(self, path: str) -> bool:
        with self.resolve(path, follow=False) as res:
            return res.found

    def read(self, path: str, notes: Notes) -> tuple[str, str | None]:
        """(resolved path, text) of a config file; text is None when the file is missing
        (normal, silent) or cannot be read (noted, once)."""
        with self.resolve(path) as res:
            if not res.found:
                if res.error in _MISSING and not res.links:
                    return res.path, None
                key = f"!{res.path}"
                if key not in self._texts:
                    self._texts[key] = None
                    why = os.strerror(res.error or errno.EIO)
                    if res.links and res.error in _MISSING:
                        why = f"a symlink to {res.links[-1][1]}: {res.path} {self.inside}is missing"
                    notes.add(f"cannot read {path}: {why}")
                return res.path, None
            if res.path in self._texts:
                return res.path, self._texts[res.path]
            self._texts[res.path] = text = self._read(path, res, notes)
            return res.path, text

    def read_text(self, path: str, notes: Notes) -> str | None:
        return self.read(path, notes)[1]

    @staticmethod
    def _read(path: str, res: Resolution, notes: Notes) -> str | None:
        st = res.stat
        if st is None or not stat.S_ISREG(st.st_mode) or res.name is None:
            notes.add(f"{path} is not a regular file: not read")
            return None
        if st.st_size > MAX_CONFIG_SIZE:
            notes.add(f"{path} is larger than {MAX_CONFIG_SIZE >> 20} MiB: not read")
            return None
        try:
            # jail.fs's careful reader: never blocks on a FIFO swapped in meanwhile, never
            # follows a symlink; and it must be the very file resolve() looked at.
            fd, now = open_regular(res.name, dir_fd=res.parent_fd, limit=MAX_CONFIG_SIZE)
        except RefusedRead as e:
            too_big = e.errno == errno.EFBIG
            notes.add(
                f"{path} is larger than {MAX_CONFIG_SIZE >> 20} MiB: not read"
                if too_big
                else f"cannot read {path}: {e.strerror}"
            )
            return None
        try:
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                notes.add(f"{path} changed while it was read: not read")
                return None
            data = b"".join(read_chunks(fd, MAX_CONFIG_SIZE + 1))
        except RefusedRead as e:
            notes.add(f"cannot read {path}: {e.strerror}")
            return None
        finally:
            os.close(fd)
        if len(data) > MAX_CONFIG_SIZE:
            notes.add(f"{path} is larger than {MAX_CONFIG_SIZE >> 20} MiB: not read")
            return None
        return data.decode("utf-8", "surrogateescape")

    def listdir(self, path: str) -> list[str]:
        """The names in the folder ``path`` leads to inside the tree ([] when none)."""
        with self.resolve(path) as res:
            if not res.found or res.fd is None or res.stat is None:
                return []
            if not stat.S_ISDIR(res.stat.st_mode):
                return []
            try:
                fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=res.fd)
            except OSError:
                return []
            try:
                return os.listdir(fd)
            except OSError:
                return []
            finally:
                os.close(fd)

    def glob(self, pattern: str, notes: Notes) -> list[str]:
        """A shell pattern matched inside the tree (as glob(3): sorted, dot files only for a
        dot pattern), answered as paths in the tree; at most MAX_GLOB of them, else noted."""
        found = ["/"]
        parts = [p for p in pattern.split("/") if p not in ("", ".")]
        for part in parts:
            step: list[str] = []
            for base in found:
                if not glob.has_magic(part):
                    step.append(_join(base, part))
                    continue
                for name in sorted(self.listdir(base)):
                    if name.startswith(".") and not part.startswith("."):
                        continue
                    if fnmatch.fnmatchcase(name, part):
                        step.append(_join(base, name))
            if len(step) > MAX_GLOB:
                notes.add(f"{pattern} matches more than {MAX_GLOB} paths: the first are read")
                step = step[:MAX_GLOB]
            found = step
        return sorted(p for p in found if self.exists(p))


def _join(base: str, name: str) -> str:
    return "/" + name if base == "/" else f"{base}/{name}"


@dataclass
class Includes:
    """One include walk: each file is parsed once (a file included again is skipped, as it
    would add nothing new to what discover reports), and each cycle is noted once."""

    tree: Tree
    notes: Notes
    keyword: str  # as the config spells it, for the notes
    stack: list[str] = field(default_factory=list)  # resolved paths being parsed
    done: set[str] = field(default_factory=set)
    cycles: set[tuple[str, ...]] = field(default_factory=set)

    def enter(self, path: str) -> tuple[str, str] | None:
        """(resolved path, text) when ``path`` is to be parsed now; the caller then calls
        leave(). None when it is missing, unreadable, already parsed, on a cycle or too deep."""
        resolved, text = self.tree.read(path, self.notes)
        if text is None:
            return None
        if resolved in self.stack:
            cycle = self.stack[self.stack.index(resolved) :]
            first = cycle.index(min(cycle))
            key = tuple(cycle[first:] + cycle[:first])
            if key not in self.cycles:
                self.cycles.add(key)
                shown = " -> ".join([*cycle, resolved])
                self.notes.add(f"{self.keyword} cycle: {shown}: not read again")
            return None
        if resolved in self.done:
            return None
        if len(self.stack) >= MAX_DEPTH:
            self.notes.add(f"{path}: {self.keyword} nested too deep, not read")
            return None
        self.done.add(resolved)
        self.stack.append(resolved)
        return resolved, text

    def leave(self) -> None:
        self.stack.pop()


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


def read_passwd(tree: Tree, notes: Notes) -> dict[str, PasswdEntry]:
    out: dict[str, PasswdEntry] = {}
    for line in (tree.read_text("/etc/passwd", notes) or "").splitlines():
        f = line.split(":")
        if len(f) >= 6 and f[2].isdigit() and f[3].isdigit():
            out.setdefault(f[0], PasswdEntry(f[0], int(f[2]), int(f[3]), f[5]))
    return out


def group_members(
    tree: Tree, group: str, passwd: dict[str, PasswdEntry], notes: Notes
) -> list[str] | None:
    """Members of ``group``: its member list plus the users whose primary group it is."""
    for line in (tree.read_text("/etc/group", notes) or "").splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[0] == group and f[2].isdigit():
            gid = int(f[2])
            members = [m for m in f[3].split(",") if m]
            members += [p.name for p in passwd.values() if p.gid == gid]
            return sorted(set(members))
    return None


def strip_hash_comment(line: str) -> str:
    """Drop a '#' comment that is not inside quotes."""
    quote = ""
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":
            return line[:i]
    return line


@dataclass
class TreeUnits:
    """``sandbox.systemd.UnitReader`` over a tree: every path resolved inside it (jail.fs)."""

    tree: Tree
    notes: Notes

    def read_text(self, path: str) -> str | None:
        return self.tree.read_text(path, self.notes)

    def glob(self, pattern: str) -> list[str]:
        return self.tree.glob(pattern, self.notes)
