"""Helpers every format shares: safe text for file names, and the report as plain data."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from typing import Any

from chrootcheck import checks
from chrootcheck.model import SCHEMA_VERSION, Finding, JailReport, Report, sort_findings

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(s: str) -> str:
    """A file name as text that is safe anywhere: undecodable bytes (kept by the OS layer as
    surrogates) become ``\\xNN``, control characters (newlines, ESC ...) become escapes too,
    so a hostile name can neither crash an encoder nor drive the terminal."""
    s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), s)


def to_data(obj: Any) -> Any:
    """Dataclasses, enums, mappings and sequences as JSON-ready data; every string made safe."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return to_data(obj.value)
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, Mapping):
        return {printable(str(k)): to_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_data(v) for v in obj]
    if isinstance(obj, bytes):
        return printable(obj.decode("utf-8", "surrogateescape"))
    return obj


def finding_data(f: Finding) -> dict[str, Any]:
    check = checks.CHECKS.get(f.check)
    return {
        "check": f.check,
        "name": check.name if check else None,
        "severity": f.severity.value,
        "path": printable(f.path),
        "message": printable(f.message),
        "remediation": printable(f.remediation),
        "details": to_data(f.details),
    }


def jail_data(j: JailReport, report: Report) -> dict[str, Any]:
    return {
        "jail": printable(j.jail),
        "status": jail_status(j, report),
        "findings": [finding_data(f) for f in sort_findings(j.findings)],
        "notices": to_data(j.notices),
        "libcrypto": to_data(j.libcrypto),
        "walk": to_data(j.walk),
        "probe": to_data(j.probe) if j.probe is not None else None,
    }


def jail_status(j: JailReport, report: Report) -> str:
    """ "error" (the tool could not check it), "fail" or "pass" against --fail-on."""
    if j.tool_error:
        return "error"
    return "fail" if j.at_or_above(report.fail_on) else "pass"


def report_data(report: Report) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "chrootcheck", "version": report.tool_version},
        "jails": [jail_data(j, report) for j in report.jails],
        "summary": report.summary(),
    }
