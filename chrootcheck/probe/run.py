"""run_probe's body: check the input, load the library (or leave it to the children), run
the scenarios, judge them. ``run_many`` does it for several jails at once (scan's pool)."""

from __future__ import annotations

import dataclasses
import math
import os
import pwd
import time
from collections.abc import Sequence
from dataclasses import dataclass

from chrootcheck.jail.users import NOBODY
from chrootcheck.openssl.library import Libcrypto, describe_loaded, load
from chrootcheck.openssl.results import LibcryptoSummary, ReseedSettings
from chrootcheck.probe import ProbeOptions
from chrootcheck.probe.analysis import (
    legacy_blind,
    new_findings,
    prediction,
    scenario_result,
    settings_from,
    where,
)
from chrootcheck.probe.child import ChildSpec
from chrootcheck.probe.isolated import PreparedLibrary, prepare_library, unprivileged
from chrootcheck.probe.model import ProbeReport, ScenarioResult, TriggerResult, Verdict
from chrootcheck.probe.protocol import SeedView
from chrootcheck.probe.runner import (
    Batch,
    ChildOutcome,
    finish_batch,
    run_children,
    start_batch,
)
from chrootcheck.probe.scenarios import (
    AS_CONFIGURED,
    AS_RUNNING,
    NAMES,
    SCENARIOS,
    TRIGGERS,
    Scenario,
    as_configured,
    as_running,
)
from chrootcheck.probe.trigger_table import daemon_prediction, from_outcome, time_trigger
from chrootcheck.report.daemons import PROFILES, DaemonProfile, Mode, lookup
from chrootcheck.report.errors import ToolError
from chrootcheck.report.model import Finding
from chrootcheck.system import worker


def run(jail: str, findings: Sequence[Finding], options: ProbeOptions) -> ProbeReport:
    result = run_many([(jail, findings, options)])[0]
    if isinstance(result, ToolError):
        raise result
    return result


def run_many(
    jobs: Sequence[tuple[str, Sequence[Finding], ProbeOptions]],
) -> list[ProbeReport | ToolError]:
    """Probe several jails at once: every jail's children are forked together and read in
    parallel (one ``worker.Pool``), so the jails wait for each other's children only once.
    Each result is the jail's report, or the ToolError that stopped its probe (bad input, a
    library that cannot be used, a fork that failed), in the order of ``jobs``."""
    started: list[Started | ToolError] = []
    memo: TriggerMemo = {}
    try:
        with worker.Pool() as pool:
            for jail, findings, options in jobs:
                started.append(start(pool, jail, findings, options))
            return [finish(pool, s, memo) for s in started]
    finally:
        for s in started:
            if isinstance(s, Started):
                s.close()


@dataclass
class Started:
    """One jail's probe whose children run in a pool: ``finish`` judges them."""

    plan: _Plan
    batch: Batch

    def close(self) -> None:
        """Close the library prepared for this probe alone (idempotent)."""
        own, self.plan.own = self.plan.own, None
        if own is not None:
            own.close()


def start(
    pool: worker.Pool, jail: str, findings: Sequence[Finding], options: ProbeOptions
) -> Started | ToolError:
    """Check the input and fork the jail's children in ``pool``; or the ToolError that stops
    this jail's probe. The caller ``finish``es it, and ``close``s it on every way out."""
    try:
        plan = _plan(jail, findings, options)
    except ToolError as e:
        return e
    try:
        return Started(plan, start_batch(pool, plan.lc, plan.specs, options.timeout))
    except OSError as e:  # fork or pipe failed: the probe could not run at all
        error = ToolError(f"cannot start the probe: {e}")
    except BaseException:
        if plan.own is not None:
            plan.own.close()
        raise
    if plan.own is not None:
        plan.own.close()
    return error


# The triggers measured in one scan: by what decides them (``_trigger_key``), the jail they
# were measured in and their results. A scan of many jails alike measures them once.
TriggerMemo = dict[str, tuple[str, tuple[TriggerResult, ...]]]


def finish(
    pool: worker.Pool, started: Started | ToolError, memo: TriggerMemo | None = None
) -> ProbeReport | ToolError:
    """Wait for a started probe's children and judge them (triggers included). ``memo``: the
    scan's triggers measured so far (shared by its jails; None: this jail's alone)."""
    if isinstance(started, ToolError):
        return started
    try:
        return _finish(started.plan, finish_batch(pool, started.batch), memo)
    finally:
        started.close()


