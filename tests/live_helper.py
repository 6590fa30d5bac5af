"""A stand-in for a jailed TLS daemon, started by tests/test_live*.py (not part of the package).

Usage: python3 live_helper.py '{"jail": "/tmp/x/jail", ...}'

In this order, as a daemon does: load libcrypto (``libcrypto``: a path; else the system's),
draw random bytes, optionally open /dev/urandom and keep it, optionally delete or replace the
library file, chroot into ``jail`` (or, with ``container``, enter a new mount namespace whose
root is the jail: unshare + pivot_root), fork ``workers`` (and a ``zombie`` child it never reaps),
optionally install a seccomp filter on getrandom (``seccomp``: "ENOSYS", "EPERM" or "kill";
libseccomp through chrootcheck's binding, as its probe does; ``seccomp2``: "open" adds a
second filter making open/openat fail with EACCES), then print one JSON line and wait until
stdin closes. Every process dies after ``lifetime`` seconds whatever happens (SIGALRM).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys

from chrootcheck.openssl.cdefs import ffi
from chrootcheck.openssl.library import load
from chrootcheck.system import libc

SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}[os.uname().machine]


def enter_container(jail: str) -> None:
    libc.unshare(libc.CLONE_NEWNS)
    libc.mount("none", "/", libc.MS_REC | libc.MS_PRIVATE, what="mount private")
    libc.mount(jail, jail, libc.MS_BIND, what="bind")
    os.chdir(jail)
    f = libc.ffi()
    dot = f.new("char[]", b".")
    libc.check(int(libc.libc().syscall(f.cast("long", SYS_PIVOT_ROOT), dot, dot)), "pivot_root")
    libc.umount2(".", libc.MNT_DETACH, what="umount old root")
    os.chdir("/")


def block(how: str, syscalls: tuple[str, ...] = ("getrandom",)) -> None:
    kill = how == "kill"
    action = libc.SCMP_ACT_KILL_PROCESS if kill else libc.scmp_act_errno(getattr(errno, how))
    libc.load_seccomp_filter(dict.fromkeys(syscalls, action))


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
    libc.load(with_seccomp=bool(cfg.get("seccomp")))
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
        block(cfg["seccomp"])
    if cfg.get("seccomp2") == "open":  # a second filter: open/openat fail with EACCES
        block("EACCES", ("open", "openat"))
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
