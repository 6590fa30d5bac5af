"""The system calls a probe child makes to look like a jailed daemon on another system.

libc and libseccomp through ``chrootcheck.system.libc`` (cffi in ABI mode). Every function
raises OSError with the errno on failure.
"""

from __future__ import annotations

import errno as errno_mod
import os
import posixpath
import stat
import struct
from collections.abc import Sequence

from chrootcheck.jail import fs as jailfs
from chrootcheck.sandbox.model import ALLOW, COMPARE_OPS, Mount, SeccompFilter, libseccomp_arch
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
    # The architectures whose calls the rules meet (a name libseccomp here does not know is
    # left out, as systemd and runc do); the others get bad_arch (systemd: kill).
    tokens = [libc.arch_token(libseccomp_arch(a)) for a in flt.architectures]
    arches = list(dict.fromkeys(t for t in tokens if t is not None))
    bad = flt.bad_arch.value if flt.bad_arch is not None else None
    libc.load_seccomp_rules(flt.default.value, rules, arches, bad)


_BPF_LD_ABS, _BPF_JEQ, _BPF_JA, _BPF_RET, _BPF_LD_IMM, _BPF_LDX_IMM = (
    0x20,  # BPF_LD | BPF_W | BPF_ABS
    0x15,  # BPF_JMP | BPF_JEQ | BPF_K
    0x05,  # BPF_JMP | BPF_JA
    0x06,  # BPF_RET | BPF_K
    0x00,  # BPF_LD | BPF_IMM
    0x01,  # BPF_LDX | BPF_IMM
)
_SECCOMP_RET_ALLOW = 0x7FFF0000
_BPF_MAXINSNS = 4096


