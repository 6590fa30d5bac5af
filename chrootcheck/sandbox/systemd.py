"""systemd units: the settings that make a service's sandbox, from the unit file and its
drop-ins in the order systemd applies them.

Reading is the caller's (``UnitReader``: inside ``--root`` through ``jail.fs``, so a unit in
an image never leads to a host file); this module only orders the files and interprets them.
``SystemCallFilter=`` follows systemd's own rules (src/core/load-fragment.c): the first
non-empty assignment decides allow-list (and adds ``@default``) or deny-list (``~``); later
assignments of the same kind add names, of the other kind remove them; an empty one resets.
``@groups`` are expanded with this machine's ``systemd-analyze syscall-filter``.
"""

from __future__ import annotations

import errno as errno_mod
import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chrootcheck.report.errors import ToolError
from chrootcheck.sandbox.model import (
    ALLOW,
    KILL,
    SECONDARY_ARCHES,
    Action,
    DevicePolicy,
    Mount,
    Rule,
    Sandbox,
    SeccompFilter,
)
from chrootcheck.system import libc

# Highest precedence first: a unit in /etc masks the one of the same name in /lib.
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)
TRUE_WORDS = frozenset({"1", "yes", "y", "true", "t", "on"})
_FALSE = frozenset({"0", "no", "n", "false", "f", "off"})
_KEYS = frozenset(
    {
        "SystemCallFilter",
        "SystemCallErrorNumber",
        "SystemCallArchitectures",
        "PrivateDevices",
        "DevicePolicy",
        "DeviceAllow",
        "RootDirectory",
        "RootImage",
        "BindPaths",
        "BindReadOnlyPaths",
        "TemporaryFileSystem",
        "Environment",
        "EnvironmentFile",
        "User",
        "DynamicUser",
    }
)

# The PKCS#11 modules' own config variables, read from Environment= like OPENSSL_CONF.
MODULE_ENV = ("SOFTHSM2_CONF", "OPENSC_CONF", "P11_KIT_CONFIG")


class UnitReader(Protocol):
    def read_text(self, path: str) -> str | None: ...

    def glob(self, pattern: str) -> list[str]: ...


@dataclass(frozen=True)
class UnitLine:
    file: str
    line: int
    section: str
    key: str
    value: str


class UnitSyntaxError(ToolError):
    pass


def entries(text: str, file: str) -> list[UnitLine]:
    """The assignments of a unit file, continuation lines joined, comments dropped. A line
    that is neither a section, an assignment nor a comment is an error, as systemd makes it."""
    out: list[UnitLine] = []
    section, buf, start = "", "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf:
            start = n
            if not line or line[0] in "#;":
                continue
        elif line[:1] in ("#", ";"):
            continue  # a comment inside a continuation is skipped
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        line, buf = buf + line, ""
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise UnitSyntaxError(f"{file}:{start}: not a unit file: bad section {line!r}")
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise UnitSyntaxError(f"{file}:{start}: not a unit file: {line[:60]!r}")
        if not section:
            raise UnitSyntaxError(f"{file}:{start}: an assignment outside any [section]")
        out.append(UnitLine(file, start, section, key.strip(), value.strip()))
    return out


def unit_files(name: str, reader: UnitReader) -> list[str]:
    """The main file of unit ``name`` and its drop-ins, in the order systemd applies them:
    the first unit folder that has the unit; then every ``*.conf`` of ``NAME.d/``, of the
    prefix folders (``foo-.service.d/`` for ``foo-bar.service``) and of ``service.d/`` in
    every unit folder, one per file name (the folder of higher precedence wins), sorted by
    file name. [] when no folder has the unit."""
    template = _template(name)
    main = None
    for d in UNIT_DIRS:
        for candidate in (name, template):
            if candidate and reader.glob(f"{d}/{candidate}"):
                main = f"{d}/{candidate}"
                break
        if main:
            break
    if main is None:
        return []
    suffix = "." + name.rsplit(".", 1)[-1]
    stem = name.removesuffix(suffix)
    dirs = [f"{name}.d"]
    if template:
        dirs.append(f"{template}.d")
    parts = stem.split("-")
    dirs += ["-".join(parts[:i]) + f"-{suffix}.d" for i in range(len(parts) - 1, 0, -1)]
    dirs.append(f"{suffix[1:]}.d")
    chosen: dict[str, str] = {}
    for d in UNIT_DIRS:
        for sub in dirs:
            for path in reader.glob(f"{d}/{sub}/*.conf"):
                chosen.setdefault(os.path.basename(path), path)
    return [main, *(chosen[k] for k in sorted(chosen))]


def _template(name: str) -> str | None:
    stem, at, rest = name.partition("@")
    if not at or rest.startswith("."):
        return None
    return f"{stem}@.{rest.rsplit('.', 1)[-1]}"


