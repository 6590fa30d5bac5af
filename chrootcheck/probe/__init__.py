"""The probe: a real libcrypto, seeded like a daemon, reseeding inside the jail.

Public API (used by ``chrootcheck scan``): ``ProbeOptions``, ``run_probe``, ``ProbeReport``
and the types it holds. Importing this package does not load cffi; ``run_probe`` does.
docs/probe.md describes the scenarios and verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chrootcheck.model import Finding
from chrootcheck.probe.model import (
    Cycle,
    LibcryptoSummary,
    ProbeReport,
    ScenarioResult,
    Verdict,
)
from chrootcheck.probe.scenarios import SCENARIOS, Scenario

__all__ = [
    "SCENARIOS",
    "Cycle",
    "LibcryptoSummary",
    "ProbeOptions",
    "ProbeReport",
    "Scenario",
    "ScenarioResult",
    "Verdict",
    "run_probe",
]


@dataclass(frozen=True)
class ProbeOptions:
    libcrypto: str | None = None  # host path; None = the ssl module's libcrypto
    cycles: int = 3
    timeout: float = 10.0  # per scenario child
    uid: int | None = None  # drop to this (from --user); None => nobody (65534)
    gid: int | None = None
    groups: tuple[int, ...] = ()
    scenarios: tuple[str, ...] | None = None  # None = all
    allow_jail_libcrypto: bool = False  # the user explicitly named a libcrypto inside the jail


def run_probe(jail: str, findings: Sequence[Finding], options: ProbeOptions) -> ProbeReport:
    """Probe one jail. Raises ToolError for bad input; otherwise always returns a report."""
    from chrootcheck.probe.run import run  # cffi is loaded only here

    return run(jail, findings, options)
