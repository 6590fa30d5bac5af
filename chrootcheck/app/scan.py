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
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from chrootcheck import __version__
from chrootcheck.app.context import JailContext, open_context
from chrootcheck.app.stages import (
    Inspect,
    LateLoadProbe,
    LateLoads,
    Live,
    Probe,
    RunningProbe,
    SandboxStage,
    StageResult,
    skipped,
)
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
    RunningProcess,
    Severity,
    Stage,
)

if TYPE_CHECKING:
    from chrootcheck.lateload.check import EntropyPolicy, OpenSSLPaths
    from chrootcheck.openssl.hsm import DaemonLoads, EngineKey
    from chrootcheck.probe import ProbeOptions
    from chrootcheck.probe.isolated import PreparedLibrary
    from chrootcheck.probe.scenarios import Running
    from chrootcheck.sandbox.model import Sandbox
    from chrootcheck.system.worker import Pool

ProgressFactory = Callable[[str], AbstractContextManager[Callable[[int], None] | None]]


@dataclass(frozen=True)
class Target:
    """One jail to scan, with what we know about the service that uses it."""

    path: str
    user: ServiceUser | None = None
    notes: tuple[str, ...] = ()
    provides_devices: bool = False  # systemd PrivateDevices=yes: the unit brings its own /dev
    # The service's sandbox (--unit, --seccomp-profile, a discovered unit): the probe's
    # as-configured scenario, and PrivateDevices= through the same model.
    sandbox: Sandbox | None = None
    daemon: str | None = None  # its daemon profile, "NAME:MODE" (discover): for the prediction
    # The key its daemon loads through an engine before the chroot (its config): the late
    # loads follow the module, the late-load probe uses the key.
    engine_key: EngineKey | None = None
    # The engines and providers its daemon's config loads (haproxy's ssl-engine ...).
    loads: DaemonLoads | None = None
    # scan --pid/--running (app.running): the process, its own library when it may be
    # loaded (prepared and closed by the caller), and the as-running scenario's conditions.
    process: RunningProcess | None = None
    library: PreparedLibrary | None = None
    running: Running | None = None
    root_fd: int | None = None  # the jail root, opened already (/proc/PID/root): dup'ed


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
    # How many jails' probes run at once (scan --jobs); None: one per core.
    jobs: int | None = None
    # The daemon named by hand (scan --daemon): its profile says what it loads before its
    # chroot. A target's own (discover, --daemon-config) comes first.
    daemon: str | None = None
    # An engine key for every jail (scan --key): a target's own comes first.
    engine_key: EngineKey | None = None


