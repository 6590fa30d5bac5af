"""unbound: ``chroot:`` and ``username:`` in the ``server:`` clause, through its includes."""

from __future__ import annotations

import glob
import os

from chrootcheck.discover._common import (
    DiscoveredJail,
    Includes,
    Notes,
    Tree,
    strip_hash_comment,
)

CONFIG = "/etc/unbound/unbound.conf"
# unbound's compiled-in default user; the chroot default is build-specific, so only an explicit
# chroot: is reported.
DEFAULT_USER = "unbound"


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    return v


def find(root: Tree, notes: Notes) -> list[DiscoveredJail]:
    state: dict[str, tuple[str, str, int]] = {}
    _read(Includes(root, notes, "include"), CONFIG, state, ["server"])
    if "chroot" not in state:
        return []
    path, src, line = state["chroot"]
    if not path:
        return []  # chroot: "" turns the chroot off
    user: str | None = state["username"][0] if "username" in state else DEFAULT_USER
    note = None if "username" in state else "username: not set; unbound's default user"
    if user == "":
        user, note = None, 'username: "": unbound keeps the user it was started as'
    return [DiscoveredJail(path, "unbound", src, line, user, note)]


def _read(
    inc: Includes, path: str, state: dict[str, tuple[str, str, int]], clause: list[str]
) -> None:
    opened = inc.enter(path)
    if opened is None:
        return
    try:
        _parse(inc, path, opened[1], state, clause)
    finally:
        inc.leave()


def _parse(
    inc: Includes,
    path: str,
    text: str,
    state: dict[str, tuple[str, str, int]],
    clause: list[str],
) -> None:
    for n, raw in enumerate(text.splitlines(), 1):
        line = strip_hash_comment(raw).strip()
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), _unquote(value)
        if key in ("include", "include-toplevel"):
            pattern = value if value.startswith("/") else os.path.join(os.path.dirname(path), value)
            matches = inc.tree.glob(pattern, inc.notes) if glob.has_magic(pattern) else [pattern]
            for included in matches:
                _read(inc, included, state, clause)
            if key == "include-toplevel":
                clause[0] = ""  # the included file starts its own clauses
            continue
        if not value and key.replace("-", "").isalpha() and line.endswith(":"):
            clause[0] = key  # a clause header: server:, remote-control:, forward-zone: ...
            continue
        if clause[0] == "server" and key in ("chroot", "username"):
            state[key] = (value, path, n)
