"""``chrootcheck ps``: every process whose root is not ours, grouped by jail.

A process is jailed when (st_dev, st_ino) of /proc/PID/root/ differs from our own "/", or when
the kernel prints its root as anything but "/" (a chroot into a bind mount of "/" has the same
inode). Kernel threads have no root of their own and are skipped; a zombie has no root left
and is shown on its parent. Nothing here writes to, signals or ptraces a process; only
``read_seccomp`` (opt-in) ptraces, through ``chrootcheck.live.seccomp``.
"""

from __future__ import annotations

import errno
import functools
import os
import pwd
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

from chrootcheck.live import procfs
from chrootcheck.live.model import (
    JailDevice,
    LiveJail,
    LiveProcess,
    MappedLibrary,
    PsReport,
    RandomDevice,
    SeccompDump,
    SeccompState,
)
from chrootcheck.live.procfs import Identity, ProcessGone, reason
from chrootcheck.report.devices import URANDOM
from chrootcheck.report.errors import ToolError


class _Clock(NamedTuple):
    tick: int
    btime: float
    now_since_boot: float
    now: float

    @classmethod
    def read(cls) -> _Clock:
        btime = 0.0
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    btime = float(line.split()[1])
                    break
        with open("/proc/uptime", "rb") as f:
            since_boot = float(f.read().split()[0])
        return cls(os.sysconf("SC_CLK_TCK"), btime, since_boot, time.time())

    def start(self, starttime: int) -> tuple[float, float]:
        """(epoch start, uptime in seconds) from /proc/PID/stat's starttime in ticks."""
        since_boot = starttime / self.tick
        return self.btime + since_boot, max(0.0, self.now_since_boot - since_boot)


class _Seen:
    """A jailed process found by the listing. ``fields``: LiveProcess's fields as read; the
    process itself is made once its children are known (building a frozen dataclass twice
    would cost about as much as reading its /proc files)."""

    __slots__ = ("fields", "ident", "pid", "root")

    def __init__(self, pid: int, ident: Identity, root: str) -> None:
        self.pid = pid
        self.ident = ident
        self.root = root
        self.fields: dict[str, Any] | None = None


def gather(
    pids: Iterable[int] | None = None, *, read_seccomp: bool = False, exact: bool = False
) -> PsReport:
    """List the jailed processes (or exactly ``pids``; one that cannot be read: ToolError).

    The listing reads /proc/PID/maps (the costly file: the kernel prints every mapping) once
    per executable and address-space outline (``StatLine.layout``: vsize, code, stack and heap
    start) among the children of one parent: forked workers share it. ``exact``, or named
    ``pids``: every process's own maps."""
    nsroot = sys.modules.get("chrootcheck.live.nsroot")  # imported (cffi) only when needed
    if nsroot is not None:
        nsroot.forget()  # answers of an earlier listing in this process may be stale
    t0 = time.monotonic()
    host_st = os.stat("/")
    host = Identity(host_st.st_dev, host_st.st_ino)
    host_ns = procfs.mnt_ns("self")
    clock = _Clock.read()
    skipped: dict[str, int] = defaultdict(int)
    notes: list[str] = []
    seen: list[_Seen] = []
    zombies: dict[int, list[int]] = defaultdict(list)
    ppids: dict[int, int] = {}
    named = list(pids) if pids is not None else None
    total = 0
    disk_memo: procfs.DiskMemo = {}  # a library's path, resolved once per root per listing
    maps_memo: dict[object, list[procfs.Mapping]] | None = (
        None if exact or named is not None else {}
    )

    if named is not None:
        for pid in named:
            seen.append(_named_root(pid))
        total = len(named)
    else:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            total += 1
            pid = int(name)
            try:
                ident, text = procfs.root_identity(pid)
            except OSError as e:
                _unrooted(pid, e, skipped, zombies, ppids)
                continue
            if ident != host or text != "/":
                seen.append(_Seen(pid, ident, text))

    for s in seen:
        try:
            s.fields = _read_process(s, host_ns, clock, read_seccomp, maps_memo, disk_memo)
        except ProcessGone:
            if named is not None:
                raise ToolError(f"process {s.pid} exited while it was being read") from None
            skipped["exited while being read"] += 1
        except _KernelThread:
            if named is not None:
                raise ToolError(
                    f"process {s.pid} is a kernel thread: no memory map or root of its own"
                ) from None
            skipped["kernel threads"] += 1
        except PermissionError as e:
            if named is not None:
                raise ToolError(f"process {s.pid}: {reason(e)}", "run as root") from None
            skipped[f"unreadable: {reason(e)}"] += 1
    live = [s for s in seen if s.fields is not None]
    for s in live:
        assert s.fields is not None
        ppids[s.pid] = s.fields["ppid"]

    jails = _group(live, host, host_ns, ppids, zombies)
    if named is None and skipped.get("zombies"):
        notes.append(f"{skipped['zombies']} zombie(s) outside any listed jail not shown")
    return PsReport(
        host_root=f"{host.device} {host.ino}",
        host_mnt_ns=host_ns,
        jails=jails,
        processes_seen=total,
        skipped=dict(skipped),
        notes=tuple(notes),
        elapsed=time.monotonic() - t0,
    )


