"""The probe's scenarios: this system as it is, and the systems a jail must survive too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chrootcheck.sandbox.model import Mount, Sandbox, SeccompFilter

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
    # the unit's own mount namespace over the jail (its RootDirectory=): PrivateDevices=yes,
    # BindPaths=, BindReadOnlyPaths=, TemporaryFileSystem= (sources inside ``sources_root``)
    private_devices: bool = False
    mounts: tuple[Mount, ...] = ()
    sources_root: str = "/"
    openssl_conf: str | None = None  # the unit's, vetted: loaded by the child before the chroot
    source: str = ""  # the unit or profile it comes from
    skip: str = ""  # why this scenario cannot be reproduced here (told as its verdict)
    # as-running: the process is seeded already; its filter comes after the start-up draw
    seccomp_after_seed: bool = False
    # as-running with --read-seccomp: its filter programs exactly as dumped (raw BPF, oldest
    # first), installed behind a prefix that exempts the harness's calls; ``seccomp`` (their
    # answers to OpenSSL's calls) is the fallback where they cannot be installed
    seccomp_programs: tuple[bytes, ...] = ()


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
    programs: tuple[bytes, ...] = ()  # its filter programs as dumped (raw BPF, oldest first)


def as_running(running: Running) -> Scenario:
    """The process as it runs: its library and ids (the jail's), its filter as replayed, and
    its descriptors: a process that holds no random device open has to open one in the jail
    when getrandom fails (RAND_keep_random_devices_open(0) after the start-up draw)."""
    parts = ["its own library, uid and groups"]
    if running.programs:
        parts.append("its seccomp filter programs as dumped (the probe's own calls exempt)")
    elif running.seccomp is not None:
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
        seccomp_programs=running.programs,
    )


def as_configured(
    sandbox: Sandbox, openssl_conf: str | None = None, refused: str | None = None
) -> Scenario:
    """The service's real sandbox: its filter with the same rules and actions, kill included,
    its device policy over the jail's random devices, and, for a unit whose RootDirectory= is
    the jail, its own mounts over the jail (PrivateDevices=, BindPaths=, TemporaryFileSystem=)."""
    from chrootcheck.report.devices import ENTROPY_DEVICES

    deny = tuple(
        d.path
        for d in ENTROPY_DEVICES
        if sandbox.devices is not None and not sandbox.devices.may_read(d.path, d.major, d.minor)
    )
    own_root = sandbox.own_root()
    private = own_root and sandbox.provides_devices()
    mounts = sandbox.mounts if own_root else ()
    parts = ["its seccomp filter"]
    if deny:
        parts.append(f"its device policy denying {', '.join(deny)}")
    if private:
        parts.append("PrivateDevices=yes (its own /dev in the jail)")
    if mounts:
        parts.append("its mounts in the jail (" + ", ".join(m.target for m in mounts) + ")")
    if openssl_conf:
        parts.append(f"its OPENSSL_CONF={openssl_conf}")
    elif sandbox.openssl_conf and not refused:
        parts.append(
            f"not its OPENSSL_CONF={sandbox.openssl_conf}: inside --root {sandbox.tree_root}, "
            "another system's config (its engines and providers name that system's files) is "
            "not loaded"
        )
    if not own_root and (sandbox.provides_devices() or sandbox.mounts):
        parts.append(
            "not its PrivateDevices=/mounts: without RootDirectory= or RootImage= they change "
            "the host's tree, not this jail"
        )
    return Scenario(
        AS_CONFIGURED,
        f"the sandbox of {sandbox.source} ({sandbox.kind}): "
        + ", ".join(parts)
        + ", as configured",
        seccomp=sandbox.seccomp,
        deny_devices=deny,
        private_devices=private,
        mounts=mounts,
        sources_root=sandbox.tree_root,
        openssl_conf=openssl_conf,
        source=sandbox.source,
        skip=refused or "",
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
