"""``--read-seccomp``: read a process's seccomp filters, then replay them in a forked child.

Reading needs root (CAP_SYS_ADMIN, and chrootcheck itself not under seccomp) and a kernel
with CONFIG_CHECKPOINT_RESTORE. The process is attached with PTRACE_SEIZE, stopped with
PTRACE_INTERRUPT, each filter is copied with PTRACE_SECCOMP_GET_FILTER (index 0 is the newest)
and the process is detached at once, on every path, errors included; a signal that arrived
during the stop is handed back on detach, never lost. The stop lasts well under a millisecond
(measured and reported).

The replay: one forked child per system call. It enters a new IPC namespace (so a SysV shm
segment it creates dies with it), sets no_new_privs, installs the filters oldest first with
prctl(PR_SET_SECCOMP) exactly as the process had them, makes one call through libc as OpenSSL
does, and reports by its exit status alone (a filter may block write(2)): 0 allowed, an errno,
or death by a signal (SIGSYS: the filter kills); ``system.worker`` forks, times and reaps it.
Filters that look at arguments, the instruction pointer or the architecture are replayed
faithfully only for this architecture and for the arguments used here.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any

from chrootcheck.live.model import SeccompDump, SeccompState, SyscallOutcome
from chrootcheck.system import libc, worker
from chrootcheck.system.libc import ffi, ulong

MAX_FILTERS = 512  # the kernel caps the total instructions at 32768 anyway
_STOP_TIMEOUT = 2.0


_ptrace = libc.ptrace


def read_filters(pid: int) -> tuple[list[bytes], float]:
    """The filters as raw BPF (struct sock_filter arrays), oldest first, and the stop in ms."""
    _ptrace(libc.PTRACE_SEIZE, pid)
    t0 = time.monotonic()
    deliver = 0
    try:
        _ptrace(libc.PTRACE_INTERRUPT, pid)
        deliver = _wait_stop(pid)
        filters: list[bytes] = []
        for index in range(MAX_FILTERS):
            try:
                count = _ptrace(libc.PTRACE_SECCOMP_GET_FILTER, pid, index, ffi().NULL)
            except OSError as e:
                if e.errno == errno.ENOENT:  # past the oldest filter
                    break
                raise
            buf = ffi().new("struct sock_filter[]", count)
            _ptrace(libc.PTRACE_SECCOMP_GET_FILTER, pid, index, buf)
            filters.append(bytes(ffi().buffer(buf)))
    finally:
        try:
            _ptrace(libc.PTRACE_DETACH, pid, 0, deliver)
        except OSError as e:
            if e.errno != errno.ESRCH:  # ESRCH: it died meanwhile, nothing to detach
                raise
    stopped_ms = (time.monotonic() - t0) * 1000
    filters.reverse()
    return filters, stopped_ms


def _wait_stop(pid: int) -> int:
    """Wait for the ptrace stop; the signal to hand back on detach (0 for our interrupt)."""
    deadline = time.monotonic() + _STOP_TIMEOUT
    while True:
        got, status = os.waitpid(pid, os.WNOHANG | libc.WALL)
        if got == pid:
            if not os.WIFSTOPPED(status):
                raise OSError(errno.ESRCH, "the process exited")
            if status >> 16 == libc.PTRACE_EVENT_STOP:
                return 0
            return os.WSTOPSIG(status)  # a signal-delivery stop: give that signal back
        now = time.monotonic()
        if now > deadline:
            raise OSError(errno.ETIMEDOUT, "the process did not stop (uninterruptible sleep?)")
        if now > deadline - _STOP_TIMEOUT + 0.005:  # spin for 5 ms: the stop is that quick
            time.sleep(0.0002)


# --- the replay ------------------------------------------------------------------------------

_SETUP_FAILED = 250  # exit codes: 0 allowed, 1..199 an errno, 250+ our own failures
_INSTALL_FAILED = 251


def _install(filters: list[bytes], keep: list[Any]) -> None:
    lc, f = libc.libc(), ffi()
    if int(lc.prctl(libc.PR_SET_NO_NEW_PRIVS, ulong(1), ulong(0), ulong(0), ulong(0))) != 0:
        os._exit(_INSTALL_FAILED)
    for raw in filters:
        insns = f.new("struct sock_filter[]", len(raw) // 8)
        f.memmove(insns, raw, len(raw))
        prog = f.new("struct sock_fprog *", {"len": len(raw) // 8, "filter": insns})
        keep.extend((insns, prog))
        rc = int(
            lc.prctl(
                libc.PR_SET_SECCOMP,
                ulong(libc.SECCOMP_MODE_FILTER),
                f.cast("unsigned long", prog),
                ulong(0),
                ulong(0),
            )
        )
        if rc != 0:
            os._exit(_INSTALL_FAILED)


def _call_getrandom() -> Callable[[], int]:
    buf = ffi().new("unsigned char[]", 16)
    return lambda: int(libc.libc().getrandom(buf, 16, 0))


def _call_shmget() -> Callable[[], int]:
    # OpenSSL 1.1.1d+ marks "/dev/random was ready" with SysV shm key 0x72 (here in a new IPC
    # namespace: the segment dies with the child).
    return lambda: int(libc.libc().shmget(0x72, 1, libc.IPC_CREAT | 0o444))


def _call_shmat() -> Callable[[], int]:
    shmid = int(libc.libc().shmget(0x72, 1, libc.IPC_CREAT | 0o444))
    if shmid < 0:
        os._exit(_SETUP_FAILED)

    def call() -> int:
        addr = libc.libc().shmat(shmid, ffi().NULL, libc.SHM_RDONLY)
        return -1 if int(ffi().cast("intptr_t", addr)) == -1 else 0

    return call


def _call_open() -> Callable[[], int]:
    path = ffi().new("char[]", b"/dev/urandom")
    flags = os.O_RDONLY | os.O_CLOEXEC
    return lambda: int(libc.libc().open(path, flags))


def _preopened() -> int:
    fd = os.open("/dev/urandom", os.O_RDONLY | os.O_CLOEXEC)
    return fd


def _call_read() -> Callable[[], int]:
    fd = _preopened()
    buf = ffi().new("unsigned char[]", 16)
    return lambda: int(libc.libc().read(fd, buf, 16))


def _call_lseek() -> Callable[[], int]:
    fd = _preopened()
    return lambda: int(libc.libc().lseek(fd, 0, os.SEEK_CUR))


# name, the call as shown, how to prepare it (before the filters are installed)
CALLS: tuple[tuple[str, str, Callable[[], Callable[[], int]]], ...] = (
    ("getrandom", "getrandom(buf, 16, 0)", _call_getrandom),
    ("shmget", "shmget(0x72, 1, IPC_CREAT|0444)", _call_shmget),
    ("shmat", "shmat(id of key 0x72, NULL, SHM_RDONLY)", _call_shmat),
    ("open", 'open("/dev/urandom", O_RDONLY|O_CLOEXEC)', _call_open),
    ("read", "read(fd of /dev/urandom, buf, 16)", _call_read),
    ("lseek", "lseek(fd of /dev/urandom, 0, SEEK_CUR)", _call_lseek),
)


def replay(filters: list[bytes], timeout: float = 2.0) -> tuple[SyscallOutcome, ...]:
    return tuple(_replay_one(filters, name, shown, prep, timeout) for name, shown, prep in CALLS)


# The replay child tells its result by its exit status alone: it sends no message.
_BY_EXIT_STATUS = worker.Protocol(max_line=1 << 10, max_bytes=1 << 10, max_messages=1)


def _replay_one(
    filters: list[bytes],
    name: str,
    shown: str,
    prepare: Callable[[], Callable[[], int]],
    timeout: float,
) -> SyscallOutcome:
    libc.load()  # before the fork: the child opens no library

    def child(_: worker.Channel) -> int:
        # Never raises: past the filters even an error message may be what kills it.
        try:
            libc.unshare(libc.CLONE_NEWIPC)
            call = prepare()
            keep: list[Any] = []
            _install(filters, keep)
            rc = call()
            return 0 if rc >= 0 else min(libc.errno(), 199)
        except BaseException:
            return _SETUP_FAILED

    out = worker.run(child, _BY_EXIT_STATUS, timeout)
    if out.timed_out:
        return SyscallOutcome(name, shown, "error", detail=f"no answer within {timeout} s")
    if out.signal is not None:
        sig = out.signal
        return SyscallOutcome(name, shown, "killed", signal=sig, detail=f"killed by {sig}")
    code = out.exit_status
    if code == 0:
        return SyscallOutcome(name, shown, "allowed", detail="allowed")
    if code == _SETUP_FAILED or code is None or out.messages or out.error:
        return SyscallOutcome(name, shown, "error", detail="the replay could not be prepared")
    if code == _INSTALL_FAILED:
        return SyscallOutcome(name, shown, "error", detail="the filters could not be installed")
    err = errno.errorcode.get(code, str(code))
    return SyscallOutcome(name, shown, "errno", errno=err, detail=f"fails with {err}")


def verdict(outcomes: tuple[SyscallOutcome, ...]) -> str:
    by = {o.syscall: o for o in outcomes}
    g = by.get("getrandom")
    if g is None or g.result == "allowed":
        return "getrandom allowed: OpenSSL seeds from the kernel, the jail's devices are a fallback"
    how = g.signal if g.result == "killed" else (g.errno or g.detail)
    if g.result == "killed":
        return f"getrandom kills the process ({how}): OpenSSL 1.1.1+ calls it first, so it dies"
    dev = [by[n] for n in ("open", "read") if n in by and by[n].result != "allowed"]
    if dev:
        return f"getrandom blocked ({how}) and /dev/urandom blocked too: OpenSSL has no seed source"
    return (
        f"getrandom blocked ({how}): OpenSSL falls back to /dev/urandom, which must be held "
        "open or exist inside the jail"
    )


def dump(pid: int, state: SeccompState) -> SeccompDump:
    """Read and replay the filters of one process; errors become one line, never raise."""
    if state.mode != "filter":
        return SeccompDump(verdict=f"seccomp {state.mode}: no filter to read")
    try:
        filters, stopped = read_filters(pid)
    except OSError as e:
        name = errno.errorcode.get(e.errno or 0, "?")
        hint = {
            errno.EPERM: "needs root (CAP_SYS_PTRACE), or the process is traced already",
            errno.EACCES: "needs CAP_SYS_ADMIN, and chrootcheck itself not under seccomp",
            errno.EMEDIUMTYPE: "the kernel kept no copy of the filter program",
            errno.EINVAL: "the kernel lacks PTRACE_SECCOMP_GET_FILTER or the process has none",
        }.get(e.errno or 0, "")
        return SeccompDump(error=f"{e.strerror or name} ({name}){': ' + hint if hint else ''}")
    outcomes = replay(filters)
    return SeccompDump(
        filters=tuple(len(f) // 8 for f in filters),
        stopped_ms=round(stopped, 3),
        outcomes=outcomes,
        verdict=verdict(outcomes),
        programs=tuple(f.hex() for f in filters),
    )
