"""The sandbox model: plain frozen dataclasses, no cffi, no I/O."""

from __future__ import annotations

import errno as errno_mod
import os
from dataclasses import dataclass, field

# libseccomp's action values (seccomp.h): what the probe child's filter uses.
_ACTION_VALUES = {
    "kill-process": 0x80000000,
    "kill-thread": 0x00000000,
    "trap": 0x00030000,
    "errno": 0x00050000,
    "trace": 0x7FF00000,
    "log": 0x7FFC0000,
    "notify": 0x7FC00000,
    "allow": 0x7FFF0000,
}
KINDS = tuple(_ACTION_VALUES)


@dataclass(frozen=True)
class Action:
    """What the kernel does on a filtered system call: ``kind`` is one of ``KINDS``; ``errno``
    the error number an ``errno`` action returns (0 otherwise)."""

    kind: str
    errno: int = 0

    @property
    def kills(self) -> bool:
        return self.kind in ("kill-process", "kill-thread", "trap")

    @property
    def fails(self) -> bool:
        """The call does not run: it fails with an errno, or the process dies."""
        return self.kind in ("errno", "kill-process", "kill-thread", "trap", "trace", "notify")

    @property
    def value(self) -> int:
        """libseccomp's action value (SCMP_ACT_ERRNO(x) carries the errno)."""
        base = _ACTION_VALUES[self.kind]
        return base | (self.errno & 0xFFFF) if self.kind == "errno" else base

    def describe(self) -> str:
        if self.kind == "errno":
            name = errno_mod.errorcode.get(self.errno, str(self.errno))
            return f"fails with {name} ({os.strerror(self.errno)})"
        return {
            "kill-process": "kills the process (SIGSYS)",
            "kill-thread": "kills the thread (SIGSYS)",
            "trap": "sends SIGSYS (killed unless the service handles it)",
            "trace": "is handed to a tracer (fails with ENOSYS without one)",
            "log": "is logged and allowed",
            "notify": "is handed to a supervisor (user notification)",
            "allow": "is allowed",
        }[self.kind]


ALLOW = Action("allow")
KILL = Action("kill-process")

# libseccomp's comparison operators (enum scmp_compare), by the OCI spelling.
COMPARE_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}


@dataclass(frozen=True)
class ArgCondition:
    """The rule applies only when argument ``index`` compares so (``op`` by OCI's name)."""

    index: int
    op: str
    value: int
    value_two: int = 0

    def holds(self, args: tuple[int, ...]) -> bool:
        a = args[self.index] if self.index < len(args) else 0
        match self.op:
            case "SCMP_CMP_NE":
                return a != self.value
            case "SCMP_CMP_LT":
                return a < self.value
            case "SCMP_CMP_LE":
                return a <= self.value
            case "SCMP_CMP_EQ":
                return a == self.value
            case "SCMP_CMP_GE":
                return a >= self.value
            case "SCMP_CMP_GT":
                return a > self.value
            case _:  # SCMP_CMP_MASKED_EQ
                return (a & self.value) == self.value_two


