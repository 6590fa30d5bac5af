"""The catalogue of checks: every check id, defined once, with its default severity, the stage
of the scan that produces it and the text every format shows.

Ids never change meaning once released (CI users suppress and track them). Ranges:
CC1xx the entropy devices, CC15x EGD, CC16x-CC19x what the walk meets, CC2xx the probe
(CC210-CC219 the state of PKCS#11 modules, CC220-CC229 the late-load probe of an engine key),
CC3xx files OpenSSL loads late (config, engines, providers, PKCS#11 modules), CC4xx the
service's sandbox (a systemd unit or a seccomp profile).

Each check is a module-level constant (``URANDOM_MISSING``); code makes findings with
``URANDOM_MISSING.finding(...)`` and decides on them with the named sets below
(``f.check in FAKE_NODE``), never with "CCxxx" strings. ``ALL`` lists every check in id order
for the formats that declare them all (SARIF rules, JUnit cases, Prometheus zeros) and for
docs/checks.md (``chrootcheck.formats.checks_doc``); nothing registers at import time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import KW_ONLY, dataclass
from types import MappingProxyType
from typing import Any

from chrootcheck.report.devices import ENTROPY_DEVICES, RANDOM, URANDOM, Device, mknod_command
from chrootcheck.report.model import Finding, Severity, Stage, frozen_map

DOCS_URL = "https://github.com/chrootcheck/chrootcheck/blob/main/docs/checks.md"


@dataclass(frozen=True)
class Check:
    id: str  # "CC101": public and stable
    name: str  # kebab-case slug, also the anchor in docs/checks.md
    severity: Severity  # the default; a finding may say otherwise (``finding(severity=...)``)
    title: str  # one line
    why: str  # why it matters, for help texts
    remediation: str  # the fix, with JAIL standing for the jail's path
    _: KW_ONLY
    stage: Stage  # the part of the scan that produces it: skipped stage, skipped check

    @property
    def help_uri(self) -> str:
        return f"{DOCS_URL}#{self.id.lower()}-{self.name}"

    def finding(
        self,
        path: str,
        message: str,
        *,
        severity: Severity | None = None,
        remediation: str | None = None,
        **details: Any,
    ) -> Finding:
        """The one way to make a Finding: its check id always comes from the catalogue."""
        return Finding(
            check=self.id,
            severity=severity or self.severity,
            path=path,
            message=message,
            remediation=remediation or self.remediation,
            details=frozen_map(details),
        )


def create_fix(*devices: Device) -> str:
    """The remediation for missing device nodes (and /dev)."""
    return (
        f"{mknod_command(*devices, mkdir=True)}"
        " (or: chrootcheck fix JAIL --mknod; --bind on nodev file systems)"
    )


def replace_fix(device: Device, first: str) -> str:
    """The remediation for one wrong node: ``first`` says what to do with what stands there."""
    return (
        f"{first} then create it: {mknod_command(device)} "
        "(or: chrootcheck fix JAIL --mknod --replace)"
    )


_CREATE_BOTH = create_fix(*ENTROPY_DEVICES)
_RECREATE = f"Recreate the node with the right numbers: {mknod_command(URANDOM)}"
_COPY = "Copy it into the jail at the same path (or bind-mount it read-only); see the finding."


# --- the entropy devices (the static inspector) ---

DEV_MISSING = Check(
    "CC100",
    "dev-missing",
    Severity.ERROR,
    "/dev is missing in the jail",
    "Without /dev there is no /dev/urandom: once getrandom(2) is unavailable (old kernel, "
    "seccomp sandbox, another libcrypto) OpenSSL cannot reseed after the chroot.",
    _CREATE_BOTH,
    stage=Stage.INSPECT,
)
URANDOM_MISSING = Check(
    "CC101",
    "urandom-missing",
    Severity.ERROR,
    "/dev/urandom is missing in the jail",
    "OpenSSL's device seed source opens /dev/urandom first. Seeded before the chroot, the "
    "process runs until the first reseed (at the latest an hour), then every new TLS connection "
    "fails with a misleading 'malloc failure' or 'error retrieving entropy'.",
    _CREATE_BOTH,
    stage=Stage.INSPECT,
)
RANDOM_MISSING = Check(
    "CC102",
    "random-missing",
    Severity.ERROR,
    "/dev/random is missing in the jail",
    "OpenSSL 1.1.1d+ waits on /dev/random before trusting /dev/urandom on kernels older than "
    "4.8, and falls back to it when /dev/urandom cannot be opened.",
    _CREATE_BOTH,
    stage=Stage.INSPECT,
)
NODE_REGULAR_FILE = Check(
    "CC110",
    "node-regular-file",
    Severity.CRITICAL,
    "an entropy device is a regular file",
    "An empty file gives no entropy at all; a file with content gives the same 'random' bytes "
    "to every process that reads it: predictable keys and nonces.",
    f"Move the file aside and create the real node: {mknod_command(URANDOM)}",
    stage=Stage.INSPECT,
)
NODE_FIFO = Check(
    "CC111",
    "node-fifo",
    Severity.CRITICAL,
    "an entropy device is a FIFO",
    "Opening a FIFO blocks until a writer appears, and whoever writes to it chooses the "
    "'entropy': the service hangs or uses attacker-chosen bytes.",
    "Remove the FIFO and create the real character device (chrootcheck fix --replace).",
    stage=Stage.INSPECT,
)
NODE_SOCKET = Check(
    "CC112",
    "node-socket",
    Severity.ERROR,
    "an entropy device is a socket",
    "open(2) on a socket fails with ENXIO: OpenSSL gets no entropy from it.",
    "Move the socket aside and create the real character device.",
    stage=Stage.INSPECT,
)
NODE_DIRECTORY = Check(
    "CC113",
    "node-directory",
    Severity.ERROR,
    "an entropy device is a directory",
    "A directory cannot be read as a device: OpenSSL gets no entropy from it.",
    "Move the directory aside and create the real character device.",
    stage=Stage.INSPECT,
)
NODE_SYMLINK_DANGLING = Check(
    "CC114",
    "node-symlink-dangling",
    Severity.ERROR,
    "an entropy device is a symlink that dangles inside the jail",
    "Symlinks are resolved inside the jail after chroot: an absolute target such as "
    "/host/dev/urandom points at a path the jail does not have.",
    "Replace the symlink with the device node itself (symlinks to host paths never work after "
    "chroot).",
    stage=Stage.INSPECT,
)
NODE_SYMLINK_LOOP = Check(
    "CC115",
    "node-symlink-loop",
    Severity.ERROR,
    "an entropy device is a symlink loop inside the jail",
    "open(2) fails with ELOOP: OpenSSL gets no entropy from it.",
    "Replace the symlink with the device node itself.",
    stage=Stage.INSPECT,
)
NODE_BLOCK_DEVICE = Check(
    "CC116",
    "node-block-device",
    Severity.ERROR,
    "an entropy device is a block device",
    "A block device in place of /dev/urandom reads a disk, not the kernel's CSPRNG.",
    f"Move it aside and create the character device {URANDOM.spec} (urandom) or {RANDOM.spec} "
    "(random).",
    stage=Stage.INSPECT,
)
NODE_PATH_BLOCKED = Check(
    "CC117",
    "node-path-blocked",
    Severity.ERROR,
    "a folder on the way to an entropy device is not a folder",
    "A component of the path (for example /dev) is a file or a dangling link, so the device "
    "path cannot exist inside the jail.",
    "Move the file aside, create the folder and the device nodes.",
    stage=Stage.INSPECT,
)
NODE_CHANGING = Check(
    "CC118",
    "node-changing",
    Severity.WARNING,
    "an entropy device kept changing while it was checked",
    "Something in the jail replaced the node (or a folder or symlink on its way) again and "
    "again during the scan, so chrootcheck could not see what a process would open: it is not "
    "verified.",
    "Scan again when nothing rewrites the jail; find what replaces the node.",
    stage=Stage.INSPECT,
)
DEVICE_WRONG_NUMBERS = Check(
    "CC120",
    "device-wrong-numbers",
    Severity.ERROR,
    "an entropy device has the wrong device numbers",
    f"Linux's random is {RANDOM.spec} and urandom {URANDOM.spec}; another character device reads "
    "whatever that driver gives, which is not the kernel's CSPRNG.",
    _RECREATE,
    stage=Stage.INSPECT,
)
DEVICE_NULL_OR_ZERO = Check(
    "CC121",
    "device-null-or-zero",
    Severity.CRITICAL,
    "an entropy device is /dev/null or /dev/zero",
    "/dev/null reads 0 bytes (no entropy) and /dev/zero reads zeros: keys made from it are "
    "predictable.",
    _RECREATE,
    stage=Stage.INSPECT,
)
NOT_READABLE_BY_USER = Check(
    "CC130",
    "not-readable-by-user",
    Severity.ERROR,
    "the service's user cannot open the entropy device",
    "After dropping privileges the service opens the device as --user: without read permission "
    "on the node (or search permission on a folder above it) open fails with EACCES.",
    "chmod 0666 JAIL/dev/urandom JAIL/dev/random (and chmod o+x on the folders above)",
    stage=Stage.INSPECT,
)
NOT_READABLE_BY_OTHERS = Check(
    "CC131",
    "not-readable-by-others",
    Severity.WARNING,
    "the entropy device is not readable by other users",
    "A service that drops privileges to an unprivileged user cannot open it; pass --user to "
    "check for the service's real user.",
    "chmod 0666 JAIL/dev/urandom JAIL/dev/random",
    stage=Stage.INSPECT,
)
NODEV_MOUNT = Check(
    "CC140",
    "nodev-mount",
    Severity.ERROR,
    "the entropy device lies on a file system mounted nodev",
    "On a nodev mount a correct device node cannot be opened (EACCES): it looks right and fails "
    "at run time.",
    "Bind-mount the host's nodes onto the jail (chrootcheck fix JAIL --bind) or remount without "
    "nodev.",
    stage=Stage.INSPECT,
)
READONLY_MOUNT = Check(
    "CC141",
    "readonly-mount",
    Severity.INFO,
    "the jail's /dev lies on a read-only file system",
    "Nodes cannot be created there: a fix needs a bind mount or a remount read-write.",
    "Use chrootcheck fix JAIL --bind, or remount read-write to create the nodes.",
    stage=Stage.INSPECT,
)

# --- EGD ---

EGD_SOCKET_LIVE = Check(
    "CC150",
    "egd-socket-live",
    Severity.INFO,
    "an EGD daemon answers in the jail",
    "OpenSSL built with --with-rand-seed=egd reads entropy from this socket.",
    "Nothing to do; keep the daemon running.",
    stage=Stage.INSPECT,
)
EGD_SOCKET_DEAD = Check(
    "CC151",
    "egd-socket-dead",
    Severity.WARNING,
    "an EGD socket in the jail has no daemon behind it",
    "A socket file copied into a jail, or left by a stopped daemon, refuses connections: an EGD "
    "build of OpenSSL gets no entropy from it.",
    "Start the EGD/PRNGD daemon with its socket inside the jail, or remove the stale socket "
    "file and rely on /dev/urandom.",
    stage=Stage.INSPECT,
)
EGD_PATH_NOT_SOCKET = Check(
    "CC152",
    "egd-path-not-socket",
    Severity.WARNING,
    "an EGD path in the jail is not a socket",
    "OpenSSL connects to this path as a Unix socket; anything else gives no entropy.",
    "Remove it, or run the EGD daemon with its socket at this path.",
    stage=Stage.INSPECT,
)

# --- what the walk meets ---

OTHER_DEVICE = Check(
    "CC160",
    "other-device",
    Severity.INFO,
    "a device node in the jail",
    "Listed so that unexpected devices in a jail do not go unnoticed.",
    "Remove device nodes the service does not need.",
    stage=Stage.INSPECT,
)
OTHER_SOCKET = Check(
    "CC161",
    "other-socket",
    Severity.INFO,
    "a Unix socket in the jail",
    "Listed so that stale or unexpected sockets do not go unnoticed.",
    "Nothing to do if the service uses it.",
    stage=Stage.INSPECT,
)
OTHER_FIFO = Check(
    "CC162",
    "other-fifo",
    Severity.INFO,
    "a FIFO in the jail",
    "Listed so that unexpected FIFOs do not go unnoticed.",
    "Nothing to do if the service uses it.",
    stage=Stage.INSPECT,
)
LIBCRYPTO_COPY = Check(
    "CC170",
    "libcrypto-copy",
    Severity.INFO,
    "a copy of libcrypto in the jail",
    "The service may load this libcrypto after the chroot; the probe can test it with "
    "--libcrypto (loading code from the jail needs your explicit consent).",
    "Nothing to do; probe it with chrootcheck scan --libcrypto JAIL/PATH.",
    stage=Stage.INSPECT,
)
UNREADABLE_FOLDER = Check(
    "CC180",
    "unreadable-folder",
    Severity.WARNING,
    "a folder in the jail could not be read",
    "The walk could not look inside it, so the report may miss nodes there.",
    "Check the folder's permissions; run chrootcheck as root.",
    stage=Stage.INSPECT,
)

# --- the probe: a real libcrypto reseeding inside the jail ---

PROBE_RESEED_FAILS = Check(
    "CC200",
    "probe-reseed-fails",
    Severity.ERROR,
    "OpenSSL cannot reseed inside the jail",
    "The probe seeded a real libcrypto before the chroot, as a daemon does, and its reseeds "
    "failed inside the jail although they worked outside: TLS would stop at the first reseed "
    "(an hour at the latest, at once in a process forked after the chroot).",
    "Give the jail working /dev/urandom and /dev/random nodes readable by the service's user "
    "(chrootcheck fix JAIL), then run chrootcheck scan again.",
    stage=Stage.PROBE,
)
PROBE_HANGS = Check(
    "CC201",
    "probe-hangs",
    Severity.ERROR,
    "OpenSSL hangs inside the jail",
    "A probe child blocked inside the jail (an open or read that never returns, such as a FIFO "
    "in place of a device) and was killed at the timeout: the service would hang there.",
    "Replace whatever stands at /dev/random and /dev/urandom with the real device nodes.",
    stage=Stage.PROBE,
)

# --- the PKCS#11 modules' own state (static, with the late loads) ---

_TOKEN_FIX = (
    "Bind-mount the token store read-write at the same path in the jail (mount --bind "
    "TOKENDIR JAIL/TOKENDIR), or move it into the jail and leave a symlink at its host path; "
    "the finding has the exact commands. chrootcheck fix does not do this."
)
TOKEN_STORE_MISSING_IN_JAIL = Check(
    "CC210",
    "token-store-missing-in-jail",
    Severity.ERROR,
    "a PKCS#11 module's token store is not in the jail",
    "SoftHSM2 reopens its token's files (generation, the key's .object) at every signature: a "
    "daemon that loaded its HSM key before the chroot starts, logs success and stays up, and "
    "every handshake fails from the first with 'PKCS#11 module::Object handle invalid'.",
    _TOKEN_FIX,
    stage=Stage.LATE_LOADS,
)
TOKEN_STORE_UNREADABLE = Check(
    "CC211",
    "token-store-unreadable",
    Severity.ERROR,
    "the service user cannot reach a PKCS#11 module's token store in the jail",
    "The daemon loads its key as root before the chroot, then drops to its user: SoftHSM2 "
    "then cannot reopen the token's files and every signature fails (Debian's "
    "/var/lib/softhsm/tokens is root:softhsm 2770: the user must be in group softhsm).",
    "Give the user search rights on every folder on the way and read rights on the token's "
    "files (usermod -aG softhsm USER), or bind-mount a token store it can read; see the "
    "finding.",
    stage=Stage.LATE_LOADS,
)
PKCS11_MODULE_STATE = Check(
    "CC212",
    "pkcs11-module-state",
    Severity.INFO,
    "a PKCS#11 module keeps state outside the jail (recognised, not measured)",
    "OpenSC reaches the card through pcscd's socket and keeps a file cache; a SoftHSM2 whose "
    "config cannot be read has no known token store. What the module reads after the chroot "
    "decides whether the key works there.",
    "Read the finding; check with a real handshake, or with the late-load probe (--key).",
    stage=Stage.LATE_LOADS,
)
PKCS11_REMOTE_MODULE = Check(
    "CC213",
    "pkcs11-remote-module",
    Severity.INFO,
    "a p11-kit module is remote (remote: in its config)",
    "p11-kit runs a command or opens a socket to reach a remote module; a new connection "
    "after the chroot runs or opens it inside the jail.",
    "Make the command or socket reachable inside the jail, or load the module locally.",
    stage=Stage.LATE_LOADS,
)

# --- the late-load probe: the daemon's engine key, loaded before the chroot, used inside ---

ENGINE_KEY_FAILS_IN_JAIL = Check(
    "CC220",
    "engine-key-fails-in-jail",
    Severity.ERROR,
    "the daemon's engine key cannot sign inside the jail",
    "The probe loaded the engine, the PKCS#11 module and the key as the daemon does before "
    "its chroot, signed once there, then chrooted, dropped to the service user and signed "
    "as a handshake does: that failed, so every handshake fails while the daemon stays up.",
    "Follow the token-store finding (CC210/CC211) if there is one; otherwise read the error "
    "chain: the module cannot reach what it reads after the chroot.",
    stage=Stage.LATE_LOAD_PROBE,
)
ENGINE_KEY_FAILS_ON_HOST = Check(
    "CC221",
    "engine-key-fails-on-host",
    Severity.WARNING,
    "the daemon's engine key cannot be loaded or used even before the chroot",
    "The engine, its control commands or the key fail outside the jail: the daemon cannot "
    "start with this configuration (or its settings differ from what the probe was given).",
    "Check the engine settings and the key URI (openssl pkeyutl -engine pkcs11 -keyform "
    "engine -inkey URI -sign ...); the error chain says which step failed.",
    stage=Stage.LATE_LOAD_PROBE,
)
ENGINE_CODE_UNTRUSTED = Check(
    "CC222",
    "engine-code-untrusted",
    Severity.ERROR,
    "the engine, PKCS#11 module or config the daemon loads as root is not root's",
    "It lies inside a jail or is writable by another user: the daemon loads it as root before "
    "its chroot, so whoever controls it runs code as root. The probe refuses to load it.",
    "Install the engine and module from packages outside the jail, owned by root and not "
    "group- or world-writable.",
    stage=Stage.LATE_LOAD_PROBE,
)

# --- files OpenSSL loads late ---

CONFIG_MISSING_IN_JAIL = Check(
    "CC300",
    "config-missing-in-jail",
    Severity.WARNING,
    "openssl.cnf is not in the jail",
    "OpenSSL 3 loads its config lazily, at the first algorithm fetch: an application that first "
    "uses OpenSSL after its chroot reads the jail's copy, and silently runs without it (no "
    "engines, providers or [random] settings) when it is missing.",
    _COPY,
    stage=Stage.LATE_LOADS,
)
INCLUDE_MISSING_IN_JAIL = Check(
    "CC301",
    "include-missing-in-jail",
    Severity.WARNING,
    "a file that openssl.cnf includes is not in the jail",
    "A missing .include is skipped silently: its settings do not apply after the chroot.",
    _COPY,
    stage=Stage.LATE_LOADS,
)
ENGINE_MISSING_IN_JAIL = Check(
    "CC302",
    "engine-missing-in-jail",
    Severity.ERROR,
    "an engine the config loads is not in the jail",
    "The engine is dlopen()ed when the config is loaded; after the chroot that fails, silently, "
    "and the first ENGINE_by_id() or key operation that needs it fails.",
    _COPY,
    stage=Stage.LATE_LOADS,
)
PROVIDER_MISSING_IN_JAIL = Check(
    "CC303",
    "provider-missing-in-jail",
    Severity.ERROR,
    "a provider module the config activates is not in the jail",
    "Activation fails and, because the config names its providers, the default provider is not "
    "loaded either: RAND fails with 'unable to fetch drbg' and every TLS handshake with it.",
    _COPY,
    stage=Stage.LATE_LOADS,
)
PKCS11_MODULE_MISSING_IN_JAIL = Check(
    "CC304",
    "pkcs11-module-missing-in-jail",
    Severity.ERROR,
    "a PKCS#11 module the config names is not in the jail",
    "libp11's engine and pkcs11-provider load the PKCS#11 module at the first key operation, "
    "usually after the chroot even when the config was read before it: the HSM key cannot be "
    "used.",
    _COPY,
    stage=Stage.LATE_LOADS,
)
P11KIT_MODULE_MISSING_IN_JAIL = Check(
    "CC305",
    "p11kit-module-missing-in-jail",
    Severity.ERROR,
    "a p11-kit module (or its .module config) is not in the jail",
    "p11-kit-proxy reads its module configs and loads the modules they name at the first key "
    "operation: after the chroot it finds no token.",
    _COPY,
    stage=Stage.LATE_LOADS,
)
ENGINESDIR_MISSING_IN_JAIL = Check(
    "CC306",
    "enginesdir-missing-in-jail",
    Severity.INFO,
    "OpenSSL's ENGINESDIR is not in the jail",
    "ENGINE_by_id() for an engine that is not built in loads ENGINESDIR/<id>.so: after the "
    "chroot it fails. Only matters if the application loads engines by name late.",
    _COPY,
    stage=Stage.LATE_LOADS,
)
MODULESDIR_MISSING_IN_JAIL = Check(
    "CC307",
    "modulesdir-missing-in-jail",
    Severity.INFO,
    "OpenSSL's MODULESDIR is not in the jail",
    "OSSL_PROVIDER_load() for legacy, fips or another provider loads MODULESDIR/<name>.so: "
    "after the chroot it fails. Only matters if the application loads providers late.",
    _COPY,
    stage=Stage.LATE_LOADS,
)
CONFIG_INVALID = Check(
    "CC308",
    "config-invalid",
    Severity.WARNING,
    "OpenSSL would reject openssl.cnf",
    "A syntax error makes OpenSSL refuse the whole file, silently by default "
    "(config_diagnostics = 1 makes it fatal): nothing in it takes effect.",
    "Fix the reported lines; check with: openssl req -config FILE -help >/dev/null",
    stage=Stage.LATE_LOADS,
)
CONFIG_MODULE_MISSING_IN_JAIL = Check(
    "CC309",
    "config-module-missing-in-jail",
    Severity.ERROR,
    "a configuration module's library is not in the jail",
    "A module name libcrypto does not know is loaded as a shared library (its 'path'); after "
    "the chroot that fails.",
    _COPY,
    stage=Stage.LATE_LOADS,
)
RANDOM_SETTINGS = Check(
    "CC310",
    "random-settings",
    Severity.INFO,
    "openssl.cnf changes how OpenSSL seeds its DRBG",
    "The [random] section (seed, random_provider) or a RAND engine decides whether the jail "
    "needs /dev/urandom at all.",
    "Nothing to do; read the finding: it says whether /dev/urandom is still needed.",
    stage=Stage.LATE_LOADS,
)
NAMED_FILE_MISSING_ON_HOST = Check(
    "CC311",
    "named-file-missing-on-host",
    Severity.WARNING,
    "a file openssl.cnf names does not exist on the host either",
    "The config is broken before any chroot: the engine, provider or module it names cannot be "
    "loaded anywhere.",
    "Fix the path in openssl.cnf or install the package that ships the file.",
    stage=Stage.LATE_LOADS,
)

# --- the service's sandbox (a systemd unit or a seccomp profile) ---

SANDBOX_BLOCKS_GETRANDOM = Check(
    "CC400",
    "sandbox-blocks-getrandom",
    Severity.ERROR,
    "the service's seccomp filter makes getrandom(2) fail",
    "OpenSSL 1.1.1+ seeds from getrandom. Without it, 1.1.1d+ on a kernel >= 4.8 refuses "
    "/dev/urandom until SysV shm key 0x72 says the pool was seeded, and everything else reads "
    "the random devices by path: an error where the jail lacks them, a warning where they exist.",
    "Allow getrandom in the filter (SystemCallFilter=@system-service has it; in a profile, "
    "SCMP_ACT_ALLOW for getrandom), and keep /dev/urandom and /dev/random in the jail.",
    stage=Stage.SANDBOX,
)
SANDBOX_BLOCKS_SHM = Check(
    "CC401",
    "sandbox-blocks-shm",
    Severity.WARNING,
    "the service's seccomp filter blocks or kills shmget/shmat",
    "Where getrandom is unavailable (an old kernel, a filter), OpenSSL 1.1.1d+ calls shmget and "
    "shmat for key 0x72 before it trusts /dev/urandom: blocked, it refuses the device; killed, "
    "the service dies (openssl#9984: sshd's preauth child).",
    "Allow shmget and shmat (SystemCallFilter=@ipc), or make them fail with an errno instead "
    "of killing; keep getrandom allowed.",
    stage=Stage.SANDBOX,
)
SANDBOX_KILLS_OPENSSL_CALL = Check(
    "CC402",
    "sandbox-kills-openssl-call",
    Severity.ERROR,
    "the service's seccomp filter kills on a call OpenSSL makes",
    "A kill action (systemd's default SystemCallErrorNumber=, SCMP_ACT_KILL*) on a call "
    "OpenSSL's random generator makes ends the service with SIGSYS the first time it is made.",
    "Allow the call, or give it an errno (SystemCallErrorNumber=EPERM, SCMP_ACT_ERRNO).",
    stage=Stage.SANDBOX,
)
DEVICE_POLICY_DENIES_RANDOM = Check(
    "CC403",
    "device-policy-denies-random",
    Severity.ERROR,
    "the unit's device policy denies a random device",
    "DevicePolicy=strict without /dev/urandom (or /dev/random) in DeviceAllow=: opening the "
    "device fails with EPERM though the node exists in the jail.",
    "Add DeviceAllow=/dev/urandom r and DeviceAllow=/dev/random r, or use DevicePolicy=closed.",
    stage=Stage.SANDBOX,
)
PRIVATE_DEVICES_PROVIDES = Check(
    "CC404",
    "private-devices-provides",
    Severity.INFO,
    "PrivateDevices=yes gives the service its own /dev with the random devices",
    "systemd mounts a private /dev with null, zero, full, random, urandom and tty: the jail's "
    "own device nodes are not used, so missing ones are not fatal.",
    "Nothing to do for the service; the jail's own nodes matter only outside systemd.",
    stage=Stage.SANDBOX,
)
SANDBOX_UNKNOWN_NAME = Check(
    "CC405",
    "sandbox-unknown-name",
    Severity.WARNING,
    "the sandbox names a system call or @group this machine does not know",
    "systemd and runc leave such names out silently: the filter the service gets differs from "
    "the one its author wrote.",
    "Fix the name (systemd-analyze syscall-filter lists the groups), or drop it.",
    stage=Stage.SANDBOX,
)

SANDBOX_BIND_SOURCE_MISSING = Check(
    "CC406",
    "sandbox-bind-source-missing",
    Severity.ERROR,
    "a BindPaths=/BindReadOnlyPaths= source is missing: the unit does not start",
    "systemd refuses to start a service whose bind mount source does not exist, unless the "
    "entry starts with '-'.",
    "Create the source, fix the path, or prefix the entry with '-' if it is optional.",
    stage=Stage.SANDBOX,
)


# --- the running service (scan --pid/--running) ---

RUNNING_TLS_FAILS = Check(
    "CC500",
    "running-tls-fails",
    Severity.ERROR,
    "a running service's TLS will fail in its jail",
    "The probe copied the running process (its own libcrypto, user, seccomp filter and "
    "random devices held open) and its reseeds failed: its TLS fails at its next primary "
    "reseed (the finding says when, from its uptime and the library's reseed interval), or "
    "sooner at a trigger its daemon meets (a fork, new threads).",
    "Give the jail working /dev/urandom and /dev/random (chrootcheck fix JAIL), or let its "
    "seccomp filter allow getrandom; then restart the service before the time the finding "
    "gives (a restart reseeds it outside the jail, which only postpones the failure).",
    stage=Stage.LIVE,
)


# --- the whole catalogue ------------------------------------------------------------------


def _collect(namespace: Mapping[str, object]) -> tuple[Check, ...]:
    checks = sorted((v for v in namespace.values() if isinstance(v, Check)), key=lambda c: c.id)
    for key in ("id", "name"):
        values = [getattr(c, key) for c in checks]
        if len(set(values)) != len(values):
            raise RuntimeError(f"the check catalogue repeats a {key}")
    return tuple(checks)


# Every check, in id order.
ALL: tuple[Check, ...] = _collect(globals())
# The check of a finding, by its id (a finding read back from JSON may name an unknown one).
CHECKS: Mapping[str, Check] = MappingProxyType({c.id: c for c in ALL})


def get(check_id: str) -> Check:
    """The check with this public id (KeyError if there is none)."""
    return CHECKS[check_id]


def in_stage(stage: Stage) -> tuple[Check, ...]:
    """The checks a stage produces, in id order: all skipped when the stage did not run."""
    return tuple(c for c in ALL if c.stage is stage)


# --- named sets: the groups of checks that code decides on ----------------------------------


@dataclass(frozen=True)
class CheckSet:
    """A named group of checks. ``finding.check in SET`` tests a finding's id."""

    name: str
    meaning: str  # one line, for docs/checks.md
    checks: tuple[Check, ...]

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(c.id for c in self.checks)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Check):
            return item in self.checks
        return any(c.id == item for c in self.checks)

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks)


