"""Where the CI formats (SARIF, GitHub, GitLab) point a finding, never at a device.

GitHub's SARIF uploader opens every located file and reads it to the end to fingerprint it:
``jail/dev/urandom`` would never end and a FIFO would block. So a location is

* the ``--sarif-anchor FILE`` when given (a regular file the user chose, line 1; the command
  checks it before the scan and hands the renderers its path relative to the current
  directory, ``relative_to_cwd``), else
* the deepest real folder on the way to the node's parent folder (uploaders skip folders),
  as the command found it before rendering (``commands.locations``: ``lstat`` component by
  component, so a ``dev`` that is a symlink or a FIFO makes the location its parent instead),
  handed over in ``RenderOptions.locations``. Renderers do no I/O: without that map (the
  API), the jail's root folder itself is the location, which is always safe.

The folder's URI is relative to the current directory when the jail lies below it (in CI: the
checkout, so code scanning can link it); otherwise it is relative to the jail root and SARIF
says so with ``uriBaseId`` ``JAILROOT``. The node's own path always travels in the message and
in the properties.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    uri = "file://" + quote_path(anchor) if anchor.startswith("/") else quote_path(anchor)
    return Location(uri=uri, path=printable(anchor), base_id=None, is_anchor=True)


def location_for(
    jail: str, in_jail_path: str, found: Mapping[tuple[str, str], Location] | None
) -> Location:
    """Where a finding at ``in_jail_path`` points: the command's answer, else the jail root."""
    if found is not None:
        loc = found.get((jail, in_jail_path))
        if loc is not None:
            return loc
    return Location(uri=folder_uri("."), path=".", base_id=JAIL_BASE_ID)


def folder_uri(rel: str) -> str:
    return "./" if rel == "." else quote_path(rel) + "/"


def jail_base_uri(jail: str) -> str:
    """``file:///abs/jail/`` for SARIF's ``originalUriBaseIds``."""
    return "file://" + quote_path(os.path.abspath(jail).rstrip("/") + "/")


def quote_path(path: str) -> str:
    # Undecodable bytes become %XX of the original bytes; "/" stays a separator.
    return quote(path.encode("utf-8", "surrogateescape"), safe="/")
