"""``--format text``: a table per jail for people. Colour only on a terminal; NO_COLOR honoured.

Every file name goes through ``printable`` and into ``rich.text.Text`` with markup off, so a
path like ``/jail/[red]x`` or one with an escape sequence prints literally.
"""

from __future__ import annotations

import os
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import More, capped, jail_status, printable
from chrootcheck.formats.common import rich_console as make_rich_console
from chrootcheck.report.model import (
    JailReport,
    NoticeKind,
    Report,
    RunningProcess,
    Severity,
    duration_words,
    sort_findings,
)

SEVERITY_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.ERROR: "bold red",
    Severity.WARNING: "yellow",
    Severity.INFO: "cyan",
}
STATUS_STYLE = {"pass": "bold green", "fail": "bold red", "error": "bold magenta"}


# Off a terminal (a CI log, a file) rich would wrap at 80 columns; paths and messages read
# better wider. COLUMNS still wins.
PIPE_WIDTH = 120


def make_console(stream: TextIO, options: RenderOptions) -> Console:
    width = options.width
    if width is None and "COLUMNS" not in os.environ and not _isatty(stream):
        width = PIPE_WIDTH
    return make_rich_console(
        file=stream,
        # None lets rich decide from the stream (a terminal or not, NO_COLOR, TERM=dumb).
        force_terminal=True if options.color else None,
        width=width,
        soft_wrap=False,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def render(report: Report, stream: TextIO, options: RenderOptions) -> None:
    console = make_console(stream, options)
    for i, jail in enumerate(report.jails):
        if i:
            console.print()
        render_jail(console, jail, report)
    console.print()
    console.print(summary_text(report))


def render_jail(console: Console, jail: JailReport, report: Report) -> None:
    status = jail_status(jail, report)
    head = Text.assemble(
        ("Jail ", "bold"),
        (printable(jail.jail), "bold"),
        "  ",
        (status.upper(), STATUS_STYLE[status]),
    )
    console.print(head)
    if jail.process is not None:
        for line in process_lines(jail.process):
            console.print(Text(line))
    findings = sort_findings(jail.findings)
    if findings:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
        table.add_column("severity", no_wrap=True)
        table.add_column("check", no_wrap=True)
        table.add_column("path", overflow="fold")
        table.add_column("finding", overflow="fold", ratio=1)
        for f in capped(findings, lambda f: f.check):
            if isinstance(f, More):
                last = f.last_shown.severity
                table.add_row(
                    Text(last.value, SEVERITY_STYLE[last]),
                    Text(f.last_shown.check),
                    Text("..."),
                    Text(
                        f"{f.left_out} more {f.last_shown.check} finding(s) not shown here "
                        f"({f.shown} of {f.total}); --format json lists them all",
                        "italic",
                    ),
                )
                continue
            body = Text(printable(f.message))
            if f.severity >= Severity.WARNING:
                body.append("\nfix: ", style="bold")
                body.append(printable(f.remediation))
            table.add_row(
                Text(f.severity.value, SEVERITY_STYLE[f.severity]),
                Text(f.check),
                Text(printable(f.path)),
                body,
            )
        console.print(table)
    elif not jail.tool_error:
        console.print(Text("  no findings: /dev/urandom and /dev/random are correct", "green"))
    for notice in capped(jail.notices, lambda n: (n.kind, n.label)):
        n = notice.last_shown if isinstance(notice, More) else notice
        style = {NoticeKind.ERROR: "bold magenta", NoticeKind.SKIPPED: "yellow"}.get(n.kind, "dim")
        text = (
            f"{notice.left_out} more {n.label} notice(s) not shown here "
            f"({notice.shown} of {notice.total}); --format json lists them all"
            if isinstance(notice, More)
            else f"{n.label}: {n.message}"
        )
        console.print(Text.assemble(("  " + n.kind.value + ": ", style), (printable(text), "")))
    if jail.walk.entries:
        console.print(
            Text(
                f"  walked {jail.walk.entries} entries in {jail.walk.directories} "
                f"folders ({jail.walk.seconds:.3f} s)",
                "dim",
            )
        )
    if jail.probe is not None:
        from chrootcheck.formats.probe_text import probe_renderables

        for renderable in probe_renderables(jail.probe):
            console.print(renderable)
    ttf = jail.process.time_to_failure if jail.process is not None else None
    if ttf is not None:
        style = {"safe": "green", "fails": "bold red"}.get(ttf.verdict, "yellow")
        console.print(Text.assemble(("  time to failure: ", "bold"), (printable(ttf.text), style)))
    old = jail.process.old_kernel_time_to_failure if jail.process is not None else None
    if old is not None:
        style = {"safe": "green", "fails": "bold red"}.get(old.verdict, "yellow")
        console.print(Text.assemble(("  on an old kernel: ", "bold"), (printable(old.text), style)))


def process_lines(p: RunningProcess) -> list[str]:
    """The running service of a scan --pid/--running, a few lines (safe text)."""
    up = f", up {duration_words(p.uptime)}" if p.uptime is not None else ""
    who = f"{p.user or '?'} (uid {p.uid}, gid {p.gid})" if p.uid is not None else "unknown user"
    lib = p.library or "no libcrypto mapped"
    if p.library_version:
        lib += f" ({p.library_version}, on disk: {p.library_on_disk})"
    devices = ", ".join(p.random_devices) or "none"
    filters = f", {p.seccomp_filters} filter(s)" if p.seccomp_filters else ""
    lines = [
        f"  process: {p.command}[{p.pid}] as {who}{up}, {p.confinement} at {p.root}"
        + (f", daemon {p.daemon}" if p.daemon else ""),
        f"  processes of the jail: {', '.join(map(str, p.processes))}",
        f"  library: {lib}; probed with {p.library_probed}",
        f"  random devices held open: {devices}; seccomp {p.seccomp}{filters}: "
        f"getrandom {p.getrandom}",
    ]
    if p.old_kernel:
        lines.append(f"  old kernel: {p.old_kernel}")
    lines.extend(f"  note: {n}" for n in p.notes)
    return [printable(line) for line in lines]


def summary_text(report: Report) -> Text:
    counts = report.counts()
    parts = ", ".join(
        f"{counts[s.value]} {s.value}" for s in reversed(list(Severity)) if counts[s.value]
    )
    failing = len(report.failing())
    text = Text(f"{len(report.jails)} jail(s): {parts or 'no findings'}. ")
    if report.tool_error:
        text.append("chrootcheck could not check everything (exit 2).", "bold magenta")
    elif failing:
        text.append(
            f"{failing} finding(s) at or above {report.fail_on.value} (exit 1).", "bold red"
        )
    else:
        text.append(f"Nothing at or above {report.fail_on.value} (exit 0).", "bold green")
    return text