def default_jobs() -> int:
    """One jail's probe per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


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
        reports = _scan_all(targets, request, library, progress)
    finally:
        if own is not None:
            own.close()
    return Report(jails=reports, fail_on=request.fail_on, tool_version=__version__)


def _scan_all(
    targets: Sequence[Target],
    request: ScanRequest,
    library: PreparedLibrary | None,
    progress: ProgressFactory | None,
) -> list[JailReport]:
    """Every jail in order, through a rolling pool: a jail's static stages run while the
    probes of the jails before it run; once fewer than ``jobs`` jails are in flight, its
    probe's children are forked into the one ``worker.Pool`` (the oldest jail's probe is
    waited for and its report made first when ``jobs`` are; the pool reads every jail's
    children meanwhile). So the parent's own work (the walk, the late loads, judging) overlaps
    the children's, at most ``jobs`` probes run and ``jobs`` + 1 jails are held at once, and
    the reports keep the jails' order. Every jail's root descriptor is closed and every child
    killed and reaped on every way out, signals included."""
    paths = _openssl_paths(library)
    jobs = max(1, request.jobs or default_jobs())
    late = LateLoads(memo={})  # the host's config, parsed once for all the jails
    probe = Probe(request.probe) if request.probe is not None else None
    scan_jails = [os.path.abspath(t.path) for t in targets]  # what OPENSSL_CONF is vetted against
    reports: list[JailReport] = []
    in_flight: deque[_Pending | JailReport] = deque()
    with ExitStack() as stack:
        stack.callback(_abandon, in_flight)  # after the pool's children are reaped (LIFO)
        pool = None
        if probe is not None:
            from chrootcheck.system.worker import Pool  # only a probe forks

            pool = stack.enter_context(Pool())
        for target in targets:
            # Its static stages while the jails before it still probe; then its probe once
            # fewer than ``jobs`` are in flight.
            pending = _begin(target, request, library, paths, progress, late)
            try:
                while len(in_flight) >= jobs:
                    reports.append(_complete(in_flight.popleft(), probe, pool))
            except BaseException:
                if isinstance(pending, _Pending):
                    pending.stack.close()
                raise
            in_flight.append(pending)
            if isinstance(pending, _Pending) and pending.probe:
                assert probe is not None and pool is not None
                pending.running = probe.start(
                    pool, pending.ctx, tuple(pending.findings), scan_jails
                )
        while in_flight:
            reports.append(_complete(in_flight.popleft(), probe, pool))
    return reports


def _begin(
    target: Target,
    request: ScanRequest,
    library: PreparedLibrary | None,
    paths: Callable[[], OpenSSLPaths],
    progress: ProgressFactory | None,
    late: LateLoads,
) -> _Pending | JailReport:
    """A jail's context and static stages; a report at once if the jail cannot be opened."""
    path = os.path.abspath(target.path)
    notes = tuple(Notice(NoticeKind.NOTE, Stage.DISCOVER, n) for n in target.notes)
    provides, env = target.provides_devices, request.env
    daemon = target.daemon or request.daemon
    if target.sandbox is not None:
        # PrivateDevices=yes mounts its /dev in the jail only when the jail is the unit's
        # RootDirectory=; a daemon that chroots itself still sees the jail's /dev.
        own_root = target.sandbox.own_root()
        provides = provides or (own_root and target.sandbox.provides_devices())
        if target.sandbox.openssl_conf:  # the unit's Environment=: the late loads follow it
            env = {**request.env, "OPENSSL_CONF": target.sandbox.openssl_conf}
        if target.sandbox.module_env:  # SOFTHSM2_CONF ...: the modules' state follows it
            env = {**env, **dict(target.sandbox.module_env)}
    own = target.library  # the running process's own library (scan --pid)
    with ExitStack() as stack:
        try:
            ctx = stack.enter_context(
                open_context(
                    path,
                    target.user,
                    own or library,
                    _openssl_paths(own) if own is not None else paths,
                    env,
                    provides,
                    target.sandbox,
                    daemon,
                    engine_key=target.engine_key or request.engine_key,
                    loads=target.loads,
                    running=target.running if request.probe is not None else None,
                    opened=target.root_fd,
                )
            )
        except jailfs.JailOpenError as e:  # only open_context raises it
            error = Notice(NoticeKind.ERROR, Stage.INSPECT, str(e), part="jail")
            return JailReport(jail=path, notices=[error, *notes], process=target.process)
        pending = _static_stages(ctx, request, notes, progress, late)
        pending.report.process = target.process
        pending.stack = stack.pop_all()  # the context stays open until the jail's report
    return pending


def _complete(item: _Pending | JailReport, probe: Probe | None, pool: Pool | None) -> JailReport:
    """The jail's report, once its probe (if any) has ended; its context closed."""
    if isinstance(item, JailReport):
        return item
    with item.stack:
        if item.running is not None:
            assert probe is not None and pool is not None
            running, item.running = item.running, None
            result = probe.finish(pool, running)
            item.add(result)
            item.report.probe = result.extra
        _live_stage(item)
        return item.finish()


def _abandon(in_flight: deque[_Pending | JailReport]) -> None:
    """On the way out early (an error, a signal): close what the jails still hold."""
    with ExitStack() as stack:
        for item in in_flight:
            if isinstance(item, _Pending):
                stack.push(item.stack)
                if item.running is not None:
                    stack.callback(item.running.close)
    in_flight.clear()


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


def _live_stage(p: _Pending) -> None:
    """After the probe: a running service's time to failure (scan --pid/--running)."""
    process = p.report.process
    if process is None:
        p.add(skipped(Stage.LIVE, "not run: no --pid or --running"))
        return
    live = Live(process, p.report.probe).run(p.ctx, p.findings)
    p.add(live)
    from chrootcheck.app.running import old_kernel_time_to_failure

    p.report.process = replace(
        process,
        time_to_failure=live.extra,
        old_kernel_time_to_failure=old_kernel_time_to_failure(process, p.report.probe),
    )