def read_unit(name_or_path: str, reader: UnitReader) -> Sandbox:
    """The sandbox of a unit by name (looked up in the unit folders) or by path."""
    if "/" in name_or_path:
        files = [name_or_path]
        base = os.path.basename(name_or_path)
        for d in UNIT_DIRS:
            for path in reader.glob(f"{d}/{base}.d/*.conf"):
                files.append(path)
        files = [files[0], *sorted(dict.fromkeys(files[1:]), key=os.path.basename)]
    else:
        name = name_or_path if "." in name_or_path else name_or_path + ".service"
        files = unit_files(name, reader)
        if not files:
            raise ToolError(f"no unit {name} in {', '.join(UNIT_DIRS)}")
    texts: list[tuple[str, str]] = []
    for f in files:
        text = reader.read_text(f)
        if text is None:
            if f == files[0]:
                raise ToolError(f"{f}: cannot read the unit file")
            continue
        texts.append((f, text))
    return parse_unit(texts, reader)


def parse_unit(files: Sequence[tuple[str, str]], reader: UnitReader | None = None) -> Sandbox:
    """The sandbox defined by ``files`` ((path, text), main file first, drop-ins in order).
    ``reader`` reads ``EnvironmentFile=`` files (not read without it)."""
    lines = [e for path, text in files for e in entries(text, path) if e.section == "Service"]
    lines = [e for e in lines if e.key in _KEYS]
    notes: list[str] = []
    unknown: list[str] = []
    flt = _Filter()
    errno_action: Action = KILL
    arches: list[str] = []
    private, policy = False, "auto"
    allow: list[tuple[str, str]] = []
    single: dict[str, str] = {}
    mounts: list[Mount] = []
    env: dict[str, str] = {}
    for e in lines:
        where = f"{e.file}:{e.line}"
        v = e.value
        match e.key:
            case "SystemCallFilter":
                flt.assign(v, where, unknown)
            case "SystemCallErrorNumber":
                errno_action = _errno_action(v, where) if v else KILL
            case "SystemCallArchitectures":
                arches = [] if not v else arches + v.split()
            case "PrivateDevices":
                private = _bool(v, where)
            case "DevicePolicy":
                if v and v not in ("auto", "closed", "strict"):
                    raise ToolError(f"{where}: DevicePolicy={v}: not auto, closed or strict")
                policy = v or "auto"
            case "DeviceAllow":
                if not v:
                    allow = []
                else:
                    spec, _, access = v.partition(" ")
                    allow.append((spec, access.strip() or "rwm"))
            case "BindPaths" | "BindReadOnlyPaths":
                if not v:
                    mounts = [m for m in mounts if m.source is None]
                for word in shlex.split(v):
                    mounts.append(_bind(word, e.key == "BindReadOnlyPaths"))
            case "TemporaryFileSystem":
                if not v:
                    mounts = [m for m in mounts if m.source is not None]
                for word in shlex.split(v):
                    mounts.append(Mount(word.split(":", 1)[0]))
            case "Environment":
                if not v:
                    env.clear()
                for word in shlex.split(v):
                    key, sep, value = word.partition("=")
                    if sep:
                        env[key] = value
            case "EnvironmentFile":
                if v:
                    env.update(_env_file(v, reader, notes))
            case _:
                single[e.key] = v
    seccomp = flt.build(errno_action)
    if errno_action is not KILL and seccomp is None:
        notes.append("SystemCallErrorNumber= without SystemCallFilter= filters nothing")
    arches = list(dict.fromkeys(arches))
    if arches:
        notes.append(
            f"SystemCallArchitectures={' '.join(arches)}: a system call of any other "
            "architecture kills the service (SIGSYS), as the as-configured filter does"
        )
    filtered = None
    if seccomp is not None:
        # systemd filters the secondary architectures' calls with the same rules
        listed = arches or ["native", *SECONDARY_ARCHES.get(os.uname().machine, ())]
        filtered = SeccompFilter(
            seccomp.default, seccomp.rules, tuple(listed), KILL if arches else None
        )
    elif arches:  # an architecture filter alone: every call of the listed ones allowed
        filtered = SeccompFilter(ALLOW, (), tuple(arches), KILL)
    if unknown:
        notes.append("left out, as systemd does: " + "; ".join(unknown))
    return Sandbox(
        source=files[0][0] if files else "",
        kind="systemd unit",
        seccomp=filtered,
        devices=DevicePolicy(policy, tuple(allow), private),
        root_directory=single.get("RootDirectory") or None,
        root_image=single.get("RootImage") or None,
        user=single.get("User") or None,
        dynamic_user=single.get("DynamicUser", "no").lower() in TRUE_WORDS,
        mounts=tuple(mounts),
        openssl_conf=env.get("OPENSSL_CONF"),
        module_env=tuple((k, env[k]) for k in MODULE_ENV if env.get(k)),
        files=tuple(f for f, _ in files),
        unknown=tuple(unknown),
        notes=tuple(notes),
    )


