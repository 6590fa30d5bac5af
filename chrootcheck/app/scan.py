"""The scan pipeline, one call for every command that scans (scan, fix's re-scan, demo).

For each jail, one context (app.context: the root opened once, the user, the library), then
the stages (app.stages): the static inspector, the files OpenSSL loads late (config, engines,
providers, PKCS#11 modules), the probe (the real libcrypto reseeding inside the jail). Each
returns its findings and notices; the pipeline puts them together and applies the severity
policies as pure functions (a config that seeds without the OS, a unit with PrivateDevices).
A stage that does not run (not asked for, cannot run here) leaves a SKIPPED notice bound to
it, and only a failure of something the user asked for by name is an error.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from chrootcheck import __version__
from chrootcheck.app.context import JailContext, open_context
from chrootcheck.app.stages import Inspect, LateLoads, Probe, StageResult, skipped
from chrootcheck.jail import fs as jailfs
from chrootcheck.jail.inspector import ScanOptions
from chrootcheck.jail.users import ServiceUser
from chrootcheck.report import catalogue
from chrootcheck.report.model import (
    Finding,
    JailReport,
    Notice,
    NoticeKind,
    Report,
    Severity,
    Stage,
)

if TYPE_CHECKING:
    from chrootcheck.lateload.check import EntropyPolicy, OpenSSLPaths
    from chrootcheck.probe import ProbeOptions
    from chrootcheck.probe.isolated import PreparedLibrary

ProgressFactory = Callable[[str], AbstractContextManager[Callable[[int], None] | None]]


@dataclass(frozen=True)
class Target:
    """One jail to scan, with what we know about the service that uses it."""

    path: str
    user: ServiceUser | None = None
    notes: tuple[str, ...] = ()
    provides_devices: bool = False  # systemd PrivateDevices=yes: the unit brings its own /dev
    daemon: str | None = None  # its daemon profile, "NAME:MODE" (discover): for the prediction


@dataclass(frozen=True)
class ScanRequest:
    inspect: ScanOptions = field(default_factory=ScanOptions)
    fail_on: Severity = Severity.ERROR
    probe: ProbeOptions | None = None  # None: no probe (--no-probe, or fix's quick re-scan)
    late_loads: bool = False
    # Why a stage is not asked for, for its skip notice ("--no-probe"); default: "not asked for".
    not_asked: Mapping[Stage, str] = field(default_factory=dict)
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
    library, own = request.library, None
    if library is None and request.libcrypto is not None:
        # Once, before any stage, against every jail of the scan: one cause, one error.
        from chrootcheck.probe.isolated import prepare_library  # cffi: only when asked

        library = own = prepare_library(
            request.libcrypto, [t.path for t in targets], request.allow_jail_libcrypto
        )
    try:
        paths = _openssl_paths(library)
        reports = [_scan_one(t, request, library, paths, progress) for t in targets]
    finally:
        if own is not None:
            own.close()
    return Report(jails=reports, fail_on=request.fail_on, tool_version=__version__)


def _openssl_paths(library: PreparedLibrary | None) -> Callable[[], OpenSSLPaths]:
    """The library's folders, asked once per scan and only when a stage needs them."""

    @functools.cache
    def paths() -> OpenSSLPaths:
        from chrootcheck.lateload.check import OpenSSLPaths, default_paths

        if library is None:  # loads the ssl module's library to ask it
            return default_paths(None)
        openssldir, enginesdir, modulesdir = library.dirs
        loads_config = library.summary.series != "1.0.2"  # 1.0.2 alone never loads it
        return OpenSSLPaths(openssldir, enginesdir or None, modulesdir, loads_config)

    return paths


def _scan_one(
    target: Target,
    request: ScanRequest,
    library: PreparedLibrary | None,
    paths: Callable[[], OpenSSLPaths],
    progress: ProgressFactory | None,
) -> JailReport:
    path = os.path.abspath(target.path)
    notes = tuple(Notice(NoticeKind.NOTE, Stage.DISCOVER, n) for n in target.notes)
    if target.daemon and request.probe is not None and request.probe.daemon is None:
        # discover's profile; a --daemon given by hand wins
        request = replace(request, probe=replace(request.probe, daemon=target.daemon))
    try:
        with open_context(
            path, target.user, library, paths, request.env, target.provides_devices
        ) as ctx:
            return _run_stages(ctx, request, notes, progress)
    except jailfs.JailOpenError as e:  # only open_context raises it
        error = Notice(NoticeKind.ERROR, Stage.INSPECT, str(e), part="jail")
        return JailReport(jail=path, notices=[error, *notes])


def _run_stages(
    ctx: JailContext,
    request: ScanRequest,
    notes: tuple[Notice, ...],
    progress: ProgressFactory | None,
) -> JailReport:
    bar = progress(f"scanning {ctx.path}") if progress else nullcontext(None)
    with bar as callback:
        inspected = Inspect(request.inspect, callback).run(ctx, ())
    findings = list(inspected.findings)
    notices = [*inspected.notices, *notes]
    report = JailReport(jail=ctx.path)
    if inspected.extra is not None:
        report.walk, report.libcrypto = inspected.extra.walk, list(inspected.extra.libcrypto)
    broken = any(n.kind is NoticeKind.ERROR for n in notices)

    def add(result: StageResult[object]) -> None:
        findings.extend(result.findings)
        notices.extend(result.notices)

    def not_run(stage: Stage) -> StageResult[None]:
        why = "the jail could not be inspected" if broken else request.not_asked.get(stage)
        return skipped(stage, f"not run: {why or 'not asked for'}")

    if request.late_loads and not broken:
        late = LateLoads().run(ctx, findings)
        add(late)
        if late.extra is not None:
            findings = relax_for_config(findings, late.extra)
    else:
        add(not_run(Stage.LATE_LOADS))
    if request.probe is not None and not broken:
        probe = Probe(request.probe).run(ctx, tuple(findings))
        add(probe)
        report.probe = probe.extra
    else:
        add(not_run(Stage.PROBE))
    if ctx.provides_devices:
        findings = relax_for_private_devices(findings)
    report.findings, report.notices = findings, notices
    return report


def relax_for_config(findings: Iterable[Finding], policy: EntropyPolicy) -> list[Finding]:
    """A config that seeds OpenSSL without the OS (seed = JITTER) makes a missing device a
    warning, not an error: the jail works for that library and config."""
    findings = list(findings)
    if policy.urandom_needed is not False:
        return findings
    why = policy.reason + (f" ({policy.condition})" if policy.condition else "")
    return [
        _soften(f, Severity.WARNING, f"Not fatal here: {why}.")
        if f.check in catalogue.SEED_SOURCE_MISSING and f.severity > Severity.WARNING
        else f
        for f in findings
    ]


def relax_for_private_devices(findings: Iterable[Finding]) -> list[Finding]:
    """A systemd unit with PrivateDevices=yes brings its own /dev: the devices are info."""
    note = (
        "Not fatal here: the systemd unit sets PrivateDevices=yes, which gives the "
        "service its own /dev with urandom and random."
    )
    return [
        _soften(f, Severity.INFO, note) if f.check in catalogue.SEED_SOURCE_MISSING else f
        for f in findings
    ]


def _soften(f: Finding, severity: Severity, why: str) -> Finding:
    return replace(
        f,
        severity=severity,
        message=f"{f.message} {why}",
        details={**f.details, "severity_lowered_from": f.severity.value},
    )
