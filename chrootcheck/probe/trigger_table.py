"""The trigger table of a failing scenario: what each trigger child measured, in plain words.

No cffi here: the parent reads the children's ``TriggerRun`` messages (``probe.triggers``
runs them) and the scenario's own cycles (the time trigger).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from chrootcheck.openssl.results import ReseedSettings
from chrootcheck.probe import scenarios as triggers
from chrootcheck.probe.model import ScenarioResult, TriggerResult, Verdict
from chrootcheck.probe.protocol import Failed, TriggerRun
from chrootcheck.report.daemons import DaemonProfile, Mode

WHAT = {
    "time": "the primary DRBG's reseed interval (the probe's reseed cycles)",
    triggers.THREADS: "new threads, one at a time, each drawing like a TLS handshake",
    triggers.RAND_SEED: "RAND_seed after the chroot, then a draw (Postfix's smtpd and tlsmgr)",
    triggers.FORK: "a fork after the chroot, the child drawing bytes",
    triggers.DRAWS: "many draws from one thread (the public DRBG's request counter)",
}
ORDER = ("time", *triggers.TRIGGERS)
KILLED = "killed by the sandbox's seccomp filter (SIGSYS)"
_DOES = {
    triggers.THREADS: "the service cannot make a new thread under it",
    triggers.RAND_SEED: "at RAND_seed or the draw after it",
    triggers.FORK: "the service cannot fork under it",
    triggers.DRAWS: "at a draw",
}

LEGACY_NOTE = (
    "no DRBG (md_rand): seeded once before the chroot, never reseeded from the OS unless the "
    "application calls RAND_poll"
)


def time_trigger(
    result: ScenarioResult, settings: ReseedSettings | None, legacy: bool
) -> TriggerResult:
    """The scenario's reseed cycles are the time trigger: an explicit reseed of the primary is
    what its reseed interval does after that many seconds."""
    if legacy:
        return TriggerResult("time", WHAT["time"], False, summary=f"never: {LEGACY_NOTE}")
    inside = [c for c in result.cycles if c.inside_jail]
    bad = next((c for c in inside if not c.ok), None)
    secs = settings.primary_seconds if settings is not None else None
    secs = secs or 3600
    if bad is None:
        return TriggerResult(
            "time", WHAT["time"], False, tried=len(inside), summary="every reseed worked"
        )
    return TriggerResult(
        "time",
        WHAT["time"],
        True,
        at=secs,
        tried=len(inside),
        summary=f"after {secs} s (the primary's reseed interval), or at a backward clock step",
        chain=result.chain,
    )


def from_outcome(
    name: str,
    events: Sequence[object],
    *,
    timed_out: bool,
    signal: str | None,
    error: str | None,
    legacy: bool,
) -> TriggerResult:
    what = WHAT[name]
    run = next((e for e in events if isinstance(e, TriggerRun)), None)
    if run is None and signal == "SIGSYS":
        # Only the as-configured scenario's filter kills: the service's own sandbox stops it
        # at what the trigger does (a thread or a fork it may not make), OpenSSL aside.
        return TriggerResult(name, what, None, summary=f"{KILLED} ({_DOES[name]})")
    if run is None:
        failed = next((e for e in events if isinstance(e, Failed)), None)
        why = (
            "its child hung and was killed"
            if timed_out
            else f"its child died of {signal}"
            if signal
            else error or (failed.message if failed is not None else "its child stopped early")
        )
        return TriggerResult(name, what, None, summary=f"not measured: {why}")
    if not run.broke:
        held = _held(name, run.cap)
        return TriggerResult(
            name, what, False, tried=run.cap, summary=held + (f" ({LEGACY_NOTE})" if legacy else "")
        )
    return TriggerResult(
        name, what, True, run.count, run.count, _broke(name, run.count), run.errors
    )


def _held(name: str, cap: int) -> str:
    return {
        triggers.THREADS: f"held for {cap} new threads",
        triggers.RAND_SEED: f"held for {cap} RAND_seed calls (not reseeded from the OS)",
        triggers.FORK: f"held for {cap} forks",
        triggers.DRAWS: f"held for {cap} draws",
    }[name]


def _broke(name: str, at: int) -> str:
    if name == triggers.THREADS:
        return f"fails at new thread {at} ({at - 1} new threads used up the primary DRBG)"
    if name == triggers.RAND_SEED:
        return "fails at the first RAND_seed" if at == 1 else f"fails at RAND_seed {at}"
    if name == triggers.FORK:
        return "fails at the first fork" if at == 1 else f"fails at fork {at}"
    return f"fails at draw {at}"


def plain(results: Sequence[ScenarioResult]) -> str:
    """The trigger tables in plain words, for the prediction (no daemon profile)."""
    out = []
    for r in results:
        if r.verdict is not Verdict.FAIL or not r.triggers:
            continue
        broke = [t for t in r.triggers if t.breaks]
        if not broke:
            out.append(f"In '{r.name}' no trigger broke it (measured).")
            continue
        said = "; ".join(f"{WHAT[t.trigger].split(' (')[0]}: {t.summary}" for t in broke)
        out.append(f"In '{r.name}', measured: {said}.")
    return " ".join(out)


def timing(result: ScenarioResult) -> str | None:
    """When TLS fails in this scenario, from its measured triggers; None without a table."""
    by = {t.trigger: t for t in result.triggers}
    if not by:
        return None
    parts = []
    fork = by.get(triggers.FORK)
    if fork is not None and fork.breaks:
        parts.append(
            "at once in any process forked after the chroot (master-worker mode, a daemon "
            "that forks per connection)"
            + ("" if fork.at == 1 else f" (at fork {fork.at}, measured)")
        )
    seed = by.get(triggers.RAND_SEED)
    if seed is not None and seed.breaks:
        parts.append("at the first RAND_seed/RAND_add the application makes after the chroot")
    threads = by.get(triggers.THREADS)
    if threads is not None and threads.breaks and threads.at is not None:
        parts.append(
            f"in a thread-per-connection daemon at about connection {threads.at} after start "
            f"({threads.at - 1} new threads used up the primary DRBG, measured)"
        )
    draws = by.get(triggers.DRAWS)
    if draws is not None and draws.breaks:
        parts.append(f"after {draws.at} draws from one thread (measured)")
    time = by.get("time")
    if time is not None and time.breaks:
        parts.append(
            f"otherwise after {time.at} s of start (the primary's reseed interval) or "
            "at the first backward clock step"
        )
    if not parts:
        return None
    return "fails " + "; ".join(parts)


def daemon_prediction(
    results: Sequence[ScenarioResult],
    profile: DaemonProfile,
    mode: Mode,
    where: Callable[[str], str],
) -> str:
    """The profile joined with the measured triggers: for each failing scenario, the first
    trigger this daemon meets that broke OpenSSL there, with its number."""
    label = f"{profile.name} ({mode.name})"
    out = []
    for r in results:
        if r.verdict is Verdict.RISK and r.name == "no-getrandom":
            out.append(f"Where {where(r.name)}, {label} {_no_seed(profile)}.")
        if r.verdict is not Verdict.FAIL or not r.triggers:
            continue
        place = "On this system" if r.name == "as-is" else f"Where {where(r.name)}"
        out.append(f"{place}, {label}: {_first_hit(r, mode)}.")
    if out and any(r.verdict is Verdict.FAIL for r in results):
        out.append(f"It logs: {profile.logs}.")
        out.append(f"Its packaging: {profile.packaging}.")
    if out and not profile.measured:
        out.append(
            f"(The {profile.name} profile follows from its design; not measured on a real one.)"
        )
    return " ".join(out)


def _no_seed(profile: DaemonProfile) -> str:
    """What a daemon does when OpenSSL cannot seed at all: the general rule, then the
    profile's own words where they add to it."""
    general = "cannot start, or starts without TLS"
    if profile.getrandom_blocked.startswith("cannot start"):
        return profile.getrandom_blocked
    return f"{general} (it {profile.getrandom_blocked})"


def _first_hit(r: ScenarioResult, mode: Mode) -> str:
    by = {t.trigger: t for t in r.triggers}
    for use in mode.uses:
        t = by.get(use.trigger)
        if t is None or not t.breaks or t.at is None:
            continue
        if use.trigger == triggers.THREADS:
            return (
                f"TLS fails at about {use.unit} {t.at} after start ({t.at - 1} new threads "
                f"used up the primary DRBG, measured; {use.how})"
            )
        if use.trigger == triggers.FORK:
            return (
                f"TLS fails from the first {use.unit} ({use.how}: fails at the first fork, "
                "measured)"
            )
        if use.trigger == triggers.RAND_SEED:
            return (
                f"TLS fails from the first {use.unit} ({use.how}: fails at the first "
                "RAND_seed, measured)"
            )
        if use.trigger == "time":
            return (
                f"TLS fails within {t.at} s of start (the primary DRBG's reseed interval), or "
                "at the first backward clock step"
            )
        return f"TLS fails: {t.summary}"
    hit = ", ".join(u.trigger for u in mode.uses)
    return f"TLS keeps working: none of the triggers it meets ({hit}) broke OpenSSL here (measured)"
