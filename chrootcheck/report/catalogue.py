"""The catalogue of checks: stable ids, default severity and the text every format shows.

Ids never change meaning once released (CI users suppress and track them). Ranges:
CC1xx the entropy devices, CC15x EGD, CC16x-CC19x what the walk meets, CC2xx the probe,
CC3xx files OpenSSL loads late (config, engines, providers, PKCS#11 modules).
docs/checks.md documents every id; SARIF rules link to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chrootcheck.report.model import Finding, Severity, frozen_map

DOCS_URL = "https://github.com/chrootcheck/chrootcheck/blob/main/docs/checks.md"


@dataclass(frozen=True)
class Check:
    id: str
    name: str  # kebab-case slug, also the anchor in docs/checks.md
    severity: Severity
    title: str  # one line
    why: str  # why it matters, for help texts
    remediation: str

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
        return Finding(
            check=self.id,
            severity=severity or self.severity,
            path=path,
            message=message,
            remediation=remediation or self.remediation,
            details=frozen_map(details),
        )


_MKNOD = (
    "mkdir -p JAIL/dev && mknod -m 0666 JAIL/dev/urandom c 1 9 && "
    "mknod -m 0666 JAIL/dev/random c 1 8"
    " (or: chrootcheck fix JAIL --mknod; --bind on nodev file systems)"
)

CHECKS: dict[str, Check] = {}


def _register(*checks: Check) -> None:
    for c in checks:
        assert c.id not in CHECKS, c.id
        CHECKS[c.id] = c


_register(
    Check(
        "CC100",
        "dev-missing",
        Severity.ERROR,
        "/dev is missing in the jail",
        "Without /dev there is no /dev/urandom: once getrandom(2) is unavailable (old kernel, "
        "seccomp sandbox, another libcrypto) OpenSSL cannot reseed after the chroot.",
        _MKNOD,
    ),
    Check(
        "CC101",
        "urandom-missing",
        Severity.ERROR,
        "/dev/urandom is missing in the jail",
        "OpenSSL's device seed source opens /dev/urandom first. Seeded before the chroot, the "
        "process runs until the first reseed (at the latest an hour), then every new TLS "
        "connection fails with a misleading 'malloc failure' or 'error retrieving entropy'.",
        _MKNOD,
    ),
    Check(
        "CC102",
        "random-missing",
        Severity.ERROR,
        "/dev/random is missing in the jail",
        "OpenSSL 1.1.1d+ waits on /dev/random before trusting /dev/urandom on kernels older "
        "than 4.8, and falls back to it when /dev/urandom cannot be opened.",
        _MKNOD,
    ),
    Check(
        "CC110",
        "node-regular-file",
        Severity.CRITICAL,
        "an entropy device is a regular file",
        "An empty file gives no entropy at all; a file with content gives the same 'random' "
        "bytes to every process that reads it: predictable keys and nonces.",
        "Move the file aside and create the real node: mknod -m 0666 JAIL/dev/urandom c 1 9",
    ),
    Check(
        "CC111",
        "node-fifo",
        Severity.CRITICAL,
        "an entropy device is a FIFO",
        "Opening a FIFO blocks until a writer appears, and whoever writes to it chooses the "
        "'entropy': the service hangs or uses attacker-chosen bytes.",
        "Remove the FIFO and create the real character device (chrootcheck fix --replace).",
    ),
    Check(
        "CC112",
        "node-socket",
        Severity.ERROR,
        "an entropy device is a socket",
        "open(2) on a socket fails with ENXIO: OpenSSL gets no entropy from it.",
        "Move the socket aside and create the real character device.",
    ),
    Check(
        "CC113",
        "node-directory",
        Severity.ERROR,
        "an entropy device is a directory",
        "A directory cannot be read as a device: OpenSSL gets no entropy from it.",
        "Move the directory aside and create the real character device.",
    ),
    Check(
        "CC114",
        "node-symlink-dangling",
        Severity.ERROR,
        "an entropy device is a symlink that dangles inside the jail",
        "Symlinks are resolved inside the jail after chroot: an absolute target such as "
        "/host/dev/urandom points at a path the jail does not have.",
        "Replace the symlink with the device node itself (symlinks to host paths never work "
        "after chroot).",
    ),
    Check(
        "CC115",
        "node-symlink-loop",
        Severity.ERROR,
        "an entropy device is a symlink loop inside the jail",
        "open(2) fails with ELOOP: OpenSSL gets no entropy from it.",
        "Replace the symlink with the device node itself.",
    ),
    Check(
        "CC116",
        "node-block-device",
        Severity.ERROR,
        "an entropy device is a block device",
        "A block device in place of /dev/urandom reads a disk, not the kernel's CSPRNG.",
        "Move it aside and create the character device c 1:9 (urandom) or c 1:8 (random).",
    ),
    Check(
        "CC117",
        "node-path-blocked",
        Severity.ERROR,
        "a folder on the way to an entropy device is not a folder",
        "A component of the path (for example /dev) is a file or a dangling link, so the "
        "device path cannot exist inside the jail.",
        "Move the file aside, create the folder and the device nodes.",
    ),
    Check(
        "CC118",
        "node-changing",
        Severity.WARNING,
        "an entropy device kept changing while it was checked",
        "Something in the jail replaced the node (or a folder or symlink on its way) again and "
        "again during the scan, so chrootcheck could not see what a process would open: it is "
        "not verified.",
        "Scan again when nothing rewrites the jail; find what replaces the node.",
    ),
    Check(
        "CC120",
        "device-wrong-numbers",
        Severity.ERROR,
        "an entropy device has the wrong device numbers",
        "Linux's random is c 1:8 and urandom c 1:9; another character device reads whatever "
        "that driver gives, which is not the kernel's CSPRNG.",
        "Recreate the node with the right numbers: mknod -m 0666 JAIL/dev/urandom c 1 9",
    ),
    Check(
        "CC121",
        "device-null-or-zero",
        Severity.CRITICAL,
        "an entropy device is /dev/null or /dev/zero",
        "/dev/null reads 0 bytes (no entropy) and /dev/zero reads zeros: keys made from it "
        "are predictable.",
        "Recreate the node with the right numbers: mknod -m 0666 JAIL/dev/urandom c 1 9",
    ),
    Check(
        "CC130",
        "not-readable-by-user",
        Severity.ERROR,
        "the service's user cannot open the entropy device",
        "After dropping privileges the service opens the device as --user: without read "
        "permission on the node (or search permission on a folder above it) open fails "
        "with EACCES.",
        "chmod 0666 JAIL/dev/urandom JAIL/dev/random (and chmod o+x on the folders above)",
    ),
    Check(
        "CC131",
        "not-readable-by-others",
        Severity.WARNING,
        "the entropy device is not readable by other users",
        "A service that drops privileges to an unprivileged user cannot open it; pass "
        "--user to check for the service's real user.",
        "chmod 0666 JAIL/dev/urandom JAIL/dev/random",
    ),
    Check(
        "CC140",
        "nodev-mount",
        Severity.ERROR,
        "the entropy device lies on a file system mounted nodev",
        "On a nodev mount a correct device node cannot be opened (EACCES): it looks right "
        "and fails at run time.",
        "Bind-mount the host's nodes onto the jail (chrootcheck fix JAIL --bind) or remount "
        "without nodev.",
    ),
    Check(
        "CC141",
        "readonly-mount",
        Severity.INFO,
        "the jail's /dev lies on a read-only file system",
        "Nodes cannot be created there: a fix needs a bind mount or a remount read-write.",
        "Use chrootcheck fix JAIL --bind, or remount read-write to create the nodes.",
    ),
    Check(
        "CC150",
        "egd-socket-live",
        Severity.INFO,
        "an EGD daemon answers in the jail",
        "OpenSSL built with --with-rand-seed=egd reads entropy from this socket.",
        "Nothing to do; keep the daemon running.",
    ),
    Check(
        "CC151",
        "egd-socket-dead",
        Severity.WARNING,
        "an EGD socket in the jail has no daemon behind it",
        "A socket file copied into a jail, or left by a stopped daemon, refuses connections: "
        "an EGD build of OpenSSL gets no entropy from it.",
        "Start the EGD/PRNGD daemon with its socket inside the jail, or remove the stale "
        "socket file and rely on /dev/urandom.",
    ),
    Check(
        "CC152",
        "egd-path-not-socket",
        Severity.WARNING,
        "an EGD path in the jail is not a socket",
        "OpenSSL connects to this path as a Unix socket; anything else gives no entropy.",
        "Remove it, or run the EGD daemon with its socket at this path.",
    ),
    Check(
        "CC160",
        "other-device",
        Severity.INFO,
        "a device node in the jail",
        "Listed so that unexpected devices in a jail do not go unnoticed.",
        "Remove device nodes the service does not need.",
    ),
    Check(
        "CC161",
        "other-socket",
        Severity.INFO,
        "a Unix socket in the jail",
        "Listed so that stale or unexpected sockets do not go unnoticed.",
        "Nothing to do if the service uses it.",
    ),
    Check(
        "CC162",
        "other-fifo",
        Severity.INFO,
        "a FIFO in the jail",
        "Listed so that unexpected FIFOs do not go unnoticed.",
        "Nothing to do if the service uses it.",
    ),
    Check(
        "CC170",
        "libcrypto-copy",
        Severity.INFO,
        "a copy of libcrypto in the jail",
        "The service may load this libcrypto after the chroot; the probe can test it with "
        "--libcrypto (loading code from the jail needs your explicit consent).",
        "Nothing to do; probe it with chrootcheck scan --libcrypto JAIL/PATH.",
    ),
    Check(
        "CC180",
        "unreadable-folder",
        Severity.WARNING,
        "a folder in the jail could not be read",
        "The walk could not look inside it, so the report may miss nodes there.",
        "Check the folder's permissions; run chrootcheck as root.",
    ),
)


def get(check_id: str) -> Check:
    return CHECKS[check_id]


def register(*checks: Check) -> None:
    """For the probe and the late-load checks, which add their own ids."""
    _register(*checks)
