"""The static inspector: what a chrooted process would find where OpenSSL looks for entropy.

It never opens a device, FIFO or socket for reading (a FIFO blocks forever), never follows a
symlink out of the jail and never loads code from it. Its only "live" act is the EGD entropy
level query on a socket at one of OpenSSL's EGD paths.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chrootcheck.jail import egd, mounts, walker
from chrootcheck.jail import fs as jailfs
from chrootcheck.jail.users import ServiceUser, may, others_may
from chrootcheck.report import catalogue as checks
from chrootcheck.report.devices import ENTROPY_DEVICES, NULL, ZERO, Device, known_device
from chrootcheck.report.model import (
    Finding,
    JailReport,
    LibcryptoCopy,
    Notice,
    NoticeKind,
    Severity,
    Stage,
)


@dataclass(frozen=True)
class ScanOptions:
    user: ServiceUser | None = None
    cross_mounts: bool = False
    walk: bool = True
    progress: Callable[[int], None] | None = None


def inspect_jail(jail: str, options: ScanOptions | None = None) -> JailReport:
    """Open ``jail`` and inspect it (the scan pipeline opens it once and calls inspect_root)."""
    try:
        root_fd = jailfs.open_jail(jail)
    except jailfs.JailOpenError as e:
        report = JailReport(jail=jail)
        report.notices.append(Notice(NoticeKind.ERROR, Stage.INSPECT, str(e), part="jail"))
        return report
    try:
        return inspect_root(root_fd, jail, options)
    finally:
        os.close(root_fd)


def inspect_root(root_fd: int, jail: str, options: ScanOptions | None = None) -> JailReport:
    """Inspect the jail whose root ``root_fd`` is (from ``jail.fs.open_jail``); ``jail`` is its
    host path, for the report and the mount table."""
    report = JailReport(jail=jail)
    _inspect(root_fd, report, options or ScanOptions())
    return report


def _inspect(root_fd: int, report: JailReport, options: ScanOptions) -> None:
    add = report.findings.append
    dev_state = _check_dev(root_fd, add)
    entropy_paths: set[str] = set()
    for device in ENTROPY_DEVICES:
        final = _check_entropy_device(root_fd, device, dev_state, options, report)
        if final:
            entropy_paths.add(final)
    egd_paths = _check_egd(root_fd, add)
    if not options.walk:
        return
    result = walker.walk(
        root_fd,
        mounts=mounts.mounts_under(report.jail),
        cross_mounts=options.cross_mounts,
        progress=options.progress,
    )
    report.walk = result.stats
    for met in sorted(result.met, key=lambda m: m.path):  # a split walk returns two halves
        _report_met(met, entropy_paths | egd_paths, report)


def _check_dev(root_fd: int, add: Callable[[Finding], None]) -> str:
    """Returns "ok", "missing" or "blocked" (not a folder / dangling / loop)."""
    with jailfs.resolve(root_fd, "/dev") as res:
        if res.found and res.stat is not None and stat.S_ISDIR(res.stat.st_mode):
            assert res.fd is not None
            if os.fstatvfs(res.fd).f_flag & os.ST_RDONLY:
                add(
                    checks.READONLY_MOUNT.finding(
                        "/dev",
                        "/dev lies on a read-only file system: device nodes cannot be "
                        "created there (a bind mount still can).",
                        fstype_flag="ro",
                    )
                )
            return "ok"
        if res.error == errno.ENOENT and not res.links:
            add(
                checks.DEV_MISSING.finding(
                    "/dev",
                    "/dev does not exist in the jail, so neither /dev/urandom nor "
                    "/dev/random can be opened after the chroot.",
                )
            )
            if os.fstatvfs(root_fd).f_flag & os.ST_RDONLY:
                add(
                    checks.READONLY_MOUNT.finding(
                        "/",
                        "the jail's root lies on a read-only file system: /dev cannot be "
                        "created there.",
                    )
                )
            return "missing"
        return "blocked"


def _chain(links: list[tuple[str, str]], most: int = 4) -> str:
    """``/dev/urandom -> /etc/passwd``; a loop's 40 links are cut after a few."""
    if not links:
        return ""
    steps = [links[0][0], *(t for _, t in links[:most])]
    return " -> ".join(steps) + (" -> ..." if len(links) > most else "")


