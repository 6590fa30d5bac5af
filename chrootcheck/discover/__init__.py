"""``chrootcheck discover``: the chroot jails this host's daemons are configured to use.

One small parser per source, each reading the daemon's own configuration under a root prefix
(``/`` by default, a fake etc tree in tests). A missing config file is normal; an unreadable
one becomes a notice. Nothing here raises on a bad file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from chrootcheck.discover._common import DiscoveredJail, Notes, under
from chrootcheck.model import Notice, NoticeKind

__all__ = ["DiscoveredJail", "ScanTarget", "discover", "discover_with_notes", "scan_targets"]

Parser = Callable[[str, Notes], list[DiscoveredJail]]


def _parsers() -> list[tuple[str, Parser]]:
    from chrootcheck.discover import bind, haproxy, openssh, postfix, systemd, unbound

    return [
        ("haproxy", haproxy.find),
        ("unbound", unbound.find),
        ("bind", bind.find),
        ("postfix", postfix.find),
        ("openssh", openssh.find),
        ("systemd", systemd.find),
    ]


def discover_with_notes(root: str = "/") -> tuple[list[DiscoveredJail], list[Notice]]:
    notes = Notes()
    jails: list[DiscoveredJail] = []
    for name, parse in _parsers():
        try:
            found = parse(root, notes)
        except Exception as e:  # one odd file must not hide the other daemons
            notes.add(
                f"{name}: could not parse its configuration: {type(e).__name__}: {e}",
                NoticeKind.ERROR,
            )
            continue
        for j in found:
            exists = (
                j.path.startswith("/") and "%" not in j.path and os.path.isdir(under(root, j.path))
            )
            jails.append(replace(j, exists=exists))
    return jails, notes.items


def discover(root: str = "/") -> list[DiscoveredJail]:
    return discover_with_notes(root)[0]


@dataclass(frozen=True)
class ScanTarget:
    """One jail for ``scan --discover``: the host path to scan and the --user to use."""

    jail: str  # with the root prefix, ready for scan
    user: str | None
    daemons: tuple[str, ...]
    provides_devices: bool  # systemd PrivateDevices=yes: device findings do not apply
    notes: tuple[str, ...]


def scan_targets(root: str = "/") -> tuple[list[ScanTarget], list[Notice]]:
    """The discovered jails that can be scanned, one per folder, with the daemon's user.

    Skipped with a notice: paths with unexpanded tokens (%u where the users are unknown) and
    folders that do not exist (the daemon would fail to start, which is not an entropy issue).
    """
    jails, notices = discover_with_notes(root)
    grouped: dict[str, list[DiscoveredJail]] = {}
    for j in jails:
        if not j.exists:
            why = "has unexpanded tokens" if "%" in j.path else "does not exist"
            notices.append(
                Notice(
                    NoticeKind.SKIPPED,
                    "discover",
                    f"{j.daemon}: jail {j.path} ({j.source_file}:{j.line}) {why}",
                )
            )
            continue
        grouped.setdefault(os.path.normpath(j.path), []).append(j)
    out = []
    for path, group in grouped.items():
        users = sorted({j.user for j in group if j.user})
        notes = [f"{j.daemon}: {j.note}" for j in group if j.note]
        if len(users) > 1:
            notes.append(f"several users ({', '.join(users)}): scanned as {users[0]}")
        out.append(
            ScanTarget(
                under(root, path),
                users[0] if users else None,
                tuple(dict.fromkeys(j.daemon for j in group)),
                all(j.provides_devices for j in group),
                tuple(notes),
            )
        )
    return out, notices
