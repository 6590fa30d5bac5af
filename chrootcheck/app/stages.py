"""The stages of a scan, one signature for all: ``run(ctx, prior) -> StageResult``.

``ctx`` is the jail's context (app.context: the root opened once, the user, the library);
``prior`` the findings of the stages before (the probe explains its failures with them). A
stage returns its findings and notices, and one typed ``extra`` (the walk, the entropy policy
of the config, the probe's report); it never edits a report. A stage that cannot run returns
a SKIPPED notice bound to its ``Stage`` (``skipped``), so every format shows its checks as
skipped, never as passed. The pipeline (app.scan) composes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from chrootcheck.app.context import JailContext
from chrootcheck.jail.inspector import ScanOptions, inspect_root
from chrootcheck.report.errors import ToolError
from chrootcheck.report.model import (
    Finding,
    LibcryptoCopy,
    Notice,
    NoticeKind,
    RunningProcess,
    Stage,
    TimeToFailure,
    WalkStats,
    stage_skipped,
)

if TYPE_CHECKING:
    from chrootcheck.lateload.check import EntropyPolicy
    from chrootcheck.probe import ProbeOptions, ProbeReport
    from chrootcheck.probe.run import Started
    from chrootcheck.sandbox.model import Sandbox
    from chrootcheck.system.worker import Pool

T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class StageResult(Generic[T_co]):
    findings: tuple[Finding, ...] = ()
    notices: tuple[Notice, ...] = ()
    extra: T_co | None = None


class StageRunner(Protocol[T_co]):
    stage: Stage

    def run(self, ctx: JailContext, prior: Sequence[Finding]) -> StageResult[T_co]: ...


def skipped(stage: Stage, why: str) -> StageResult[None]:
    return StageResult(notices=(stage_skipped(stage, why),))


@dataclass(frozen=True)
class Inspected:
    walk: WalkStats
    libcrypto: tuple[LibcryptoCopy, ...]


@dataclass(frozen=True)
class Inspect:
    """The static inspector (jail.inspector) and the walk."""

    options: ScanOptions
    progress: Callable[[int], None] | None = None
    stage: Stage = Stage.INSPECT

    def run(self, ctx: JailContext, prior: Sequence[Finding]) -> StageResult[Inspected]:
        options = replace(self.options, user=ctx.user, progress=self.progress)
        report = inspect_root(ctx.root_fd, ctx.path, options)
        return StageResult(
            tuple(report.findings),
            tuple(report.notices),
            Inspected(report.walk, tuple(report.libcrypto)),
        )


@dataclass(frozen=True)
class LateLoads:
    """The files OpenSSL loads late (lateload.check), for the scan's library."""

    stage: Stage = Stage.LATE_LOADS
    # One scan's parsed configs, shared by its jails (lateload.check_late_loads' memo).
    memo: dict[object, object] | None = None

    def run(self, ctx: JailContext, prior: Sequence[Finding]) -> StageResult[EntropyPolicy]:
        from chrootcheck.lateload.check import check_late_loads
        from chrootcheck.report.daemons import lookup

        profile = lookup(ctx.daemon) if ctx.daemon else None
        try:
            late = check_late_loads(
                ctx.root_fd,
                ctx.path,
                ctx.openssl_paths(),
                ctx.env,
                memo=self.memo,  # type: ignore[arg-type]
                user=ctx.user,
                engine_key=ctx.engine_key,
                daemon_loads=ctx.loads,
                before_chroot=frozenset(profile[0].loads_before_chroot if profile else ()),
                daemon=profile[0].name if profile else "",
                measured=frozenset(profile[0].measured_before_chroot if profile else ()),
            )
        except ToolError as e:
            # Only a library the user named makes this an error.
            kind = NoticeKind.ERROR if ctx.library is not None else NoticeKind.SKIPPED
            return StageResult(notices=(Notice(kind, self.stage, f"not checked: {e.message}"),))
        return StageResult(tuple(late.findings), tuple(late.notices), late.policy)


