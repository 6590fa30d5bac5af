"""What the probe reports: frozen dataclasses of plain fields (str, int, float, bool, tuples,
enums), so a generic dataclass-to-JSON converter renders them. No cffi here."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chrootcheck.openssl.errcodes import ErrorRecord
from chrootcheck.openssl.results import LibcryptoSummary, ReseedSettings, Step
from chrootcheck.report.model import Finding


class Verdict(enum.StrEnum):
    PASS = "pass"  # every reseed inside the jail worked
    FAIL = "fail"  # worked before the chroot, fails inside the jail: the jail's fault
    RISK = "risk"  # fails before the chroot already: the environment's, whatever the jail holds
    CRASHED = "crashed"  # the child died (a signal) or hit an internal error
    TIMEOUT = "timeout"  # the child hung and was killed
    SKIPPED = "skipped"  # could not run here (no privileges, no libseccomp ...)


@dataclass(frozen=True)
class Cycle:
    """One reseed cycle: explicit reseeds, then a natural one (interval 1, then a draw)."""

    index: int  # 0 = the control cycle before the chroot; 1..N inside the jail
    inside_jail: bool
    ok: bool
    state: str  # the primary DRBG's state afterwards: ready / error / absent / ...
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class TriggerResult:
    """One trigger measured inside the jail (docs/probe.md, "Triggers").

    ``breaks``: True when it made OpenSSL fail, False when it held to the cap, None when it
    could not be measured (its child crashed or hung). ``at``: the try that failed (the
    N-th new thread, the first RAND_seed ...), None when it did not fail."""

    trigger: str  # time, threads, rand-seed, fork, draws
    what: str  # plain words: what the trigger does
    breaks: bool | None
    at: int | None = None
    tried: int = 0  # how many tries the child made (or was allowed)
    summary: str = ""  # "fails at new thread 64 (63 new threads worked)"
    chain: tuple[ErrorRecord, ...] = ()


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    description: str
    verdict: Verdict
    explanation: str  # plain words: what happened and why
    cycles: tuple[Cycle, ...] = ()
    chain: tuple[ErrorRecord, ...] = ()  # the decoded error chain of the first failing cycle
    caused_by: tuple[str, ...] = ()  # check ids of the given findings that explain a failure
    signal: str | None = None  # "SIGSEGV" when the child was killed by a signal
    exit_status: int | None = None
    phase: str = ""  # how far the child got: start, seeded, jailed, done
    seconds: float = 0.0
    # Measured where the verdict is fail (reseeding inside the jail fails); else empty.
    triggers: tuple[TriggerResult, ...] = ()


@dataclass(frozen=True)
class ProbeReport:
    jail: str
    libcrypto: LibcryptoSummary | None  # None when it could not be loaded (see skipped_reason)
    skipped_reason: str | None = None  # one line, when the probe could not run at all
    mode: str = ""  # "root" or "user namespace"
    uid: int | None = None  # the user the children ran as inside the jail
    gid: int | None = None
    cycles: int = 0
    scenarios: tuple[ScenarioResult, ...] = ()
    reseed: ReseedSettings | None = None  # of the library, read before the chroot
    prediction: str = ""
    daemon: str | None = None  # the profile the prediction used: "stunnel (foreground)"
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """Some scenario fails because of the jail."""
        return any(s.verdict is Verdict.FAIL for s in self.scenarios)
