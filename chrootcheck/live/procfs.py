"""Reading one process from /proc, and nothing else: no write, no signal, no ptrace.

Every read can fail because the process exited meanwhile (ENOENT/ESRCH: ``ProcessGone``) or
because we may not look (EACCES: a one-line note). The jail's files are reached only through
``jailfs.resolve`` on an O_PATH descriptor of /proc/PID/root, so a symlink planted in a jail
never leads us out of it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import Any, NamedTuple

from chrootcheck.jail import fs as jailfs
from chrootcheck.live import libversion
from chrootcheck.live.model import JailDevice, MappedLibrary, RandomDevice, SeccompState
from chrootcheck.report.devices import ENTROPY_DEVICES, URANDOM

PF_KTHREAD = 0x00200000
RANDOM_DEVICES = {d.rdev: d.name for d in ENTROPY_DEVICES}
_LIB_RE = re.compile(r"^lib(crypto|ssl)(?:[-.].*)?\.so(?:\..*)?$")
_GONE = (errno.ENOENT, errno.ESRCH)


class ProcessGone(Exception):
    """The process exited (or was reaped) while we read it."""


def gone_or_raise(e: OSError) -> None:
    if e.errno in _GONE:
        raise ProcessGone(str(e)) from None


def reason(e: OSError) -> str:
    """One short reason for a failed read: "permission denied (EACCES)"."""
    name = errno.errorcode.get(e.errno or 0, str(e.errno))
    return f"{(e.strerror or name).lower()} ({name})"


# The small records read per process are NamedTuples: a frozen dataclass costs over a
# millisecond to define at start-up (it compiles six methods), a NamedTuple a fifth of it.
class Identity(NamedTuple):
    dev: int
    ino: int

    @property
    def device(self) -> str:
        return f"{os.major(self.dev)}:{os.minor(self.dev)}"


def root_identity(pid: int | str) -> tuple[Identity, str]:
    """(dev, ino) of the process's root folder and the kernel's text for it."""
    st = os.stat(f"/proc/{pid}/root/")
    text = os.readlink(f"/proc/{pid}/root")
    return Identity(st.st_dev, st.st_ino), text


_READ = os.O_RDONLY | os.O_CLOEXEC


def read_proc(path: str, size: int = 65536) -> bytes:
    """A small /proc file in one read(2): open, read, close (a buffered ``open()`` adds fstat,
    ioctl and lseek calls, which over 1,000 processes cost more than the reads themselves).
    The kernel's text files of a process fill one read up to ``size``."""
    fd = os.open(path, _READ)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def mnt_ns(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError as e:
        gone_or_raise(e)
        return None


class StatLine(NamedTuple):
    comm: str
    state: str
    ppid: int
    flags: int
    starttime: int  # clock ticks since boot
    # The address space's outline: vsize, startcode, endcode, startstack, start_brk (0 for a
    # reader without ptrace access). Equal outlines of siblings of one executable: the same maps.
    layout: tuple[int, ...] = ()

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)


def read_stat(pid: int | str) -> StatLine:
    data = read_proc(f"/proc/{pid}/stat")
    if not data:  # it exited between open and read
        raise ProcessLookupError(errno.ESRCH, f"/proc/{pid}/stat: the process exited")
    # comm may hold spaces and ')': it ends at the last ')'.
    head, _, rest = data.rpartition(b")")
    comm = head.partition(b"(")[2].decode("utf-8", "surrogateescape")
    fields = rest.split()
    return StatLine(
        comm=comm,
        state=fields[0].decode(),
        ppid=int(fields[1]),
        flags=int(fields[6]),
        starttime=int(fields[19]),
        layout=tuple(int(fields[i]) for i in (20, 23, 24, 25, 44) if i < len(fields)),
    )


# The /proc/PID/status lines we use (after Name:, always the first), found by str.find: about
# twice as fast as a multi-line regex over the whole file, which matters over 1,000 processes.
_STATUS_KEYS = tuple(
    (b"\n" + k + b":", k.decode())
    for k in (b"State", b"Uid", b"Gid", b"Groups", b"NoNewPrivs", b"Seccomp", b"Seccomp_filters")
)