SEED_SOURCE_MISSING = CheckSet(
    "seed-source-missing",
    "OpenSSL's OS seed source (the device nodes) is missing in the jail. These are lowered to "
    "a warning when openssl.cnf seeds without the OS (seed = JITTER), and to info when the "
    "systemd unit brings its own /dev (PrivateDevices=yes).",
    (DEV_MISSING, URANDOM_MISSING, RANDOM_MISSING),
)
EXPLAINS_RESEED_FAILURE = CheckSet(
    "explains-reseed-failure",
    "A static finding that explains a reseed failing (or hanging) inside the jail: the probe "
    "names these as the cause of a failed scenario, and reports CC200/CC201 only when none "
    "is found.",
    (
        DEV_MISSING,
        URANDOM_MISSING,
        RANDOM_MISSING,
        NODE_REGULAR_FILE,
        NODE_FIFO,
        NODE_SOCKET,
        NODE_DIRECTORY,
        NODE_SYMLINK_DANGLING,
        NODE_SYMLINK_LOOP,
        NODE_BLOCK_DEVICE,
        NODE_PATH_BLOCKED,
        DEVICE_WRONG_NUMBERS,
        DEVICE_NULL_OR_ZERO,
        NOT_READABLE_BY_USER,
        NOT_READABLE_BY_OTHERS,
        NODEV_MOUNT,
    ),
)
FAKE_NODE = CheckSet(
    "fake-node",
    "A node is there but gives fixed or no bytes: a reseed that reads it 'succeeds' with "
    "predictable entropy, so the probe counts a pass through it (at severity error or worse) "
    "as a failure.",
    (NODE_REGULAR_FILE, DEVICE_WRONG_NUMBERS, DEVICE_NULL_OR_ZERO),
)
FOUND_BY_WALK = CheckSet(
    "found-by-walk",
    "What the walk of the whole jail meets beyond the entropy devices: the inventory part of "
    "the inspect stage, which a scan without the walk (ScanOptions.walk) does not make.",
    (OTHER_DEVICE, OTHER_SOCKET, OTHER_FIFO, LIBCRYPTO_COPY, UNREADABLE_FOLDER),
)
# Every named set, for docs/checks.md.
SETS: tuple[CheckSet, ...] = (
    SEED_SOURCE_MISSING,
    EXPLAINS_RESEED_FAILURE,
    FAKE_NODE,
    FOUND_BY_WALK,
)

# The "missing" check of each entropy device.
DEVICE_MISSING: Mapping[Device, Check] = MappingProxyType(
    {URANDOM: URANDOM_MISSING, RANDOM: RANDOM_MISSING}
)
