"""What every discover parser shares: the result type, reading files under a root prefix,
and the host's user database read as files (so tests can point it at a fake etc tree)."""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass

from chrootcheck.model import Notice, NoticeKind

MAX_CONFIG_SIZE = 8 * 1024 * 1024


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


class Notes:
    """Collects notices (unreadable files ...); missing config files are normal, not noted."""

    def __init__(self) -> None:
        self.items: list[Notice] = []

    def add(self, message: str, kind: NoticeKind = NoticeKind.NOTE) -> None:
        self.items.append(Notice(kind, "discover", message))


def under(root: str, path: str) -> str:
    """``path`` (absolute, as the host's daemons see it) inside the tree at ``root``."""
    if root in ("", "/"):
        return path
    return os.path.join(root, path.lstrip("/"))


def read_text(root: str, path: str, notes: Notes) -> str | None:
    """The file's text, or None when it is missing (normal) or unreadable (noted)."""
    full = under(root, path)
    try:
        fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as e:
        notes.add(f"cannot read {path}: {e.strerror}")
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            notes.add(f"{path} is not a regular file: not read")
            return None
        data = os.read(fd, MAX_CONFIG_SIZE)
    except OSError as e:
        notes.add(f"cannot read {path}: {e.strerror}")
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", "surrogateescape")


def expand_glob(root: str, pattern: str) -> list[str]:
    """A glob evaluated under ``root``, answered as host paths (sorted, as daemons do)."""
    prefix = "" if root in ("", "/") else root.rstrip("/")
    return sorted(p[len(prefix) :] for p in glob.glob(prefix + pattern))


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


def read_passwd(root: str, notes: Notes) -> dict[str, PasswdEntry]:
    out: dict[str, PasswdEntry] = {}
    for line in (read_text(root, "/etc/passwd", notes) or "").splitlines():
        f = line.split(":")
        if len(f) >= 6 and f[2].isdigit() and f[3].isdigit():
            out.setdefault(f[0], PasswdEntry(f[0], int(f[2]), int(f[3]), f[5]))
    return out


def group_members(
    root: str, group: str, passwd: dict[str, PasswdEntry], notes: Notes
) -> list[str] | None:
    """Members of ``group``: its member list plus the users whose primary group it is."""
    for line in (read_text(root, "/etc/group", notes) or "").splitlines():
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