def read_status(pid: int | str) -> dict[str, str]:
    """The few /proc/PID/status fields we use (Name, State, Uid, Gid, Groups, Seccomp*,
    NoNewPrivs)."""
    return parse_status(read_proc(f"/proc/{pid}/status"))


def parse_status(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    if data.startswith(b"Name:"):  # the kernel escapes a newline in a name: one line
        out["Name"] = data[5 : data.find(b"\n")].strip().decode("utf-8", "replace")
    for key, name in _STATUS_KEYS:
        i = data.find(key)
        if i >= 0:
            i += len(key)
            end = data.find(b"\n", i)
            out[name] = data[i : end if end >= 0 else None].strip().decode("utf-8", "replace")
    return out


def read_cmdline(pid: int | str) -> str:
    data = read_proc(f"/proc/{pid}/cmdline", 4096)
    return " ".join(a.decode("utf-8", "surrogateescape") for a in data.rstrip(b"\0").split(b"\0"))


def seccomp_state(status: dict[str, str]) -> SeccompState:
    mode = {"0": "disabled", "1": "strict", "2": "filter"}.get(status.get("Seccomp", ""), "unknown")
    filters = status.get("Seccomp_filters")
    nnp = status.get("NoNewPrivs")
    return SeccompState(
        mode=mode,
        filters=int(filters) if filters is not None and filters.isdigit() else None,
        no_new_privs=None if nnp is None else nnp == "1",
    )


class Mapping(NamedTuple):
    start: str  # hex, as in maps: the name of the /proc/PID/map_files entry
    end: str
    device: str  # "MAJ:MIN" (decimal)
    dev: int
    inode: int
    path: str
    deleted: bool
    kind: str


def crypto_mappings(pid: int | str) -> list[Mapping]:
    """One Mapping per libcrypto/libssl file mapped (its first segment)."""
    fd = os.open(f"/proc/{pid}/maps", _READ)
    try:
        chunks = []
        while chunk := os.read(fd, 262144):  # the kernel prints a few pages per read
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if b"/libcrypto" not in data and b"/libssl" not in data:
        return []  # most processes: no need to parse a line
    seen: dict[tuple[int, int, str], Mapping] = {}
    for raw in data.splitlines():
        if b"/libcrypto" not in raw and b"/libssl" not in raw:
            continue
        parts = raw.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith(b"/"):
            continue
        path = parts[5].decode("utf-8", "surrogateescape")
        deleted = path.endswith(" (deleted)")
        if deleted:
            path = path[: -len(" (deleted)")]
        m = _LIB_RE.match(path.rsplit("/", 1)[-1])
        if m is None:
            continue
        major, _, minor = parts[3].decode().partition(":")
        dev = os.makedev(int(major, 16), int(minor, 16))
        inode = int(parts[4])
        key = (dev, inode, path)
        if key not in seen:
            start, _, end = parts[0].decode().partition("-")
            seen[key] = Mapping(
                start=start,
                end=end,
                device=f"{os.major(dev)}:{os.minor(dev)}",
                dev=dev,
                inode=inode,
                path=path,
                deleted=deleted,
                kind="lib" + m.group(1),
            )
    return list(seen.values())


def random_devices(pid: int | str) -> list[RandomDevice]:
    """Descriptors on char devices 1:8 / 1:9: stat of /proc/PID/fd/N (never opened)."""
    found: list[RandomDevice] = []
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            st = os.stat(f"{base}/{name}")
        except OSError as e:
            if e.errno in _GONE:
                continue  # this descriptor was closed meanwhile
            raise
        if stat.S_ISCHR(st.st_mode) and st.st_rdev in RANDOM_DEVICES:
            try:
                target = os.readlink(f"{base}/{name}")
            except OSError:
                target = "?"
            found.append(
                RandomDevice(
                    fd=int(name),
                    device=f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}",
                    which=RANDOM_DEVICES[st.st_rdev],
                    name=target,
                )
            )
    return sorted(found, key=lambda d: d.fd)


