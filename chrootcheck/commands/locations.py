"""Where the CI formats point each finding: found on the host before rendering.

The renderers do no I/O (formats.locations); this module looks at the jail for them. For each
finding it finds the deepest real folder on the way to the node's parent folder, checking
component by component with ``lstat``, so a symlink is never followed and a ``dev`` that is a
FIFO or a symlink makes the location its parent instead. The folder is given relative to the
current directory when the jail lies below it (in CI: the checkout, so code scanning can link
it), else relative to the jail root (SARIF's ``JAILROOT``).
"""

from __future__ import annotations

import os
import stat

from chrootcheck.formats.common import printable
from chrootcheck.formats.locations import JAIL_BASE_ID, Location, folder_uri
from chrootcheck.report.model import Report


def locate(report: Report) -> dict[tuple[str, str], Location]:
    """A location for every finding's path, and for the jail itself ("/"), keyed by
    (jail, in-jail path)."""
    found: dict[tuple[str, str], Location] = {}
    for jail in report.jails:
        for path in ("/", *(f.path for f in jail.findings)):
            if (jail.jail, path) not in found:
                found[(jail.jail, path)] = folder_location(jail.jail, path)
    return found


def folder_location(jail: str, in_jail_path: str) -> Location:
    """The deepest real folder on the way to the parent folder of ``in_jail_path``."""
    jail = os.path.abspath(jail)
    parts = [p for p in in_jail_path.split("/") if p not in ("", ".", "..")][:-1]
    kept: list[str] = []
    current = jail
    for part in parts:
        candidate = os.path.join(current, part)
        try:
            if not stat.S_ISDIR(os.lstat(candidate).st_mode):
                break
        except OSError:
            break
        kept.append(part)
        current = candidate
    in_cwd = relative_to_cwd(current)
    if in_cwd is not None:
        return Location(uri=folder_uri(in_cwd), path=printable(in_cwd), base_id=None)
    rel = "/".join(kept) or "."
    return Location(uri=folder_uri(rel), path=printable(rel), base_id=JAIL_BASE_ID)


def relative_to_cwd(path: str) -> str | None:
    cwd = os.getcwd()
    try:
        rel = os.path.relpath(path, cwd)
    except ValueError:
        return None
    if rel == ".." or rel.startswith("../"):
        return None
    return rel