@dataclass(frozen=True)
class Rule:
    """``action`` for system call ``name`` when every condition holds (none: always)."""

    name: str
    action: Action
    conditions: tuple[ArgCondition, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What a system call gets: ``action`` for the arguments asked about, and whether other
    arguments would get another action (``conditional``)."""

    action: Action
    conditional: bool = False
    rule: Rule | None = None  # None: the filter's default action


@dataclass(frozen=True)
class SeccompFilter:
    default: Action
    rules: tuple[Rule, ...] = ()
    architectures: tuple[str, ...] = ()  # as the source names them; () = native only
    # the action on a call of an architecture not listed (None: libseccomp's, kill the thread);
    # systemd's SystemCallArchitectures= kills the process
    bad_arch: Action | None = None

    def outcome(self, name: str, args: tuple[int, ...] = ()) -> Outcome:
        """The action for ``name`` called with ``args`` (missing arguments count as 0). As
        libseccomp: of the rules that match, the most restrictive action wins."""
        rules = [r for r in self.rules if r.name == name]
        matching = [r for r in rules if all(c.holds(args) for c in r.conditions)]
        conditional = any(r.conditions for r in rules)
        if not matching:
            return Outcome(self.default, conditional)
        best = min(matching, key=lambda r: _restrictiveness(r.action))
        return Outcome(best.action, conditional, best)


# systemd's and OCI's names for architectures, by libseccomp's (seccomp_arch_resolve_name).
_ARCH_NAMES = {
    "x86-64": "x86_64",
    "arm64": "aarch64",
    "ppc64-le": "ppc64le",
    "mips-le": "mipsel",
    "mips64-le": "mipsel64",
    "mips64-n32": "mips64n32",
    "mips64-le-n32": "mipsel64n32",
}
# What systemd adds to a filter besides the native architecture when SystemCallArchitectures=
# is not set (seccomp_add_secondary_archs), so that their calls meet the same rules.
SECONDARY_ARCHES = {"x86_64": ("x86", "x32"), "aarch64": ("arm",)}


def libseccomp_arch(name: str) -> str:
    """libseccomp's name for an architecture as a unit ("x86-64", "native") or an OCI profile
    ("SCMP_ARCH_X86_64") names it."""
    if name.startswith("SCMP_ARCH_"):
        return name.removeprefix("SCMP_ARCH_").lower()
    return _ARCH_NAMES.get(name, name)


def _restrictiveness(action: Action) -> int:
    # The kernel's precedence (lower wins): kill-process, kill-thread, trap, errno, notify,
    # trace, log, allow.
    order = ("kill-process", "kill-thread", "trap", "errno", "notify", "trace", "log", "allow")
    return order.index(action.kind)


@dataclass(frozen=True)
class DevicePolicy:
    """systemd's device access control: ``policy`` is auto, closed or strict; ``allow`` the
    DeviceAllow= entries as (specifier, access); ``private`` PrivateDevices=yes."""

    policy: str = "auto"
    allow: tuple[tuple[str, str], ...] = ()
    private: bool = False

    def may_read(self, path: str, major: int, minor: int) -> bool:
        """Whether the service may open the character device ``path`` (major:minor) to read."""
        policy = "closed" if self.private and self.policy == "auto" else self.policy
        if policy == "auto" and not self.allow:
            return True
        if policy in ("auto", "closed") and path in _PSEUDO_DEVICES:
            return True
        for spec, access in self.allow:
            if "r" not in access:
                continue
            if spec == path or (major == 1 and spec in ("char-mem", "char-*")):
                return True
        return False


# What DevicePolicy=closed (and auto) always allows.
_PSEUDO_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"})


@dataclass(frozen=True)
class Mount:
    """A BindPaths=/BindReadOnlyPaths= (``source`` set) or TemporaryFileSystem= entry."""

    target: str
    source: str | None = None  # None: a tmpfs
    read_only: bool = False
    optional: bool = False  # "-": a missing source is ignored


# What to do with a unit's RootImage=, which chrootcheck does not open.
ROOT_IMAGE_ADVICE = (
    "mount it read-only (systemd-dissect --mount --read-only IMAGE DIR, or mount -o ro,loop) "
    "and give DIR as the JAIL: chrootcheck scan --unit UNIT DIR"
)


@dataclass(frozen=True)
class Sandbox:
    """The sandbox of one service: where it comes from and what it does to OpenSSL's calls."""

    source: str  # the profile or the unit's main file
    kind: str  # "seccomp profile" or "systemd unit"
    seccomp: SeccompFilter | None = None
    devices: DevicePolicy | None = None  # None: no device policy (a profile)
    root_directory: str | None = None
    root_image: str | None = None
    user: str | None = None
    dynamic_user: bool = False
    mounts: tuple[Mount, ...] = ()
    openssl_conf: str | None = None  # OPENSSL_CONF from Environment=/EnvironmentFile=
    tree_root: str = "/"  # where its paths are (--root): the mounts' sources, OPENSSL_CONF
    # BindPaths=/BindReadOnlyPaths= sources without "-" that are not there: systemd refuses
    # to start the unit (filled by the caller, which reads the tree)
    missing_sources: tuple[str, ...] = ()
    # The PKCS#11 modules' config variables from the same (SOFTHSM2_CONF ...): the late loads
    # find a module's token store with them.
    module_env: tuple[tuple[str, str], ...] = ()
    files: tuple[str, ...] = ()  # the files read, in the order they apply
    # Names the sandbox lists that this machine does not know (unknown system calls and
    # @groups): each one a line for the report.
    unknown: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def outcome(self, name: str, args: tuple[int, ...] = ()) -> Outcome:
        return (self.seccomp or SeccompFilter(ALLOW)).outcome(name, args)

    def own_root(self) -> bool:
        """The service runs in its own root (RootDirectory= or RootImage=): the jail scanned
        under it is that root, and its PrivateDevices= and mounts are made there."""
        return self.root_directory is not None or self.root_image is not None

    def provides_devices(self) -> bool:
        """PrivateDevices=yes: systemd mounts its own /dev with random and urandom (in the
        jail only when the jail is the unit's RootDirectory=: see ``scenarios.as_configured``)."""
        return self.devices is not None and self.devices.private

    def brings_device(self, path: str) -> bool:
        """A bind mount that puts ``path`` (or its folder) into the service's tree."""
        return any(
            m.source is not None and (m.target == path or m.target == os.path.dirname(path))
            for m in self.mounts
        )

    def hides_dev(self) -> bool:
        """A TemporaryFileSystem= on /dev: an empty /dev over the tree's."""
        return any(m.source is None and m.target == "/dev" for m in self.mounts)


# The system calls OpenSSL's RAND makes on Linux (1.0.2 to 3.x, x86-64 glibc): getrandom;
# the devices (open/openat, read, close, fstat/newfstatat to check the node, poll/select to
# wait on /dev/random); SysV shm key 0x72 on the old-kernel path (shmget, shmat, shmdt); uname
# for the kernel's version; getpid for fork detection; the clocks for nonces.
OPENSSL_CALLS = (
    "getrandom",
    "openat",
    "open",
    "read",
    "close",
    "fstat",
    "newfstatat",
    "poll",
    "select",
    "shmget",
    "shmat",
    "shmdt",
    "uname",
    "getpid",
    "clock_gettime",
)


def killing_calls(flt: SeccompFilter | None) -> tuple[str, ...]:
    """The calls OpenSSL makes that ``flt`` kills the service on (for any arguments)."""
    if flt is None:
        return ()
    out = []
    for name in OPENSSL_CALLS:
        o = flt.outcome(name)
        actions = [o.action, *(r.action for r in flt.rules if r.name == name)]
        if any(a.kills for a in (actions if o.conditional else [o.action])):
            out.append(name)
    return tuple(out)
