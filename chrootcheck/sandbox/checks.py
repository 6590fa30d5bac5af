"""What the service's sandbox does to OpenSSL, as findings of the catalogue's sandbox stage:
read from the model alone (the probe's as-configured scenario measures the same)."""

from __future__ import annotations

from collections.abc import Sequence

from chrootcheck.report import catalogue
from chrootcheck.report.devices import ENTROPY_DEVICES
from chrootcheck.report.model import Finding, Severity
from chrootcheck.sandbox.model import Sandbox, killing_calls

# OpenSSL calls getrandom(buf, n, 0) and shmget(0x72, 1, 0) / shmat(id, NULL, SHM_RDONLY).
_GETRANDOM_ARGS = (0, 32, 0)
_SHM_ARGS = {"shmget": (0x72, 1, 0), "shmat": (0, 0, 0o10000)}


def findings(sandbox: Sandbox, prior: Sequence[Finding]) -> list[Finding]:
    """``prior``: the inspector's findings (whether the jail has the devices)."""
    out: list[Finding] = []
    where = sandbox.source
    kills = killing_calls(sandbox.seccomp)
    devices_missing = any(
        f.check in catalogue.SEED_SOURCE_MISSING and f.severity >= Severity.ERROR for f in prior
    )
    # BindPaths= can bring the device in; TemporaryFileSystem=/dev hides the jail's.
    if sandbox.brings_device("/dev/urandom"):
        devices_missing = False
    elif sandbox.hides_dev():
        devices_missing = True
    denied = [
        d
        for d in ENTROPY_DEVICES
        if sandbox.devices is not None and not sandbox.devices.may_read(d.path, d.major, d.minor)
    ]
    no_devices = (devices_missing or bool(denied)) and not sandbox.provides_devices()
    getrandom = sandbox.outcome("getrandom", _GETRANDOM_ARGS)
    if getrandom.action.fails and not getrandom.action.kills:
        out.append(
            catalogue.SANDBOX_BLOCKS_GETRANDOM.finding(
                where,
                f"getrandom {getrandom.action.describe()} under {where}"
                + (
                    ": and the jail's random devices are missing or denied"
                    if no_devices
                    else ": OpenSSL falls back to the random devices, which the jail has"
                ),
                severity=Severity.ERROR if no_devices else Severity.WARNING,
                action=getrandom.action.kind,
                errno=getrandom.action.errno,
            )
        )
    for call in ("shmget", "shmat"):
        o = sandbox.outcome(call, _SHM_ARGS[call])
        if o.action.fails:
            out.append(
                catalogue.SANDBOX_BLOCKS_SHM.finding(
                    where,
                    f"{call} {o.action.describe()} under {where}",
                    severity=Severity.ERROR if o.action.kills else None,
                    call=call,
                    action=o.action.kind,
                )
            )
    other = [c for c in kills if c not in ("shmget", "shmat")]
    if other:
        out.append(
            catalogue.SANDBOX_KILLS_OPENSSL_CALL.finding(
                where,
                f"{where} kills the service on {', '.join(other)}, which OpenSSL calls",
                calls=tuple(other),
            )
        )
    for d in denied:
        out.append(
            catalogue.DEVICE_POLICY_DENIES_RANDOM.finding(
                d.path,
                f"{where}: the device policy denies {d.path} ({d.major}:{d.minor}): opening "
                "it fails with EPERM though the node exists",
            )
        )
    if sandbox.provides_devices():
        out.append(
            catalogue.PRIVATE_DEVICES_PROVIDES.finding(
                where,
                f"{where}: PrivateDevices=yes: systemd gives the service its own /dev with "
                "random and urandom",
            )
        )
    for source in sandbox.missing_sources:
        out.append(
            catalogue.SANDBOX_BIND_SOURCE_MISSING.finding(
                where,
                f"{where}: the bind mount source {source} does not exist"
                + ("" if sandbox.tree_root in ("", "/") else f" inside {sandbox.tree_root}")
                + ": systemd refuses to start the unit",
                source=source,
            )
        )
    for name in sandbox.unknown:
        out.append(catalogue.SANDBOX_UNKNOWN_NAME.finding(where, name))
    return out
