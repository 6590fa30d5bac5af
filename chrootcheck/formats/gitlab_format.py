"""``--format gitlab``: GitLab code quality JSON (a list of issues).

GitLab collapses issues with the same fingerprint, so the fingerprint covers the jail, the
check and the node. ``location.path`` is the anchor file or the node's folder (relative, never
the device itself: see formats.locations); the node's path is in the description.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TextIO

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import printable
from chrootcheck.formats.locations import anchor_location, check_anchor, folder_location
from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import Report, Severity, sort_findings

SEVERITY = {Severity.CRITICAL: "critical", Severity.ERROR: "major", Severity.WARNING: "minor",
            Severity.INFO: "info"}


def render(report: Report, stream: TextIO, options: RenderOptions) -> None:
    json.dump(issues(report, options), stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def issues(report: Report, options: RenderOptions) -> list[dict[str, Any]]:
    anchor = check_anchor(options.sarif_anchor) if options.sarif_anchor else None
    out: list[dict[str, Any]] = []
    for jail in report.jails:
        for f in sort_findings(jail.findings):
            loc = anchor_location(anchor) if anchor else folder_location(jail.jail, f.path)
            check = checks.CHECKS.get(f.check)
            key = f"{jail.jail}\0{f.check}\0{f.path}".encode("utf-8", "surrogateescape")
            out.append({
                "type": "issue",
                "description": f"{printable(f.path)}: {printable(f.message)}",
                "check_name": f.check,
                "fingerprint": hashlib.sha256(key).hexdigest(),
                "severity": SEVERITY[f.severity],
                "categories": ["Security"] if f.severity >= Severity.WARNING else ["Style"],
                "content": {"body": f"Fix: {printable(f.remediation)}"
                            + (f"\n\n{check.help_uri}" if check else "")},
                "location": {"path": loc.path, "lines": {"begin": 1}},
                "engine_name": "chrootcheck",
            })
    return out