@dataclass(frozen=True)
class SandboxStage:
    """What the service's sandbox (a unit or a seccomp profile) does to OpenSSL, read from the
    model (chrootcheck.sandbox); the probe's as-configured scenario measures it."""

    sandbox: Sandbox
    stage: Stage = Stage.SANDBOX

    def run(self, ctx: JailContext, prior: Sequence[Finding]) -> StageResult[None]:
        from chrootcheck.sandbox.checks import findings
        from chrootcheck.sandbox.model import ROOT_IMAGE_ADVICE

        said = list(self.sandbox.notes)
        if self.sandbox.root_image and not self.sandbox.root_directory:
            # Never a silent pass: the service's real root is an image we did not open.
            said.append(
                f"RootImage={self.sandbox.root_image}: the image is not scanned; this jail "
                f"({ctx.path}) is checked in its place (to check the image itself, "
                f"{ROOT_IMAGE_ADVICE})"
            )
        notes = tuple(Notice(NoticeKind.NOTE, self.stage, n) for n in said)
        return StageResult(tuple(findings(self.sandbox, prior)), notes)


@dataclass
class RunningProbe:
    """A jail's probe whose children run in a pool (``Probe.start``)."""

    started: Started | ToolError
    options: ProbeOptions

    def close(self) -> None:
        """What the probe holds for itself (a library it prepared), if it never finishes."""
        if not isinstance(self.started, ToolError):
            self.started.close()


@dataclass(frozen=True)
class LateLoadProbe:
    """The daemon's engine key, loaded before the chroot and used inside the jail as the
    service user (probe.lateload); runs only when the jail's daemon has one (its config, or
    --key)."""

    timeout: float = 10.0
    stage: Stage = Stage.LATE_LOAD_PROBE

    def run(self, ctx: JailContext, prior: Sequence[Finding]) -> StageResult[None]:
        from chrootcheck.probe import lateload

        if ctx.engine_key is None:
            return skipped(self.stage, "not run: no engine key (--key, or a daemon's config)")
        if os.geteuid() != 0:  # the daemon's own path: chroot, then setuid, as root
            return skipped(self.stage, "not run: needs root (it chroots as the daemon does)")
        library = None
        if ctx.library is not None:
            if ctx.library.isolated:
                return skipped(
                    self.stage,
                    "not run: the scan's --libcrypto is not root's, and this probe loads "
                    "an engine as root",
                )
            library = ctx.library.loaded
        try:
            enginesdir = ctx.openssl_paths().enginesdir
        except ToolError:
            enginesdir = None
        verdict = lateload.run(
            ctx.path,
            ctx.root_fd,
            ctx.engine_key,
            ctx.env,
            ctx.user,
            libcrypto=library,
            enginesdir=ctx.env.get("OPENSSL_ENGINES") or enginesdir,
            timeout=self.timeout,
        )
        return StageResult(verdict.findings, verdict.notices)


