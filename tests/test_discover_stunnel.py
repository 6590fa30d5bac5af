"""discover: stunnel (its global options, include folders, foreground, the systemd template)
and the daemon profile each discovered jail carries (issue 11)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from chrootcheck.discover import discover, scan_targets
from tests.conftest import Result
from tests.test_discover import DEBIAN_HAPROXY, DEBIAN_HAPROXY_UNIT, DEBIAN_MASTER_CF, write

# Debian's /usr/share/doc/stunnel4/examples/stunnel.conf-sample, its global part.
DEBIAN_STUNNEL = """\
; **************************************************************************
; * Global options                                                         *
; **************************************************************************
; It is recommended to drop root privileges if stunnel is started by root
setuid = stunnel4
setgid = stunnel4

; Some performance tunings
socket = l:TCP_NODELAY=1
chroot = /var/lib/stunnel4/
pid = /stunnel4.pid
foreground = yes

[https]
accept  = 443
connect = 80
; chroot here is a service option: not the jail
chroot = /elsewhere
"""


def test_stunnel_foreground(tmp_path: Path) -> None:
    write(tmp_path, "/etc/stunnel/web.conf", DEBIAN_STUNNEL)
    (tmp_path / "var/lib/stunnel4").mkdir(parents=True)
    [j] = discover(str(tmp_path))
    assert (j.path, j.daemon, j.user, j.line) == ("/var/lib/stunnel4/", "stunnel", "stunnel4", 10)
    assert j.source_file == "/etc/stunnel/web.conf" and j.exists
    assert j.profile == "stunnel:foreground"
    assert j.note == "foreground = yes: one thread per connection"


def test_stunnel_daemon_mode_include_and_template(tmp_path: Path) -> None:
    write(tmp_path, "/etc/stunnel/a.conf", "include = /etc/stunnel/parts\n[svc]\naccept = 1\n")
    write(tmp_path, "/etc/stunnel/parts/00-global.conf", "chroot = /srv/st\nsetuid = st\n")
    write(tmp_path, "/etc/stunnel/parts/01-more.conf", "; nothing\nforeground = no\n")
    write(tmp_path, "/etc/stunnel/plain.txt", "chroot = /not/a/conf\n")  # not *.conf
    write(tmp_path, "/lib/systemd/system/stunnel@.service", "[Service]\nExecStart=/x\n")
    [j] = discover(str(tmp_path))
    assert (j.path, j.user, j.source_file, j.line) == (
        "/srv/st",
        "st",
        "/etc/stunnel/parts/00-global.conf",
        1,
    )
    assert j.profile == "stunnel:daemon"
    assert j.note == (
        "foreground = no: forks after the chroot; stunnel@.service can run it as stunnel@a "
        "(which needs foreground = yes)"
    )


def test_stunnel_include_cycle_and_no_chroot(tmp_path: Path) -> None:
    write(tmp_path, "/etc/stunnel/loop.conf", "include = /etc/stunnel/d\n")
    write(tmp_path, "/etc/stunnel/d/x", "include = /etc/stunnel/d\n")
    assert discover(str(tmp_path)) == []


def test_profiles_attached(tmp_path: Path) -> None:
    write(tmp_path, "/etc/haproxy/haproxy.cfg", DEBIAN_HAPROXY)
    [j] = discover(str(tmp_path))
    assert j.profile == "haproxy:single process"
    write(tmp_path, "/lib/systemd/system/haproxy.service", DEBIAN_HAPROXY_UNIT)
    write(tmp_path, "/etc/postfix/master.cf", DEBIAN_MASTER_CF)
    write(tmp_path, "/etc/debian_version", "12.8\n")
    (tmp_path / "var/lib/haproxy").mkdir(parents=True)
    (tmp_path / "var/spool/postfix").mkdir(parents=True)
    found = {j.daemon: j.profile for j in discover(str(tmp_path))}
    assert found == {"haproxy": "haproxy:master-worker", "postfix": "postfix:smtpd"}
    targets, _ = scan_targets(str(tmp_path))
    assert sorted(t.profile or "" for t in targets) == ["haproxy:master-worker", "postfix:smtpd"]


@pytest.mark.parametrize(("column", "dash_note"), [("y", False), ("-", True)])
def test_postfix_dash_note_only_with_a_dash(tmp_path: Path, column: str, dash_note: bool) -> None:
    write(tmp_path, "/etc/debian_version", "12.8\n")
    write(tmp_path, "/etc/postfix/master.cf", f"smtp inet n - {column} - - smtpd\n")
    [j] = discover(str(tmp_path))
    assert j.note is not None and ("'-' counts as y" in j.note) == dash_note


def test_cli_shows_the_profile(tmp_path: Path, cli: Callable[..., Result]) -> None:
    write(tmp_path, "/etc/stunnel/web.conf", DEBIAN_STUNNEL)
    r = cli("discover", "--root", str(tmp_path), "--format", "json")
    assert r.code == 0, r
    data = json.loads(r.stdout)
    assert data["schema_version"] == "1.4"
    assert data["jails"][0]["profile"] == "stunnel:foreground"
    r = cli("discover", "--root", str(tmp_path))
    assert "stunnel:foreground" in r.stdout
