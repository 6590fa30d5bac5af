"""The probe's scenarios: this system as it is, and the systems a jail must survive too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chrootcheck.sandbox.model import Sandbox, SeccompFilter

AS_CONFIGURED = "as-configured"
AS_RUNNING = "as-running"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    block_getrandom: bool = False  # seccomp: getrandom(2) -> ENOSYS
    uname26: bool = False  # personality UNAME26: the kernel looks older than 4.8
    close_devices: bool = False  # RAND_keep_random_devices_open(0)
    # as-configured: the service's own seccomp filter, and the random devices its device
    # policy denies (opened, they fail as under systemd's device cgroup)
    seccomp: SeccompFilter | None = None
    deny_devices: tuple[str, ...] = ()
    source: str = ""  # the unit or profile it comes from
    skip: str = ""  # why this scenario cannot be reproduced here (told as its verdict)
    # as-running: the process is seeded already; its filter comes after the start-up draw
    seccomp_after_seed: bool = False


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("as-is", "this kernel and this library, unchanged"),
    Scenario(
        "no-getrandom",
        "getrandom(2) fails with ENOSYS, as under a seccomp sandbox",
        block_getrandom=True,
    ),
    Scenario(
        "old-kernel",
        "no getrandom and a kernel older than 4.8: OpenSSL waits on /dev/random, then reads "
        "/dev/urandom and keeps it open",
        block_getrandom=True,
        uname26=True,
    ),
    Scenario(
        "old-kernel, devices closed",
        "as old-kernel, with RAND_keep_random_devices_open(0): like a daemon that closes its "
        "descriptors, or an OpenSSL without the keep-open change (the origin story)",
        block_getrandom=True,
        uname26=True,
        close_devices=True,
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}
NAMES = (*BY_NAME, AS_CONFIGURED, AS_RUNNING)


@dataclass(frozen=True)
class Running:
    """What the as-running scenario copies from a running process (``scan --pid``): its
    filter's answers to OpenSSL's calls as rules (replayed with ``--read-seccomp``; None: no
    filter, or not read) and whether it holds a random device open. Its library, uid and
    groups are the jail's (the scan probes the whole jail with them)."""

    label: str  # "haproxy[1234]"
    seccomp: SeccompFilter | None = None
    holds_device: bool = False


def as_running(running: Running) -> Scenario:
    """The process as it runs: its library and ids (the jail's), its filter as replayed, and
    its descriptors: a process that holds no random device open has to open one in the jail
    when getrandom fails (RAND_keep_random_devices_open(0) after the start-up draw)."""
    parts = ["its own library, uid and groups"]
    if running.seccomp is not None:
        parts.append("its seccomp filter as replayed")
    parts.append(
        "a random device held open, as it holds one"
        if running.holds_device
        else "no random device held open, as it holds none"
    )
    return Scenario(
        AS_RUNNING,
        f"{running.label} as it runs now: " + ", ".join(parts),
        close_devices=not running.holds_device,
        seccomp=running.seccomp,
        source=running.label,
        seccomp_after_seed=True,  # it runs: it was seeded, whatever its filter does now
    )


def as_configured(sandbox: Sandbox) -> Scenario:
    """The service's real sandbox: its filter with the same rules and actions, kill included,
    and its device policy over the jail's random devices."""
    from chrootcheck.report.devices import ENTROPY_DEVICES

    deny = tuple(
        d.path
        for d in ENTROPY_DEVICES
        if sandbox.devices is not None and not sandbox.devices.may_read(d.path, d.major, d.minor)
    )
    return Scenario(
        AS_CONFIGURED,
        f"the sandbox of {sandbox.source} ({sandbox.kind}): its seccomp filter"
        + (f", its device policy denying {', '.join(deny)}" if deny else "")
        + ", as configured",
        seccomp=sandbox.seccomp,
        deny_devices=deny,
        source=sandbox.source,
        skip="PrivateDevices=yes: systemd gives the service its own /dev, which the probe "
        "does not reproduce (the static checks count the devices as provided)"
        if sandbox.provides_devices()
        else "",
    )


# The triggers run in their own children inside a failing scenario's jail (probe.triggers).
THREADS = "threads"
RAND_SEED = "rand-seed"
FORK = "fork"
DRAWS = "draws"
TRIGGERS: tuple[str, ...] = (THREADS, RAND_SEED, FORK, DRAWS)

# 1.0.2/1.1.0 (md_rand): the probe looks at the devices RAND_poll would open, as the library
# itself never does after seeding. This step is the probe's, never counted as the library's.
PROBE_LOOK = "the probe's own look at the devices RAND_poll would read (not the library's)"
