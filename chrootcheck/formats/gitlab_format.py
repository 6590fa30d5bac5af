"""``--format gitlab``: GitLab code quality JSON (a list of issues).

GitLab collapses issues with the same fingerprint, so the fingerprint covers the jail, the
check and the node. ``location.path`` is the anchor file or the node's folder (relative, never
the device itself: see formats.locations); the node's path is in the description. A stage that
did not run (``--no-probe`` ...) is one ``info`` issue, ``check_name`` ``skipped:<stage>``, that
names its checks: code quality has no "skipped", and a silent gap would read as passed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TextIO

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import printable, skipped_checks
from chrootcheck.formats.locations import anchor_location, location_for
from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import Report, Severity, sort_findings

SEVERITY = {
    Severity.CRITICAL: "critical",
    Severity.ERROR: "major",
    Severity.WARNING: "minor",
    Severity.INFO: "info",
}


def render(report: Report, stream: TextIO, options: RenderOptions) -> None:
    json.dump(issues(report, options), stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def issues(report: Report, options: RenderOptions) -> list[dict[str, Any]]:
    anchor = options.sarif_anchor
    out: list[dict[str, Any]] = []
    for jail in report.jails:
        not_run: dict[str, list[str]] = {}
        for check_id, n in skipped_checks(jail, checks.CHECKS).items():
            not_run.setdefault(n.topic.value, []).append(check_id)
        for stage, ids in not_run.items():
            loc = (
                anchor_location(anchor)
                if anchor
                else location_for(jail.jail, "/", options.locations)
            )
            key = f"{jail.jail}\0skipped:{stage}".encode("utf-8", "surrogateescape")
            why = next(n.message for n in jail.notices if n.skips_stage and n.topic == stage)
            out.append(
                {
                    "type": "issue",
                    "description": printable(
                        f"{stage} did not run ({why}): not checked: " + ", ".join(ids)
                    ),
                    "check_name": f"skipped:{stage}",
                    "fingerprint": hashlib.sha256(key).hexdigest(),
                    "severity": "info",
                    "categories": ["Style"],
                    "content": {"body": "These checks were skipped, not passed."},
                    "location": {"path": loc.path, "lines": {"begin": 1}},
                    "engine_name": "chrootcheck",
                }
            )
        for f in sort_findings(jail.findings):
            loc = (
                anchor_location(anchor)
                if anchor
                else location_for(jail.jail, f.path, options.locations)
            )
            check = checks.CHECKS.get(f.check)
            key = f"{jail.jail}\0{f.check}\0{f.path}".encode("utf-8", "surrogateescape")
            out.append(
                {
                    "type": "issue",
                    "description": f"{printable(f.path)}: {printable(f.message)}",
                    "check_name": f.check,
                    "fingerprint": hashlib.sha256(key).hexdigest(),
                    "severity": SEVERITY[f.severity],
                    "categories": ["Security"] if f.severity >= Severity.WARNING else ["Style"],
                    "content": {
                        "body": f"Fix: {printable(f.remediation)}"
                        + (f"\n\n{check.help_uri}" if check else "")
                    },
                    "location": {"path": loc.path, "lines": {"begin": 1}},
                    "engine_name": "chrootcheck",
                }
            )
    return out
