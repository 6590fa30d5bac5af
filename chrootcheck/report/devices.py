"""The devices OpenSSL reads entropy from, written once: paths and Linux device numbers.

Linux's numbers come from Documentation/admin-guide/devices.txt (major 1 is "memory
devices"). Every layer that needs them (the inspector, the fixer, ps, the decoder's advice, the
catalogue's remediations) takes them from here, and the ``mknod`` command line that creates
them is rendered by ``mknod_command`` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    """A character device at its usual path, with the numbers Linux gives it."""

    path: str
    major: int
    minor: int

    @property
    def name(self) -> str:
        """``urandom`` for ``/dev/urandom``."""
        return self.path.rsplit("/", 1)[1]

    @property
    def numbers(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def rdev(self) -> int:
        """As ``st_rdev`` holds it."""
        return os.makedev(self.major, self.minor)

    @property
    def spec(self) -> str:
        """``c 1:9``, as the findings and ``ls -l`` write it."""
        return f"c {self.major}:{self.minor}"


URANDOM = Device("/dev/urandom", 1, 9)
RANDOM = Device("/dev/random", 1, 8)
# OpenSSL's Linux seed devices, in the order it opens them (and the fixer creates them).
ENTROPY_DEVICES: tuple[Device, ...] = (URANDOM, RANDOM)

NULL = Device("/dev/null", 1, 3)
ZERO = Device("/dev/zero", 1, 5)
# The other memory devices, so that a finding can name what a wrong node really is.
MEMORY_DEVICES: tuple[Device, ...] = (
    Device("/dev/mem", 1, 1),
    NULL,
    Device("/dev/port", 1, 4),
    ZERO,
    Device("/dev/full", 1, 7),
    RANDOM,
    URANDOM,
    Device("/dev/kmsg", 1, 11),
)
_BY_NUMBERS = {d.numbers: d for d in MEMORY_DEVICES}


def known_device(major: int, minor: int) -> Device | None:
    """The memory device with these (character device) numbers, if Linux has one."""
    return _BY_NUMBERS.get((major, minor))


def mknod_command(*devices: Device, mkdir: bool = False, mode: int = 0o666) -> str:
    """The shell commands that create ``devices`` in a jail written ``JAIL``:
    ``mkdir -p JAIL/dev && mknod -m 0666 JAIL/dev/urandom c 1 9 && ...``."""
    steps = ["mkdir -p JAIL/dev"] if mkdir else []
    steps += [f"mknod -m {mode:04o} JAIL{d.path} c {d.major} {d.minor}" for d in devices]
    return " && ".join(steps)