class _KernelThread(Exception):
    pass


def _named_root(pid: int) -> _Seen:
    if not os.path.exists(f"/proc/{pid}"):
        raise ToolError(f"no process {pid}")
    try:
        ident, text = procfs.root_identity(pid)
    except OSError as e:
        try:
            st = procfs.read_stat(pid)
        except OSError:
            raise ToolError(f"process {pid} exited while it was being read") from None
        if st.state == "Z":
            raise ToolError(
                f"process {pid} is a zombie (it exited; its parent {st.ppid} has not reaped it): "
                "nothing left to inspect"
            ) from None
        if st.kernel_thread:
            raise ToolError(
                f"process {pid} is a kernel thread: no memory map or root of its own"
            ) from None
        if e.errno in (errno.ENOENT, errno.ESRCH):
            raise ToolError(f"process {pid} exited while it was being read") from None
        raise ToolError(
            f"process {pid}: cannot read its root: {reason(e)}", "run as root"
        ) from None
    return _Seen(pid, ident, text)


def _unrooted(
    pid: int,
    e: OSError,
    skipped: dict[str, int],
    zombies: dict[int, list[int]],
    ppids: dict[int, int],
) -> None:
    """A process whose root cannot be read: a zombie, a kernel thread, gone, or forbidden."""
    try:
        st = procfs.read_stat(pid)
    except OSError:
        return  # gone: nothing to say
    ppids[pid] = st.ppid
    if st.state == "Z":
        zombies[st.ppid].append(pid)
        skipped["zombies"] += 1
    elif st.kernel_thread:
        skipped["kernel threads"] += 1
    elif e.errno not in (errno.ENOENT, errno.ESRCH):
        skipped[f"unreadable: {reason(e)}"] += 1


