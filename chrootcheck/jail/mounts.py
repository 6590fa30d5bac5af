"""Mount points under a jail, from /proc/self/mountinfo.

The walk stays on the jail's file system unless --cross-mounts; a bind mount from the same
file system keeps st_dev, so st_dev alone cannot see it: mountinfo can.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_OCTAL = re.compile(rb"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    point: bytes  # host path, raw bytes
    fstype: str
    options: frozenset[str]  # per-mount options (nodev, ro, ...) and super options together


def _unescape(field: bytes) -> bytes:
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field)


def read_mounts(path: str = "/proc/self/mountinfo") -> list[Mount]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    mounts = []
    for line in data.splitlines():
        left, sep, right = line.partition(b" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 6 or len(rfields) < 3:
            continue
        opts = set(fields[5].decode(errors="replace").split(","))
        opts |= set(rfields[2].decode(errors="replace").split(","))
        mounts.append(
            Mount(_unescape(fields[4]), rfields[0].decode(errors="replace"), frozenset(opts))
        )
    return mounts


def mounts_under(jail_host_path: str, mounts: list[Mount] | None = None) -> dict[str, Mount]:
    """In-jail path -> the mount on it, for every mount strictly below the jail's root.

    The last mount on a point wins (it is the one a lookup sees)."""
    root = os.fsencode(os.path.realpath(jail_host_path)).rstrip(b"/")
    out: dict[str, Mount] = {}
    for m in mounts if mounts is not None else read_mounts():
        if m.point.startswith(root + b"/"):
            out[os.fsdecode(m.point[len(root) :])] = m
    return out


def mount_tree(path: str = "/proc/self/mountinfo") -> dict[int, tuple[int, bytes]]:
    """Mount id -> (parent mount id, mount point as raw bytes), from mountinfo."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    tree: dict[int, tuple[int, bytes]] = {}
    for line in data.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0].isdigit() and fields[1].isdigit():
            tree[int(fields[0])] = (int(fields[1]), _unescape(fields[4]))
    return tree