@dataclass
class _Pending:
    """A jail between its static stages and its probe."""

    ctx: JailContext
    report: JailReport
    findings: list[Finding]
    notices: list[Notice]
    probe: bool
    stack: ExitStack = field(default_factory=ExitStack)  # holds the context open
    running: RunningProbe | None = None  # the probe's children, in the scan's pool

    def add(self, result: StageResult[object]) -> None:
        self.findings.extend(result.findings)
        self.notices.extend(result.notices)

    def finish(self) -> JailReport:
        findings = self.findings
        if self.ctx.provides_devices:
            measured = _as_configured_passed(self.report.probe)
            if measured is not False:  # a measured failure keeps the findings as they are
                findings = relax_for_private_devices(findings, measured=bool(measured))
        self.report.findings, self.report.notices = findings, self.notices
        return self.report


def _static_stages(
    ctx: JailContext,
    request: ScanRequest,
    notes: tuple[Notice, ...],
    progress: ProgressFactory | None,
    late_loads: LateLoads,
) -> _Pending:
    """The inspector and the late loads; the probe, if it runs, comes later (_scan_all)."""
    bar = progress(f"scanning {ctx.path}") if progress else nullcontext(None)
    with bar as callback:
        inspected = Inspect(request.inspect, callback).run(ctx, ())
    report = JailReport(jail=ctx.path)
    if inspected.extra is not None:
        report.walk, report.libcrypto = inspected.extra.walk, list(inspected.extra.libcrypto)
    pending = _Pending(ctx, report, list(inspected.findings), [*inspected.notices, *notes], False)
    broken = any(n.kind is NoticeKind.ERROR for n in pending.notices)

    def not_run(stage: Stage) -> StageResult[None]:
        why = "the jail could not be inspected" if broken else request.not_asked.get(stage)
        return skipped(stage, f"not run: {why or 'not asked for'}")

    if ctx.sandbox is not None and not broken:
        pending.add(SandboxStage(ctx.sandbox).run(ctx, pending.findings))
    else:
        why = "the jail could not be inspected" if broken else "no --unit or --seccomp-profile"
        pending.add(skipped(Stage.SANDBOX, f"not run: {why}"))
    if request.late_loads and not broken:
        late = late_loads.run(ctx, pending.findings)
        pending.add(late)
        if late.extra is not None:
            pending.findings = relax_for_config(pending.findings, late.extra)
    else:
        pending.add(not_run(Stage.LATE_LOADS))
    if request.probe is not None and not broken:
        pending.add(LateLoadProbe(max(10.0, request.probe.timeout)).run(ctx, pending.findings))
    else:
        pending.add(not_run(Stage.LATE_LOAD_PROBE))
    if request.probe is not None and not broken:
        pending.probe = True
    else:
        pending.add(not_run(Stage.PROBE))
    return pending


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


def _as_configured_passed(probe: object) -> bool | None:
    """Whether the probe's as-configured scenario (systemd's private /dev reproduced in the
    jail) passed, with 1.0.2/1.1.0 reading a device there; None where it did not run."""
    from chrootcheck.probe.analysis import legacy_blind
    from chrootcheck.probe.model import ProbeReport, Verdict
    from chrootcheck.probe.scenarios import AS_CONFIGURED

    if not isinstance(probe, ProbeReport):
        return None
    r = next((s for s in probe.scenarios if s.name == AS_CONFIGURED), None)
    if r is None or r.verdict is Verdict.SKIPPED:
        return None
    return r.verdict is Verdict.PASS and not legacy_blind(r)


def relax_for_private_devices(findings: Iterable[Finding], measured: bool = False) -> list[Finding]:
    """A systemd unit with PrivateDevices=yes brings its own /dev: the devices are info
    (``measured``: the as-configured scenario passed with it)."""
    note = (
        "Not fatal here: the systemd unit sets PrivateDevices=yes, which gives the "
        "service its own /dev with urandom and random"
        + (" (measured: the as-configured scenario passed with it)." if measured else ".")
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