@dataclass
class _Plan:
    """One jail's probe, ready to fork: its children's specs and what judging them needs."""

    jail: str
    findings: Sequence[Finding]
    options: ProbeOptions
    started: float
    own: PreparedLibrary | None  # prepared here (not by the scan): closed after the probe
    lc: Libcrypto | None
    summary: LibcryptoSummary
    mode: str
    uid: int | None
    gid: int | None
    notes: list[str]
    specs: list[ChildSpec]
    daemon: tuple[DaemonProfile, Mode] | None = None


def _plan(jail: str, findings: Sequence[Finding], options: ProbeOptions) -> _Plan:
    started = time.monotonic()
    scenarios = _scenarios(options)
    daemon = _daemon(options.daemon)
    if options.cycles < 1:
        raise ToolError(f"--cycles must be at least 1, not {options.cycles}")
    if not options.timeout > 0 or not math.isfinite(options.timeout):
        raise ToolError(f"the probe timeout must be a positive number, not {options.timeout}")
    daemon = _daemon(options.daemon)
    if not os.path.isdir(jail):
        raise ToolError(f"{jail}: not a folder")
    jail = os.path.abspath(jail)
    prepared, own = options.library, None
    if prepared is None and options.libcrypto is not None:
        # Called without a prepared library (the API, not the CLI): check it here, against
        # this jail, before anything loads it.
        prepared = own = prepare_library(options.libcrypto, [jail], options.allow_jail_libcrypto)
    try:
        plan = _specs(jail, findings, options, scenarios, prepared, own, started)
        plan.daemon = daemon
        return plan
    except BaseException:
        if own is not None:
            own.close()
        raise


def _specs(
    jail: str,
    findings: Sequence[Finding],
    options: ProbeOptions,
    scenarios: list[Scenario],
    prepared: PreparedLibrary | None,
    own: PreparedLibrary | None,
    started: float,
) -> _Plan:
    lc: Libcrypto | None
    if prepared is None:
        lc = load(None)
        summary = describe_loaded(lc)
    else:
        lc, summary = prepared.loaded, prepared.summary
    as_root = os.geteuid() == 0
    notes: list[str] = []
    uid, gid, groups = _user(options, as_root, notes)
    isolated = prepared is not None and prepared.isolated
    mode = "root" if as_root else "user namespace"
    if isolated:
        assert prepared is not None
        if as_root:
            uid, gid, groups = _isolated_user(uid, gid, groups, notes)
            mode = "root, dropped before loading the library, then a user namespace"
        notes.append(
            f"{prepared.checked.path} failed the trust check ({prepared.checked.concern}): "
            "with your consent, only the probe's children loaded it, after dropping root"
        )
    specs = [
        ChildSpec(
            jail,
            s,
            options.cycles,
            as_root,
            uid,
            gid,
            groups,
            library=prepared.checked if isolated and prepared is not None else None,
            root_fd=options.root_fd,
        )
        for s in scenarios
    ]
    return _Plan(jail, findings, options, started, own, lc, summary, mode, uid, gid, notes, specs)


def _finish(plan: _Plan, outcomes: list[ChildOutcome], memo: TriggerMemo | None) -> ProbeReport:
    options, summary, as_root = plan.options, plan.summary, os.geteuid() == 0
    legacy = not (summary.has_evp_rand or summary.has_drbg_1_1_1)
    results = tuple(scenario_result(o, plan.findings, options.timeout, legacy) for o in outcomes)
    skipped_reason = _skipped_reason(results, as_root)
    settings = next(
        (
            s
            for s in map(settings_from, outcomes)
            if s is not None and (s.primary_seconds is not None or s.source != "library")
        ),
        None,
    )
    if options.triggers:
        results = _with_triggers(plan, outcomes, results, settings, legacy, memo)
    daemon = plan.daemon
    return ProbeReport(
        jail=plan.jail,
        libcrypto=summary,
        skipped_reason=skipped_reason,
        mode=plan.mode,
        uid=plan.uid if as_root else os.geteuid(),
        gid=plan.gid if as_root else os.getegid(),
        cycles=options.cycles,
        scenarios=results,
        reseed=settings,
        prediction=_predict(results, settings, summary.series, daemon),
        daemon=f"{daemon[0].name} ({daemon[1].name})" if daemon else None,
        findings=new_findings(results),
        notes=tuple(plan.notes),
        seconds=round(time.monotonic() - plan.started, 4),
    )


