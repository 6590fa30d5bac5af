"""From the children's events to verdicts, explanations, causes, findings and a prediction.

Which static findings explain a failure (``catalogue.EXPLAINS_RESEED_FAILURE``) or make a pass
a failure (``catalogue.FAKE_NODE``) is decided in the check catalogue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chrootcheck.openssl.errcodes import ErrorRecord
from chrootcheck.openssl.results import ReseedSettings
from chrootcheck.probe import trigger_table
from chrootcheck.probe.model import Cycle, ScenarioResult, Verdict
from chrootcheck.probe.protocol import CycleRun, Done, Failed, Jailed, Settings, Skip
from chrootcheck.probe.scenarios import PROBE_LOOK
from chrootcheck.report import catalogue
from chrootcheck.report.devices import ENTROPY_DEVICES
from chrootcheck.report.model import Finding, Severity
from chrootcheck.sandbox.model import killing_calls

if TYPE_CHECKING:  # the runner loads cffi
    from chrootcheck.probe.runner import ChildOutcome


def _fake_nodes(findings: Sequence[Finding]) -> list[Finding]:
    return [
        f
        for f in findings
        if f.check in catalogue.FAKE_NODE
        and f.severity >= Severity.ERROR  # a swapped random/urandom (warning) is still the CSPRNG
        and f.path in {d.path for d in ENTROPY_DEVICES}
    ]


def scenario_result(
    outcome: ChildOutcome, findings: Sequence[Finding], timeout: float, legacy: bool = False
) -> ScenarioResult:
    """``legacy``: a library without DRBG (1.1.0, 1.0.2), whose failures are silent."""
    sc = outcome.spec.scenario
    events = outcome.events
    cycles = tuple(_cycle(e) for e in events if isinstance(e, CycleRun))
    phase = _phase(events)
    base: dict[str, Any] = {
        "name": sc.name,
        "description": sc.description,
        "cycles": cycles,
        "signal": outcome.signal,
        "exit_status": outcome.exit_status,
        "phase": phase,
        "seconds": round(outcome.seconds, 4),
    }
    skip = next((e for e in events if isinstance(e, Skip)), None)
    if skip is not None:
        return ScenarioResult(verdict=Verdict.SKIPPED, explanation=skip.reason, **base)
    chain = _first_failing_chain(cycles)
    if outcome.timed_out:
        where = "inside the jail" if phase in ("jailed", "done") else "before the chroot"
        return ScenarioResult(
            verdict=Verdict.TIMEOUT,
            chain=chain,
            caused_by=_causes(findings) if where == "inside the jail" else (),
            explanation=f"the child hung {where} for more than {timeout:g} s and was killed",
            **base,
        )
    if outcome.signal == "SIGSYS" and sc.seccomp is not None and outcome.error is None:
        calls = killing_calls(sc.seccomp)
        return ScenarioResult(
            verdict=Verdict.CRASHED,
            chain=chain,
            explanation=f"the sandbox's seccomp filter killed the child (SIGSYS, after stage "
            f"'{phase}')"
            + (f": it kills on {', '.join(calls)}, which OpenSSL calls" if calls else ""),
            **base,
        )
    if outcome.signal is not None and outcome.error is None:
        return ScenarioResult(
            verdict=Verdict.CRASHED,
            chain=chain,
            explanation=f"the child was killed by {outcome.signal} (after stage '{phase}'): "
            "a wrong ABI or a NULL DRBG in the library",
            **base,
        )
    error = next((e for e in events if isinstance(e, Failed)), None)
    if error is not None or phase != "done" or outcome.error is not None:
        message = error.message if error else f"exit status {outcome.exit_status}"
        if outcome.error is not None:
            message = f"unreadable output ({outcome.error}); the child was killed"
        return ScenarioResult(
            verdict=Verdict.CRASHED,
            chain=chain,
            explanation=f"the child stopped at stage '{phase}': {message}",
            **base,
        )
    control = next((c for c in cycles if not c.inside_jail), None)
    if control is None or not control.ok:
        return ScenarioResult(
            verdict=Verdict.RISK, chain=chain, explanation=_risk_text(sc.name, control), **base
        )
    failing = [c for c in cycles if c.inside_jail and not c.ok]
    if failing:
        causes = _causes(findings)
        return ScenarioResult(
            verdict=Verdict.FAIL,
            chain=chain,
            caused_by=causes,
            explanation=_fail_text(sc.name, failing[0], causes, findings, legacy),
            **base,
        )
    inside = sum(1 for c in cycles if c.inside_jail)
    fakes = _fake_nodes(findings)
    if fakes and (sc.close_devices or legacy):
        # The reseeds read the jail's nodes by path: they "worked" on whatever stands there.
        return ScenarioResult(
            verdict=Verdict.FAIL,
            caused_by=tuple(dict.fromkeys(f.check for f in fakes)),
            explanation=f"reseeding inside the jail 'worked' in all {inside} cycles, but only "
            "by reading "
            + ", ".join(f"{f.path} ({f.check})" for f in fakes)
            + ": OpenSSL took fixed or zero bytes for entropy, so keys and nonces made after "
            "the reseed are predictable. No error is ever logged for this.",
            **base,
        )
    if legacy:
        return ScenarioResult(verdict=Verdict.PASS, explanation=_legacy_text(cycles), **base)
    return ScenarioResult(
        verdict=Verdict.PASS,
        explanation=f"seeded before the chroot and reseeded inside the jail in all {inside} "
        "cycles" + _pass_detail(sc.name, legacy),
        **base,
    )


def legacy_blind(result: ScenarioResult) -> bool:
    """1.0.2/1.1.0: the probe's look found no device an application's RAND_poll could read."""
    return any(
        s.action == PROBE_LOOK and s.ok is False
        for c in result.cycles
        if c.inside_jail
        for s in c.steps
    )


def _legacy_text(cycles: tuple[Cycle, ...]) -> str:
    text = (
        "no DRBG (md_rand): seeded once before the chroot, never reseeded from the OS unless "
        "the application calls RAND_poll, so nothing fails"
    )
    looks = [s for c in cycles if c.inside_jail for s in c.steps if s.action == PROBE_LOOK]
    if any(s.ok is False for s in looks):
        return text + (
            "; but an application that calls RAND_poll inside this jail reads none of "
            "/dev/urandom, /dev/random, /dev/srandom, and RAND_poll still returns 1, having "
            "mixed in only pid, uid and time (the probe looked; the library never does)"
        )
    found = next((s.detail for s in looks if s.ok), "")
    return text + (f"; RAND_poll there would read {found}" if found else "")


def _phase(events: Sequence[object]) -> str:
    phase = "start"
    for e in events:
        if isinstance(e, CycleRun) and not e.inside_jail:
            phase = "seeded"
        elif isinstance(e, Jailed):
            phase = "jailed"
        elif isinstance(e, Done):
            phase = "done"
    return phase


def _cycle(run: CycleRun) -> Cycle:
    return Cycle(
        index=run.index,
        inside_jail=run.inside_jail,
        # The probe's own look at the devices (1.0.2) is not the library's: never a failure.
        ok=all(s.ok is not False for s in run.steps if s.action != PROBE_LOOK),
        state=run.state,
        steps=run.steps,
    )


def settings_from(outcome: ChildOutcome) -> ReseedSettings | None:
    for e in outcome.events:
        if isinstance(e, Settings):
            return e.settings
    return None


def _first_failing_chain(cycles: tuple[Cycle, ...]) -> tuple[ErrorRecord, ...]:
    for c in cycles:
        if not c.ok:
            return tuple(err for s in c.steps for err in s.errors)
    return ()


def _causes(findings: Sequence[Finding]) -> tuple[str, ...]:
    seen: list[str] = []
    for f in findings:
        if f.check in catalogue.EXPLAINS_RESEED_FAILURE and f.check not in seen:
            seen.append(f.check)
    return tuple(seen)


def _risk_text(name: str, control: Cycle | None) -> str:
    what = "OpenSSL cannot seed even before the chroot"
    if control is not None and control.state == "absent":
        what += " (its primary DRBG could not even be created)"
    elif control is not None:
        failed = next((s for s in control.steps if s.ok is False), None)
        if failed is not None and failed.detail:
            what += f" ({failed.detail})"
    if name == "no-getrandom":
        return (
            f"{what}: with getrandom(2) blocked, OpenSSL 1.1.1d+ on a kernel >= 4.8 refuses "
            "/dev/urandom (no SysV shm key 0x72 says the pool was seeded), so it has no "
            "entropy source at all, whatever the jail holds. An environment risk, not a jail "
            "finding: a syscall sandbox that blocks getrandom breaks this service."
        )
    return f"{what}: this fails whatever the jail holds (an environment risk, not a jail finding)"


def _fail_text(
    name: str,
    cycle: Cycle,
    causes: tuple[str, ...],
    findings: Sequence[Finding],
    legacy: bool,
) -> str:
    failed = next((s for s in cycle.steps if s.ok is False), None)
    if legacy:
        text = (
            "no DRBG, so nothing fails outright: but inside the jail RAND_poll opens none of "
            "/dev/urandom, /dev/random, /dev/srandom and adds only pid, uid and time "
            "(guessable) to what was seeded before the chroot"
        )
        return text + (f"; explained by {', '.join(causes)}" if causes else "")
    last = failed.errors[-1].reason if failed and failed.errors else ""
    text = "seeded before the chroot, but reseeding inside the jail fails"
    if failed is not None:
        text += f" at {failed.action}"
        if last:
            text += f" ({last})"
        elif failed.detail:
            text += f" ({failed.detail})"
    if name.startswith("old-kernel") and not legacy:
        text += (
            ": without getrandom OpenSSL reopens /dev/urandom, /dev/random, /dev/hwrng and "
            "/dev/srandom by path inside the jail"
        )
    if causes:
        paths = sorted({f.path for f in findings if f.check in causes})
        text += f"; explained by {', '.join(causes)} ({', '.join(paths)})"
    else:
        text += "; no static finding explains it"
    return text


def _pass_detail(name: str, legacy: bool) -> str:
    if legacy:
        return " (RAND_poll reads the jail's device)"
    if name == "old-kernel":
        return " (from the /dev/urandom descriptor opened before the chroot, or the jail's node)"
    if name == "old-kernel, devices closed":
        return " (by opening the jail's own /dev/urandom or /dev/random)"
    if name == "as-is":
        return " (getrandom(2) needs nothing from the jail)"
    if name == "as-configured":
        return " (under the service's own sandbox)"
    return ""


def new_findings(results: Sequence[ScenarioResult]) -> tuple[Finding, ...]:
    """Findings for jail-caused failures that no static finding explains (never for risks)."""
    out: list[Finding] = []
    for r in results:
        if r.caused_by:
            continue
        codes = [f"{e.code:08X}" for e in r.chain]
        if r.verdict is Verdict.FAIL:
            out.append(
                catalogue.PROBE_RESEED_FAILS.finding(
                    "/dev/urandom",
                    f"scenario '{r.name}': {r.explanation}",
                    scenario=r.name,
                    codes=tuple(codes),
                )
            )
        elif r.verdict is Verdict.TIMEOUT and r.phase in ("jailed", "done"):
            out.append(
                catalogue.PROBE_HANGS.finding(
                    "/dev/random",
                    f"scenario '{r.name}': {r.explanation}",
                    scenario=r.name,
                )
            )
    return tuple(out)


def prediction(
    results: Sequence[ScenarioResult], settings: ReseedSettings | None, series: str
) -> str:
    """When production would fail, from the verdicts and the library's reseed settings."""
    if not results or all(r.verdict is Verdict.SKIPPED for r in results):
        return "no prediction: the probe did not run"
    for name, said in (
        ("as-running", "As the process runs now"),
        ("as-configured", "Under the service's own sandbox"),
    ):
        own_result = [r for r in results if r.name == name and r.verdict is not Verdict.SKIPPED]
        if not own_result or len(results) == 1:
            continue
        # The service's real conditions, measured, decide; the what-ifs follow.
        m = own_result[0]
        if m.verdict is Verdict.CRASHED and m.signal == "SIGSYS":
            own = f"the service is killed at start: {m.explanation}."
        else:
            own = prediction(own_result, settings, series)
        rest = prediction([r for r in results if r is not m], settings, series)
        return f"{said}: {own} Generic what-ifs: {rest}"
    # A FAIL whose cycles all "worked" reseeded from a fake node: TLS goes on, predictably.
    fooled = [
        r.name
        for r in results
        if r.verdict is Verdict.FAIL and r.cycles and all(c.ok for c in r.cycles)
    ]
    failing = [r.name for r in results if r.verdict is Verdict.FAIL and r.name not in fooled]
    risky = [r.name for r in results if r.verdict is Verdict.RISK]
    broken = [r.name for r in results if r.verdict in (Verdict.CRASHED, Verdict.TIMEOUT)]
    if series in ("1.1.0", "1.0.2"):
        blind = [r.name for r in results if legacy_blind(r)]
        text = (
            f"TLS keeps working whatever the jail holds ({series}: no DRBG; md_rand is seeded "
            "once before the chroot and never reseeded from the OS unless the application "
            "calls RAND_poll; new threads, forks, RAND_seed and many draws all hold"
            + (", measured)." if any(r.triggers for r in results) else ").")
        )
        killed = sorted(
            {
                t.trigger
                for r in results
                for t in r.triggers
                if t.summary.startswith(trigger_table.KILLED)
            }
        )
        if killed:
            text += (
                f" But the service's own sandbox kills it at {', '.join(killed)} (SIGSYS, "
                "measured): not OpenSSL, the filter."
            )
        if blind:
            text += (
                " An application that calls RAND_poll inside this jail gets no fresh entropy, "
                "silently: RAND_poll there adds only pid, uid and time, which an attacker can "
                "guess within a small range."
            )
        return text
    if settings is None:
        settings = ReseedSettings("documented defaults", primary_requests=256, primary_seconds=3600)
    secs = settings.primary_seconds or 3600
    reqs = settings.primary_requests
    src = "" if settings.source == "library" else f" ({settings.source})"
    timing = (
        f"fails at once in master-worker mode or any mode that forks after the chroot; "
        f"otherwise within {secs} s of start (the primary DRBG reseeds every {secs} s"
        + (f" or every {reqs} secondary reseeds" if reqs else "")
        + f"{src}), or at the first backward clock step"
    )
    parts: list[str] = []
    by_name = {r.name: r for r in results}
    for name in ["as-is"] if "as-is" in failing else failing:
        measured = trigger_table.timing(by_name[name])
        where = "On this system" if name == "as-is" else f"Where {_where([name])}"
        parts.append(f"{where}, TLS {measured or timing}.")
    if fooled:
        parts.append(
            f"Where {_where(fooled)}, TLS keeps working, but every reseed after the chroot "
            "reads the fake node: keys and nonces become predictable, and nothing is logged."
        )
    if risky:
        parts.append(
            f"Where {_where(risky)}, OpenSSL cannot seed at all, whatever the jail holds: "
            "the service cannot start, or starts without TLS (Postfix's smtpd logs "
            "'disabling TLS support' and accepts mail in clear text)."
        )
    if broken:
        parts.append(f"Unknown for {', '.join(broken)}: the probe child did not finish.")
    if not parts:
        return (
            f"No failure predicted: reseeding inside the jail works in every scenario ({series})."
        )
    return " ".join(parts)


_WHERE = {
    "as-is": "this system",
    "as-configured": "the service runs under its own sandbox",
    "as-running": "the process runs as it does now (its library, ids, filter and descriptors)",
    "no-getrandom": "getrandom(2) is blocked (a seccomp sandbox)",
    "old-kernel": "the kernel is older than 4.8 or getrandom is blocked there",
    "old-kernel, devices closed": (
        "getrandom is unavailable and the random devices are not kept open (a daemon that "
        "closes its descriptors, or an OpenSSL without keep-open)"
    ),
}


def _where(names: list[str]) -> str:
    return "; or where ".join(_WHERE.get(n, n) for n in names)


def where(name: str) -> str:
    """A scenario in plain words, after "Where": "getrandom(2) is blocked (...)"."""
    return _WHERE.get(name, name)