def _insn(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def harness_prefix(arch: int, numbers: list[int]) -> bytes:
    """The instructions put before a dumped program: on this architecture, the harness's own
    calls (``numbers``) are allowed; everything else, and every other architecture, goes on
    to the program itself, with A and X reset to 0 as the kernel starts a filter. Filters
    stack and the strictest answer wins, so an exemption must be inside every program."""
    k = len(numbers)
    out = [_insn(_BPF_LD_ABS, k=4), _insn(_BPF_JEQ, 0, 3 + k, arch), _insn(_BPF_LD_ABS, k=0)]
    out += [_insn(_BPF_JEQ, k - j, 0, nr) for j, nr in enumerate(numbers)]
    out += [_insn(_BPF_JA, k=1), _insn(_BPF_RET, k=_SECCOMP_RET_ALLOW)]
    out += [_insn(_BPF_LD_IMM), _insn(_BPF_LDX_IMM)]
    return b"".join(out)


def apply_programs(programs: tuple[bytes, ...]) -> None:
    """The service's own seccomp programs exactly as dumped (``--read-seccomp``), oldest first,
    each behind ``harness_prefix``: its answers to every call OpenSSL makes, with the argument
    checks it has, and the harness's own calls allowed. OSError when it cannot be done here
    (no libseccomp to name the calls, a program too long for the prefix, the kernel refuses)."""
    arch = libc.arch_token("native")
    numbers = sorted({n for n in map(libc.syscall_number, HARNESS_CALLS) if n is not None})
    if arch is None or not numbers:
        raise OSError(errno_mod.ENOSYS, "libseccomp is needed to name the harness's calls")
    prefix = harness_prefix(arch, numbers)
    if len(numbers) > 250 or any((len(prefix) + len(p)) // 8 > _BPF_MAXINSNS for p in programs):
        raise OSError(errno_mod.E2BIG, "a dumped program is too long for the harness's prefix")
    libc.install_seccomp_programs([prefix + p for p in programs])


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


# --- the unit's own mount namespace: PrivateDevices=, BindPaths=, TemporaryFileSystem= ------
# Built in the child's private mount namespace (enter_namespaces made it MS_PRIVATE first),
# before the chroot, as systemd builds it before it starts the service. Nothing is ever
# created or changed in the jail itself: a mount point the jail lacks is made in a "shadow" of
# its folder (a tmpfs mounted over that folder in this namespace, every entry of the folder
# bound back into it), never on disk. Every mount dies with the child.

# What systemd's PrivateDevices=yes puts in the service's /dev (and nothing else of the
# host's): name, major, minor.
PRIVATE_NODES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
_PRIVATE_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
# A folder with more entries than this is not shadowed (one bind mount per entry).
SHADOW_CAP = 4096


class Unstartable(Exception):
    """The unit would not start (systemd refuses it): told as the scenario's verdict."""


def build_namespace(
    root_fd: int,
    private_devices: bool,
    mounts: Sequence[Mount],
    sources_root: str,
) -> int:
    """The unit's mounts over the jail whose root is ``root_fd``, in order of depth (parents
    first, as systemd sorts them): PrivateDevices= on /dev, then BindPaths=,
    BindReadOnlyPaths= and TemporaryFileSystem=. Targets are resolved inside the jail
    (jail.fs: symlinks never lead out); sources on the host, or inside ``sources_root``
    (--root). Returns the descriptor to chroot into: a new one when the jail's root folder
    itself had to be shadowed. OSError when a mount fails; Unstartable for a missing source
    without "-"."""
    root = os.dup(root_fd)
    todo: list[tuple[str, Mount | None]] = [("/dev", None)] if private_devices else []
    todo += [(posixpath.normpath("/" + m.target.lstrip("/")), m) for m in mounts]
    todo.sort(key=lambda t: 0 if t[0] == "/" else t[0].count("/"))
    for target, m in todo:
        if m is None:
            root = _private_dev(root)
            continue
        tree = _source(m, sources_root)
        if tree is None:
            continue  # "-": a missing source is ignored
        try:
            is_dir = m.source is None or stat.S_ISDIR(os.fstat(tree).st_mode)
            where, root = _mountpoint(root, target, is_dir)
            try:
                libc.move_mount(
                    tree,
                    "",
                    where,
                    "",
                    libc.MOVE_MOUNT_F_EMPTY_PATH | libc.MOVE_MOUNT_T_EMPTY_PATH,
                    what=f"mount on {target}",
                )
            finally:
                os.close(where)
        finally:
            os.close(tree)
    return root


def _source(m: Mount, sources_root: str) -> int | None:
    """A detached mount for ``m``: a clone of its source's tree, or a new tmpfs."""
    if m.source is None:
        return libc.new_tmpfs({"mode": "755"}, libc.MOUNT_ATTR_RDONLY if m.read_only else 0)
    top = os.open(sources_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with jailfs.resolve(top, m.source) as res:
            if not res.found or res.fd is None:
                if m.optional:
                    return None
                raise Unstartable(
                    f"the unit does not start: the source of its bind mount {m.source} is "
                    f"missing ({os.strerror(res.error or errno_mod.ENOENT)}) and has no '-'"
                )
            tree = libc.open_tree(
                res.fd,
                "",
                libc.OPEN_TREE_CLONE | libc.AT_EMPTY_PATH | libc.AT_RECURSIVE,
                what=f"bind {m.source}",
            )
    finally:
        os.close(top)
    if m.read_only:
        try:
            libc.set_read_only(tree, what=f"bind {m.source} read-only")
        except OSError:
            os.close(tree)
            raise
    return tree


def _mountpoint(root: int, target: str, directory: bool) -> tuple[int, int]:
    """An O_PATH descriptor on ``target`` inside the jail, and the (maybe new) root. A target
    the jail lacks is made, with the folders above it it lacks, in a shadow of the deepest
    folder it has: systemd would create them on disk."""
    with jailfs.resolve(root, target) as res:
        if res.found and res.fd is not None:
            return os.dup(res.fd), root
        err = res.error
    if err != errno_mod.ENOENT:
        raise OSError(err or errno_mod.EIO, f"{target}: {os.strerror(err or errno_mod.EIO)}")
    missing: list[str] = []
    parent = target
    while True:
        parent, name = posixpath.split(parent)
        missing.insert(0, name)
        with jailfs.resolve(root, parent) as up:
            if up.found and up.fd is not None and up.stat is not None:
                if not stat.S_ISDIR(up.stat.st_mode):
                    raise OSError(errno_mod.ENOTDIR, f"{target}: {up.path} is not a folder")
                shadow = _shadow(up.fd)
                if up.path == "/":  # the jail's root folder itself: chroot into its shadow
                    os.close(root)
                    root = os.dup(shadow)
                break
            if up.error != errno_mod.ENOENT or parent == "/":
                why = os.strerror(up.error or errno_mod.EIO)
                raise OSError(up.error or errno_mod.EIO, f"{target}: {parent}: {why}")
    try:
        here = shadow
        for name in missing[:-1]:  # the folders it lacks, made in our tmpfs
            os.mkdir(name, 0o755, dir_fd=here)
            nxt = os.open(
                name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=here
            )
            if here != shadow:
                os.close(here)
            here = nxt
        name = missing[-1]
        if directory:
            os.mkdir(name, 0o755, dir_fd=here)
        else:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644, dir_fd=here))
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=here)
        if here != shadow:
            os.close(here)
    finally:
        os.close(shadow)
    return fd, root