def _daemon(spec: str | None) -> tuple[DaemonProfile, Mode] | None:
    if spec is None:
        return None
    found = lookup(spec)
    if found is None:
        known = ", ".join(
            f"{p.name} ({', '.join(m.name for m in p.modes)})" for p in PROFILES.values()
        )
        raise ToolError(f"unknown daemon {spec!r} (known, with their modes: {known})")
    return found


def _predict(
    results: tuple[ScenarioResult, ...],
    settings: ReseedSettings | None,
    series: str,
    daemon: tuple[DaemonProfile, Mode] | None,
) -> str:
    general = prediction(results, settings, series)
    if daemon is None:
        return general
    running = [r for r in results if r.name == AS_RUNNING and r.verdict is not Verdict.SKIPPED]
    if running and len(results) > 1:
        # The process as it runs decides; the daemon's profile says how it meets the triggers.
        rest = [r for r in results if r is not running[0]]
        own = daemon_prediction(running, daemon[0], daemon[1], where) or prediction(
            running, settings, series
        )
        what_ifs = daemon_prediction(rest, daemon[0], daemon[1], where) or prediction(
            rest, settings, series
        )
        return f"As the process runs now: {own} Generic what-ifs: {what_ifs}"
    # The service's real sandbox, measured, comes first: its trigger table is the one that
    # counts for this service; the what-ifs follow.
    ordered = sorted(results, key=lambda r: r.name != AS_CONFIGURED or r.verdict is Verdict.SKIPPED)
    said = daemon_prediction(ordered, daemon[0], daemon[1], where)
    return said or general


# A trigger child makes up to 1,024 threads or 65,552 draws: about a second on a busy machine.
TRIGGER_TIMEOUT = 20.0


def _with_triggers(
    plan: _Plan,
    outcomes: list[ChildOutcome],
    results: tuple[ScenarioResult, ...],
    settings: ReseedSettings | None,
    legacy: bool,
    memo: TriggerMemo | None,
) -> tuple[ScenarioResult, ...]:
    """Each trigger in its own child, for every scenario whose reseeding inside the jail fails
    (with 1.0.2/1.1.0: where RAND_poll would read no device). A scenario that failed exactly
    as in a jail measured before in this scan, with the same library, user and seed sources
    seen from inside (``SeedView``), takes that jail's measurement instead: a host of many
    jails alike pays the triggers once."""
    # 1.0.2/1.1.0 never fail by themselves: measured where an application's RAND_poll would
    # read nothing, so that the table says which triggers hold.
    failing = {r.name for r in results if r.verdict is Verdict.FAIL or (legacy and legacy_blind(r))}
    if not failing:
        return results
    memo = {} if memo is None else memo
    views = {o.spec.scenario.name: _view(o) for o in outcomes}
    keys = {
        r.name: _trigger_key(plan, o, r, views[r.name])
        for o, r in zip(outcomes, results, strict=True)
        if r.name in failing
    }
    measured: dict[str, list[TriggerResult]] = {}
    for name in failing:
        key = keys[name]
        if key is not None and key in memo:
            where_from, shared = memo[key]
            measured[name] = list(shared)
            plan.notes.append(
                f"the triggers of {name!r} were measured in {where_from}, which failed that "
                "scenario alike and whose seed sources look the same from inside: not again here"
            )
    trigger_specs = [
        dataclasses.replace(spec, trigger=name)
        for spec in plan.specs
        if spec.scenario.name in failing and spec.scenario.name not in measured
        for name in TRIGGERS
    ]
    if trigger_specs:
        try:
            ran = run_children(plan.lc, trigger_specs, max(plan.options.timeout, TRIGGER_TIMEOUT))
        except OSError as e:
            raise ToolError(f"cannot start the probe's trigger children: {e}") from None
        own: dict[str, list[TriggerResult]] = {}
        for o in ran:
            assert o.spec.trigger is not None
            own.setdefault(o.spec.scenario.name, []).append(
                from_outcome(
                    o.spec.trigger,
                    o.events,
                    timed_out=o.timed_out,
                    signal=o.signal,
                    error=o.error,
                    legacy=legacy,
                )
            )
        for name, got in own.items():
            key = keys[name]
            # Shared only when every trigger child saw the same seed sources as the scenario's
            # (nothing swapped in the jail meanwhile) and none crashed or hung (this jail's own).
            saw = {_view(o) for o in ran if o.spec.scenario.name == name}
            if key is not None and saw == {views[name]} and all(t.breaks is not None for t in got):
                memo[key] = (plan.jail, tuple(got))
        measured.update(own)
    return tuple(
        dataclasses.replace(r, triggers=(time_trigger(r, settings, legacy), *measured[r.name]))
        if r.name in measured
        else r
        for r in results
    )


