"""Exit codes, the one place that defines them (documented in README.md and docs/exit-codes.md).

0  no finding at or above --fail-on
1  findings at or above --fail-on
2  the tool could not do its job: missing jail, not a folder, bad option, unwritable output,
   internal error. A tool error never exits 1, so a pipeline can tell "the jail is bad" from
   "the check did not run".
128 + N  stopped by signal N: 130 SIGINT (Ctrl-C), 143 SIGTERM, 129 SIGHUP, after the same
   clean-up for all three (probe children killed, the fixer's half-made steps undone).
"""

from __future__ import annotations

import enum

from chrootcheck.model import Report


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1
    TOOL_ERROR = 2


def for_signal(signum: int) -> int:
    """The shell's convention for a process that a signal stopped."""
    return 128 + signum


def for_report(report: Report) -> ExitCode:
    # A tool error wins over findings: a half-done scan must not look like a verdict.
    if report.tool_error:
        return ExitCode.TOOL_ERROR
    if report.failing():
        return ExitCode.FINDINGS
    return ExitCode.OK
