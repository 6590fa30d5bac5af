"""Debian packages the tests need, installed on demand (as root) so that the README's test
command stays the whole set-up on a fresh machine.

``apt-get install --no-upgrade``: never move an installed package (libssl3 above all) to another
version as a side effect. Under ``CI`` a package that cannot be had fails the test; elsewhere
it skips with the reason.

No package's service may start: a postinst that starts a daemon (Postfix on port 25) would
outlive the test. Where the machine has no ``/usr/sbin/policy-rc.d`` (Docker images have one),
one that answers 101 ("action forbidden", honoured by invoke-rc.d and deb-systemd-invoke) is
put there for the install and removed after it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.locks import held

_updated = False
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
NO_STARTS = "#!/bin/sh\n# chrootcheck's tests: no service starts during an install\nexit 101\n"


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@contextmanager
def _no_service_starts() -> Iterator[None]:
    """No service starts while packages are installed (the caller holds the apt lock)."""
    try:
        fd = os.open(POLICY_RC_D, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755)
    except FileExistsError:
        yield  # the machine's own policy stays as it is
        return
    try:
        with os.fdopen(fd, "w") as f:
            f.write(NO_STARTS)
        yield
    finally:
        POLICY_RC_D.unlink()


def install(package: str, preseed: str = "") -> str | None:
    """Install ``package`` if it is missing; None when done, else why it could not be.

    ``preseed``: debconf-set-selections lines answering the package's questions."""
    global _updated
    if os.geteuid() != 0:
        return "installing Debian packages needs root"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    # one apt-get at a time across the run's worker processes
    with held("apt"), _no_service_starts():
        if preseed and shutil.which("debconf-set-selections"):
            subprocess.run(
                ["debconf-set-selections"], input=preseed, text=True, capture_output=True,
                timeout=60, check=False,
            )  # fmt: skip
        done = _apt(
            "install", "-y", "--no-upgrade", "--no-install-recommends", package, timeout=600
        )
        if done.returncode != 0 and not _updated:
            _updated = True  # a fresh machine's package lists may be empty or stale
            _apt("update", timeout=600)
            done = _apt(
                "install", "-y", "--no-upgrade", "--no-install-recommends", package, timeout=600
            )
    if done.returncode != 0:
        return f"apt-get install {package} failed: {done.stderr.strip().splitlines()[-1:]}"
    return None


def tool(command: str, package: str | None = None, preseed: str = "") -> str:
    """The path of ``command``, installing its Debian package first if it is missing."""
    path = shutil.which(command)
    if path is None:
        why = install(package or command, preseed)
        path = shutil.which(command)
        if path is None:
            reason = why or f"{package or command} installed, but no {command} on PATH"
            if os.environ.get("CI"):
                pytest.fail(f"{command} is needed: {reason}")
            pytest.skip(f"{command} is not available: {reason}")
    return path
