"""The report model: plain frozen data that every command produces and every format renders.

Layering: nothing here imports from the rest of the package. The inspector, the probe, the
fixer and the log decoder fill these types; ``chrootcheck.formats`` turns them into text,
JSON, SARIF and the other CI formats.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Bumped MAJOR on a breaking change of the JSON shape, MINOR when fields are added.
SCHEMA_VERSION = "1.0"
# The scan report's own minor: 1.1 added jails[].process (scan --pid/--running).
SCAN_SCHEMA_VERSION = "1.1"


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


def frozen_map(values: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only mapping, so that a frozen dataclass is safe to share."""
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or worth knowing) about a jail.

    ``path`` is the path as the chrooted process sees it (``/dev/urandom``), never the host path.
    ``details`` carries machine-readable facts (device numbers, mode, the symlink chain ...).
    """

    check: str
    severity: Severity
    path: str
    message: str
    remediation: str
    details: Mapping[str, Any] = field(default_factory=frozen_map)


class Stage(enum.StrEnum):
    """The parts of a scan. Each check belongs to one; a stage that did not run makes its
    checks skipped (never passed) in every format."""

    INSPECT = "inspect"
    LATE_LOADS = "late-loads"
    PROBE = "probe"
    DISCOVER = "discover"
    SANDBOX = "sandbox"  # the service's sandbox (a unit or a seccomp profile), read statically
    # The daemon's engine key loaded before a chroot and used inside the jail (an HSM key).
    LATE_LOAD_PROBE = "late-load-probe"
    LIVE = "live"  # the running service (scan --pid/--running): its time to failure


class NoticeKind(enum.StrEnum):
    SKIPPED = "skipped"  # a part of the job did not run (no privileges, --no-probe, ...)
    ERROR = "error"  # the tool could not do a part of its job: this makes the exit code 2
    NOTE = "note"  # context worth showing, never a finding


@dataclass(frozen=True)
class Notice:
    """A message about the run itself, not about the jail (SARIF: a tool notification).

    ``topic`` is the stage the notice is about. ``part`` narrows it to one part of the stage
    ("walk", "jail", "engine" ...); JSON and every format show ``part`` as the topic when set.
    A SKIPPED notice without a part says the whole stage did not run: every format then shows
    the stage's checks as skipped, never as passed (``skips_stage``).
    """

    kind: NoticeKind
    topic: Stage
    message: str
    part: str = ""

    def __post_init__(self) -> None:
        # A plain string is accepted for a stage's value, and refused for anything else: a
        # topic spelt two ways made skipped checks look passed once (issue 10).
        object.__setattr__(self, "topic", Stage(self.topic))

    @property
    def label(self) -> str:
        return self.part or self.topic.value

    @property
    def skips_stage(self) -> bool:
        return self.kind is NoticeKind.SKIPPED and not self.part


def stage_skipped(stage: Stage, why: str) -> Notice:
    """The notice of a stage that did not run (--no-probe, not root, no library ...)."""
    return Notice(NoticeKind.SKIPPED, stage, why)


@dataclass(frozen=True)
class LibcryptoCopy:
    """A libcrypto found inside the jail (never loaded by the scan: its version is read as text)."""

    path: str  # inside the jail
    version: str | None  # "OpenSSL 1.1.1r  11 Oct 2022", or None if no version string was found
    size: int


@dataclass(frozen=True)
class WalkStats:
    entries: int = 0
    directories: int = 0
    unreadable: int = 0
    mounts_skipped: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class TimeToFailure:
    """When a running service's TLS fails in its jail (``scan --pid``/``--running``).

    ``seconds``: from now until the first failure (0: due already); None when nothing fails
    (``verdict`` "safe") or it cannot be told ("unknown")."""

    verdict: str  # "safe" | "fails" | "unknown"
    seconds: float | None
    text: str  # one line: "haproxy[1234] (master-worker), started 47 min ago, ..."
    trigger: str = ""  # what breaks it first: "time", "fork", "threads", "start" ...


def duration_words(seconds: float) -> str:
    """A running service's uptime or time left, in the unit a reader wants: "47 min"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@dataclass(frozen=True)
class RunningProcess:
    """The running service whose jail a ``scan --pid``/``--running`` scanned (read from /proc
    by ``live``): the as-running probe scenario copies its conditions."""

    pid: int  # the process the scenario copies (a worker when there are workers)
    command: str
    cmdline: str
    uid: int | None
    gid: int | None
    groups: tuple[int, ...]
    user: str | None
    start_time: float | None  # epoch seconds
    uptime: float | None  # seconds
    root: str  # /proc/PID/root as the kernel prints it to us
    confinement: str  # "chroot" | "container" | "chroot in a container" | ...
    mnt_ns: int | None
    processes: tuple[int, ...]  # every process of the jail, masters first
    leaders: tuple[int, ...]
    daemon: str | None  # its daemon profile, "haproxy:master-worker"
    library: str | None  # the libcrypto it maps (path as /proc/PID/maps prints it)
    library_version: str | None
    library_on_disk: str  # "same" | "replaced" | "deleted" | "unknown" | ""
    library_probed: str  # which library the probe ran, and why
    random_devices: tuple[str, ...]  # "fd 5: /dev/urandom (1:9)"
    holds_urandom: bool
    seccomp: str  # "disabled" | "strict" | "filter" | "unknown"
    seccomp_filters: int | None
    getrandom: str  # under its filter: "allowed", "fails with ENOSYS", "kills (SIGSYS)", "unknown"
    notes: tuple[str, ...] = ()
    # Where getrandom is missing (a kernel older than 3.17): decided by the device it holds open
    # or the jail's /dev/urandom (``ps``'s old-kernel verdict).
    old_kernel: str = ""
    time_to_failure: TimeToFailure | None = None
    # The same on a kernel without getrandom, measured by the probe's old-kernel scenario that
    # matches its descriptors (app.running.old_kernel_time_to_failure); None: it did not run.
    old_kernel_time_to_failure: TimeToFailure | None = None


@dataclass
class JailReport:
    """Everything one scan learned about one jail."""

    jail: str  # the host path as given on the command line (absolute)
    findings: list[Finding] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    libcrypto: list[LibcryptoCopy] = field(default_factory=list)
    walk: WalkStats = field(default_factory=WalkStats)
    # Filled by the probe (chrootcheck.probe); None when the probe did not run.
    probe: Any = None
    # scan --pid/--running: the running service whose jail this is; None otherwise.
    process: RunningProcess | None = None

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def at_or_above(self, threshold: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity >= threshold]

    @property
    def tool_error(self) -> bool:
        return any(n.kind is NoticeKind.ERROR for n in self.notices)


@dataclass
class Report:
    """The result of one ``chrootcheck scan``: one JailReport per jail, in command-line order."""

    jails: list[JailReport]
    fail_on: Severity = Severity.ERROR
    tool_version: str = ""

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Severity}
        for jail in self.jails:
            for f in jail.findings:
                counts[f.severity.value] += 1
        return counts

    def failing(self) -> list[tuple[JailReport, Finding]]:
        return [(j, f) for j in self.jails for f in j.at_or_above(self.fail_on)]

    @property
    def tool_error(self) -> bool:
        return any(j.tool_error for j in self.jails)

    def summary(self) -> dict[str, Any]:
        return {
            "jails": len(self.jails),
            "findings": self.counts(),
            "fail_on": self.fail_on.value,
            "failing": len(self.failing()),
            "tool_errors": sum(1 for j in self.jails if j.tool_error),
        }


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first, then by path and check id: a stable order for every format."""
    return sorted(findings, key=lambda f: (-f.severity.rank, f.path, f.check))
