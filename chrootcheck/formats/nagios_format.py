"""``--format nagios``: a Nagios/Icinga plugin's output, for NRPE, the Icinga agent or any
engine that runs check plugins (docs/fleet.md).

The first line is the status: ``CHROOTCHECK CRITICAL - <summary> | <perfdata>``; the lines
after it (the plugin "long output") name each failing finding and each jail that could not be
checked. The state word and the exit code both come from ``exitcodes.for_plugin``: 0 OK,
1 WARNING, 2 CRITICAL, 3 UNKNOWN. With this format the scan exits with the plugin's code.

All text is made safe with ``formats.common.printable`` and ``|`` (which starts the perfdata)
becomes ``\\x7c``, so a hostile jail name can neither break the line nor forge perfdata.
"""

from __future__ import annotations

from typing import TextIO

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import printable
from chrootcheck.report.exitcodes import PluginState, for_plugin
from chrootcheck.report.model import JailReport, NoticeKind, Report, Severity, sort_findings

SERVICE = "CHROOTCHECK"
MAX_IN_SUMMARY = 3  # jails named on the status line
MAX_LONG_LINES = 40  # NRPE's reply is limited (v2: 1 KiB, v3/v4: 64 KiB): keep it bounded


def text(s: str) -> str:
    return printable(s).replace("|", "\\x7c")


def status_line(state: PluginState, summary: str) -> str:
    return f"{SERVICE} {state.name} - {summary}"


def perfdata(report: Report, options: RenderOptions) -> str:
    counts = report.counts()
    summary = report.summary()
    failing_jails = sum(
        1 for j in report.jails if not j.tool_error and j.at_or_above(report.fail_on)
    )
    items = [
        ("jails", str(summary["jails"])),
        ("failing_jails", str(failing_jails)),
        ("tool_errors", str(summary["tool_errors"])),
        *((s.value, str(counts[s.value])) for s in reversed(list(Severity))),
        ("failing_findings", str(summary["failing"])),
    ]
    out = [f"{label}={value};;;0" for label, value in items]
    if options.scan_seconds is not None:
        out.append(f"time={options.scan_seconds:.3f}s;;;0")
    return " ".join(out)


def render(report: Report, stream: TextIO, options: RenderOptions) -> None:
    state = for_plugin(report)
    errored = [j for j in report.jails if j.tool_error]
    failing = [j for j in report.jails if not j.tool_error and j.at_or_above(report.fail_on)]
    total = len(report.jails)
    if state is PluginState.UNKNOWN:
        first = errored[0]
        reason = next(n for n in first.notices if n.kind is NoticeKind.ERROR)
        summary = (
            f"{len(errored)} of {total} jail(s) could not be checked: "
            f"{text(first.jail)}: {text(reason.message)}"
        )
        if failing:
            summary += f"; {len(failing)} fail"
    elif state is not PluginState.OK:
        named = ", ".join(_jail_summary(report, j) for j in failing[:MAX_IN_SUMMARY])
        more = f" and {len(failing) - MAX_IN_SUMMARY} more" if len(failing) > MAX_IN_SUMMARY else ""
        summary = f"{len(failing)} of {total} jail(s) fail: {named}{more}"
    elif total == 0:
        summary = "no jail to check (none given, none discovered)"
    else:
        below = sum(report.counts().values())
        summary = f"{total} jail(s) checked, nothing at or above {report.fail_on.value}" + (
            f" ({below} finding(s) below it)" if below else ""
        )
    stream.write(f"{status_line(state, summary)} | {perfdata(report, options)}\n")
    lines: list[str] = []
    for j in errored:
        for n in j.notices:
            if n.kind is NoticeKind.ERROR:
                lines.append(f"{text(j.jail)}: could not check: {text(n.label)}: {text(n.message)}")
    for j in failing:
        for f in sort_findings(j.at_or_above(report.fail_on)):
            lines.append(
                f"{text(j.jail)}: {f.severity.value} {f.check} {text(f.path)}: {text(f.message)}"
            )
    for line in lines[:MAX_LONG_LINES]:
        stream.write(line + "\n")
    if len(lines) > MAX_LONG_LINES:
        stream.write(
            f"... {len(lines) - MAX_LONG_LINES} more line(s): run chrootcheck scan "
            "for the full report\n"
        )


def _jail_summary(report: Report, jail_report: JailReport) -> str:
    worst = sort_findings(jail_report.at_or_above(report.fail_on))
    first = worst[0]
    extra = f" +{len(worst) - 1}" if len(worst) > 1 else ""
    return (
        f"{text(jail_report.jail)} ({first.severity.value} {first.check} {text(first.path)}{extra})"
    )
