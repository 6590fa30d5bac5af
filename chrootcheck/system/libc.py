"""The one binding for the C library and libseccomp: cffi in ABI mode, loaded on first use.

Every libc and libseccomp function chrootcheck calls is declared here, grouped by the header
that declares it; libcrypto has its own FFI (``chrootcheck.openssl.cdefs``): the two share no
type, so they share no FFI. ABI mode: nothing is compiled, the declarations are parsed and the
symbols resolved with ``dlopen`` (libseccomp ships no headers on most systems). Parsing costs
milliseconds, so nothing happens at import: ``ffi()`` parses on first use and ``libc()`` /
``seccomp()`` dlopen on first use (``chrootcheck --version`` never imports cffi). A process
that will chroot calls ``load()`` first: after the chroot there is no library to open.

The wrappers raise ``OSError`` with the exact errno (cffi's ``ffi.errno``, read right after
the call in the same thread) and "what: strerror" as the message. Code that wants the raw
return value and errno (the seccomp replay, which must call libc exactly as OpenSSL does)
calls ``libc()`` directly.
"""

from __future__ import annotations

import errno as errno_mod
import functools
import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

# --- sched.h -------------------------------------------------------------------------------
SCHED_H = """
/* os.unshare and os.setns only exist from Python 3.12. */
int unshare(int flags);
int setns(int fd, int nstype);
"""

# --- sys/personality.h ---------------------------------------------------------------------
PERSONALITY_H = """
/* persona is an unsigned long; 0xffffffff only queries. */
int personality(unsigned long persona);
"""

# --- sys/prctl.h, sys/ptrace.h, unistd.h (syscall): variadic in glibc ----------------------
VARIADIC_H = """
/* Declared variadic, as glibc does: every argument after the first must be passed as typed
   cdata (``ulong``, ``ptr``, ``pid``), or libffi could not know its size. The kernel reads
   prctl's four optional arguments as unsigned longs and ptrace's as pid_t, void *, void *. */
int prctl(int option, ...);
long ptrace(int request, ...);
long syscall(long number, ...);
"""

# --- sys/mount.h ---------------------------------------------------------------------------
MOUNT_H = """
int mount(const char *source, const char *target, const char *filesystemtype,
          unsigned long mountflags, const void *data);
int umount2(const char *target, int flags);
"""

# --- stdio.h (renameat2: glibc 2.28+) ------------------------------------------------------
STDIO_H = """
int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags);
"""

# --- fcntl.h, unistd.h, sys/random.h, sys/shm.h: the calls the seccomp replay makes --------
REPLAY_H = """
/* open is variadic (the mode, only read with O_CREAT): called with two arguments, as
   OpenSSL's RAND_poll does. off_t and ssize_t are longs on every Linux ABI we run on. */
int open(const char *pathname, int flags, ...);
int close(int fd);
long read(int fd, void *buf, size_t count);
long lseek(int fd, long offset, int whence);
long getrandom(void *buf, size_t buflen, unsigned int flags);
/* key_t is an int. */
int shmget(int key, size_t size, int shmflg);
void *shmat(int shmid, const void *shmaddr, int shmflg);
"""

# --- linux/filter.h: a BPF program, as PTRACE_SECCOMP_GET_FILTER and PR_SET_SECCOMP see it ---
FILTER_H = """
struct sock_filter {
    uint16_t code;
    uint8_t jt;
    uint8_t jf;
    uint32_t k;
};
struct sock_fprog {
    unsigned short len;
    struct sock_filter *filter;
};
"""

# --- seccomp.h (libseccomp.so.2) -----------------------------------------------------------
SECCOMP_H = """
typedef void *scmp_filter_ctx;
/* enum scmp_compare is an int-sized enum. */
struct scmp_arg_cmp {
    unsigned int arg;
    int op;
    uint64_t datum_a;
    uint64_t datum_b;
};
scmp_filter_ctx seccomp_init(uint32_t def_action);
/* The _array form rather than the variadic seccomp_rule_add: no varargs through libffi. The
   last argument is a struct scmp_arg_cmp * (declared void *: cast the array to it). */
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const void *arg_array);
int seccomp_load(scmp_filter_ctx ctx);
void seccomp_release(scmp_filter_ctx ctx);
int seccomp_syscall_resolve_name(const char *name);
/* Architectures: tokens are AUDIT_ARCH_* values; 0 for a name libseccomp does not know. */
uint32_t seccomp_arch_resolve_name(const char *arch_name);
uint32_t seccomp_arch_native(void);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_arch_remove(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_arch_exist(const scmp_filter_ctx ctx, uint32_t arch_token);
/* enum scmp_filter_attr is an int-sized enum. */
int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
"""

