"""A stand-in for a jailed TLS daemon, started by tests/test_live*.py (not part of the package).

Usage: python3 live_helper.py '{"jail": "/tmp/x/jail", ...}'

In this order, as a daemon does: load libcrypto (``libcrypto``: a path; else the system's),
draw random bytes, optionally open /dev/urandom and keep it, optionally delete or replace the
library file, chroot into ``jail`` (or, with ``container``, enter a new mount namespace whose
root is the jail: unshare + pivot_root), fork ``workers`` (and a ``zombie`` child it never reaps),
optionally install a seccomp filter on getrandom (``seccomp``: "ENOSYS", "EPERM" or "kill";
libseccomp through cffi, as chrootcheck's probe does; ``seccomp2``: "open" adds a second filter
making open/openat fail with EACCES), then print one JSON line and wait until
stdin closes. Every process dies after ``lifetime`` seconds whatever happens (SIGALRM).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from typing import Any

from cffi import FFI

from chrootcheck.openssl import cdefs
from chrootcheck.openssl.cdefs import ffi
from chrootcheck.openssl.library import load

_sys = FFI()
_sys.cdef("long syscall(long number, ...); int umount2(const char *target, int flags);")
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}[os.uname().machine]
MNT_DETACH = 2
MS_BIND = 4096


def enter_container(jail: str) -> None:
    libc = ffi.dlopen("libc.so.6")
    sysc = _sys.dlopen("libc.so.6")
    if libc.unshare(cdefs.CLONE_NEWNS) != 0:
        raise OSError(ffi.errno, "unshare")
    if libc.mount(b"none", b"/", ffi.NULL, cdefs.MS_REC | cdefs.MS_PRIVATE, ffi.NULL) != 0:
        raise OSError(ffi.errno, "mount private")
    if libc.mount(jail.encode(), jail.encode(), ffi.NULL, MS_BIND, ffi.NULL) != 0:
        raise OSError(ffi.errno, "bind")
    os.chdir(jail)
    dot = _sys.new("char[]", b".")
    if sysc.syscall(_sys.cast("long", SYS_PIVOT_ROOT), dot, dot) != 0:
        raise OSError(_sys.errno, "pivot_root")
    if sysc.umount2(b".", MNT_DETACH) != 0:
        raise OSError(_sys.errno, "umount old root")
    os.chdir("/")


def block(seccomp: Any, how: str, syscalls: tuple[bytes, ...] = (b"getrandom",)) -> None:
    ctx = seccomp.seccomp_init(cdefs.SCMP_ACT_ALLOW)
    for name in syscalls:
        _rule(seccomp, ctx, how, name)
    if seccomp.seccomp_load(ctx) < 0:
        raise OSError("seccomp_load")
    seccomp.seccomp_release(ctx)


def _rule(seccomp: Any, ctx: Any, how: str, name: bytes) -> None:
    nr = seccomp.seccomp_syscall_resolve_name(name)
    action = 0x80000000 if how == "kill" else cdefs.scmp_act_errno(getattr(errno, how))
    if seccomp.seccomp_rule_add_array(ctx, action, nr, 0, ffi.NULL) < 0:
        raise OSError("seccomp_rule_add")


def wait_stdin() -> None:
    while os.read(0, 1024):
        pass


def main() -> None:
    cfg = json.loads(sys.argv[1])
    lifetime = int(cfg.get("lifetime", 60))
    signal.alarm(lifetime)
    jail = cfg.get("jail")
    lib = load(cfg.get("libcrypto"))
    buf = ffi.new("unsigned char[]", 32)
    assert lib.lib.RAND_bytes(buf, 32) == 1
    held = os.open("/dev/urandom", os.O_RDONLY) if cfg.get("hold_urandom") else None
    if cfg.get("delete_library"):
        os.unlink(cfg["libcrypto"])
    if cfg.get("replace_library"):
        new = cfg["libcrypto"] + ".new"
        with open(new, "wb") as f:
            f.write(b"\0" * 100 + cfg["replace_library"].encode() + b"\0" * 100)
        os.replace(new, cfg["libcrypto"])
    # dlopen before the chroot: the jail has no libraries (nor ctypes, which cffi falls back on)
    seccomp = ffi.dlopen("libseccomp.so.2") if cfg.get("seccomp") else None
    if jail and cfg.get("container"):
        enter_container(jail)  # its own mount namespace, at the jail as its root
    elif jail:
        os.chroot(jail)
        os.chdir("/")
    workers = []
    for _ in range(int(cfg.get("workers", 0))):
        pid = os.fork()
        if pid == 0:
            signal.alarm(lifetime)
            wait_stdin()
            os._exit(0)
        workers.append(pid)
    zombie = None
    if cfg.get("zombie"):
        zombie = os.fork()
        if zombie == 0:
            os._exit(0)
    if cfg.get("seccomp"):
        block(seccomp, cfg["seccomp"])
    if cfg.get("seccomp2") == "open":  # a second filter: open/openat fail with EACCES
        block(seccomp, "EACCES", (b"open", b"openat"))
    info = {
        "pid": os.getpid(),
        "workers": workers,
        "zombie": zombie,
        "version": lib.version_text,
        "libcrypto": lib.path,
        "held_fd": held,
    }
    os.write(1, (json.dumps(info) + "\n").encode())
    wait_stdin()
    for pid in workers:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
