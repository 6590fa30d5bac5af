"""``--format junit``: JUnit XML, a test suite per jail and a test case per check.

A check fails (``<failure>``) when it has findings at or above ``--fail-on``; findings below
the threshold pass and are listed in ``<system-out>``. A check is ``<skipped>`` when its stage
did not run (``--no-probe``, ``--no-late-loads``, the probe not possible here: the stage's
skip notice, ``formats.common.skipped_checks``); when the jail could not be checked at all,
every case is an ``<error>``. Skips that cover no check (a part of a stage) get a case of their
own, so a skip is never silent.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TextIO

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import printable, skipped_checks
from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import JailReport, NoticeKind, Report, sort_findings


def render(report: Report, stream: TextIO, options: RenderOptions) -> None:
    root = ET.Element("testsuites", name="chrootcheck")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for jail in report.jails:
        suite = _suite(report, jail)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    stream.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    stream.write(ET.tostring(root, encoding="unicode"))
    stream.write("\n")


def _suite(report: Report, jail: JailReport) -> ET.Element:
    name = printable(jail.jail)
    suite = ET.Element("testsuite", name=name)
    errors = [n for n in jail.notices if n.kind is NoticeKind.ERROR]
    skips = [n for n in jail.notices if n.kind is NoticeKind.SKIPPED]
    catalogue = checks.CHECKS
    ids = list(catalogue) + sorted({f.check for f in jail.findings} - set(catalogue))
    skipped = skipped_checks(jail, ids)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for check_id in ids:
        check = catalogue.get(check_id)
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"chrootcheck.{check_id}",
            name=f"{check_id} {check.name if check else ''}: {name}".strip(),
        )
        counts["tests"] += 1
        findings = sort_findings(f for f in jail.findings if f.check == check_id)
        failing = [f for f in findings if f.severity >= report.fail_on]
        skip = skipped.get(check_id)
        if failing:
            counts["failures"] += 1
            failure = ET.SubElement(
                case,
                "failure",
                type=failing[0].severity.value,
                message=printable(f"{failing[0].path}: {failing[0].message}"),
            )
            failure.text = "\n".join(
                f"[{f.severity.value}] {printable(f.path)}: {printable(f.message)}\n"
                f"fix: {printable(f.remediation)}"
                for f in failing
            )
        elif errors:
            counts["errors"] += 1
            error = ET.SubElement(
                case, "error", type="tool-error", message=printable(errors[0].message)
            )
            error.text = "\n".join(printable(f"{n.label}: {n.message}") for n in errors)
        elif skip is not None and not findings:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=printable(f"{skip.label}: {skip.message}"))
        if findings and not failing:
            ET.SubElement(case, "system-out").text = "\n".join(
                printable(f"[{f.severity.value}] {f.path}: {f.message}") for f in findings
            )
    covering = set(skipped.values())
    for n in skips:
        if n not in covering:
            case = ET.SubElement(
                suite, "testcase", classname="chrootcheck.run", name=printable(f"{n.label}: {name}")
            )
            ET.SubElement(case, "skipped", message=printable(n.message))
            counts["tests"] += 1
            counts["skipped"] += 1
    for key, value in counts.items():
        suite.set(key, str(value))
    return suite