def _view(outcome: ChildOutcome) -> tuple[str, ...] | None:
    view = next((e for e in outcome.events if isinstance(e, SeedView)), None)
    return None if view is None else view.entries


def _trigger_key(
    plan: _Plan, outcome: ChildOutcome, result: ScenarioResult, view: tuple[str, ...] | None
) -> str | None:
    """What decides a scenario's triggers, as text: the library, the child's spec but its jail,
    how the scenario went (every step and error code, never a time) and the seed sources as
    the jailed user saw them (``view``). None when the child did not say what it saw."""
    if view is None:
        return None
    spec = dataclasses.replace(outcome.spec, jail="", root_fd=None)
    went = (
        result.verdict,
        result.phase,
        result.signal,
        result.exit_status,
        tuple(
            (
                c.index,
                c.inside_jail,
                c.ok,
                c.state,
                *((s.action, s.ok, s.detail, tuple(e.code for e in s.errors)) for s in c.steps),
            )
            for c in result.cycles
        ),
    )
    return repr((plan.summary, plan.mode, spec, went, view))


def _isolated_user(
    uid: int | None, gid: int | None, groups: tuple[int, ...], notes: list[str]
) -> tuple[int, int, tuple[int, ...]]:
    new_uid, new_gid, new_groups = unprivileged(uid, gid, groups)
    if (new_uid, new_gid, new_groups) != (uid, gid, groups):
        notes.append(
            f"a library that failed the trust check never runs as root: the probe ran as "
            f"uid {new_uid}, gid {new_gid} instead of root's ids"
        )
    return new_uid, new_gid, new_groups


def _scenarios(options: ProbeOptions) -> list[Scenario]:
    extra = (
        [as_configured(options.sandbox, options.openssl_conf, options.openssl_conf_refused)]
        if options.sandbox is not None
        else []
    )
    if options.running is not None:
        extra.append(as_running(options.running))
    if options.scenarios is None:
        return [*SCENARIOS, *extra]
    unknown = [n for n in options.scenarios if n not in NAMES]
    if unknown:
        known = ", ".join(repr(n) for n in NAMES)
        raise ToolError(f"unknown probe scenario {unknown[0]!r} (known: {known})")
    if AS_CONFIGURED in options.scenarios and options.sandbox is None:
        raise ToolError(
            f"the {AS_CONFIGURED} scenario needs a sandbox: --unit or --seccomp-profile"
        )
    if AS_RUNNING in options.scenarios and options.running is None:
        raise ToolError(f"the {AS_RUNNING} scenario needs a running process: --pid or --running")
    return [s for s in [*SCENARIOS, *extra] if s.name in options.scenarios]


def _user(
    options: ProbeOptions, as_root: bool, notes: list[str]
) -> tuple[int | None, int | None, tuple[int, ...]]:
    if not as_root:
        # Only our own uid is mapped in the user namespace: we stay ourselves.
        if options.uid is not None:
            notes.append("without root the probe runs as your own user, not as --user")
        notes.append("not root: the probe ran in an unprivileged user namespace")
        return None, None, ()
    uid = NOBODY if options.uid is None else options.uid
    gid = options.gid
    if gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = NOBODY if uid == NOBODY else uid
    return uid, gid, tuple(options.groups)


def _skipped_reason(results: tuple[ScenarioResult, ...], as_root: bool) -> str | None:
    if not results or any(r.verdict is not Verdict.SKIPPED for r in results):
        return None
    reasons = {r.explanation for r in results}
    reason = reasons.pop() if len(reasons) == 1 else "; ".join(sorted(reasons))
    if not as_root:
        return f"not root, and no unprivileged user namespace here ({reason})"
    return reason
