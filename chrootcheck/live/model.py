"""What ``chrootcheck ps`` reports: plain frozen data, rendered by formats/live_text.py or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MappedLibrary:
    """A libcrypto or libssl mapped into a process (one entry per file, not per segment)."""

    path: str  # as /proc/PID/maps prints it: relative to chrootcheck's root, " (deleted)" cut
    kind: str  # "libcrypto" | "libssl" | "static" (OpenSSL inside the executable)
    device: str  # "MAJ:MIN" of the mapped file
    inode: int
    deleted: bool  # the mapped file has no name any more
    version: str | None  # "OpenSSL 3.0.19 27 Jan 2026", read from the mapped file's bytes
    version_read_from: str  # "map_files" (the mapped file itself), "path", or "" (unread)
    on_disk: str  # "same" | "replaced" | "deleted" | "unknown"
    on_disk_path: str | None  # the path resolved now, and in which root (see resolved_in)
    resolved_in: str  # "process root" | "host root" | ""
    on_disk_version: str | None  # the version of the file now at the path, when replaced
    note: str = ""  # one line: "running 3.0.19; the file on disk is now 3.0.22: restart pending"
    map_file: str = ""  # "/proc/PID/map_files/START-END": the mapped file itself (root only)


@dataclass(frozen=True)
class RandomDevice:
    """A character device 1:8 (random) or 1:9 (urandom) the process holds open."""

    fd: int
    device: str  # "1:9"
    which: str  # "urandom" | "random" (by device numbers, never by name)
    name: str  # what /proc/PID/fd/N points to, as text


@dataclass(frozen=True)
class SeccompState:
    mode: str  # "disabled" | "strict" | "filter" | "unknown"
    filters: int | None  # Seccomp_filters (kernel 5.9+), None when the kernel does not say
    no_new_privs: bool | None


@dataclass(frozen=True)
class SyscallOutcome:
    """What one system call did under the replayed filters, in a forked child."""

    syscall: str  # "getrandom", "shmget", "shmat", "open", "read", "lseek"
    call: str  # the call as made, e.g. 'open("/dev/urandom", O_RDONLY)'
    result: str  # "allowed" | "errno" | "killed" | "error"
    errno: str | None = None  # "ENOSYS", "EPERM" ...
    signal: str | None = None  # "SIGSYS" when the filter killed the child
    detail: str = ""


@dataclass(frozen=True)
class SeccompDump:
    """``--read-seccomp``: the filters read with ptrace and what they do to OpenSSL's calls."""

    filters: tuple[int, ...] = ()  # instruction count of each filter, oldest first
    stopped_ms: float | None = None  # how long the process was held in the ptrace stop
    outcomes: tuple[SyscallOutcome, ...] = ()
    verdict: str = ""
    error: str | None = None  # one line when it could not be read
    # The programs themselves, oldest first: hex of each ``struct sock_filter`` array, as
    # PTRACE_SECCOMP_GET_FILTER gave it (scan's as-running child installs them).
    programs: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveProcess:
    pid: int
    ppid: int
    command: str  # comm (Name: in status)
    cmdline: str
    state: str
    uid: int | None
    user: str | None  # the host's name for uid (the jail may map it otherwise)
    start_time: float | None  # epoch seconds
    uptime: float | None  # seconds
    root: str  # readlink /proc/PID/root, as the kernel prints it to us
    mnt_ns: int | None
    children: tuple[int, ...] = ()
    zombies: tuple[int, ...] = ()  # children that exited and were not reaped
    libraries: tuple[MappedLibrary, ...] = ()
    random_devices: tuple[RandomDevice, ...] = ()
    seccomp: SeccompState = SeccompState("unknown", None, None)
    seccomp_dump: SeccompDump | None = None
    verdict: str = ""  # the old-kernel verdict, one line
    notes: tuple[str, ...] = ()  # one line per part that could not be read
    gid: int | None = None  # real gid (Gid: in status)
    groups: tuple[int, ...] = ()  # supplementary groups (Groups: in status)


@dataclass(frozen=True)
class JailDevice:
    path: str  # "/dev/urandom"
    status: str  # "ok" | "missing" | "wrong" | "unknown"
    detail: str


@dataclass(frozen=True)
class LiveJail:
    root: str  # readlink /proc/PID/root of its processes
    device: str  # "MAJ:MIN" of the root folder
    inode: int
    mnt_ns: int | None
    confinement: str  # "chroot" | "container" | "chroot in a container" | "other mount
    #                   namespace" | "host" (a --pid that is not jailed)
    processes: tuple[LiveProcess, ...]  # tree order: each leader, then its descendants
    leaders: tuple[int, ...]  # processes whose parent is outside this jail (the masters)
    devices: tuple[JailDevice, ...] = ()


@dataclass(frozen=True)
class PsReport:
    host_root: str  # "MAJ:MIN inode" of chrootcheck's own root
    host_mnt_ns: int | None
    jails: tuple[LiveJail, ...]
    processes_seen: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    notes: tuple[str, ...] = ()
    elapsed: float = 0.0
