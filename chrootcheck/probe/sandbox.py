"""The system calls a probe child makes to look like a jailed daemon on another system.

libc and libseccomp through ``chrootcheck.system.libc`` (cffi in ABI mode). Every function
raises OSError with the errno on failure.
"""

from __future__ import annotations

import errno as errno_mod
import os

from chrootcheck.sandbox.model import ALLOW, COMPARE_OPS, SeccompFilter
from chrootcheck.system import libc


def unshare(flags: int) -> None:
    libc.unshare(flags)


def enter_namespaces(as_root: bool) -> None:
    """New IPC and mount namespaces (OpenSSL's shm key 0x72 must not land on the host).

    Without root, a user namespace first: inside it we are root over our own uid only, which
    is enough for chroot (and for seccomp, personality and new namespaces).
    """
    if as_root:
        unshare(libc.CLONE_NEWIPC | libc.CLONE_NEWNS)
        _make_mounts_private()
        return
    uid, gid = os.geteuid(), os.getegid()
    # A process that changed its uid (setuid, su -c ...) is not dumpable, and its /proc/self
    # files then belong to root: the uid_map write below would fail with EACCES.
    libc.prctl(libc.PR_SET_DUMPABLE, 1, what="prctl(PR_SET_DUMPABLE)")
    unshare(libc.CLONE_NEWUSER | libc.CLONE_NEWIPC | libc.CLONE_NEWNS)
    _write("/proc/self/setgroups", "deny")  # required before an unprivileged gid_map
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")
    _make_mounts_private()


def _make_mounts_private() -> None:
    # The copied mount tree keeps the host's shared propagation: make it private, so that
    # nothing in this namespace can ever reach the host's (the child mounts nothing anyway).
    libc.mount("none", "/", libc.MS_REC | libc.MS_PRIVATE, what="mount(MS_REC|MS_PRIVATE)")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def set_uname26() -> None:
    """uname() then reports 2.6.x: OpenSSL takes its pre-4.8 path (waits on /dev/random)."""
    current = libc.personality(0xFFFFFFFF)  # 0xffffffff only queries
    libc.personality(current | libc.UNAME26)


def block_getrandom() -> None:
    """A seccomp filter making getrandom(2) fail with ENOSYS, as under a syscall sandbox or
    on a kernel older than 3.17. It also sets no_new_privs (libseccomp's default)."""
    libc.load_seccomp_filter({"getrandom": libc.scmp_act_errno(errno_mod.ENOSYS)})


def enter_jail(
    jail: str,
    uid: int | None,
    gid: int | None,
    groups: tuple[int, ...],
    deny_devices_: tuple[str, ...] = (),
) -> None:
    """chroot, chdir("/"), deny the devices a device policy denies (``deny_devices``), drop to
    uid/gid (None: keep), then no_new_privs."""
    os.chroot(jail)
    os.chdir("/")
    if deny_devices_:
        deny_devices(deny_devices_)
    if gid is not None:
        os.setgroups(list(groups))
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1, what="prctl(NO_NEW_PRIVS)")


# What the probe child itself calls after the filter is in place and OpenSSL never does: the
# chroot and privilege drop a service's manager makes before its filter (systemd applies
# RootDirectory= and User= first), the bind mounts of a device policy, the pipe to the parent,
# the Python runtime's memory and signal calls, and the trigger children's own bookkeeping
# (the fork trigger checks its parent and reaps its child). Allowed whatever the sandbox says,
# so the measured verdict is about OpenSSL's calls: the threads and forks themselves (clone,
# clone3) are the service's, and stay under its filter.
HARNESS_CALLS = frozenset(
    """chroot chdir fchdir mount setgroups setgid setuid setresuid setresgid setfsuid setfsgid
    capget capset prctl write exit exit_group rt_sigreturn rt_sigaction rt_sigprocmask
    sigaltstack mmap munmap mprotect mremap brk madvise futex getuid geteuid getgid getegid
    gettid statfs fstatfs getppid wait4""".split()
)


def apply_filter(flt: SeccompFilter) -> None:
    """The service's seccomp filter through libseccomp: its default, its rules with their
    argument conditions and actions (kill included); the harness's own calls allowed."""
    rules = [
        (
            r.name,
            r.action.value,
            [(c.index, COMPARE_OPS[c.op], c.value, c.value_two) for c in r.conditions],
        )
        for r in flt.rules
        if r.name not in HARNESS_CALLS
    ]
    if flt.default.kind != "allow":
        rules += [(name, ALLOW.value, []) for name in sorted(HARNESS_CALLS)]
    libc.load_seccomp_rules(flt.default.value, rules)


# statvfs flags -> the mount flags a bind remount must repeat (a user namespace may not
# drop a flag it inherited locked).
_KEEP_FLAGS = ((os.ST_RDONLY, 0x1), (os.ST_NOSUID, 0x2), (os.ST_NODEV, 0x4), (os.ST_NOEXEC, 0x8))


def deny_devices(paths: tuple[str, ...]) -> list[str]:
    """Inside the jail (after chroot, in the child's own mount namespace): each of ``paths``
    that exists is bind-mounted onto itself read-only and ``nodev``, so opening it fails
    (EACCES) as under a device policy that denies it (EPERM). Nothing is opened. Returns the
    paths done."""
    done = []
    for path in paths:
        try:
            os.stat(path)  # inside the chroot: a symlink resolves in the jail, never out
        except OSError:
            continue  # missing or dangling: nothing to deny
        libc.mount(path, path, libc.MS_BIND, what=f"bind {path}")
        flags = libc.MS_BIND | libc.MS_REMOUNT | libc.MS_NODEV | libc.MS_RDONLY
        have = os.statvfs(path).f_flag
        for st, ms in _KEEP_FLAGS:
            if have & st:
                flags |= ms
        libc.mount(path, path, flags, what=f"remount {path} nodev")
        done.append(path)
    return done