# Constants: macros in the headers, so invisible to ABI mode.
CLONE_NEWNS = 0x00020000  # sched.h
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
UNAME26 = 0x0020000  # sys/personality.h: uname() reports 2.6.(40+x)

PR_SET_PDEATHSIG = 1  # sys/prctl.h
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2  # linux/seccomp.h

PTRACE_DETACH = 17  # sys/ptrace.h
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
PTRACE_EVENT_STOP = 128
WALL = 0x40000000  # __WALL: waitpid for any child or tracee, clone or not

MS_BIND = 0x1000  # sys/mount.h
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
RENAME_NOREPLACE = 0x1  # stdio.h
RENAME_EXCHANGE = 0x2

IPC_CREAT = 0o1000  # sys/ipc.h, sys/shm.h
SHM_RDONLY = 0o10000

SCMP_ACT_KILL_PROCESS = 0x80000000  # seccomp.h
MS_NODEV = 0x4  # sys/mount.h
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
SCMP_ACT_ALLOW = 0x7FFF0000

# The new mount API (linux/mount.h, Linux 5.2+; the same numbers on every architecture but
# alpha): a mount built and filled through descriptors, attached where a descriptor points.
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 0x1
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8


def scmp_act_errno(errno: int) -> int:
    """SCMP_ACT_ERRNO(x): the syscall returns -1 with errno x."""
    return 0x00050000 | (errno & 0x0000FFFF)


# Every declaration, in order (build_cffi.py reads this module by path: it imports nothing of ours).
_BODY = "".join(
    (SCHED_H, PERSONALITY_H, VARIADIC_H, MOUNT_H, STDIO_H, REPLAY_H, FILTER_H, SECCOMP_H)
)
# A checksum of the declarations: an out-of-line module built from other ones (a tree not
# rebuilt after a merge) is then ignored and the declarations parsed instead, rather than
# failing on the first missing function.
DECLARATIONS_VERSION = zlib.crc32(_BODY.encode()) & 0x7FFFFFFF  # an int for the #define
VERSION_H = f"""
#define CHROOTCHECK_LIBC_DECLARATIONS {DECLARATIONS_VERSION}
"""
DECLARATIONS = _BODY + VERSION_H


@functools.cache
def ffi() -> Any:
    """The FFI with every declaration above, on first use: the out-of-line module the package's
    build wrote from them (build_cffi.py, as for libcrypto: no C parser at run time), else
    parsed here (a source tree never built)."""
    try:
        from chrootcheck.system._libc_cffi import ffi as built  # type: ignore[import-not-found, unused-ignore]

        if getattr(built.dlopen(None), "CHROOTCHECK_LIBC_DECLARATIONS", 0) == DECLARATIONS_VERSION:
            return built
    except ImportError:
        pass
    from cffi import FFI  # type: ignore[import-untyped, unused-ignore]

    f = FFI()
    f.cdef(DECLARATIONS)
    return f


@functools.cache
def libc() -> Any:
    return ffi().dlopen("libc.so.6")


@functools.cache
def seccomp() -> Any | None:
    """libseccomp, or None where it is not installed."""
    try:
        return ffi().dlopen("libseccomp.so.2")
    except OSError:
        return None


def load(with_seccomp: bool = False) -> None:
    """Parse and open now (before a fork or a chroot, after which no library can be opened)."""
    libc()
    if with_seccomp:
        seccomp()


# Typed arguments for the variadic functions.
def ulong(value: int) -> Any:
    return ffi().cast("unsigned long", value)


def ptr(value: Any) -> Any:
    return ffi().cast("void *", value)


def pid(value: int) -> Any:
    return ffi().cast("int", value)


def errno() -> int:
    """errno as the last call of this thread through the binding left it."""
    return int(ffi().errno)


def check(rc: int, what: str) -> int:
    """``rc`` if it is not negative; else OSError(errno, "what: strerror")."""
    if rc < 0:
        err = errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


# --- wrappers: OSError on failure ------------------------------------------------------------


