"""What a probe child tells its parent, one message per stage (``system.worker`` carries them).

The order: ``Settings`` and the control ``CycleRun`` (index 0) before the chroot, ``Jailed``
once inside, one ``CycleRun`` per reseed cycle there (or one ``TriggerRun``), ``SeedView``,
then ``Done``. ``Skip`` instead when the scenario cannot run here; ``worker.Failed`` when the
child stops on an error. The parent learns how far a child got from the messages it has, even
when the child crashed or hung. No cffi here: the analysis reads these.
"""

from __future__ import annotations

from dataclasses import dataclass

from chrootcheck.openssl.errcodes import ErrorRecord
from chrootcheck.openssl.results import ReseedSettings, Step
from chrootcheck.system.worker import Failed, Protocol

__all__ = [
    "CycleRun",
    "Done",
    "Failed",
    "Jailed",
    "SeedView",
    "Settings",
    "Skip",
    "TriggerRun",
    "protocol",
]


@dataclass(frozen=True)
class Skip:
    """The scenario cannot run here (no namespaces, no libseccomp ...)."""

    reason: str


@dataclass(frozen=True)
class Settings:
    """The library's reseed settings, read before the chroot."""

    settings: ReseedSettings


@dataclass(frozen=True)
class CycleRun:
    """One reseed cycle: 0 is the control cycle before the chroot."""

    index: int
    inside_jail: bool
    state: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Jailed:
    """Inside the jail, as this user."""

    uid: int
    gid: int


@dataclass(frozen=True)
class TriggerRun:
    """One trigger inside the jail (``probe.triggers``): whether it broke the generator, at
    which try (``count``, 1-based; 0 when it did not), out of at most ``cap``."""

    trigger: str
    broke: bool
    count: int
    cap: int
    action: str = ""  # the call that failed
    errors: tuple[ErrorRecord, ...] = ()


@dataclass(frozen=True)
class SeedView:
    """The seed sources as the jailed user sees them, after the cycles (``probe.child``):
    one line per path, what stat and access say (never an open: a FIFO would block). Two
    jails that fail a scenario alike and look alike here make the triggers fail alike
    (``probe.run`` measures them once per scan)."""

    entries: tuple[str, ...]


@dataclass(frozen=True)
class Done:
    """Every cycle ran."""


def protocol(cycles: int) -> Protocol:
    """The probe's messages; at most one per cycle and a few more, 64 KiB each on average (a
    cycle's error chain is a few KiB): a child that loaded jail code cannot flood the parent."""
    most = cycles + 8
    return Protocol(
        Skip,
        Settings,
        CycleRun,
        Jailed,
        TriggerRun,
        SeedView,
        Done,
        max_messages=most,
        max_bytes=most << 16,
    )
