"""OpenSSH: ``ChrootDirectory`` in sshd_config (and its Includes), globally or in ``Match``
blocks. ``%u``, ``%h``, ``%U`` and ``%%`` are expanded for each user the block names (``Match
User`` patterns matched against the host's passwd, ``Match Group`` members from its group
file); with other criteria the users are unknown and the path stays as written."""

from __future__ import annotations

import fnmatch
import os
import shlex
from dataclasses import dataclass, field

from chrootcheck.discover._common import (
    DiscoveredJail,
    Includes,
    Notes,
    PasswdEntry,
    Tree,
    group_members,
    read_passwd,
)

CONFIG = "/etc/ssh/sshd_config"


@dataclass
class _Block:
    criteria: list[tuple[str, str]] = field(default_factory=list)  # (criterion, patterns)
    line: int = 0

    @property
    def is_global(self) -> bool:
        return not self.criteria or self.criteria == [("all", "")]


@dataclass(frozen=True)
class _Chroot:
    value: str
    file: str
    line: int
    block: _Block


def _words(line: str) -> list[str]:
    line = line.strip()
    if not line or line.startswith("#"):
        return []
    # "Keyword value", "Keyword=value" and "Keyword = value" are all valid.
    key, _, rest = line.replace("\t", " ").partition(" ")
    if "=" in key:
        key, _, more = key.partition("=")
        rest = more + " " + rest
    rest = rest.strip().lstrip("=").strip()
    try:
        args = shlex.split(rest, comments=True)
    except ValueError:
        args = rest.split()
    return [key, *args]


def _parse(inc: Includes, path: str, block: list[_Block], out: list[_Chroot]) -> None:
    opened = inc.enter(path)
    if opened is None:
        return
    try:
        _parse_text(inc, path, opened[1], block, out)
    finally:
        inc.leave()


def _parse_text(
    inc: Includes, path: str, text: str, block: list[_Block], out: list[_Chroot]
) -> None:
    for n, line in enumerate(text.splitlines(), 1):
        w = _words(line)
        if not w:
            continue
        key = w[0].lower()
        if key == "include":
            for pattern in w[1:]:
                if not pattern.startswith("/"):
                    pattern = os.path.join("/etc/ssh", pattern)
                for included in inc.tree.glob(pattern, inc.notes):
                    _parse(inc, included, block, out)
        elif key == "match":
            args = w[1:]
            crit: list[tuple[str, str]] = []
            i = 0
            while i < len(args):
                name = args[i].lower()
                if name in ("all", "canonical", "final"):
                    crit.append((name, ""))
                    i += 1
                else:
                    crit.append((name, args[i + 1] if i + 1 < len(args) else ""))
                    i += 2
            block[0] = _Block(crit, n)
        elif key == "chrootdirectory" and len(w) > 1:
            out.append(_Chroot(w[1], path, n, block[0]))


def _users_for(
    b: _Block, root: Tree, passwd: dict[str, PasswdEntry], notes: Notes
) -> tuple[list[str] | None, str | None]:
    """The users a Match block applies to, or None (unknown) with the reason."""
    users: set[str] | None = None
    other: list[str] = []
    for name, patterns in b.criteria:
        pats = [p for p in patterns.split(",") if p]
        if name == "user":
            pos = [p for p in pats if not p.startswith("!")]
            neg = [p[1:] for p in pats if p.startswith("!")]
            if any(c in p for p in pos for c in "*?"):
                found = {u for u in passwd if any(fnmatch.fnmatchcase(u, p) for p in pos)}
            else:
                found = set(pos)
            found -= {u for u in found if any(fnmatch.fnmatchcase(u, p) for p in neg)}
            users = found if users is None else users & found
        elif name == "group":
            members: set[str] = set()
            for g in pats:
                if g.startswith("!"):
                    continue
                m = group_members(root, g, passwd, notes)
                if m is not None:
                    members.update(m)
            users = members if users is None else users & members
        elif name != "all":
            other.append(f"{name} {patterns}".strip())
    if users is None:
        return None, "applies to users chrootcheck cannot list" + (
            f" (Match {', '.join(other)})" if other else ""
        )
    note = f"only when also: Match {', '.join(other)}" if other else None
    return sorted(users), note


def _expand(value: str, user: str, entry: PasswdEntry | None) -> str | None:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "%" and i + 1 < len(value):
            t = value[i + 1]
            if t == "%":
                out.append("%")
            elif t == "u":
                out.append(user)
            elif t == "h" and entry:
                out.append(entry.home)
            elif t == "U" and entry:
                out.append(str(entry.uid))
            else:
                return None
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def find(root: Tree, notes: Notes) -> list[DiscoveredJail]:
    found: list[_Chroot] = []
    _parse(Includes(root, notes, "Include"), CONFIG, [_Block()], found)
    if not found:
        return []
    passwd = read_passwd(root, notes)
    out: list[DiscoveredJail] = []
    for c in found:
        if c.value.lower() == "none":
            continue
        where = "global" if c.block.is_global else f"Match block at line {c.block.line}"
        users, why = (
            (None, "applies to every user")
            if c.block.is_global
            else _users_for(c.block, root, passwd, notes)
        )
        has_tokens = "%" in c.value
        if users is None or (not users and has_tokens):
            note = f"{where}: {why}" if why else where
            if has_tokens:
                note += "; path expands per user"
            out.append(DiscoveredJail(c.value, "sshd", c.file, c.line, None, note))
            continue
        if not has_tokens:
            user = users[0] if len(users) == 1 else None
            note = f"{where}; users: {', '.join(users)}" if len(users) > 1 else where
            out.append(
                DiscoveredJail(
                    c.value, "sshd", c.file, c.line, user, note + (f"; {why}" if why else "")
                )
            )
            continue
        for u in users:
            path = _expand(c.value, u, passwd.get(u))
            if path is None:
                out.append(
                    DiscoveredJail(
                        c.value,
                        "sshd",
                        c.file,
                        c.line,
                        u,
                        f"{where}: user {u} is not in passwd, or an unknown % token",
                    )
                )
            else:
                out.append(
                    DiscoveredJail(
                        path,
                        "sshd",
                        c.file,
                        c.line,
                        u,
                        f"{where}; {c.value}" + (f"; {why}" if why else ""),
                    )
                )
    return out