def _check_entropy_device(
    root_fd: int,
    device: Device,
    dev_state: str,
    options: ScanOptions,
    report: JailReport,
) -> str | None:
    """Check one entropy device; returns its canonical in-jail path when something is there."""
    add = report.findings.append
    path = device.path
    with jailfs.resolve(root_fd, path) as res:
        chain = _chain(res.links)
        if not res.found:
            return _unresolved(res, path, device.name, dev_state, chain, report)
        st = res.stat
        assert st is not None and res.fd is not None
        mode = st.st_mode
        via = f" (reached through the symlink {chain})" if chain else ""
        common: dict[str, Any] = {
            "kind": jailfs.kind_of(mode),
            "mode": f"{stat.S_IMODE(mode):04o}",
            "uid": st.st_uid,
            "gid": st.st_gid,
            "resolved": res.path,
        }
        if chain:
            common["symlinks"] = chain
        aside = "Move it aside (keep a copy if it matters)," if not chain else "Remove the symlink,"
        fix = checks.replace_fix(device, aside)
        if stat.S_ISREG(mode):
            if st.st_size == 0:
                what = "an empty regular file: OpenSSL reads 0 bytes from it, no entropy at all"
            else:
                what = (
                    f"a regular file of {st.st_size} bytes: every process that reads it "
                    "gets the same 'random' bytes, so keys and nonces are predictable"
                )
            add(
                checks.NODE_REGULAR_FILE.finding(
                    path, f"{path} is {what}{via}.", remediation=fix, size=st.st_size, **common
                )
            )
            return res.path
        if stat.S_ISFIFO(mode):
            add(
                checks.NODE_FIFO.finding(
                    path,
                    f"{path} is a FIFO{via}: opening it blocks until someone writes, and the "
                    "writer chooses the bytes.",
                    remediation=fix,
                    **common,
                )
            )
            return res.path
        if stat.S_ISSOCK(mode):
            add(
                checks.NODE_SOCKET.finding(
                    path,
                    f"{path} is a socket{via}: open(2) fails with ENXIO.",
                    remediation=fix,
                    **common,
                )
            )
            return res.path
        if stat.S_ISDIR(mode):
            add(
                checks.NODE_DIRECTORY.finding(
                    path, f"{path} is a folder{via}, not a device.", remediation=fix, **common
                )
            )
            return res.path
        if stat.S_ISBLK(mode):
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
            add(
                checks.NODE_BLOCK_DEVICE.finding(
                    path,
                    f"{path} is the block device {major}:{minor}{via}: it reads a disk, not "
                    "the kernel's random number generator.",
                    remediation=fix,
                    major=major,
                    minor=minor,
                    **common,
                )
            )
            return res.path
        if not stat.S_ISCHR(mode):
            return res.path
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        common.update(major=major, minor=minor)
        if (major, minor) != device.numbers:
            _wrong_numbers(device, (major, minor), via, common, fix, add)
        if os.fstatvfs(res.fd).f_flag & os.ST_NODEV:
            add(
                checks.NODEV_MOUNT.finding(
                    path,
                    f"{path} is a correct-looking node on a file system mounted nodev: "
                    "open(2) fails with EACCES.",
                    **common,
                )
            )
        _check_access(root_fd, path, res, options.user, common, add)
        return res.path


