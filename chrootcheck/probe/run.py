"""run_probe's body: check the input, load the library, run the scenarios, judge them."""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Sequence

from chrootcheck.errors import ToolError
from chrootcheck.model import Finding
from chrootcheck.openssl.library import Libcrypto, load
from chrootcheck.probe import ProbeOptions
from chrootcheck.probe.analysis import new_findings, prediction, scenario_result, settings_from
from chrootcheck.probe.child import ChildSpec
from chrootcheck.probe.model import LibcryptoSummary, ProbeReport, ScenarioResult, Verdict
from chrootcheck.probe.runner import run_children
from chrootcheck.probe.sandbox import NOBODY
from chrootcheck.probe.scenarios import BY_NAME, SCENARIOS, Scenario


def run(jail: str, findings: Sequence[Finding], options: ProbeOptions) -> ProbeReport:
    started = time.monotonic()
    scenarios = _scenarios(options)
    if options.cycles < 1:
        raise ToolError(f"--cycles must be at least 1, not {options.cycles}")
    if not options.timeout > 0:
        raise ToolError(f"the probe timeout must be positive, not {options.timeout}")
    if not os.path.isdir(jail):
        raise ToolError(f"{jail}: not a folder")
    jail = os.path.abspath(jail)
    _refuse_jail_library(jail, options)
    lc = load(options.libcrypto)
    summary = _summary(lc)

    as_root = os.geteuid() == 0
    notes: list[str] = []
    uid, gid, groups = _user(options, as_root, notes)
    specs = [ChildSpec(jail, s, options.cycles, as_root, uid, gid, groups) for s in scenarios]
    try:
        outcomes = run_children(lc, specs, options.timeout)
    except OSError as e:  # fork or pipe failed: the probe could not run at all
        raise ToolError(f"cannot start the probe: {e}") from None

    legacy = not (lc.capabilities.has_evp_rand or lc.capabilities.has_drbg_1_1_1)
    results = tuple(scenario_result(o, findings, options.timeout, legacy) for o in outcomes)
    skipped_reason = _skipped_reason(results, as_root)
    settings = next(
        (
            s
            for s in map(settings_from, outcomes)
            if s is not None and (s.primary_seconds is not None or s.source != "library")
        ),
        None,
    )
    return ProbeReport(
        jail=jail,
        libcrypto=summary,
        skipped_reason=skipped_reason,
        mode="root" if as_root else "user namespace",
        uid=uid if as_root else os.geteuid(),
        gid=gid if as_root else os.getegid(),
        cycles=options.cycles,
        scenarios=results,
        reseed=settings,
        prediction=prediction(results, settings, summary.series),
        findings=new_findings(results),
        notes=tuple(notes),
        seconds=round(time.monotonic() - started, 4),
    )


def _scenarios(options: ProbeOptions) -> list[Scenario]:
    if options.scenarios is None:
        return list(SCENARIOS)
    unknown = [n for n in options.scenarios if n not in BY_NAME]
    if unknown:
        known = ", ".join(repr(s.name) for s in SCENARIOS)
        raise ToolError(f"unknown probe scenario {unknown[0]!r} (known: {known})")
    return [s for s in SCENARIOS if s.name in options.scenarios]


def _refuse_jail_library(jail: str, options: ProbeOptions) -> None:
    # A libcrypto inside the jail is code the jail's owner controls: never run it as root
    # unless the user named it and said so explicitly.
    if options.libcrypto is None or options.allow_jail_libcrypto:
        return
    real_lib = os.path.realpath(options.libcrypto)
    real_jail = os.path.realpath(jail)
    if os.path.commonpath([real_lib, real_jail]) == real_jail:
        raise ToolError(
            f"refusing to load {options.libcrypto}: it lies inside the jail",
            "loading code from the jail needs explicit consent (--allow-jail-libcrypto)",
        )


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


def _summary(lc: Libcrypto) -> LibcryptoSummary:
    caps = lc.capabilities
    return LibcryptoSummary(
        path=lc.path,
        version=lc.version_text,
        version_number=lc.version_number,
        series=lc.series,
        rand_api=caps.rand_api,
        has_drbg_1_1_1=caps.has_drbg_1_1_1,
        has_evp_rand=caps.has_evp_rand,
        has_keep_devices_open=caps.has_keep_devices_open,
        has_err_get_error_all=caps.has_err_get_error_all,
        has_openssl_info=caps.has_openssl_info,
    )
