"""Where the CI formats (SARIF, GitHub, GitLab) point a finding, never at a device.

GitHub's SARIF uploader opens every located file and reads it to the end to fingerprint it:
``jail/dev/urandom`` would never end and a FIFO would block. So a location is

* the ``--sarif-anchor FILE`` when given (a regular file the user chose, line 1; the command
  checks it before the scan and hands the renderers its path relative to the current
  directory, ``relative_to_cwd``), else
* the deepest real folder on the way to the node's parent folder (uploaders skip folders).
  The folder is checked component by component with ``lstat`` so a symlink is never
  followed: a ``dev`` that is a symlink or a FIFO makes the location its parent instead.

The folder's URI is relative to the current directory when the jail lies below it (in CI: the
checkout, so code scanning can link it); otherwise it is relative to the jail root and SARIF
says so with ``uriBaseId`` ``JAILROOT``. The node's own path always travels in the message and
in the properties.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from urllib.parse import quote

from chrootcheck.formats.common import printable

JAIL_BASE_ID = "JAILROOT"


@dataclass(frozen=True)
class Location:
    uri: str  # a relative URI, percent-encoded; folders end with "/"
    path: str  # the same as a plain relative path, printable (GitHub annotations, GitLab)
    base_id: str | None  # None: relative to the current directory; else JAIL_BASE_ID
    is_anchor: bool = False


def anchor_location(anchor: str) -> Location:
    """``anchor`` as the command checked it (``commands.options.check_anchor``): relative to
    the current directory, or absolute (outside it), which becomes a ``file://`` URI."""
    uri = "file://" + _quote(anchor) if anchor.startswith("/") else _quote(anchor)
    return Location(uri=uri, path=printable(anchor), base_id=None, is_anchor=True)


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
        return Location(uri=_folder_uri(in_cwd), path=printable(in_cwd), base_id=None)
    rel = "/".join(kept) or "."
    return Location(uri=_folder_uri(rel), path=printable(rel), base_id=JAIL_BASE_ID)


def _folder_uri(rel: str) -> str:
    return "./" if rel == "." else _quote(rel) + "/"


def jail_base_uri(jail: str) -> str:
    """``file:///abs/jail/`` for SARIF's ``originalUriBaseIds``."""
    return "file://" + _quote(os.path.abspath(jail).rstrip("/") + "/")


def relative_to_cwd(path: str) -> str | None:
    cwd = os.getcwd()
    try:
        rel = os.path.relpath(path, cwd)
    except ValueError:
        return None
    if rel == ".." or rel.startswith("../"):
        return None
    return rel


def _quote(path: str) -> str:
    # Undecodable bytes become %XX of the original bytes; "/" stays a separator.
    return quote(path.encode("utf-8", "surrogateescape"), safe="/")