def _unresolved(
    res: jailfs.Resolution, path: str, name: str, dev_state: str, chain: str, report: JailReport
) -> str | None:
    add = report.findings.append
    device = next(d for d in ENTROPY_DEVICES if d.path == path)
    details: dict[str, Any] = {
        "errno": errno.errorcode.get(res.error or 0, str(res.error)),
        "failed_at": res.failed_at,
    }
    if chain:
        details["symlinks"] = chain
    if res.error == errno.ELOOP:
        add(
            checks.NODE_SYMLINK_LOOP.finding(
                path,
                f"{path} is a symlink loop inside the jail ({chain}): open(2) fails with ELOOP.",
                remediation=checks.replace_fix(device, "Remove the symlink,"),
                **details,
            )
        )
        return None
    if res.error == errno.ENOENT and chain:
        add(
            checks.NODE_SYMLINK_DANGLING.finding(
                path,
                f"{path} is a symlink that dangles inside the jail: {chain}; after the "
                f"chroot {res.failed_at} does not exist.",
                remediation=checks.replace_fix(
                    device,
                    "Symlinks to host paths never work after chroot: remove the symlink,",
                ),
                **details,
            )
        )
        return None
    if res.error == errno.ENOENT:
        if dev_state == "missing":
            msg = f"{path} is missing (the whole /dev folder is missing)."
        else:
            msg = f"{path} is missing in the jail."
        add(
            checks.DEVICE_MISSING[device].finding(
                path, msg, remediation=checks.create_fix(device), **details
            )
        )
        return None
    if res.error == errno.ENOTDIR:
        add(
            checks.NODE_PATH_BLOCKED.finding(
                path,
                f"{path} cannot exist in the jail: {res.failed_at} is not a folder.",
                **details,
            )
        )
        return None
    if res.error == errno.EAGAIN:
        # A live jail, not a tool error: resolve() already looked again MAX_RETRIES times.
        add(
            checks.NODE_CHANGING.finding(
                path,
                f"{path} kept changing during the scan (at {res.failed_at}, "
                f"{jailfs.MAX_RETRIES + 1} looks): what a process would open is not verified.",
                **details,
            )
        )
        return None
    report.notices.append(
        Notice(
            NoticeKind.ERROR,
            Stage.INSPECT,
            f"{path} could not be checked: {os.strerror(res.error or 0)} at {res.failed_at}",
        )
    )
    return None


def _wrong_numbers(
    device: Device,
    got: tuple[int, int],
    via: str,
    common: dict[str, Any],
    fix: str,
    add: Callable[[Finding], None],
) -> None:
    path = device.path
    mem = known_device(*got)
    known = mem.path if mem else None
    if mem in (NULL, ZERO):
        add(
            checks.DEVICE_NULL_OR_ZERO.finding(
                path,
                f"{path} is {known} (c {got[0]}:{got[1]}){via}: "
                + (
                    "it reads 0 bytes, no entropy."
                    if mem == NULL
                    else "it reads only zeros: predictable keys."
                ),
                remediation=fix,
                **common,
            )
        )
        return
    other = f" ({known})" if known else ""
    swapped = mem in ENTROPY_DEVICES
    add(
        checks.DEVICE_WRONG_NUMBERS.finding(
            path,
            f"{path} is c {got[0]}:{got[1]}{other}{via}; Linux's {device.name} is {device.spec}"
            + (
                ": both are the kernel's generator, but /dev/random may block on old kernels."
                if swapped
                else ": it does not read the kernel's random number generator."
            ),
            severity=Severity.WARNING if swapped else None,
            remediation=fix,
            **common,
        )
    )


def _check_access(
    root_fd: int,
    path: str,
    res: jailfs.Resolution,
    user: ServiceUser | None,
    common: dict[str, Any],
    add: Callable[[Finding], None],
) -> None:
    assert res.stat is not None
    # After chroot the lookup searches "/" (the jail root) and every folder on the way.
    folders = [("/", os.fstat(root_fd)), *res.dirs]
    if user is not None:
        blocked = [p for p, st in folders if not may(user, st, 1)]
        readable = may(user, res.stat, 4)
        if blocked or not readable:
            why = (
                f"it cannot search {', '.join(blocked)}"
                if blocked
                else f"mode {common['mode']} owner {res.stat.st_uid}:{res.stat.st_gid} "
                "gives it no read permission"
            )
            add(
                checks.NOT_READABLE_BY_USER.finding(
                    path,
                    f"{path} cannot be opened by {user.label}: {why}.",
                    user=user.label,
                    blocked_folders=blocked,
                    **common,
                )
            )
        return
    blocked = [p for p, st in folders if not others_may(st, 1)]
    if blocked or not others_may(res.stat, 4):
        why = (
            f"others cannot search {', '.join(blocked)}"
            if blocked
            else f"mode {common['mode']} gives others no read permission"
        )
        add(
            checks.NOT_READABLE_BY_OTHERS.finding(
                path,
                f"{path}: {why}; a service that drops root cannot open it.",
                blocked_folders=blocked,
                **common,
            )
        )


