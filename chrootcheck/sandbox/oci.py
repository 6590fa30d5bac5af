"""OCI/Docker/Podman seccomp profiles (and Kubernetes localhost profiles, the same JSON).

The fields runc and crun read: ``defaultAction`` and ``defaultErrnoRet``; ``architectures`` or
``archMap``; ``syscalls``: ``names`` (or the older ``name``), ``action``, ``errnoRet``, ``args``
(``index``, ``value``, ``valueTwo``, ``op``), and Docker's and Podman's ``includes``/``excludes``
(``caps``, ``arches``, ``minKernel``), judged for a container with the runtimes' default
capabilities on this machine. A missing ``errnoRet`` is EPERM, as runc and crun make it.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import platform
import stat
from typing import Any

from chrootcheck.report.errors import ToolError
from chrootcheck.sandbox.model import (
    COMPARE_OPS,
    Action,
    ArgCondition,
    Rule,
    Sandbox,
    SeccompFilter,
)
from chrootcheck.system import libc

_ACTIONS = {
    "SCMP_ACT_KILL": "kill-thread",
    "SCMP_ACT_KILL_THREAD": "kill-thread",
    "SCMP_ACT_KILL_PROCESS": "kill-process",
    "SCMP_ACT_TRAP": "trap",
    "SCMP_ACT_ERRNO": "errno",
    "SCMP_ACT_TRACE": "trace",
    "SCMP_ACT_LOG": "log",
    "SCMP_ACT_NOTIFY": "notify",
    "SCMP_ACT_ALLOW": "allow",
}
# Docker's default capabilities (Podman's are a subset): a rule that includes another
# capability is for privileged containers only.
DEFAULT_CAPS = frozenset(
    "CAP_" + c
    for c in (
        "CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP "
        "NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE"
    ).split()
)
# Docker's spelling of this machine's architecture in includes/excludes.arches.
_DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}
MAX_PROFILE = 4 * 1024 * 1024


def read_profile(path: str) -> Sandbox:
    """Read and parse the profile at ``path`` (a host file the user named)."""
    try:
        # Non-blocking and checked: a FIFO given by mistake is refused, never waited on.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise ToolError(f"{path}: cannot read the seccomp profile: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ToolError(f"{path}: not a regular file: not a seccomp profile")
        chunks, size = [], 0
        while size <= MAX_PROFILE:
            chunk = os.read(fd, MAX_PROFILE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as e:
        raise ToolError(f"{path}: cannot read the seccomp profile: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PROFILE:
        raise ToolError(f"{path}: larger than {MAX_PROFILE >> 20} MiB: not a seccomp profile")
    return parse_profile(data.decode("utf-8", "replace"), path)


def parse_profile(text: str, source: str) -> Sandbox:
    """The sandbox a profile defines. ToolError (one line) for anything that is not one."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ToolError(f"{source}: not a seccomp profile: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ToolError(f"{source}: not a seccomp profile: not a JSON object")
    if "defaultAction" not in doc:
        raise ToolError(f"{source}: not a seccomp profile: no defaultAction")
    default_errno = _errno(doc.get("defaultErrnoRet"), source, "defaultErrnoRet")
    default = _action(doc["defaultAction"], default_errno, source, "defaultAction")
    machine = platform.machine()
    rules: list[Rule] = []
    unknown: list[str] = []
    notes: list[str] = []
    syscalls = doc.get("syscalls")
    syscalls = [] if syscalls is None else syscalls
    if not isinstance(syscalls, list):
        raise ToolError(f"{source}: not a seccomp profile: syscalls is not a list")
    for i, entry in enumerate(syscalls):
        where = f"syscalls[{i}]"
        if not isinstance(entry, dict):
            raise ToolError(f"{source}: {where} is not an object")
        names = entry.get("names")
        if names is None and isinstance(entry.get("name"), str):
            names = [entry["name"]]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ToolError(f"{source}: {where}: names must be a list of system call names")
        errno = _errno(entry.get("errnoRet"), source, f"{where}.errnoRet")
        action = _action(entry.get("action"), errno, source, f"{where}.action")
        args = entry.get("args")
        if args is not None and not isinstance(args, list):
            raise ToolError(f"{source}: {where}.args is not a list")
        conditions = tuple(_condition(a, source, f"{where}.args") for a in args or [])
        if not _applies(entry, machine):
            continue
        for name in names:
            if libc.known_syscall(name) is False:
                unknown.append(f"{name} ({where}): no such system call")
                continue
            rules.append(Rule(name, action, conditions))
    arches = _architectures(doc, machine, source)
    if unknown:
        notes.append(
            "system calls no libseccomp here knows are left out, as runc does: "
            + ", ".join(u.split(" ", 1)[0] for u in unknown)
        )
    return Sandbox(
        source=source,
        kind="seccomp profile",
        seccomp=SeccompFilter(default, tuple(rules), arches),
        files=(source,),
        unknown=tuple(unknown),
        notes=tuple(notes),
    )