def unshare(flags: int) -> None:
    check(int(libc().unshare(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    check(int(libc().setns(fd, nstype)), "setns")


def personality(persona: int) -> int:
    """Set the persona (0xffffffff: only read it); returns the previous one."""
    return check(int(libc().personality(persona)), "personality")


def prctl(
    option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0, what: str = ""
) -> int:
    rc = libc().prctl(option, ulong(arg2), ulong(arg3), ulong(arg4), ulong(arg5))
    return check(int(rc), what or f"prctl({option})")


def ptrace(request: int, target: int, addr: Any = 0, data: Any = 0) -> int:
    """``addr``/``data``: an int or a cdata pointer."""
    rc = libc().ptrace(request, pid(target), ptr(addr), ptr(data))
    return check(int(rc), f"ptrace({request:#x})")


def mount(
    source: str | bytes,
    target: str | bytes,
    flags: int,
    fstype: str | None = None,
    what: str = "mount",
) -> None:
    f = ffi()
    fs = f.NULL if fstype is None else os.fsencode(fstype)
    rc = libc().mount(os.fsencode(source), os.fsencode(target), fs, flags, f.NULL)
    check(int(rc), what)


def umount2(target: str | bytes, flags: int, what: str = "umount") -> None:
    check(int(libc().umount2(os.fsencode(target), flags)), what)


def _sys(number: int, *args: Any, what: str) -> int:
    """syscall(2) with typed arguments (ints become longs; str/bytes become C strings)."""
    f = ffi()
    keep = []
    typed = []
    for a in args:
        if isinstance(a, (str, bytes)):
            buf = f.new("char[]", os.fsencode(a))
            keep.append(buf)
            typed.append(f.cast("char *", buf))
        elif a is None:
            typed.append(f.cast("void *", 0))
        elif isinstance(a, int):
            typed.append(f.cast("long", a))
        else:
            typed.append(f.cast("void *", a))
    rc = int(libc().syscall(f.cast("long", number), *typed))
    del keep
    return check(rc, what)


def open_tree(dir_fd: int, path: str, flags: int, what: str = "open_tree") -> int:
    """A descriptor on a copy of the mount tree at ``path`` (OPEN_TREE_CLONE: detached)."""
    return _sys(SYS_OPEN_TREE, dir_fd, path, flags | os.O_CLOEXEC, what=what)


def move_mount(
    from_fd: int, from_path: str, to_fd: int, to_path: str, flags: int, what: str = "move_mount"
) -> None:
    _sys(SYS_MOVE_MOUNT, from_fd, from_path, to_fd, to_path, flags, what=what)


def new_tmpfs(options: Mapping[str, str], attrs: int, what: str = "tmpfs") -> int:
    """A new, detached tmpfs (fsopen, fsconfig, fsmount): a descriptor on its root."""
    fs = _sys(SYS_FSOPEN, "tmpfs", 1, what=f"fsopen({what})")  # FSOPEN_CLOEXEC
    try:
        for key, value in options.items():
            _sys(SYS_FSCONFIG, fs, FSCONFIG_SET_STRING, key, value, 0, what=f"{what}: {key}")
        _sys(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0, what=f"{what}: create")
        return _sys(SYS_FSMOUNT, fs, 1, attrs, what=f"fsmount({what})")  # FSMOUNT_CLOEXEC
    finally:
        os.close(fs)


def set_read_only(tree_fd: int, what: str = "mount_setattr") -> None:
    """Every mount of the detached tree ``tree_fd`` read-only (mount_setattr, Linux 5.12+)."""
    f = ffi()
    attr = f.new("uint64_t[4]", [MOUNT_ATTR_RDONLY, 0, 0, 0])  # struct mount_attr
    _sys(SYS_MOUNT_SETATTR, tree_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, attr, 32, what=what)


def renameat2(
    src_dir: int, src: str | bytes, dst_dir: int, dst: str | bytes, flags: int, what: str = "rename"
) -> None:
    rc = libc().renameat2(src_dir, os.fsencode(src), dst_dir, os.fsencode(dst), flags)
    check(int(rc), what)


SCMP_FLTATR_ACT_BADARCH = 2  # enum scmp_filter_attr (1 is the read-only ACT_DEFAULT)


def arch_token(name: str) -> int | None:
    """libseccomp's token for an architecture ("native", "x86_64", "x86", "x32", "aarch64"
    ...); None for a name it does not know, or without libseccomp."""
    lib = seccomp()
    if lib is None:
        return None
    if name == "native":
        return int(lib.seccomp_arch_native())
    token = int(lib.seccomp_arch_resolve_name(name.encode()))
    return token or None


def load_seccomp_rules(
    default: int,
    rules: Sequence[tuple[str, int, Sequence[tuple[int, int, int, int]]]],
    arches: Sequence[int] = (),
    bad_arch: int | None = None,
) -> None:
    """Install a seccomp filter: ``default`` for every system call the rules do not match;
    each rule is (name, action, comparisons), a comparison (argument index, scmp_compare
    operator, datum_a, datum_b), all of a rule's comparisons to hold. A name libseccomp does
    not know is OSError(ENOSYS) (the profile readers leave those out first, as runc does); a
    rule with the default's action is left out (it changes nothing, and libseccomp refuses
    it). libseccomp's own failures carry its negative errno. ``arches``: the architectures
    (tokens, ``arch_token``) whose calls the rules filter (empty: the native one only, as
    libseccomp starts); ``bad_arch``: the action on a call of any other architecture (None:
    libseccomp's default, kill the thread)."""
    lib = seccomp()
    if lib is None:
        raise OSError(errno_mod.ENOSYS, "libseccomp.so.2 cannot be loaded")
    f = ffi()
    ctx = lib.seccomp_init(default)
    if ctx == f.NULL:
        raise OSError(errno_mod.ENOMEM, "seccomp_init failed")
    try:
        if arches:
            native = int(lib.seccomp_arch_native())
            for token in arches:
                if int(lib.seccomp_arch_exist(ctx, token)) != 0:  # -EEXIST: already there
                    rc = int(lib.seccomp_arch_add(ctx, token))
                    if rc < 0:
                        raise OSError(-rc, f"seccomp_arch_add({token:#x}): {os.strerror(-rc)}")
            if native not in arches:
                lib.seccomp_arch_remove(ctx, native)
        if bad_arch is not None:
            rc = int(lib.seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, bad_arch))
            if rc < 0:
                raise OSError(-rc, f"seccomp_attr_set(ACT_BADARCH): {os.strerror(-rc)}")
        for name, action, comparisons in rules:
            nr = int(lib.seccomp_syscall_resolve_name(name.encode()))
            # -1 is __NR_SCMP_ERROR; other negative numbers are libseccomp's pseudo-syscalls
            # for calls this architecture lacks (open on aarch64), which it accepts in rules.
            if nr == -1:
                raise OSError(errno_mod.ENOSYS, f"libseccomp does not know {name}")
            if action == default:
                continue
            cmps = f.new("struct scmp_arg_cmp[]", max(1, len(comparisons)))
            for i, (arg, op, a, b) in enumerate(comparisons):
                cmps[i].arg, cmps[i].op, cmps[i].datum_a, cmps[i].datum_b = arg, op, a, b
            rc = int(
                lib.seccomp_rule_add_array(
                    ctx, action, nr, len(comparisons), f.cast("void *", cmps)
                )
            )
            if rc < 0:
                raise OSError(-rc, f"seccomp_rule_add({name}): {os.strerror(-rc)}")
        rc = int(lib.seccomp_load(ctx))
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")
    finally:
        lib.seccomp_release(ctx)


def known_syscall(name: str) -> bool | None:
    """Whether libseccomp knows the system call ``name`` (on some architecture); None where
    libseccomp cannot be loaded."""
    lib = seccomp()
    if lib is None:
        return None
    return int(lib.seccomp_syscall_resolve_name(name.encode())) != -1


def syscall_number(name: str) -> int | None:
    """The native number of the system call ``name`` (libseccomp's table); None where it has
    none here or libseccomp cannot be loaded."""
    lib = seccomp()
    if lib is None:
        return None
    nr = int(lib.seccomp_syscall_resolve_name(name.encode()))
    return None if nr < 0 else nr


def install_seccomp_programs(programs: Sequence[bytes]) -> None:
    """Install raw classic-BPF seccomp programs (``struct sock_filter`` arrays, as
    PTRACE_SECCOMP_GET_FILTER gives them), in order, after setting no_new_privs: each with
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER). OSError if the kernel refuses one."""
    f = ffi()
    prctl(PR_SET_NO_NEW_PRIVS, 1, what="prctl(PR_SET_NO_NEW_PRIVS)")
    for raw in programs:
        count = len(raw) // 8
        insns = f.new("struct sock_filter[]", count)
        f.memmove(insns, raw, count * 8)
        prog = f.new("struct sock_fprog *", {"len": count, "filter": insns})
        rc = libc().prctl(
            PR_SET_SECCOMP,
            ulong(SECCOMP_MODE_FILTER),
            f.cast("unsigned long", prog),
            ulong(0),
            ulong(0),
        )
        check(int(rc), "prctl(PR_SET_SECCOMP)")


def load_seccomp_filter(rules: Mapping[str, int], default: int = SCMP_ACT_ALLOW) -> None:
    """Install a seccomp filter through libseccomp: ``default`` for every system call but the
    ones named in ``rules`` (name -> action, e.g. ``scmp_act_errno(ENOSYS)``). It also sets
    no_new_privs (libseccomp's default). OSError(ENOSYS) without libseccomp or for a name it
    does not know; libseccomp's own failures carry its negative errno."""
    load_seccomp_rules(default, [(name, action, ()) for name, action in rules.items()])
