"""``--format github``: workflow-command annotations on stdout, the full table in the job summary.

GitHub shows at most 10 errors and 10 warnings (and 10 notices) per step, so at most 10
annotations per level are printed, worst first; a plain log line says how many were left out.
When ``$GITHUB_STEP_SUMMARY`` is set, the command (commands.options.write_outputs) appends
``render_summary``'s Markdown to it (other steps write to the same file): the findings as a
table, at most ``MAX_LISTED`` of one check and a count of the rest, the notices, and the checks
that did not run. A stage that did not run is a ``::notice`` annotation; the renderers write
only to the stream they are given.

Annotations carry ``file=`` only when it can be linked: the ``--sarif-anchor`` file, or the
node's folder when the jail lies inside the checkout. Never a device (see formats.locations).
"""

from __future__ import annotations

from typing import TextIO

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import More, capped, jail_status, printable, skipped_checks
from chrootcheck.formats.locations import anchor_location, location_for
from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import (
    Finding,
    JailReport,
    NoticeKind,
    Report,
    Severity,
    sort_findings,
)

MAX_PER_LEVEL = 10
LEVEL = {
    Severity.CRITICAL: "error",
    Severity.ERROR: "error",
    Severity.WARNING: "warning",
    Severity.INFO: "notice",
}
# A skip is shown, not a problem (it fails nothing unless asked): a notice, not a warning.
NOTICE_LEVEL = {NoticeKind.ERROR: "error", NoticeKind.SKIPPED: "notice", NoticeKind.NOTE: "notice"}


def escape_data(s: str) -> str:
    """The message part of a workflow command."""
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(s: str) -> str:
    """A property value (file=, title=): also ':' and ','."""
    return escape_data(s).replace(":", "%3A").replace(",", "%2C")


def command(
    level: str,
    message: str,
    *,
    title: str | None = None,
    file: str | None = None,
    line: int | None = None,
) -> str:
    props = []
    if file is not None:
        props.append(f"file={escape_property(file)}")
        if line is not None:
            props.append(f"line={line}")
    if title is not None:
        props.append(f"title={escape_property(title)}")
    head = f"::{level} {','.join(props)}" if props else f"::{level}"
    return f"{head}::{escape_data(message)}"


def render(report: Report, stream: TextIO, options: RenderOptions) -> None:
    lines: dict[str, list[str]] = {"error": [], "warning": [], "notice": []}
    for jail in report.jails:
        for n in jail.notices:
            lines[NOTICE_LEVEL[n.kind]].append(
                command(
                    NOTICE_LEVEL[n.kind],
                    printable(f"{jail.jail}: {n.label}: {n.message}"),
                    title=f"chrootcheck {n.kind.value}",
                )
            )
        for f in sort_findings(jail.findings):
            lines[LEVEL[f.severity]].append(_annotation(jail, f, options))
    for level, cmds in lines.items():
        for cmd in cmds[:MAX_PER_LEVEL]:
            stream.write(cmd + "\n")
        if len(cmds) > MAX_PER_LEVEL:
            where = "the job summary" if options.step_summary else "the text or SARIF output"
            stream.write(
                f"chrootcheck: {len(cmds) - MAX_PER_LEVEL} more {level} annotation(s) "
                f"not shown (GitHub shows {MAX_PER_LEVEL} per level); see {where}.\n"
            )


def render_summary(report: Report, stream: TextIO, options: RenderOptions) -> None:
    """The job summary: the command opens ``$GITHUB_STEP_SUMMARY`` (to append) and passes it."""
    stream.write(step_summary(report))


def _annotation(jail: JailReport, f: Finding, options: RenderOptions) -> str:
    anchor = options.sarif_anchor
    check = checks.CHECKS.get(f.check)
    title = f"{f.check} {check.title}" if check else f.check
    loc = anchor_location(anchor) if anchor else location_for(jail.jail, f.path, options.locations)
    file = loc.path if loc.base_id is None else None  # only paths GitHub can resolve
    message = (
        f"{printable(jail.jail)}: {printable(f.path)}: {printable(f.message)}\n"
        f"Fix: {printable(f.remediation)}"
    )
    return command(
        LEVEL[f.severity], message, title=title, file=file, line=1 if file is not None else None
    )


def _cell(s: str) -> str:
    return printable(s).replace("\\", "\\\\").replace("|", "\\|")


def step_summary(report: Report) -> str:
    """The whole report as Markdown for ``$GITHUB_STEP_SUMMARY``."""
    out = ["## chrootcheck scan", ""]
    for jail in report.jails:
        status = jail_status(jail, report)
        out.append(f"### `{_cell(jail.jail)}`: {status.upper()}")
        out.append("")
        findings = sort_findings(jail.findings)
        if findings:
            out.append("| severity | check | path | finding | fix |")
            out.append("|---|---|---|---|---|")
            for f in capped(findings, lambda f: f.check):
                if isinstance(f, More):  # GitHub takes 1 MiB of summary per step
                    out.append(
                        f"| | {f.last_shown.check} | ... | {f.left_out} more not shown "
                        f"({f.shown} of {f.total}); the JSON or SARIF output lists "
                        "them all | |"
                    )
                    continue
                check = checks.CHECKS.get(f.check)
                link = f"[{f.check}]({check.help_uri})" if check else f.check
                out.append(
                    f"| {f.severity.value} | {link} | `{_cell(f.path)}` | "
                    f"{_cell(f.message)} | {_cell(f.remediation)} |"
                )
        else:
            out.append("No findings.")
        for n in capped(jail.notices, lambda n: (n.kind, n.label)):
            if isinstance(n, More):
                out.append(
                    f"- {n.left_out} more {_cell(n.last_shown.label)} notice(s) not "
                    f"shown ({n.shown} of {n.total})"
                )
                continue
            out.append(f"- **{n.kind.value}** {_cell(n.label)}: {_cell(n.message)}")
        not_run = skipped_checks(jail, checks.CHECKS)
        if not_run:
            out.append(f"- **skipped checks** (their stage did not run): {', '.join(not_run)}")
        out.append("")
    counts = report.counts()
    parts = ", ".join(
        f"{counts[s.value]} {s.value}" for s in reversed(list(Severity)) if counts[s.value]
    )
    out.append(
        f"{len(report.jails)} jail(s): {parts or 'no findings'}; "
        f"{len(report.failing())} at or above `{report.fail_on.value}`."
    )
    out.append("")
    return "\n".join(out) + "\n"
