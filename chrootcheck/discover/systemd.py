"""systemd units: ``RootDirectory=`` with ``User=``; ``PrivateDevices=yes`` gives the service
its own /dev (null, zero, full, random, urandom, tty), so the jail's on-disk /dev is unused."""

from __future__ import annotations

import os

from chrootcheck.discover._common import DiscoveredJail, Notes, Tree, TreeUnits
from chrootcheck.sandbox.systemd import TRUE_WORDS, UNIT_DIRS, UnitSyntaxError, entries, unit_files


def find(root: Tree, notes: Notes) -> list[DiscoveredJail]:
    units: dict[str, str] = {}
    masked: set[str] = set()
    for d in UNIT_DIRS:
        for path in root.glob(f"{d}/*.service", notes):
            name = os.path.basename(path)
            if name in units or name in masked:
                continue
            if _masked(root, path):
                masked.add(name)  # a masked unit hides the vendor's one of the same name
            else:
                units[name] = path
    out: list[DiscoveredJail] = []
    for name, path in sorted(units.items()):
        # The main file and its drop-ins in systemd's order, read as the sandbox reads them.
        files = [path, *unit_files(name, TreeUnits(root, notes))[1:]]
        settings: dict[str, tuple[str, str, int]] = {}
        for f in files:
            text = root.read_text(f, notes)
            if text is None:
                continue
            try:
                lines = entries(text, f)
            except UnitSyntaxError as bad:
                notes.add(f"{bad}: skipped")  # systemd would not load it either
                continue
            for e in lines:
                if e.section == "Service" and e.key in (
                    "RootDirectory",
                    "User",
                    "PrivateDevices",
                    "DynamicUser",
                    "RootImage",
                ):
                    settings[e.key] = (e.value, f, e.line)  # the last one wins; "" resets
        root_dir = settings.get("RootDirectory")
        if not root_dir or not root_dir[0]:
            if settings.get("RootImage", ("",))[0]:
                notes.add(
                    f"{name}: RootImage= (a disk image) is not scanned: mount it read-only and "
                    "scan that folder (chrootcheck scan --unit UNIT DIR)"
                )
            continue
        user = settings.get("User", ("",))[0] or None
        private = settings.get("PrivateDevices", ("no",))[0].lower() in TRUE_WORDS
        note_parts = []
        if private:
            note_parts.append(
                "PrivateDevices=yes: systemd provides /dev/random and "
                "/dev/urandom itself; the jail's /dev is not used"
            )
        if settings.get("DynamicUser", ("no",))[0].lower() in TRUE_WORDS:
            note_parts.append("DynamicUser=yes: the user is allocated at start")
        if "%" in root_dir[0]:
            note_parts.append("contains unit specifiers (%): not expanded")
        if name.endswith("@.service"):
            note_parts.append("a template unit")
        out.append(
            DiscoveredJail(
                root_dir[0],
                name.removesuffix(".service"),
                root_dir[1],
                root_dir[2],
                user,
                "; ".join(note_parts) or None,
                provides_devices=private,
                unit=name,
            )
        )
    return out


def _masked(root: Tree, path: str) -> bool:
    """A unit linked to /dev/null (resolved inside the tree: the link's text decides, the
    host's /dev/null is never looked at)."""
    with root.resolve(path) as res:
        return res.path == "/dev/null" or any(
            os.path.normpath(target) == "/dev/null" for _, target in res.links
        )
