"""Exit codes, the one place that defines them and decides them for every command
(documented in README.md, docs/fix.md, docs/decode.md and docs/fleet.md).

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
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the model's dataclasses cost every command's start-up; ps needs none
    from chrootcheck.report.model import Report


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1
    TOOL_ERROR = 2


def for_signal(signum: int) -> int:
    """The shell's convention for a process that a signal stopped."""
    return 128 + signum


def for_report(report: Report) -> ExitCode:
    """``scan``, and the scan after ``fix`` and ``demo``."""
    # A tool error wins over findings: a half-done scan must not look like a verdict.
    if report.tool_error:
        return ExitCode.TOOL_ERROR
    if report.failing():
        return ExitCode.FINDINGS
    return ExitCode.OK


class FixOutcome(Protocol):
    """What ``fix`` and ``demo`` decide on (``fix.fixer.FixRun`` has it)."""

    @property
    def refused(self) -> bool: ...
    @property
    def steps_failed(self) -> bool: ...
    @property
    def scan(self) -> Report | None: ...


def for_fix(run: FixOutcome) -> ExitCode:
    """``fix`` and ``demo``: a refusal or a failed step is a tool error; otherwise the scan
    after the fix decides (no scan: a dry run whose plan can be applied, 0)."""
    if run.refused or run.steps_failed:
        return ExitCode.TOOL_ERROR
    return for_report(run.scan) if run.scan is not None else ExitCode.OK


def for_decode(entropy_chains: int) -> ExitCode:
    """``decode``: 1 when an entropy or DRBG error chain (or message), or a PKCS#11 token
    error chain, was found (docs/decode.md)."""
    return ExitCode.FINDINGS if entropy_chains else ExitCode.OK


def for_discover(errors: int) -> ExitCode:
    """``discover``: a config that could not be read is a tool error; no jail found is not."""
    return ExitCode.TOOL_ERROR if errors else ExitCode.OK


def for_listing() -> ExitCode:
    """``info`` and ``ps`` report, they never judge: 0 whenever they could do their job (a
    failure raises a ToolError, which ``cli`` turns into 2)."""
    return ExitCode.OK


class PluginState(enum.IntEnum):
    """The Nagios/Icinga plugin convention, used instead of ExitCode when the scan writes
    ``--format nagios`` (docs/fleet.md): monitoring reads 2 as CRITICAL, never as a tool error."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


def for_plugin(report: Report) -> PluginState:
    # --fail-on still decides what counts: findings below it are OK. Among those that count,
    # an error or critical one is CRITICAL, warnings and infos (--fail-on warning|info) WARNING.
    # A tool error is UNKNOWN, whatever else was found: the check did not run in full.
    if report.tool_error:
        return PluginState.UNKNOWN
    failing = [f.severity for _, f in report.failing()]
    from chrootcheck.report.model import Severity

    if any(s >= Severity.ERROR for s in failing):
        return PluginState.CRITICAL
    if failing:
        return PluginState.WARNING
    return PluginState.OK