@functools.cache
def _user(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _read_process(
    s: _Seen,
    host_ns: int | None,
    clock: _Clock,
    read_seccomp: bool,
    maps_memo: dict[object, list[procfs.Mapping]] | None = None,
    disk_memo: procfs.DiskMemo | None = None,
) -> dict[str, Any]:
    """LiveProcess's fields but its children, zombies and verdict."""
    pid = s.pid
    notes: list[str] = []
    try:
        st = procfs.read_stat(pid)
        status = procfs.read_status(pid)
    except OSError as e:
        procfs.gone_or_raise(e)
        raise
    if st.kernel_thread:
        raise _KernelThread
    if st.state == "Z":
        raise ProcessGone("zombie")
    start, uptime = clock.start(st.starttime)
    uids = status.get("Uid", "").split()
    uid = int(uids[0]) if uids else None
    gids = status.get("Gid", "").split()
    groups = tuple(int(g) for g in status.get("Groups", "").split() if g.isdigit())
    ns = procfs.mnt_ns(pid)
    same_ns = ns is not None and ns == host_ns
    try:
        cmdline = procfs.read_cmdline(pid)
    except OSError as e:
        procfs.gone_or_raise(e)
        cmdline = ""
        notes.append(f"cmdline: {reason(e)}")

    libraries: list[MappedLibrary] = []
    exe = procfs.exe_identity(pid)
    key = (exe, st.ppid, st.layout) if exe is not None and any(st.layout) else None
    try:
        if maps_memo is not None and key is not None and key in maps_memo:
            mappings = maps_memo[key]
        else:
            mappings = procfs.crypto_mappings(pid)
            if maps_memo is not None and key is not None:
                maps_memo[key] = mappings
    except OSError as e:
        procfs.gone_or_raise(e)
        mappings = []
        notes.append(f"memory map: {reason(e)}")
    for m in mappings:
        libraries.append(procfs.library(pid, m, s.root, ns, same_ns, notes, s.ident, disk_memo))
    if not mappings and not notes:
        static = procfs.static_openssl(pid, exe)
        if static is not None:
            libraries.append(_static(pid, static))

    try:
        devices = procfs.random_devices(pid)
    except OSError as e:
        procfs.gone_or_raise(e)
        devices = []
        notes.append(f"descriptors: {reason(e)}")

    seccomp = _seccomp_state(
        status.get("Seccomp"), status.get("Seccomp_filters"), status.get("NoNewPrivs")
    )
    dump: SeccompDump | None = None
    if read_seccomp and seccomp.mode == "filter":
        from chrootcheck.live import seccomp as seccomp_mod

        dump = seccomp_mod.dump(pid, seccomp)

    return {
        "pid": pid,
        "ppid": st.ppid,
        "command": status.get("Name", st.comm),
        "cmdline": cmdline,
        "state": status.get("State", st.state),
        "uid": uid,
        "user": _user(uid),
        "start_time": start,
        "uptime": uptime,
        "root": s.root,
        "mnt_ns": ns,
        "libraries": tuple(libraries),
        "random_devices": tuple(devices),
        "seccomp": seccomp,
        "seccomp_dump": dump,
        "notes": tuple(notes),
        "gid": int(gids[0]) if gids else None,
        "groups": groups,
    }


@functools.cache
def _seccomp_state(mode: str | None, filters: str | None, nnp: str | None) -> SeccompState:
    """One SeccompState per distinct (Seccomp, Seccomp_filters, NoNewPrivs): frozen, shared."""
    status = {
        k: v
        for k, v in (("Seccomp", mode), ("Seccomp_filters", filters), ("NoNewPrivs", nnp))
        if v is not None
    }
    return procfs.seccomp_state(status)


def _static(pid: int, version: str) -> MappedLibrary:
    try:
        st = os.stat(f"/proc/{pid}/exe")
        device, inode = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}", st.st_ino
    except OSError:
        device, inode = "?", 0
    try:
        path = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        path = "?"
    return MappedLibrary(
        path=path,
        kind="static",
        device=device,
        inode=inode,
        deleted=path.endswith(" (deleted)"),
        version=version,
        version_read_from="exe",
        on_disk="unknown",
        on_disk_path=None,
        resolved_in="",
        on_disk_version=None,
        note="OpenSSL linked statically into the executable",
    )