# --- the mapped library: its version, and what is on disk now -----------------------------

_VERSION_CACHE: dict[tuple[int, int, int, int], str | None] = {}


def _cached_version(fd: int) -> str | None:
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _VERSION_CACHE:
        _VERSION_CACHE[key] = libversion.version_in_fd(fd)
    return _VERSION_CACHE[key]


# What a library's path leads to now, per listing: (which root, what is there), keyed by the
# root it is resolved in and the path. Workers of one daemon map the same files: resolved once.
DiskMemo = dict[tuple[object, ...], tuple[str, "dict[str, Any] | None"]]


def library(
    pid: int | str,
    m: Mapping,
    root_text: str,
    ns: int | None,
    same_ns: bool,
    notes: list[str],
    root: Identity | None = None,
    memo: DiskMemo | None = None,
) -> MappedLibrary:
    """``root``: the identity of the process's root, which keys ``memo`` (shared by the
    processes of one listing) for a path resolved inside it."""
    version: str | None = None
    read_from = ""
    mapped: Identity | None = None
    deleted = m.deleted
    try:  # the mapped file itself, even deleted (root only: CAP_SYS_ADMIN)
        fd = libversion.open_regular(f"/proc/{pid}/map_files/{m.start}-{m.end}")
    except OSError as e:
        gone_or_raise(e)
        map_files_error: OSError | None = e
    else:
        map_files_error = None
        try:
            st = os.fstat(fd)
            mapped = Identity(st.st_dev, st.st_ino)
            deleted = deleted or st.st_nlink == 0
            version, read_from = _cached_version(fd), "map_files"
        finally:
            os.close(fd)
    if mapped is None:
        mapped = Identity(m.dev, m.inode)

    key = _disk_key(m.path, root_text, ns, same_ns, root)
    if memo is not None and key is not None and key in memo:
        resolved_in, now = memo[key]
    else:
        resolved_in, now = _on_disk(pid, m.path, root_text, ns, same_ns)
        if memo is not None and key is not None:
            memo[key] = resolved_in, now
    on_disk, on_disk_path, on_disk_version = "unknown", None, None
    if now is None:
        notes.append(
            f"{m.path}: cannot tell what is on disk now (the {resolved_in} is unreachable)"
        )
    else:
        on_disk_path = now["path"]
        if not now["found"]:
            on_disk = "deleted"
        elif (now["dev"], now["ino"]) == (mapped.dev, mapped.ino):
            on_disk = "same"
            if version is None:
                version, read_from = now["version"], "path"
        else:
            on_disk, on_disk_version = "replaced", now["version"]
    if version is None and map_files_error is not None:
        notes.append(f"{m.path}: the mapped file cannot be read: {reason(map_files_error)}")
    return MappedLibrary(
        path=m.path,
        kind=m.kind,
        device=mapped.device,
        inode=mapped.ino,
        deleted=deleted,
        version=version,
        version_read_from=read_from,
        on_disk=on_disk,
        on_disk_path=on_disk_path,
        resolved_in=resolved_in,
        on_disk_version=on_disk_version,
        map_file=f"/proc/{pid}/map_files/{m.start}-{m.end}",
        note=_note(on_disk, version, on_disk_version),
    )


def _note(on_disk: str, version: str | None, on_disk_version: str | None) -> str:
    if on_disk == "replaced":
        running, now = libversion.short(version), libversion.short(on_disk_version)
        return f"running {running}; the file on disk is now {now}: restart pending"
    if on_disk == "deleted":
        running = libversion.short(version)
        return f"running {running} from a deleted file; none at that path now: restart pending?"
    return ""


def _disk_key(
    path: str, root_text: str, ns: int | None, same_ns: bool, root: Identity | None
) -> tuple[object, ...] | None:
    """Where ``_on_disk`` resolves ``path``, as a key: the process's root by identity (and
    its text, which decides the prefix cut), the host's root, or the namespace's root."""
    prefix = root_text.rstrip("/") + "/"
    if root_text == "/" or path.startswith(prefix):
        return None if root is None else ("root", root.dev, root.ino, ns, root_text, path)
    if same_ns:
        return ("host", path)
    return None if ns is None else ("namespace", ns, path)


