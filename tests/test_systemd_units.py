"""The systemd units shipped as package data: verified by systemd-analyze, and their command
line runs."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, ROOT

UNITS = ROOT / "chrootcheck" / "data" / "systemd"
SERVICE = UNITS / "chrootcheck-textfile.service"
TIMER = UNITS / "chrootcheck-textfile.timer"


@pytest.fixture(scope="session")
def systemd_analyze() -> Iterator[str]:
    """systemd-analyze, from Debian's systemd package when missing (verify needs no running
    systemd). Fails under CI when it cannot be had; skips elsewhere."""
    found = shutil.which("systemd-analyze")
    if not found:
        r = subprocess.run(
            ["apt-get", "install", "-y", "--no-upgrade", "systemd"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        found = shutil.which("systemd-analyze")
        if not found:
            message = f"systemd-analyze unavailable: {r.stderr.strip()[-300:]}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
    yield found


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def verify(tool: str, root: Path, *units: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify inside a throw-away root: the system's own units (for
    sysinit.target and friends) and a chrootcheck on the unit's search path."""
    (root / "usr" / "lib" / "systemd").mkdir(parents=True, exist_ok=True)
    if not (root / "usr" / "lib" / "systemd" / "system").exists():
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    system = root / "etc" / "systemd" / "system"
    system.mkdir(parents=True, exist_ok=True)
    names = []
    for u in units:
        shutil.copy(u, system / u.name)
        names.append(f"/etc/systemd/system/{u.name}")
    return subprocess.run(
        [tool, "verify", f"--root={root}", *names], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    bin_dir = root / "usr" / "local" / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "chrootcheck"
    exe.write_text('#!/bin/sh\nexec python3 -m chrootcheck "$@"\n')
    exe.chmod(0o755)
    return root


def test_units_verify_clean(systemd_analyze: str, fake_root: Path) -> None:
    r = verify(systemd_analyze, fake_root, SERVICE, TIMER)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r


def test_verify_catches_a_broken_unit(
    systemd_analyze: str, fake_root: Path, tmp_path: Path
) -> None:
    # The check above can fail: a typo in a key or a missing executable is reported.
    broken = tmp_path / "broken.service"
    broken.write_text(SERVICE.read_text().replace("NoNewPrivileges=", "NoNewPrivilegez="))
    assert verify(systemd_analyze, fake_root, broken).stderr
    (fake_root / "usr" / "local" / "bin" / "chrootcheck").unlink()
    r = verify(systemd_analyze, fake_root, SERVICE)
    assert r.returncode != 0 and "not executable" in r.stderr, r


def test_the_service_writes_prometheus_into_the_textfile_folder(cli, tmp_path: Path) -> None:
    service = unit(SERVICE)["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "chrootcheck" and argv[1] == "scan" and "--discover" in argv
    out = argv[argv.index("-o") + 1]
    assert out == "/var/lib/prometheus/node-exporter/chrootcheck.prom"  # Debian's folder
    assert unit(SERVICE)["Unit"]["ConditionPathIsDirectory"] == str(Path(out).parent)
    # Run that very command line, into a temp textfile folder, on a host with no daemon configs.
    textfile = tmp_path / "node-exporter"
    textfile.mkdir()
    args = [a if a != out else str(textfile / "chrootcheck.prom") for a in argv[1:]]
    r = cli(*args, "--discover-root", str(tmp_path / "empty-etc"), "--no-probe")
    assert r.code == 2 and "--discover-root" in r.stderr, r  # the folder must exist ...
    (tmp_path / "empty-etc").mkdir()
    r = cli(*args, "--discover-root", str(tmp_path / "empty-etc"), "--no-probe")
    assert r.code in (0, 1), r  # ... and then findings, if any, are not a failure:
    assert service["SuccessExitStatus"] == "1"
    assert "chrootcheck_last_run_timestamp_seconds" in (textfile / "chrootcheck.prom").read_text()
    assert service["UMask"] == "0022"  # node_exporter runs as its own user


def test_hardening_stays_compatible_with_the_probe() -> None:
    service = unit(SERVICE)["Service"]
    # What the probe needs: root, chroot, setuid to the service's user, personality (the
    # old-kernel scenario), mount and IPC namespaces, and the host's view of mounts.
    assert "User" not in service and "DynamicUser" not in service
    for key in (
        "LockPersonality",
        "ProtectSystem",
        "ProtectHome",
        "PrivateDevices",
        "PrivateTmp",
        "ProtectClock",
        "DevicePolicy",
        "MemoryDenyWriteExecute",
        "CapabilityBoundingSet",
        "SystemCallFilter",
    ):
        assert key not in service, key
    assert set(service["RestrictNamespaces"].split()) == {"mnt", "ipc"}
    assert service["NoNewPrivileges"] == "yes"


def test_units_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["chrootcheck"]
    shipped = {p for g in globs for p in (ROOT / "chrootcheck").glob(g)}
    assert {SERVICE, TIMER} <= shipped
    timer = unit(TIMER)
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert timer["Timer"]["OnUnitActiveSec"]
