"""The C declarations the live package needs (cffi, ABI mode, libc only).

Kept here rather than in ``chrootcheck.openssl.cdefs`` for now (a later refactor consolidates
the FFI declarations). The variadic libc functions (ptrace, prctl, open) are declared variadic,
so every argument after the fixed ones must be passed as typed cdata (``ffi.cast``).
"""

from __future__ import annotations

import functools
from typing import Any

from cffi import FFI  # type: ignore[import-untyped, unused-ignore]

LIBC_H = """
long ptrace(int request, ...);
int prctl(int option, ...);
int setns(int fd, int nstype);
int unshare(int flags);
int open(const char *pathname, int flags, ...);
int close(int fd);
long read(int fd, void *buf, size_t count);
long lseek(int fd, long offset, int whence);
long getrandom(void *buf, size_t buflen, unsigned int flags);
int shmget(int key, size_t size, int shmflg);
void *shmat(int shmid, const void *shmaddr, int shmflg);

/* linux/filter.h */
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

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
PTRACE_EVENT_STOP = 128

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000

IPC_CREAT = 0o1000
SHM_RDONLY = 0o10000
WALL = 0x40000000  # __WALL: wait for any child or tracee, clone or not

ffi = FFI()
ffi.cdef(LIBC_H)


@functools.cache
def libc() -> Any:
    return ffi.dlopen("libc.so.6")


def ulong(value: int) -> Any:
    return ffi.cast("unsigned long", value)


def pid_t(value: int) -> Any:
    return ffi.cast("int", value)


def ptr(value: Any) -> Any:
    return ffi.cast("void *", value)