def _group(
    live: list[_Seen],
    host: Identity,
    host_ns: int | None,
    ppids: dict[int, int],
    zombies: dict[int, list[int]],
) -> tuple[LiveJail, ...]:
    children: dict[int, list[int]] = defaultdict(list)
    for pid, ppid in ppids.items():
        children[ppid].append(pid)
    by_jail: dict[tuple[int | None, int, int], list[_Seen]] = defaultdict(list)
    for s in live:
        assert s.fields is not None
        by_jail[(s.fields["mnt_ns"], s.ident.dev, s.ident.ino)].append(s)

    jails: list[LiveJail] = []
    for (ns, dev, ino), members in by_jail.items():
        procs = {s.pid: s.fields for s in members if s.fields is not None}
        first = members[0]
        confinement = _confinement(first, host, host_ns)
        devices = procfs.jail_devices(first.pid)
        leaders = sorted(p for p, proc in procs.items() if proc["ppid"] not in procs)
        ordered = _tree(procs, leaders, children, zombies, devices)
        jails.append(
            LiveJail(
                root=first.root,
                device=f"{os.major(dev)}:{os.minor(dev)}",
                inode=ino,
                mnt_ns=ns,
                confinement=confinement,
                processes=tuple(ordered),
                leaders=tuple(leaders),
                devices=devices,
            )
        )
    jails.sort(key=lambda j: (j.root, j.leaders[:1]))
    return tuple(jails)


def _tree(
    procs: dict[int, dict[str, Any]],
    leaders: list[int],
    children: dict[int, list[int]],
    zombies: dict[int, list[int]],
    devices: tuple[JailDevice, ...],
) -> list[LiveProcess]:
    """Each leader, then its descendants depth first; children, zombies and verdicts filled."""
    ordered: list[LiveProcess] = []
    stack = list(reversed(leaders))
    while stack:
        pid = stack.pop()
        fields = procs[pid]
        ordered.append(
            LiveProcess(
                **fields,
                children=tuple(sorted(children.get(pid, ()))),
                zombies=tuple(sorted(zombies.get(pid, ()))),
                verdict=_verdict(fields["libraries"], fields["random_devices"], devices),
            )
        )
        stack.extend(c for c in sorted(children.get(pid, []), reverse=True) if c in procs)
    return ordered


def _confinement(s: _Seen, host: Identity, host_ns: int | None) -> str:
    assert s.fields is not None
    ns = s.fields["mnt_ns"]
    if ns is not None and ns == host_ns:
        return "host" if (s.ident == host and s.root == "/") else "chroot"
    if ns is None:
        return "unknown"
    from chrootcheck.live.nsroot import namespace_root

    ns_root = namespace_root(s.pid, ns)
    if ns_root is None:
        return "other mount namespace"
    if ns_root == (s.ident.dev, s.ident.ino):
        return "container"
    return "chroot in a container"


def old_kernel_verdict(proc: LiveProcess, devices: tuple[JailDevice, ...]) -> str:
    """What happens to this process's OpenSSL where getrandom(2) is missing (an old kernel, a
    seccomp filter): it needs a random device it holds open, or one in its jail."""
    return _verdict(proc.libraries, proc.random_devices, devices)


def _verdict(
    libraries: tuple[MappedLibrary, ...],
    random_devices: tuple[RandomDevice, ...],
    devices: tuple[JailDevice, ...],
) -> str:
    if not any(lib.kind in ("libcrypto", "static") for lib in libraries):
        return "no libcrypto mapped"
    held = [d for d in random_devices if d.which == "urandom"] or list(random_devices)
    if held:
        d = held[0]
        return f"ok without getrandom: holds /dev/{d.which} open (fd {d.fd}), OpenSSL reuses it"
    urandom = next((d for d in devices if d.path == URANDOM.path), None)
    if urandom is not None and urandom.status == "ok":
        return f"ok without getrandom: the jail has /dev/urandom ({URANDOM.spec})"
    what = "missing" if urandom is None else f"{urandom.status} ({urandom.detail})"
    return (
        "at risk without getrandom (a kernel older than 3.17, a seccomp filter): no random "
        f"device held open and the jail's /dev/urandom is {what}: reseeding fails"
    )