def _check_egd(root_fd: int, add: Callable[[Finding], None]) -> set[str]:
    seen: set[str] = set()
    for path in egd.EGD_PATHS:
        with jailfs.resolve(root_fd, path) as res:
            if not res.found or res.stat is None or res.fd is None:
                continue  # no EGD socket is the normal case
            seen.add(res.path)
            mode = res.stat.st_mode
            if not stat.S_ISSOCK(mode):
                add(
                    checks.EGD_PATH_NOT_SOCKET.finding(
                        path,
                        f"{path} is a {jailfs.kind_of(mode)}, not a socket: an EGD build of "
                        "OpenSSL gets no entropy from it.",
                        kind=jailfs.kind_of(mode),
                    )
                )
                continue
            answer = egd.query(res.fd)
            if answer.alive:
                add(
                    checks.EGD_SOCKET_LIVE.finding(
                        path,
                        f"an EGD daemon answers at {path}: it holds {answer.entropy_bits} bits "
                        "of entropy.",
                        entropy_bits=answer.entropy_bits,
                    )
                )
            else:
                add(
                    checks.EGD_SOCKET_DEAD.finding(
                        path,
                        f"{path} is a socket but no EGD daemon answers: {answer.reason}.",
                        reason=answer.reason,
                    )
                )
    return seen


def _report_met(met: walker.Met, already: set[str], report: JailReport) -> None:
    add = report.findings.append
    if met.path in already:
        return
    if met.kind == "device":
        major, minor = os.major(met.rdev), os.minor(met.rdev)
        kind = "c" if stat.S_ISCHR(met.mode) else "b"
        mem = known_device(major, minor) if kind == "c" else None
        known = mem.path if mem else None
        add(
            checks.OTHER_DEVICE.finding(
                met.path,
                f"{met.path}: {'character' if kind == 'c' else 'block'} device "
                f"{kind} {major}:{minor}" + (f" ({known})" if known else "") + ".",
                major=major,
                minor=minor,
                mode=f"{stat.S_IMODE(met.mode):04o}",
            )
        )
    elif met.kind == "socket":
        add(checks.OTHER_SOCKET.finding(met.path, f"{met.path}: a Unix socket."))
    elif met.kind == "fifo":
        add(checks.OTHER_FIFO.finding(met.path, f"{met.path}: a FIFO (named pipe)."))
    elif met.kind == "libcrypto":
        report.libcrypto.append(LibcryptoCopy(met.path, met.detail or None, met.size))
        version = met.detail or met.note or "no OpenSSL version string found"
        extra: dict[str, Any] = {"not_read": met.note} if met.note else {}
        add(
            checks.LIBCRYPTO_COPY.finding(
                met.path, f"{met.path}: {version}.", version=met.detail or None, **extra
            )
        )
    elif met.kind == "unreadable":
        add(
            checks.UNREADABLE_FOLDER.finding(
                met.path, f"{met.path} could not be read: {met.detail}."
            )
        )
    elif met.kind == "mount":
        report.notices.append(
            Notice(
                NoticeKind.NOTE,
                Stage.INSPECT,
                f"{met.path} is a mount point ({met.detail}); not walked "
                "(pass --cross-mounts to walk it)",
                part="walk",
            )
        )
    elif met.kind == "too-deep":
        names = met.detail.split("/")
        more = f" and {met.size - len(names)} more" if met.size > len(names) else ""
        report.notices.append(
            Notice(
                NoticeKind.NOTE,
                Stage.INSPECT,
                f"the walk stopped at {walker.MAX_DEPTH} levels in {met.path}: its "
                f"sub-folder(s) {', '.join(names)}{more} and everything below them were not "
                "walked",
                part="walk",
            )
        )
