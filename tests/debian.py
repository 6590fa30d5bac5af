"""Debian packages the tests need, installed on demand (as root) so that the README's test
command stays the whole set-up on a fresh machine.

``apt-get install --no-upgrade``: never move an installed package (libssl3 above all) to another
version as a side effect. Under ``CI`` a package that cannot be had fails the test; elsewhere
it skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.locks import held

_updated = False


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def install(package: str) -> str | None:
    """Install ``package`` if it is missing; None when done, else why it could not be."""
    global _updated
    if os.geteuid() != 0:
        return "installing Debian packages needs root"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    with held("apt"):  # one apt-get at a time across the run's worker processes
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


def tool(command: str, package: str | None = None) -> str:
    """The path of ``command``, installing its Debian package first if it is missing."""
    path = shutil.which(command)
    if path is None:
        why = install(package or command)
        path = shutil.which(command)
        if path is None:
            reason = why or f"{package or command} installed, but no {command} on PATH"
            if os.environ.get("CI"):
                pytest.fail(f"{command} is needed: {reason}")
            pytest.skip(f"{command} is not available: {reason}")
    return path
