"""The probe: a real libcrypto, seeded like a daemon, reseeding inside the jail.

Public API (used by ``chrootcheck scan``): ``ProbeOptions``, ``run_probe``, ``ProbeReport``
and the types it holds. Importing this package does not load cffi; ``run_probe`` does.
docs/probe.md describes the scenarios and verdicts.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chrootcheck.report.model import Finding

if TYPE_CHECKING:
    from chrootcheck.openssl.results import LibcryptoSummary
    from chrootcheck.probe.isolated import PreparedLibrary
    from chrootcheck.probe.model import (
        Cycle,
        ProbeReport,
        ScenarioResult,
        Verdict,
    )
    from chrootcheck.probe.run import Started, TriggerMemo
    from chrootcheck.probe.scenarios import SCENARIOS, Running, Scenario
    from chrootcheck.report.errors import ToolError
    from chrootcheck.sandbox.model import Sandbox
    from chrootcheck.system.worker import Pool

# The report's types load on first use (PEP 562): `scan --no-probe` and every CI step pay
# start-up time, and each frozen dataclass costs about a millisecond to create.
_LAZY = {
    "Cycle": "chrootcheck.probe.model",
    "LibcryptoSummary": "chrootcheck.openssl.results",
    "ProbeReport": "chrootcheck.probe.model",
    "ScenarioResult": "chrootcheck.probe.model",
    "Verdict": "chrootcheck.probe.model",
    "SCENARIOS": "chrootcheck.probe.scenarios",
    "Scenario": "chrootcheck.probe.scenarios",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chrootcheck.probe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "SCENARIOS",
    "Cycle",
    "LibcryptoSummary",
    "ProbeOptions",
    "ProbeReport",
    "Scenario",
    "ScenarioResult",
    "Verdict",
    "finish_probe",
    "run_probe",
    "run_probes",
    "start_probe",
]


@dataclass(frozen=True)
class ProbeOptions:
    libcrypto: str | None = None  # host path; None = the ssl module's libcrypto
    cycles: int = 3
    timeout: float = 3.0  # per scenario child; a healthy one takes about 0.05 s
    uid: int | None = None  # drop to this (from --user); None => nobody (65534)
    gid: int | None = None
    groups: tuple[int, ...] = ()
    scenarios: tuple[str, ...] | None = None  # None = all
    allow_jail_libcrypto: bool = False  # consent to a libcrypto that fails the trust check
    # The CLI's --libcrypto, checked and described once for the whole scan (trust.py); when
    # set, ``libcrypto`` and ``allow_jail_libcrypto`` are not looked at again.
    library: PreparedLibrary | None = None
    # The jail root as the scan opened it (an O_PATH descriptor of the jail context): the
    # children chroot through it, so the folder judged is the folder entered. None: by path.
    root_fd: int | None = None
    # The service's sandbox (a unit or a seccomp profile): adds the as-configured scenario.
    sandbox: Sandbox | None = None
    # The unit's OPENSSL_CONF, vetted by the caller (app.sandbox.vet_openssl_conf): the
    # as-configured children load it; or why it was refused (that scenario is then skipped).
    openssl_conf: str | None = None
    openssl_conf_refused: str | None = None
    # Where a scenario fails, measure each trigger in its own child (docs/probe.md).
    triggers: bool = True
    # The daemon that uses the jail, "NAME" or "NAME:MODE" (report.daemons): the prediction
    # joins its profile with the measured triggers. None: the trigger table alone.
    daemon: str | None = None
    # A running process (scan --pid/--running): adds the as-running scenario.
    running: Running | None = None


def run_probe(jail: str, findings: Sequence[Finding], options: ProbeOptions) -> ProbeReport:
    """Probe one jail. Raises ToolError for bad input; otherwise always returns a report."""
    from chrootcheck.probe.run import run  # cffi is loaded only here

    return run(jail, findings, options)


def run_probes(
    jobs: Sequence[tuple[str, Sequence[Finding], ProbeOptions]],
) -> list[ProbeReport | ToolError]:
    """Probe several jails at once (their children forked together, read in parallel): for
    each, its report or the ToolError that stopped its probe, in order."""
    from chrootcheck.probe.run import run_many

    return run_many(jobs)


def start_probe(
    pool: Pool, jail: str, findings: Sequence[Finding], options: ProbeOptions
) -> Started | ToolError:
    """Fork one jail's probe children in ``pool`` (scan's rolling pool of jails): its handle
    for ``finish_probe``, or the ToolError that stopped it. The caller closes a handle it does
    not finish (``Started.close``)."""
    from chrootcheck.probe.run import start

    return start(pool, jail, findings, options)


def finish_probe(
    pool: Pool, started: Started | ToolError, memo: TriggerMemo | None = None
) -> ProbeReport | ToolError:
    """Wait for a started probe's children and judge them. ``memo``: the triggers measured so
    far in this scan, shared by its jails (an empty dict to start one)."""
    from chrootcheck.probe.run import finish

    return finish(pool, started, memo)