@dataclass(frozen=True)
class Probe:
    """The real libcrypto reseeding inside the jail (chrootcheck.probe), as the service user."""

    options: ProbeOptions
    stage: Stage = Stage.PROBE
    # The triggers measured so far in this scan (probe.run.TriggerMemo): jails that fail
    # alike and look alike from inside share one measurement.
    triggers_measured: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def run(self, ctx: JailContext, prior: Sequence[Finding]) -> StageResult[ProbeReport]:
        return self.run_many([(ctx, prior)])[0]

    def run_many(
        self, jails: Sequence[tuple[JailContext, Sequence[Finding]]]
    ) -> list[StageResult[ProbeReport]]:
        """``run`` for several jails at once: their probes' children run together."""
        from chrootcheck.probe import run_probes

        scan_jails = [c.path for c, _ in jails]
        jobs = [(ctx.path, prior, self.options_for(ctx, scan_jails)) for ctx, prior in jails]
        return [
            self._result(probe, options)
            for probe, (_, _, options) in zip(run_probes(jobs), jobs, strict=True)
        ]

    def start(
        self, pool: Pool, ctx: JailContext, prior: Sequence[Finding], scan_jails: Sequence[str]
    ) -> RunningProbe:
        """Fork the jail's probe children in ``pool`` (scan's rolling pool); ``finish`` judges
        them, ``RunningProbe.close`` on any other way out. ``scan_jails``: every jail of the
        scan (no code from any of them is loaded as root)."""
        from chrootcheck.probe import start_probe

        options = self.options_for(ctx, scan_jails)
        return RunningProbe(start_probe(pool, ctx.path, prior, options), options)

    def finish(self, pool: Pool, running: RunningProbe) -> StageResult[ProbeReport]:
        from chrootcheck.probe import finish_probe

        return self._result(
            finish_probe(pool, running.started, self.triggers_measured), running.options
        )

    def options_for(self, ctx: JailContext, scan_jails: Sequence[str]) -> ProbeOptions:
        """The probe's options for one jail: its library, root, sandbox, daemon, the running
        process it copies (scan --pid), its unit's vetted OPENSSL_CONF and its user."""
        options = replace(
            self.options,
            library=ctx.library,
            root_fd=ctx.root_fd,
            sandbox=ctx.sandbox,
            # discover's profile; a --daemon given by hand wins
            daemon=self.options.daemon or ctx.daemon,
            running=ctx.running,
        )
        if ctx.sandbox is not None and ctx.sandbox.openssl_conf:
            options = self._with_openssl_conf(options, ctx, scan_jails)
        if ctx.user is not None:
            options = replace(options, uid=ctx.user.uid, gid=ctx.user.gid, groups=ctx.user.groups)
        return options

    @staticmethod
    def _with_openssl_conf(
        options: ProbeOptions, ctx: JailContext, jails: Sequence[str]
    ) -> ProbeOptions:
        """The unit's OPENSSL_CONF for the as-configured children, once it and all it loads
        pass the trust rules (app.sandbox.vet_openssl_conf); else that scenario says why."""
        from chrootcheck.app.sandbox import vet_openssl_conf

        assert ctx.sandbox is not None
        try:
            paths = ctx.openssl_paths()
        except ToolError as e:
            return replace(options, openssl_conf_refused=f"OPENSSL_CONF not vetted: {e.message}")
        conf, refused = vet_openssl_conf(ctx.sandbox, paths, jails)
        return replace(options, openssl_conf=conf, openssl_conf_refused=refused)

    def _result(
        self, probe: ProbeReport | ToolError, options: ProbeOptions
    ) -> StageResult[ProbeReport]:
        if isinstance(probe, ToolError):
            # A library the user named that cannot be used is an error; otherwise the probe is
            # skipped with its reason, and the static findings still stand.
            named = options.libcrypto is not None or options.library is not None
            kind = NoticeKind.ERROR if named else NoticeKind.SKIPPED
            why = probe.message + (f" ({probe.hint})" if probe.hint else "")
            return StageResult(notices=(Notice(kind, self.stage, why),))
        notices = (stage_skipped(self.stage, probe.skipped_reason),) if probe.skipped_reason else ()
        return StageResult(tuple(probe.findings), notices, probe)


@dataclass(frozen=True)
class Live:
    """The running service (scan --pid/--running) after its probe: its time to failure
    (app.running.time_to_failure), and a finding when its TLS will fail. Without a probe
    nothing is predicted: the stage's checks are skipped, the time to failure is "unknown"."""

    process: RunningProcess
    probe: ProbeReport | None
    stage: Stage = Stage.LIVE

    def run(self, ctx: JailContext, prior: Sequence[Finding]) -> StageResult[TimeToFailure]:
        from chrootcheck.app.running import time_to_failure
        from chrootcheck.report import catalogue

        ttf = time_to_failure(self.process, self.probe)
        if self.probe is None or self.probe.skipped_reason:
            return StageResult(
                notices=(stage_skipped(self.stage, "not run: the probe did not run"),), extra=ttf
            )
        if ttf.verdict != "fails":
            return StageResult(extra=ttf)
        finding = catalogue.RUNNING_TLS_FAILS.finding(
            "/dev/urandom",
            ttf.text,
            pid=self.process.pid,
            seconds=ttf.seconds,
            trigger=ttf.trigger,
        )
        return StageResult((finding,), extra=ttf)