def _shadow(dir_fd: int) -> int:
    """A tmpfs over the folder ``dir_fd`` in this mount namespace, holding every entry of the
    folder again (folders and files bound back from it, symlinks copied), so that new names
    can be added without touching the folder. Returns a descriptor on the tmpfs's root."""
    st = os.fstat(dir_fd)
    listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        names = os.listdir(listing)
        if len(names) > SHADOW_CAP:
            raise OSError(errno_mod.E2BIG, f"more than {SHADOW_CAP} entries to shadow")
        options = {"mode": f"{st.st_mode & 0o7777:o}", "uid": str(st.st_uid), "gid": str(st.st_gid)}
        try:
            shadow = libc.new_tmpfs(options, 0, what="shadow")
        except OSError:  # a user namespace that does not map the folder's owner
            shadow = libc.new_tmpfs({"mode": options["mode"]}, 0, what="shadow")
        try:
            flags = libc.MOVE_MOUNT_F_EMPTY_PATH | libc.MOVE_MOUNT_T_EMPTY_PATH
            libc.move_mount(shadow, "", dir_fd, "", flags, what="shadow")
            for name in names:
                _shadow_entry(listing, shadow, name)
        except BaseException:
            os.close(shadow)
            raise
        return shadow
    finally:
        os.close(listing)


def _shadow_entry(listing: int, shadow: int, name: str) -> None:
    st = os.lstat(name, dir_fd=listing)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=listing), name, dir_fd=shadow)
        return
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(name, 0o755, dir_fd=shadow)
    else:  # a file, FIFO, socket or node: bound, never opened
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600, dir_fd=shadow))
    flags = libc.OPEN_TREE_CLONE | libc.AT_RECURSIVE | libc.AT_SYMLINK_NOFOLLOW
    tree = libc.open_tree(listing, name, flags, what=f"shadow {name}")
    try:
        libc.move_mount(tree, "", shadow, name, libc.MOVE_MOUNT_F_EMPTY_PATH, what=f"shadow {name}")
    finally:
        os.close(tree)


def _private_dev(root: int) -> int:
    """PrivateDevices=yes: a new tmpfs on the jail's /dev holding only PRIVATE_NODES (made
    with mknod, or bound from the host's /dev where mknod is not allowed: a user namespace)."""
    where, root = _mountpoint(root, "/dev", True)
    try:
        dev = libc.new_tmpfs(
            {"mode": "755"}, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NOEXEC, what="/dev"
        )
        try:
            flags = libc.MOVE_MOUNT_F_EMPTY_PATH | libc.MOVE_MOUNT_T_EMPTY_PATH
            libc.move_mount(dev, "", where, "", flags, what="PrivateDevices /dev")
            for name, major, minor in PRIVATE_NODES:
                _node(dev, name, major, minor)
            for name, target in _PRIVATE_LINKS:
                os.symlink(target, name, dir_fd=dev)
            os.mkdir("shm", 0o1777, dir_fd=dev)
            os.chmod("shm", 0o1777, dir_fd=dev)
        finally:
            os.close(dev)
    finally:
        os.close(where)
    return root


def _node(dev: int, name: str, major: int, minor: int) -> None:
    try:
        os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev)
        os.chmod(name, 0o666, dir_fd=dev)
        return
    except PermissionError:
        pass
    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666, dir_fd=dev))
    tree = libc.open_tree(-100, f"/dev/{name}", libc.OPEN_TREE_CLONE, what=f"/dev/{name}")
    try:
        libc.move_mount(tree, "", dev, name, libc.MOVE_MOUNT_F_EMPTY_PATH, what=f"/dev/{name}")
    finally:
        os.close(tree)
