"""``--format prometheus``: the Prometheus text exposition format (0.0.4), for node_exporter's
textfile collector (docs/fleet.md has the metrics, the alert rules and the systemd timer).

Every metric is a gauge: each file is a fresh snapshot of the last scan, nothing accumulates.
Label values are the same safe text as the JSON report (``formats.common.printable``: bytes
that are not UTF-8 become ``\\xNN``, control characters escapes), then escaped as the
exposition format asks (backslash, double quote, newline), so the file is valid UTF-8 and
parses whatever a jail's path holds. A jail that appears twice (given and discovered) is
exported once.

Absent versus zero: a jail that was checked gets a zero-valued ``chrootcheck_findings`` series
for every check of the catalogue that ran and found nothing, so ``== 0`` means "checked,
clean". A check whose stage did not run (``--no-probe``, ``--no-late-loads``, the probe not
possible here: the stage's skip notice, ``formats.common.skipped_checks``) has no series, and
a jail chrootcheck could not check (``chrootcheck_jail_scan_ok 0``) has only the series of
what it did find.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import printable, skipped_checks
from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import JailReport, Report

PREFIX = "chrootcheck_"
# The probe's verdicts (chrootcheck.probe.model.Verdict), listed here so that the
# rendering never imports the probe.
VERDICTS = ("pass", "fail", "risk", "crashed", "timeout", "skipped")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str  # without the prefix
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((tuple(labels.items()), value))


def escape_label(value: str) -> str:
    """A label value as the exposition format wants it: always valid UTF-8 (surrogates from
    undecodable file names become ``\\xNN`` first), backslash, quote and newline escaped."""
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def exposition(families: Iterable[Family]) -> Iterator[str]:
    """HELP, TYPE and sample lines; a family without samples is left out entirely."""
    for fam in families:
        if not fam.samples:
            continue
        name = PREFIX + fam.name
        yield f"# HELP {name} {escape_help(fam.help)}"
        yield f"# TYPE {name} gauge"
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
            yield (
                f"{name}{{{text}}} {format_value(value)}"
                if text
                else (f"{name} {format_value(value)}")
            )


def render(report: Report, stream: TextIO, options: RenderOptions) -> None:
    for line in exposition(families(report, options)):
        stream.write(line + "\n")


def families(report: Report, options: RenderOptions) -> list[Family]:
    info = Family("build_info", "chrootcheck's version; always 1.")
    last = Family(
        "last_run_timestamp_seconds",
        "When the scan that wrote this file ended, seconds since the epoch.",
    )
    duration = Family("scan_duration_seconds", "How long the whole scan took.")
    scan_ok = Family(
        "jail_scan_ok",
        "1 when chrootcheck could check the jail, 0 when it hit a tool error "
        "(missing jail, unusable --libcrypto ...).",
    )
    failing = Family(
        "jail_failing",
        "1 when the jail has findings at or above --fail-on, else 0; absent when "
        "the jail could not be checked.",
    )
    findings = Family(
        "findings",
        "Findings per jail, check and severity; 0 for a check that ran and "
        "found nothing, absent for one that did not run.",
    )
    scenario_pass = Family(
        "scenario_pass",
        "1 when the probe scenario reseeded inside the jail, 0 when it did "
        "not (fail, environment risk, crash or timeout); absent when "
        "skipped.",
    )
    verdict = Family(
        "scenario_verdict",
        "The probe scenario's verdict: 1 for the verdict it got, 0 for the others.",
    )
    walk = Family("walk_duration_seconds", "How long the walk of the jail took.")
    probe = Family("probe_duration_seconds", "How long the probe of the jail took.")
    ttf = Family(
        "time_to_failure_seconds",
        "Seconds until a running daemon's next reseed fails inside its jail.",
    )

    info.add(1, version=report.tool_version or "unknown")
    last.add(options.finished_at if options.finished_at is not None else time.time())
    if options.scan_seconds is not None:
        duration.add(options.scan_seconds)
    catalogue = checks.CHECKS
    seen: set[str] = set()
    for jail in report.jails:
        name = printable(jail.jail)
        if name in seen:
            continue
        seen.add(name)
        ok = not jail.tool_error
        scan_ok.add(int(ok), jail=name)
        if ok:
            failing.add(int(bool(jail.at_or_above(report.fail_on))), jail=name)
        counts: dict[tuple[str, str], int] = {}
        for f in jail.findings:
            key = (f.check, f.severity.value)
            counts[key] = counts.get(key, 0) + 1
        if ok:
            found = {check for check, _ in counts}
            not_run = skipped_checks(jail, catalogue)
            for check_id, check in catalogue.items():
                if check_id not in found and check_id not in not_run:
                    counts[(check_id, check.severity.value)] = 0
        for (check_id, severity), n in sorted(counts.items()):
            findings.add(n, jail=name, check=check_id, severity=severity)
        walk.add(jail.walk.seconds, jail=name)
        report_probe = jail.probe
        if report_probe is not None and not report_probe.skipped_reason:
            probe.add(report_probe.seconds, jail=name)
            for s in report_probe.scenarios:
                v = str(s.verdict.value)
                if v == "skipped":
                    continue
                scenario_pass.add(int(v == "pass"), jail=name, scenario=s.name)
                for candidate in VERDICTS:
                    verdict.add(int(candidate == v), jail=name, scenario=s.name, verdict=candidate)
        for pid, daemon, seconds in time_to_failure(jail):
            ttf.add(seconds, jail=name, pid=str(pid), daemon=daemon)
    return [
        info,
        last,
        duration,
        scan_ok,
        failing,
        findings,
        scenario_pass,
        verdict,
        walk,
        probe,
        ttf,
    ]


def time_to_failure(jail: JailReport) -> list[tuple[int, str, float]]:
    """(pid, daemon, seconds) of the running service whose reseed will fail in this jail
    (scan --pid/--running). Nothing when no process was scanned, or nothing is predicted
    (safe, unknown): the series is then absent, never 0."""
    process = jail.process
    ttf = process.time_to_failure if process is not None else None
    if process is None or ttf is None or ttf.seconds is None:
        return []
    daemon = process.daemon.partition(":")[0] if process.daemon else process.command
    return [(process.pid, printable(daemon), float(ttf.seconds))]