def _on_disk(
    pid: int | str, path: str, root_text: str, ns: int | None, same_ns: bool
) -> tuple[str, dict[str, Any] | None]:
    """Where the library's path leads now: (which root, what is there) or (which root, None).

    /proc/PID/maps prints paths relative to *our* root, or, for a mount we cannot reach (another
    mount namespace), relative to that namespace's root; /proc/PID/root is printed the same
    way. A path under the process's root is resolved inside it (prefix cut). A path outside it
    was loaded before the chroot: a restart loads it from the host's root (same namespace) or
    from the namespace's root (a chroot inside a container), so it is resolved there.
    """
    prefix = root_text.rstrip("/") + "/"
    if root_text == "/" or path.startswith(prefix):
        in_root = path if root_text == "/" else path[len(prefix) - 1 :]
        return "process root", _resolve_local(f"/proc/{pid}/root", in_root)
    if same_ns:
        return "host root", _resolve_local("/", path)
    if ns is None:
        return "namespace root", None
    from chrootcheck.live.nsroot import file_in_namespace

    return "namespace root", file_in_namespace(int(pid), ns, path)


def _resolve_local(root: str, path: str) -> dict[str, Any] | None:
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        gone_or_raise(e)
        return None
    try:
        with jailfs.resolve(root_fd, path) as res:
            if not res.found or res.stat is None or res.fd is None:
                return {"found": False, "path": res.path}
            version = _read_opath(res.fd) if stat.S_ISREG(res.stat.st_mode) else None
            return {
                "found": True,
                "path": res.path,
                "dev": res.stat.st_dev,
                "ino": res.stat.st_ino,
                "version": version,
            }
    finally:
        os.close(root_fd)


def _read_opath(fd: int) -> str | None:
    """The version string of the regular file an O_PATH descriptor holds (reopened by /proc)."""
    try:
        rfd = libversion.open_regular(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    try:
        return _cached_version(rfd)
    finally:
        os.close(rfd)


def exe_identity(pid: int | str) -> tuple[int, int, int, int] | None:
    """(dev, ino, size, mtime_ns) of the process's executable, by stat (nothing opened)."""
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError as e:
        gone_or_raise(e)
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def static_openssl(pid: int | str, exe: tuple[int, int, int, int] | None = None) -> str | None:
    """The OpenSSL version string inside the executable itself (linked statically). ``exe``:
    its identity, when known: an executable read before is not opened again."""
    if exe is not None and exe in _VERSION_CACHE:
        return _VERSION_CACHE[exe]
    try:
        fd = libversion.open_regular(f"/proc/{pid}/exe")
    except OSError as e:
        gone_or_raise(e)
        return None
    try:
        return _cached_version(fd)
    finally:
        os.close(fd)


# --- the jail's own entropy devices ------------------------------------------------------


def jail_devices(pid: int | str) -> tuple[JailDevice, ...]:
    """/dev/urandom and /dev/random inside the process's root, by stat only (never opened)."""
    try:
        root_fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        return (JailDevice(URANDOM.path, "unknown", reason(e)),)
    out: list[JailDevice] = []
    try:
        for path, want in ((d.path, d.numbers) for d in ENTROPY_DEVICES):
            with jailfs.resolve(root_fd, path) as res:
                if not res.found or res.stat is None:
                    out.append(JailDevice(path, "missing", f"{os.strerror(res.error or 2)}"))
                    continue
                st = res.stat
                if (
                    stat.S_ISCHR(st.st_mode)
                    and (os.major(st.st_rdev), os.minor(st.st_rdev)) == want
                ):
                    out.append(JailDevice(path, "ok", f"c {want[0]}:{want[1]}"))
                else:
                    kind = jailfs.kind_of(st.st_mode)
                    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                        kind += f" {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
                    out.append(JailDevice(path, "wrong", kind))
    finally:
        os.close(root_fd)
    return tuple(out)
