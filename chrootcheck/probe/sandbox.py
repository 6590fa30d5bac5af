"""The system calls a probe child makes to look like a jailed daemon on another system.

libc and libseccomp through cffi in ABI mode (no headers needed; Python 3.11 has no
os.unshare). Every function raises OSError with the errno on failure.
"""

from __future__ import annotations

import errno as errno_mod
import functools
import os
from typing import Any

from chrootcheck.openssl import cdefs
from chrootcheck.openssl.cdefs import ffi

PR_SET_DUMPABLE = 4


@functools.cache
def libc() -> Any:
    return ffi.dlopen("libc.so.6")


@functools.cache
def libseccomp() -> Any | None:
    try:
        return ffi.dlopen("libseccomp.so.2")
    except OSError:
        return None


def _check(rc: int, what: str) -> None:
    if rc < 0:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(int(libc().unshare(flags)), "unshare")


def enter_namespaces(as_root: bool) -> None:
    """New IPC and mount namespaces (OpenSSL's shm key 0x72 must not land on the host).

    Without root, a user namespace first: inside it we are root over our own uid only, which
    is enough for chroot (and for seccomp, personality and new namespaces).
    """
    if as_root:
        unshare(cdefs.CLONE_NEWIPC | cdefs.CLONE_NEWNS)
        _make_mounts_private()
        return
    uid, gid = os.geteuid(), os.getegid()
    # A process that changed its uid (setuid, su -c ...) is not dumpable, and its /proc/self
    # files then belong to root: the uid_map write below would fail with EACCES.
    _check(int(libc().prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)), "prctl(PR_SET_DUMPABLE)")
    unshare(cdefs.CLONE_NEWUSER | cdefs.CLONE_NEWIPC | cdefs.CLONE_NEWNS)
    _write("/proc/self/setgroups", "deny")  # required before an unprivileged gid_map
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")
    _make_mounts_private()


def _make_mounts_private() -> None:
    # The copied mount tree keeps the host's shared propagation: make it private, so that
    # nothing in this namespace can ever reach the host's (the child mounts nothing anyway).
    rc = int(libc().mount(b"none", b"/", ffi.NULL, cdefs.MS_REC | cdefs.MS_PRIVATE, ffi.NULL))
    _check(rc, "mount(MS_REC|MS_PRIVATE)")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def set_uname26() -> None:
    """uname() then reports 2.6.x: OpenSSL takes its pre-4.8 path (waits on /dev/random)."""
    current = int(libc().personality(0xFFFFFFFF))  # 0xffffffff only queries
    _check(current, "personality")
    _check(int(libc().personality(current | cdefs.UNAME26)), "personality(UNAME26)")


def block_getrandom() -> None:
    """A seccomp filter making getrandom(2) fail with ENOSYS, as under a syscall sandbox or
    on a kernel older than 3.17. It also sets no_new_privs (libseccomp's default)."""
    seccomp = libseccomp()
    if seccomp is None:
        raise OSError(errno_mod.ENOSYS, "libseccomp.so.2 cannot be loaded")
    ctx = seccomp.seccomp_init(cdefs.SCMP_ACT_ALLOW)
    if ctx == ffi.NULL:
        raise OSError(errno_mod.ENOMEM, "seccomp_init failed")
    try:
        nr = int(seccomp.seccomp_syscall_resolve_name(b"getrandom"))
        if nr < 0:
            raise OSError(errno_mod.ENOSYS, "libseccomp does not know getrandom")
        action = cdefs.scmp_act_errno(errno_mod.ENOSYS)
        rc = int(seccomp.seccomp_rule_add_array(ctx, action, nr, 0, ffi.NULL))
        if rc < 0:
            raise OSError(-rc, f"seccomp_rule_add: {os.strerror(-rc)}")
        rc = int(seccomp.seccomp_load(ctx))
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")
    finally:
        seccomp.seccomp_release(ctx)


def enter_jail(jail: str, uid: int | None, gid: int | None, groups: tuple[int, ...]) -> None:
    """chroot, chdir("/"), drop to uid/gid (None: keep), then no_new_privs."""
    os.chroot(jail)
    os.chdir("/")
    if gid is not None:
        os.setgroups(list(groups))
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    _check(int(libc().prctl(cdefs.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)), "prctl(NO_NEW_PRIVS)")