def _errno(value: Any, source: str, where: str) -> int:
    if value is None:
        return errno_mod.EPERM
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 4096:
        raise ToolError(f"{source}: {where} must be an error number, not {value!r}")
    return value


def _action(value: Any, errno: int, source: str, where: str) -> Action:
    kind = _ACTIONS.get(value) if isinstance(value, str) else None
    if kind is None:
        known = ", ".join(_ACTIONS)
        raise ToolError(f"{source}: {where}: unknown action {value!r} (known: {known})")
    return Action(kind, errno if kind == "errno" else 0)


def _condition(arg: Any, source: str, where: str) -> ArgCondition:
    if not isinstance(arg, dict):
        raise ToolError(f"{source}: {where}: each condition must be an object")
    index, op = arg.get("index"), arg.get("op")
    value, value_two = arg.get("value", 0), arg.get("valueTwo", 0)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 5:
        raise ToolError(f"{source}: {where}: index must be 0 to 5, not {index!r}")
    if op not in COMPARE_OPS:
        raise ToolError(f"{source}: {where}: unknown op {op!r}")
    for v in (value, value_two):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
            raise ToolError(f"{source}: {where}: values must be 64-bit unsigned, not {v!r}")
    return ArgCondition(index, op, value, value_two)


def _applies(entry: dict[str, Any], machine: str) -> bool:
    """Docker's includes/excludes, for a default container on this machine."""
    arch = _DOCKER_ARCH.get(machine, machine)
    inc, exc = entry.get("includes") or {}, entry.get("excludes") or {}
    if not isinstance(inc, dict) or not isinstance(exc, dict):
        return True
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    if inc.get("caps") and not set(inc["caps"]) <= DEFAULT_CAPS:
        return False
    if exc.get("caps") and set(exc["caps"]) & DEFAULT_CAPS:
        return False
    if isinstance(inc.get("minKernel"), str) and _kernel() < _version(inc["minKernel"]):
        return False
    return True


def _kernel() -> tuple[int, ...]:
    return _version(os.uname().release)


def _version(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("-")[0].split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def _architectures(doc: dict[str, Any], machine: str, source: str) -> tuple[str, ...]:
    arches = doc.get("architectures") or []
    arch_map = doc.get("archMap") or []
    if not isinstance(arches, list) or not isinstance(arch_map, list):
        raise ToolError(f"{source}: architectures and archMap must be lists")
    native = "SCMP_ARCH_" + {"x86_64": "X86_64", "aarch64": "AARCH64"}.get(machine, machine)
    out = [a for a in arches if isinstance(a, str)]
    for m in arch_map:
        if isinstance(m, dict) and m.get("architecture") == native:
            out += [native, *(a for a in m.get("subArchitectures") or [] if isinstance(a, str))]
    return tuple(dict.fromkeys(out))
