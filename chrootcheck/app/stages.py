"""The stages of a scan, one signature for all: ``run(ctx, prior) -> StageResult``.

``ctx`` is the jail's context (app.context: the root opened once, the user, the library);
``prior`` the findings of the stages before (the probe explains its failures with them). A
stage returns its findings and notices, and one typed ``extra`` (the walk, the entropy policy
of the config, the probe's report); it never edits a report. A stage that cannot run returns
a SKIPPED notice bound to its ``Stage`` (``skipped``), so every format shows its checks as
skipped, never as passed. The pipeline (app.scan) composes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from chrootcheck.app.context import JailContext
from chrootcheck.jail.inspector import ScanOptions, inspect_root
from chrootcheck.report.errors import ToolError
from chrootcheck.report.model import (
    Finding,
    LibcryptoCopy,
    Notice,
    NoticeKind,
    Stage,
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

        try:
            late = check_late_loads(
                ctx.root_fd,
                ctx.path,
                ctx.openssl_paths(),
                ctx.env,
                memo=self.memo,  # type: ignore[arg-type]
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

        notes = tuple(Notice(NoticeKind.NOTE, self.stage, n) for n in self.sandbox.notes)
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
class Probe:
    """The real libcrypto reseeding inside the jail (chrootcheck.probe), as the service user."""

    options: ProbeOptions
    stage: Stage = Stage.PROBE

    def run(self, ctx: JailContext, prior: Sequence[Finding]) -> StageResult[ProbeReport]:
        return self.run_many([(ctx, prior)])[0]

    def run_many(
        self, jails: Sequence[tuple[JailContext, Sequence[Finding]]]
    ) -> list[StageResult[ProbeReport]]:
        """``run`` for several jails at once: their probes' children run together."""
        from chrootcheck.probe import run_probes

        jobs = [(ctx.path, prior, self.options_for(ctx)) for ctx, prior in jails]
        return [
            self._result(probe, options)
            for probe, (_, _, options) in zip(run_probes(jobs), jobs, strict=True)
        ]

    def start(self, pool: Pool, ctx: JailContext, prior: Sequence[Finding]) -> RunningProbe:
        """Fork the jail's probe children in ``pool`` (scan's rolling pool); ``finish`` judges
        them, ``RunningProbe.close`` on any other way out."""
        from chrootcheck.probe import start_probe

        options = self.options_for(ctx)
        return RunningProbe(start_probe(pool, ctx.path, prior, options), options)

    def finish(self, pool: Pool, running: RunningProbe) -> StageResult[ProbeReport]:
        from chrootcheck.probe import finish_probe

        return self._result(finish_probe(pool, running.started), running.options)

    def options_for(self, ctx: JailContext) -> ProbeOptions:
        """The probe's options for one jail: its library, root, sandbox, daemon and user."""
        options = replace(
            self.options,
            library=ctx.library,
            root_fd=ctx.root_fd,
            sandbox=ctx.sandbox,
            # discover's profile; a --daemon given by hand wins
            daemon=self.options.daemon or ctx.daemon,
        )
        if ctx.user is not None:
            options = replace(options, uid=ctx.user.uid, gid=ctx.user.gid, groups=ctx.user.groups)
        return options

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
