"""``--format sarif``: SARIF 2.1.0 for GitHub code scanning (docs/ci.md).

One run per jail, told apart by ``runAutomationDetails.id`` (``chrootcheck/<jail>/``), so that
code scanning keeps one category per jail. Every check of the catalogue is a rule with its help
text and ``helpUri``. Locations never point at a device, FIFO or socket (see
``formats.locations``); the node's path is in the message and in ``properties``. Skips and tool
errors are ``invocations[0].toolExecutionNotifications``, never results; a stage that did not
run is a notification (its descriptor id is the stage), and the invocation lists the rules
it skipped (``properties.skippedChecks``: stage -> rule ids), so that no rule reads as passed
when it never ran.

Plain dicts, no SARIF object model: the tests validate the output against the official schema.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, TextIO

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import printable, skipped_checks, to_data
from chrootcheck.formats.locations import (
    JAIL_BASE_ID,
    Location,
    anchor_location,
    jail_base_uri,
    location_for,
)
from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import (
    Finding,
    JailReport,
    NoticeKind,
    Report,
    Severity,
    sort_findings,
)

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/chrootcheck/chrootcheck"
FINGERPRINT_KEY = "chrootcheckFinding/v1"

LEVEL = {
    Severity.CRITICAL: "error",
    Severity.ERROR: "error",
    Severity.WARNING: "warning",
    Severity.INFO: "note",
}
# trivy's mapping. Only rules tagged "security" get a score: GitHub ignores it elsewhere.
SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.ERROR: "8.0", Severity.WARNING: "5.5"}
# A skip is shown, not a problem: it fails nothing unless asked (the Lynis convention).
NOTIFICATION_LEVEL = {
    NoticeKind.ERROR: "error",
    NoticeKind.SKIPPED: "note",
    NoticeKind.NOTE: "note",
}


def render(report: Report, stream: TextIO, options: RenderOptions) -> None:
    json.dump(sarif_log(report, options), stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def sarif_log(report: Report, options: RenderOptions) -> dict[str, Any]:
    ids = automation_ids([j.jail for j in report.jails])
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [_run(report, j, ids[i], options) for i, j in enumerate(report.jails)],
    }


def rule(check: checks.Check) -> dict[str, Any]:
    # Entropy devices decide key quality: everything above info is a security rule. Info
    # checks are an inventory of the jail (other nodes, libcrypto copies), not weaknesses.
    security = check.severity >= Severity.WARNING
    properties: dict[str, Any] = {
        "tags": ["security", "chroot", "entropy"] if security else ["chroot", "inventory"]
    }
    if security:
        properties["security-severity"] = SECURITY_SEVERITY[check.severity]
    properties["precision"] = "very-high"
    return {
        "id": check.id,
        "name": _pascal(check.name),
        "shortDescription": {"text": check.title},
        "fullDescription": {"text": f"{check.title}. {check.why}"},
        "help": {
            "text": f"{check.why}\n\nFix: {check.remediation}\n\nMore: {check.help_uri}",
            "markdown": f"{check.why}\n\n**Fix:** `{check.remediation}`\n\n"
            f"[{check.id} in docs/checks.md]({check.help_uri})",
        },
        "helpUri": check.help_uri,
        "defaultConfiguration": {"level": LEVEL[check.severity]},
        "properties": properties,
    }


def automation_ids(jails: list[str]) -> list[str]:
    """``chrootcheck/<slug of the jail path>/``: GitHub takes the part before the last "/" as
    the category. Distinct jails get distinct ids even when their slugs collide."""
    seen: dict[str, int] = {}
    out = []
    for jail in jails:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", printable(jail)).strip("-") or "root"
        n = seen.get(slug, 0) + 1
        seen[slug] = n
        out.append(f"chrootcheck/{slug if n == 1 else f'{slug}-{n}'}/")
    return out


def fingerprint(check_id: str, in_jail_path: str) -> str:
    # Stable across runs and machines: the host path of the jail (a temp dir in CI) is left
    # out; the jail itself is told apart by the run's category.
    data = f"{check_id}\0{in_jail_path}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()


def _run(
    report: Report, jail: JailReport, automation_id: str, options: RenderOptions
) -> dict[str, Any]:
    catalogue = checks.CHECKS
    findings = sort_findings(jail.findings)
    rule_ids = list(catalogue)
    rules = [rule(c) for c in catalogue.values()]
    for f in findings:  # a finding from a check nobody registered still needs its rule
        if f.check not in catalogue and f.check not in rule_ids:
            rule_ids.append(f.check)
            rules.append(
                {"id": f.check, "shortDescription": {"text": f.check}, "helpUri": checks.DOCS_URL}
            )
    index = {rid: i for i, rid in enumerate(rule_ids)}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "chrootcheck",
                "version": report.tool_version or "0",
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }
        },
        "automationDetails": {
            "id": automation_id,
            "description": {"text": f"chrootcheck scan of {printable(jail.jail)}"},
        },
        "originalUriBaseIds": {
            JAIL_BASE_ID: {
                "uri": jail_base_uri(jail.jail),
                "description": {"text": "the jail's root folder"},
            }
        },
        "invocations": [_invocation(jail, rule_ids)],
        "results": [_result(jail, f, index[f.check], report.fail_on, options) for f in findings],
        "properties": {
            "jail": printable(jail.jail),
            "failOn": report.fail_on.value,
            # The probe's own report (libcrypto, scenarios, prediction), when it ran.
            "probe": to_data(jail.probe) if jail.probe is not None else None,
        },
    }
    if jail.process is not None:  # scan --pid/--running: the service and its time to failure
        run["properties"]["process"] = to_data(jail.process)
    return run


def _invocation(jail: JailReport, rule_ids: list[str]) -> dict[str, Any]:
    notes = [
        {
            "level": NOTIFICATION_LEVEL[n.kind],
            "message": {"text": printable(f"{n.label}: {n.message}")},
            "descriptor": {"id": printable(n.label)},
            "properties": {"kind": n.kind.value},
        }
        for n in jail.notices
    ]
    invocation: dict[str, Any] = {
        "executionSuccessful": not jail.tool_error,
        "toolExecutionNotifications": notes,
    }
    # The rules whose stage did not run, by stage (the notification's descriptor id): they
    # have no result because they were skipped, not because they passed.
    not_run: dict[str, list[str]] = {}
    for check_id, n in skipped_checks(jail, rule_ids).items():
        not_run.setdefault(n.label, []).append(check_id)
    if not_run:
        invocation["properties"] = {"skippedChecks": not_run}
    return invocation


def _result(
    jail: JailReport, f: Finding, rule_index: int, fail_on: Severity, options: RenderOptions
) -> dict[str, Any]:
    anchor = options.sarif_anchor
    loc: Location = (
        anchor_location(anchor) if anchor else location_for(jail.jail, f.path, options.locations)
    )
    artifact: dict[str, Any] = {"uri": loc.uri}
    if loc.base_id:
        artifact["uriBaseId"] = loc.base_id
    node = printable(f.path)
    return {
        "ruleId": f.check,
        "ruleIndex": rule_index,
        "level": LEVEL[f.severity],
        "message": {"text": f"{node}: {printable(f.message)} Fix: {printable(f.remediation)}"},
        "locations": [
            {
                "physicalLocation": {"artifactLocation": artifact, "region": {"startLine": 1}},
                "message": {"text": f"{node} in the jail {printable(jail.jail)}"},
            }
        ],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(f.check, f.path)},
        "properties": {
            "jail": printable(jail.jail),
            "path": node,
            "hostPath": printable(jail.jail.rstrip("/") + f.path),
            "severity": f.severity.value,
            "failing": f.severity >= fail_on,
            "remediation": printable(f.remediation),
            "details": to_data(f.details),
        },
    }


def _pascal(slug: str) -> str:
    return "".join(part.capitalize() for part in slug.split("-"))
