"""The scan pipeline, one call for every command that scans (scan, fix's re-scan, demo).

For each jail: the static inspector, then the files OpenSSL loads late (config, engines,
providers, PKCS#11 modules), then the probe (the real libcrypto reseeding inside the jail).
Each later stage only adds findings and notices to the jail's report; a stage that cannot run
says so in a notice, and only a failure of something the user asked for by name is an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from chrootcheck import __version__
from chrootcheck.jail.inspector import ScanOptions, inspect_jail
from chrootcheck.jail.users import ServiceUser
from chrootcheck.openssl.trust import PreparedLibrary, prepare_library
from chrootcheck.report import catalogue
from chrootcheck.report.errors import ToolError
from chrootcheck.report.model import Finding, JailReport, Notice, NoticeKind, Report, Severity

if TYPE_CHECKING:
    from chrootcheck.lateload.check import EntropyPolicy, OpenSSLPaths
    from chrootcheck.probe import ProbeOptions

ProgressFactory = Callable[[str], AbstractContextManager[Callable[[int], None] | None]]


@dataclass(frozen=True)
class Target:
    """One jail to scan, with what we know about the service that uses it."""

    path: str
    user: ServiceUser | None = None
    notes: tuple[str, ...] = ()
    provides_devices: bool = False  # systemd PrivateDevices=yes: the unit brings its own /dev


@dataclass(frozen=True)
class ScanRequest:
    inspect: ScanOptions = field(default_factory=ScanOptions)
    fail_on: Severity = Severity.ERROR
    probe: ProbeOptions | None = None  # None: no probe (--no-probe, or fix's quick re-scan)
    late_loads: bool = False
    # The library whose config/dirs the late-load checks follow and the probe runs: a path,
    # checked and loaded once before any stage (``library``), or already prepared.
    libcrypto: str | None = None
    allow_jail_libcrypto: bool = False  # consent to a libcrypto that fails the trust check
    library: PreparedLibrary | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def scan(
    jails: Sequence[str | Target], request: ScanRequest, progress: ProgressFactory | None = None
) -> Report:
    targets = [j if isinstance(j, Target) else Target(j, request.inspect.user) for j in jails]
    own = None
    if request.library is None and request.libcrypto is not None:
        # Once, before any stage, against every jail of the scan: one cause, one error.
        own = prepare_library(
            request.libcrypto, [t.path for t in targets], request.allow_jail_libcrypto
        )
        request = replace(request, library=own)
    try:
        reports = _scan_targets(targets, request, progress)
    finally:
        if own is not None:
            own.close()
    return Report(jails=reports, fail_on=request.fail_on, tool_version=__version__)


def _scan_targets(
    targets: list[Target], request: ScanRequest, progress: ProgressFactory | None
) -> list[JailReport]:
    paths: OpenSSLPaths | None = None
    reports: list[JailReport] = []
    for target in targets:
        path = os.path.abspath(target.path)
        ctx = progress(f"scanning {path}") if progress else nullcontext(None)
        with ctx as callback:
            report = inspect_jail(
                path, replace(request.inspect, user=target.user, progress=callback)
            )
        report.notices.extend(Notice(NoticeKind.NOTE, "discover", n) for n in target.notes)
        reports.append(report)
        if report.tool_error:
            continue  # the jail itself could not be opened: nothing more to learn
        if request.late_loads:
            paths = _late_loads(report, request, paths)
        if request.probe is not None:
            options = request.probe
            if request.library is not None:
                options = replace(options, library=request.library)
            _probe(report, target, options)
        if target.provides_devices:
            _devices_provided(report)
    return reports


def _late_loads(
    report: JailReport, request: ScanRequest, paths: OpenSSLPaths | None
) -> OpenSSLPaths | None:
    from chrootcheck.lateload.check import OpenSSLPaths, check_jail, default_paths

    try:
        if paths is None and request.library is not None:
            openssldir, enginesdir, modulesdir = request.library.dirs
            paths = OpenSSLPaths(openssldir, enginesdir or None, modulesdir)
        elif paths is None:  # once per scan: it loads the library to ask for its folders
            paths = default_paths(None)
        late = check_jail(report.jail, paths, request.env)
    except ToolError as e:
        kind = NoticeKind.ERROR if request.library else NoticeKind.SKIPPED
        report.notices.append(Notice(kind, "late-loads", f"not checked: {e.message}"))
        return paths
    report.findings.extend(late.findings)
    report.notices.extend(late.notices)
    _apply_policy(report, late.policy)
    return paths


def _apply_policy(report: JailReport, policy: EntropyPolicy) -> None:
    """A config that seeds OpenSSL without the OS (seed = JITTER) makes a missing device a
    warning, not an error: the jail works for that library and config."""
    if policy.urandom_needed is not False:
        return
    why = policy.reason + (f" ({policy.condition})" if policy.condition else "")
    report.findings[:] = [
        _soften(f, Severity.WARNING, f"Not fatal here: {why}.")
        if f.check in catalogue.SEED_SOURCE_MISSING and f.severity > Severity.WARNING
        else f
        for f in report.findings
    ]


def _devices_provided(report: JailReport) -> None:
    note = (
        "Not fatal here: the systemd unit sets PrivateDevices=yes, which gives the "
        "service its own /dev with urandom and random."
    )
    report.findings[:] = [
        _soften(f, Severity.INFO, note) if f.check in catalogue.SEED_SOURCE_MISSING else f
        for f in report.findings
    ]


def _soften(f: Finding, severity: Severity, why: str) -> Finding:
    return replace(
        f,
        severity=severity,
        message=f"{f.message} {why}",
        details={**f.details, "severity_lowered_from": f.severity.value},
    )


def _probe(report: JailReport, target: Target, options: ProbeOptions) -> None:
    from chrootcheck.probe import run_probe

    if target.user is not None:
        options = replace(
            options, uid=target.user.uid, gid=target.user.gid, groups=target.user.groups
        )
    try:
        probe = run_probe(report.jail, report.findings, options)
    except ToolError as e:
        # A library the user named that cannot be used is an error; otherwise the probe is
        # skipped with its reason, and the static findings still stand.
        kind = NoticeKind.ERROR if options.libcrypto or options.library else NoticeKind.SKIPPED
        report.notices.append(Notice(kind, "probe", e.message + (f" ({e.hint})" if e.hint else "")))
        return
    report.probe = probe
    if probe.skipped_reason:
        report.notices.append(Notice(NoticeKind.SKIPPED, "probe", probe.skipped_reason))
    report.findings.extend(probe.findings)
