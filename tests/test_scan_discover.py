"""`scan --discover`: every configured jail is scanned, with the user its daemon runs as."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result, good_jail

Cli = Callable[..., Result]

HAPROXY = """\
global
\tchroot /var/lib/haproxy
\tuser {user}
\tgroup {user}
\tdaemon

defaults
\tmode http
"""

SYSTEMD_UNIT = """\
[Service]
ExecStart=/usr/sbin/mydaemon
RootDirectory=/srv/sealed
PrivateDevices=yes
"""


def fake_host(root: Path, user: str) -> Path:
    (root / "etc" / "haproxy").mkdir(parents=True)
    (root / "etc" / "haproxy" / "haproxy.cfg").write_text(HAPROXY.format(user=user))
    jail = root / "var" / "lib" / "haproxy"
    (jail / "dev").mkdir(parents=True)  # Debian ships the jail with an empty dev/
    return jail


def jails_by_path(r: Result) -> dict[str, dict[str, object]]:
    return {j["jail"]: j for j in json.loads(r.stdout)["jails"]}


def test_discovered_haproxy_jail_is_scanned(tmp_path: Path, cli: Cli) -> None:
    jail = fake_host(tmp_path, "nobody")
    r = cli(
        "scan", "--discover", "--discover-root", str(tmp_path), "--no-probe", "--format", "json"
    )
    assert r.code == 1, r
    found = jails_by_path(r)
    assert list(found) == [str(jail)]
    checks = {f["check"] for f in found[str(jail)]["findings"]}  # type: ignore[union-attr]
    assert {"CC101", "CC102"} <= checks
    notices = " ".join(n["message"] for n in found[str(jail)]["notices"])  # type: ignore[union-attr]
    assert "haproxy" in notices


@pytest.mark.root
def test_discovered_jail_is_checked_for_the_daemons_user(tmp_path: Path, cli: Cli) -> None:
    jail = good_jail(fake_host(tmp_path, "nobody"))
    os.chmod(jail / "dev" / "urandom", 0o600)  # root only: the daemon's user cannot read it
    r = cli(
        "scan", "--discover", "--discover-root", str(tmp_path), "--no-probe", "--format", "json"
    )
    assert r.code == 1, r
    findings = jails_by_path(r)[str(jail)]["findings"]
    by_check = {f["check"]: f for f in findings}  # type: ignore[union-attr]
    assert "CC130" in by_check  # evaluated for nobody, from haproxy.cfg's `user`
    assert "nobody" in by_check["CC130"]["message"]


def test_unknown_user_from_the_config_is_a_note_not_an_error(tmp_path: Path, cli: Cli) -> None:
    jail = fake_host(tmp_path, "no-such-user-on-this-host")
    r = cli(
        "scan", "--discover", "--discover-root", str(tmp_path), "--no-probe", "--format", "json"
    )
    assert r.code == 1, r  # findings, not a tool error
    notices = jails_by_path(r)[str(jail)]["notices"]
    assert any("no-such-user-on-this-host" in n["message"] for n in notices)  # type: ignore[union-attr]


def test_private_devices_unit_does_not_fail_on_device_findings(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "etc" / "systemd" / "system").mkdir(parents=True)
    (tmp_path / "etc" / "systemd" / "system" / "mydaemon.service").write_text(SYSTEMD_UNIT)
    sealed = tmp_path / "srv" / "sealed"
    sealed.mkdir(parents=True)  # no /dev at all: PrivateDevices=yes brings its own
    r = cli(
        "scan",
        "--discover",
        "--discover-root",
        str(tmp_path),
        "--no-probe",
        "--no-late-loads",
        "--format",
        "json",
    )
    assert r.code == 0, r
    findings = jails_by_path(r)[str(sealed)]["findings"]
    device = [f for f in findings if f["check"] in ("CC100", "CC101", "CC102")]  # type: ignore[index]
    assert device and all(f["severity"] == "info" for f in device)  # type: ignore[index]
    assert all("PrivateDevices" in f["message"] for f in device)  # type: ignore[index]


def test_discover_needs_nothing_else_but_jails_or_the_flag(cli: Cli) -> None:
    r = cli("scan")
    assert r.code == 2
    assert "--discover" in r.stderr
