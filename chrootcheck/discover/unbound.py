"""unbound: ``chroot:`` and ``username:`` in the ``server:`` clause, through its includes."""

from __future__ import annotations

import os

from chrootcheck.discover._common import (
    DiscoveredJail,
    Notes,
    expand_glob,
    read_text,
    strip_hash_comment,
)

CONFIG = "/etc/unbound/unbound.conf"
# unbound's compiled-in default user; the chroot default is build-specific, so only an explicit
# chroot: is reported.
DEFAULT_USER = "unbound"
MAX_DEPTH = 8


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    return v


def find(root: str, notes: Notes) -> list[DiscoveredJail]:
    state: dict[str, tuple[str, str, int]] = {}
    _read(root, CONFIG, notes, state, 0, ["server"])
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
    root: str,
    path: str,
    notes: Notes,
    state: dict[str, tuple[str, str, int]],
    depth: int,
    clause: list[str],
) -> None:
    if depth > MAX_DEPTH:
        notes.add(f"{path}: includes nested too deep, not read")
        return
    text = read_text(root, path, notes)
    if text is None:
        return
    for n, raw in enumerate(text.splitlines(), 1):
        line = strip_hash_comment(raw).strip()
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), _unquote(value)
        if key in ("include", "include-toplevel"):
            pattern = value if value.startswith("/") else os.path.join(os.path.dirname(path), value)
            for inc in (
                expand_glob(root, pattern) if any(c in pattern for c in "*?[") else [pattern]
            ):
                _read(root, inc, notes, state, depth + 1, clause)
            if key == "include-toplevel":
                clause[0] = ""  # the included file starts its own clauses
            continue
        if not value and key.replace("-", "").isalpha() and line.endswith(":"):
            clause[0] = key  # a clause header: server:, remote-control:, forward-zone: ...
            continue
        if clause[0] == "server" and key in ("chroot", "username"):
            state[key] = (value, path, n)
