"""``chrootcheck discover``: the chroot jails this host's daemons are configured to use.

One small parser per source, each reading the daemon's own configuration under a root prefix
(``/`` by default, a fake etc tree in tests). A missing config file is normal; an unreadable
one becomes a notice. Nothing here raises on a bad file.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass, replace

from chrootcheck.discover._common import DiscoveredJail, Notes, Tree, under
from chrootcheck.jail.fs import JailOpenError
from chrootcheck.openssl.hsm import DaemonLoads, EngineKey
from chrootcheck.report import daemons
from chrootcheck.report.errors import ToolError
from chrootcheck.report.model import Notice, NoticeKind, Stage

__all__ = ["DiscoveredJail", "ScanTarget", "discover", "discover_with_notes", "scan_targets"]

Parser = Callable[[Tree, Notes], list[DiscoveredJail]]


def _parsers() -> list[tuple[str, Parser]]:
    from chrootcheck.discover import bind, haproxy, openssh, postfix, stunnel, systemd, unbound

    return [
        ("haproxy", haproxy.find),
        ("unbound", unbound.find),
        ("bind", bind.find),
        ("postfix", postfix.find),
        ("openssh", openssh.find),
        ("stunnel", stunnel.find),
        ("systemd", systemd.find),
    ]


def discover_with_notes(root: str = "/") -> tuple[list[DiscoveredJail], list[Notice]]:
    """The jails configured in the tree at ``root``. Every path in it (config files, includes,
    the jails themselves) is resolved inside ``root``, never on the host (``Tree``)."""
    notes = Notes()
    jails: list[DiscoveredJail] = []
    try:
        tree = Tree(root)
    except JailOpenError as e:
        raise ToolError(f"--root: {e}".replace("jail ", "", 1)) from None
    with tree:
        for name, parse in _parsers():
            try:
                found = parse(tree, notes)
            except Exception as e:  # one odd file must not hide the other daemons
                notes.add(
                    f"{name}: could not parse its configuration: {type(e).__name__}: {e}",
                    NoticeKind.ERROR,
                )
                continue
            jails.extend(_located(tree, _profiled(j)) for j in found)
    return jails, notes.items


def _profiled(j: DiscoveredJail) -> DiscoveredJail:
    """The daemon's profile in its default mode, unless the parser named the mode."""
    if j.profile is not None:
        return j
    found = daemons.lookup(j.daemon)
    return replace(j, profile=f"{found[0].name}:{found[1].name}") if found else j


def _located(tree: Tree, j: DiscoveredJail) -> DiscoveredJail:
    """The jail with ``exists`` and ``resolved``: its folder looked up inside the tree, as a
    process chrooted there would see it (an absolute symlink stays in the tree)."""
    if not j.path.startswith("/") or "%" in j.path:
        return replace(j, exists=False)
    with tree.resolve(j.path) as res:
        is_dir = res.found and res.stat is not None and stat.S_ISDIR(res.stat.st_mode)
        note = j.note
        if res.links:
            if is_dir:
                hop = f"a symlink: resolved {tree.inside}to {res.path}"
            elif res.found:
                hop = f"a symlink: leads {tree.inside}to {res.path}, not a folder"
            else:
                hop = f"a symlink to {res.links[-1][1]}: {res.path} {tree.inside}is missing"
            note = f"{note}; {hop}" if note else hop
        return replace(j, exists=is_dir, resolved=res.path if is_dir else None, note=note)


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
    units: tuple[str, ...] = ()  # the systemd units whose RootDirectory= it is
    profile: str | None = None  # the daemon profile for the probe's prediction, "NAME:MODE"
    engine_key: EngineKey | None = None  # the daemon's engine key (stunnel's engine settings)
    loads: DaemonLoads | None = None  # its config's engines and providers (haproxy's)


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
                    Stage.DISCOVER,
                    f"{j.daemon}: jail {j.path} ({j.source_file}:{j.line}) {why}",
                )
            )
            continue
        # By the folder it leads to inside the root: the only path scan may be given.
        grouped.setdefault(j.resolved or j.path, []).append(j)
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
                tuple(dict.fromkeys(j.unit for j in group if j.unit)),
                next((j.profile for j in group if j.profile), None),
                next((j.engine_key for j in group if j.engine_key), None),
                next((j.loads for j in group if j.loads), None),
            )
        )
    return out, notices