class _Filter:
    """SystemCallFilter= as systemd accumulates it: name -> errno (None: the default)."""

    def __init__(self) -> None:
        self.allow_list: bool | None = None  # None: no filter
        self.names: dict[str, int | None] = {}

    def assign(self, value: str, where: str, unknown: list[str]) -> None:
        if not value:
            self.allow_list, self.names = None, {}
            return
        invert = value.startswith("~")
        words = value[1:].split() if invert else value.split()
        if self.allow_list is None:
            self.allow_list = not invert
            if self.allow_list:
                for name in expand("@default", where, unknown):
                    self.names[name] = None
        add = invert != self.allow_list
        for word in words:
            item, _, err = word.partition(":")
            errno = _errno_number(err, where) if err else None
            if errno is not None and self.allow_list:
                raise ToolError(f"{where}: {word}: an error number only goes with a ~ list")
            for name in expand(item, where, unknown):
                if add:
                    self.names[name] = errno
                else:
                    self.names.pop(name, None)

    def build(self, errno_action: Action) -> SeccompFilter | None:
        if self.allow_list is None:
            return None
        if self.allow_list:
            rules = tuple(Rule(n, ALLOW) for n in sorted(self.names))
            return SeccompFilter(errno_action, rules)
        rules = tuple(
            Rule(n, errno_action if e is None else Action("errno", e))
            for n, e in sorted(self.names.items())
        )
        return SeccompFilter(ALLOW, rules)


def expand(item: str, where: str, unknown: list[str]) -> list[str]:
    """A system call name, or the calls of an @group (nested groups expanded)."""
    if not item.startswith("@"):
        if libc.known_syscall(item) is False:
            unknown.append(f"{where}: no such system call {item!r}")
            return []
        return [item]
    groups = syscall_groups()
    if item not in groups:
        unknown.append(f"{where}: no system call group {item} in this systemd")
        return []
    out: list[str] = []
    seen: set[str] = set()
    todo = [item]
    while todo:
        g = todo.pop()
        if g in seen:
            continue
        seen.add(g)
        for member in groups.get(g, ()):
            if member.startswith("@"):
                todo.append(member)
            else:
                out.append(member)
    # systemd leaves out, silently, the calls of a group this machine does not know.
    return sorted(n for n in set(out) if libc.known_syscall(n) is not False)


@functools.cache
def syscall_groups() -> dict[str, tuple[str, ...]]:
    """Every @group and its members (calls and nested @groups), from this machine's
    ``systemd-analyze syscall-filter``. ToolError where it cannot be run."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        raise ToolError(
            "SystemCallFilter= names @groups, and there is no systemd-analyze here to expand them",
            hint="install systemd (its systemd-analyze; no running systemd is needed)",
        )
    try:
        done = subprocess.run(
            [exe, "syscall-filter", "--no-pager"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolError(f"systemd-analyze syscall-filter failed: {e}") from None
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in done.stdout.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif current is not None:
            word = line.strip()
            if word and not word.startswith("#"):
                current.append(word)
    if done.returncode != 0 or "@default" not in groups:
        raise ToolError(f"systemd-analyze syscall-filter failed: {done.stderr.strip()[:200]}")
    return {k: tuple(v) for k, v in groups.items()}


def _errno_number(text: str, where: str) -> int:
    if text.isdigit() and 0 < int(text) < 4096:
        return int(text)
    number = getattr(errno_mod, text, None)
    if not text.startswith("E") or not isinstance(number, int):
        raise ToolError(f"{where}: {text!r} is not an error number")
    return number


def _errno_action(text: str, where: str) -> Action:
    if text == "kill":
        return KILL
    if text == "log":
        return Action("log")
    return Action("errno", _errno_number(text, where))


def _bool(text: str, where: str) -> bool:
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in _FALSE or not text:
        return False
    raise ToolError(f"{where}: {text!r} is not a boolean")


def _bind(word: str, read_only: bool) -> Mount:
    optional = word.startswith("-")
    word = word.lstrip("-")
    parts = word.split(":")
    source = parts[0].lstrip("+")
    target = parts[1] if len(parts) > 1 and parts[1] else source
    ro = read_only or (len(parts) > 2 and "ro" in parts[2].split(","))
    return Mount(target, source, ro, optional)


def _env_file(value: str, reader: UnitReader | None, notes: list[str]) -> dict[str, str]:
    optional = value.startswith("-")
    path = value.lstrip("-")
    text = reader.read_text(path) if reader is not None else None
    if text is None:
        if not optional:
            notes.append(f"EnvironmentFile={path} cannot be read: its variables are unknown")
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, v = line.partition("=")
        if sep:
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            out[key.strip().removeprefix("export ").strip()] = v
    return out
