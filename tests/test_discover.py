"""discover: each parser on config files written the way the packages ship them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from chrootcheck.discover import DiscoveredJail, discover, discover_with_notes, scan_targets
from tests.conftest import ROOT, Result

# Debian bookworm's /etc/haproxy/haproxy.cfg, as the package ships it.
DEBIAN_HAPROXY = """\
global
\tlog /dev/log\tlocal0
\tlog /dev/log\tlocal1 notice
\tchroot /var/lib/haproxy
\tstats socket /run/haproxy/admin.sock mode 660 level admin
\tstats timeout 30s
\tuser haproxy
\tgroup haproxy
\tdaemon

\t# Default SSL material locations
\tca-base /etc/ssl/certs
\tcrt-base /etc/ssl/private

\t# See: https://ssl-config.mozilla.org/#server=haproxy&server-version=2.0.3&config=intermediate
        ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384
        ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets

defaults
\tlog\tglobal
\tmode\thttp
\toption\thttplog
\toption\tdontlognull
        timeout connect 5000
\terrorfile 400 /etc/haproxy/errors/400.http
"""

DEBIAN_HAPROXY_UNIT = """\
[Unit]
Description=HAProxy Load Balancer
Documentation=man:haproxy(1)
After=network-online.target rsyslog.service
Wants=network-online.target

[Service]
EnvironmentFile=-/etc/default/haproxy
EnvironmentFile=-/etc/sysconfig/haproxy
BindReadOnlyPaths=/dev/log:/var/lib/haproxy/dev/log
Environment="CONFIG=/etc/haproxy/haproxy.cfg" "PIDFILE=/run/haproxy.pid" \
"EXTRAOPTS=-S /run/haproxy-master.sock"
ExecStart=/usr/sbin/haproxy -Ws -f $CONFIG -p $PIDFILE $EXTRAOPTS
ExecReload=/usr/sbin/haproxy -Ws -f $CONFIG -c -q $EXTRAOPTS
ExecReload=/bin/kill -USR2 $MAINPID
KillMode=mixed
Restart=always
SuccessExitStatus=143
Type=notify

[Install]
WantedBy=multi-user.target
"""


def write(root: Path, path: str, text: str) -> Path:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def by_daemon(jails: list[DiscoveredJail], daemon: str) -> list[DiscoveredJail]:
    return [j for j in jails if j.daemon == daemon]


# -- haproxy -----------------------------------------------------------------------------------


def test_haproxy_debian(tmp_path: Path) -> None:
    write(tmp_path, "/etc/haproxy/haproxy.cfg", DEBIAN_HAPROXY)
    (tmp_path / "var/lib/haproxy/dev").mkdir(parents=True)  # Debian's empty dev/
    [j] = discover(str(tmp_path))
    assert (j.path, j.daemon, j.user, j.line) == ("/var/lib/haproxy", "haproxy", "haproxy", 4)
    assert j.source_file == "/etc/haproxy/haproxy.cfg"
    assert j.exists is True
    assert j.note is None


def test_haproxy_master_worker_from_unit(tmp_path: Path) -> None:
    write(tmp_path, "/etc/haproxy/haproxy.cfg", DEBIAN_HAPROXY)
    write(tmp_path, "/lib/systemd/system/haproxy.service", DEBIAN_HAPROXY_UNIT)
    [j] = by_daemon(discover(str(tmp_path)), "haproxy")
    assert j.note and "master-worker" in j.note


def test_haproxy_chroot_outside_global_ignored(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/etc/haproxy/haproxy.cfg",
        "global\n\tdaemon\n#\tchroot /commented\ndefaults\n\tchroot /not/global\n",
    )
    assert discover(str(tmp_path)) == []


# -- unbound -----------------------------------------------------------------------------------

DEBIAN_UNBOUND = """\
# Unbound configuration file for Debian.
#
# See the unbound.conf(5) man page.
#
# See /usr/share/doc/unbound/examples/unbound.conf for a commented
# reference config file.
#
# The following line includes additional configuration files from the
# /etc/unbound/unbound.conf.d directory.
include-toplevel: "/etc/unbound/unbound.conf.d/*.conf"
"""


def test_unbound_debian_without_chroot(tmp_path: Path) -> None:
    write(tmp_path, "/etc/unbound/unbound.conf", DEBIAN_UNBOUND)
    write(
        tmp_path,
        "/etc/unbound/unbound.conf.d/root-auto-trust-anchor-file.conf",
        "server:\n    # The following line will configure unbound to perform "
        'cryptographic\n    auto-trust-anchor-file: "/var/lib/unbound/root.key"\n',
    )
    assert discover(str(tmp_path)) == []


def test_unbound_chroot_in_conf_d(tmp_path: Path) -> None:
    write(tmp_path, "/etc/unbound/unbound.conf", DEBIAN_UNBOUND)
    write(
        tmp_path,
        "/etc/unbound/unbound.conf.d/chroot.conf",
        'server:\n\tverbosity: 1\n\tchroot: "/etc/unbound"\n\tusername: "unbound"\n'
        "remote-control:\n\tcontrol-enable: yes\n",
    )
    [j] = discover(str(tmp_path))
    assert (j.path, j.daemon, j.user, j.line) == ("/etc/unbound", "unbound", "unbound", 3)
    assert j.source_file == "/etc/unbound/unbound.conf.d/chroot.conf"


def test_unbound_empty_chroot_disables(tmp_path: Path) -> None:
    write(tmp_path, "/etc/unbound/unbound.conf", 'server:\n  chroot: ""\n')
    assert discover(str(tmp_path)) == []


def test_unbound_default_user(tmp_path: Path) -> None:
    write(tmp_path, "/etc/unbound/unbound.conf", "server:\n  chroot: /var/lib/unbound\n")
    [j] = discover(str(tmp_path))
    assert j.user == "unbound" and j.note and "default" in j.note


# -- BIND --------------------------------------------------------------------------------------


def test_bind_debian_defaults(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/etc/default/named",
        "#\n# run resolvconf?\nRESOLVCONF=no\n\n# startup options for the server\n"
        'OPTIONS="-u bind -t /var/bind9/chroot"\n',
    )
    [j] = discover(str(tmp_path))
    assert (j.path, j.daemon, j.user, j.line) == ("/var/bind9/chroot", "named", "bind", 6)


def test_bind_debian_defaults_without_chroot(tmp_path: Path) -> None:
    write(tmp_path, "/etc/default/named", 'RESOLVCONF=no\nOPTIONS="-u bind"\n')
    assert discover(str(tmp_path)) == []


def test_bind_old_bind9_defaults_attached_flag(tmp_path: Path) -> None:
    write(tmp_path, "/etc/default/bind9", 'OPTIONS="-u bind -t/var/lib/named"\n')
    [j] = discover(str(tmp_path))
    assert (j.path, j.source_file) == ("/var/lib/named", "/etc/default/bind9")


def test_bind_redhat_chroot_unit(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/usr/lib/systemd/system/named-chroot.service",
        """\
[Unit]
Description=Berkeley Internet Name Domain (DNS)
Wants=nss-lookup.target
Before=nss-lookup.target
After=network.target

[Service]
Type=forking
Environment=NAMEDCONF=/etc/named.conf
EnvironmentFile=-/etc/sysconfig/named
Environment=KRB5_KTNAME=/etc/named.keytab
PIDFile=/var/named/chroot/run/named/named.pid

ExecStartPre=/bin/bash -c 'if [ ! "$DISABLE_ZONE_CHECKING" == "yes" ]; then \
/usr/sbin/named-checkconf -t /var/named/chroot -z "$NAMEDCONF"; fi'
ExecStart=/usr/sbin/named -u named -c ${NAMEDCONF} -t /var/named/chroot $OPTIONS
""",
    )
    [j] = by_daemon(discover(str(tmp_path)), "named")
    assert (j.path, j.user, j.line) == ("/var/named/chroot", "named", 15)


# -- Postfix -----------------------------------------------------------------------------------

DEBIAN_MASTER_CF = """\
#
# Postfix master process configuration file.  For details on the format
# of the file, see the master(5) manual page (command: "man 5 master" or
# on-line: http://www.postfix.org/master.5.html).
#
# Do not forget to execute "postfix reload" after editing this file.
#
# ==========================================================================
# service type  private unpriv  chroot  wakeup  maxproc command + args
#               (yes)   (yes)   (no)    (never) (100)
# ==========================================================================
smtp      inet  n       -       y       -       -       smtpd
#smtp      inet  n       -       y       -       1       postscreen
#smtpd     pass  -       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       y       1000?   1       tlsmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
maildrop  unix  -       n       n       -       -       pipe
  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}
"""

UPSTREAM_MASTER_CF = """\
smtp      inet  n       -       -       -       -       smtpd
pickup    unix  n       -       -       60      1       pickup
local     unix  -       n       n       -       -       local
"""


def test_postfix_debian(tmp_path: Path) -> None:
    write(tmp_path, "/etc/postfix/master.cf", DEBIAN_MASTER_CF)
    write(
        tmp_path,
        "/etc/postfix/main.cf",
        "smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)\nbiff = no\n"
        "readme_directory = no\ncompatibility_level = 3.6\n",
    )
    [j] = discover(str(tmp_path))
    assert (j.path, j.daemon, j.user, j.line) == ("/var/spool/postfix", "postfix", "postfix", 12)
    assert j.note and "smtp" in j.note and "tlsmgr" in j.note and "qmgr" not in j.note


def test_postfix_dash_means_y_only_on_debian(tmp_path: Path) -> None:
    write(tmp_path, "/etc/postfix/master.cf", UPSTREAM_MASTER_CF)
    write(
        tmp_path,
        "/etc/postfix/main.cf",
        "spool = /srv/spool\nqueue_directory = ${spool}/postfix\nmail_owner = pfx\n",
    )
    assert discover(str(tmp_path)) == []  # upstream: '-' is n
    write(tmp_path, "/etc/debian_version", "12.8\n")
    [j] = discover(str(tmp_path))
    assert (j.path, j.user) == ("/srv/spool/postfix", "pfx")


# -- OpenSSH -----------------------------------------------------------------------------------

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
alice:x:1001:1001:Alice:/home/alice:/bin/bash
bob:x:1002:2000:Bob:/srv/homes/bob:/usr/sbin/nologin
carol:x:1003:1003:Carol:/jail/carol:/bin/sh
"""
GROUP = "root:x:0:\nalice:x:1001:\nsftponly:x:2000:alice\ncarol:x:1003:\n"

DEBIAN_SSHD = """\

# This is the sshd server system-wide configuration file.  See
# sshd_config(5) for more information.

Include /etc/ssh/sshd_config.d/*.conf

#PermitRootLogin prohibit-password
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*

# override default of no subsystems
Subsystem\tsftp\t/usr/lib/openssh/sftp-server

# Example of overriding settings on a per-user basis
#Match User anoncvs
#\tX11Forwarding no
#\tAllowTcpForwarding no
#\tPermitTTY no
#\tForceCommand cvs server
Match Group sftponly
\tChrootDirectory /srv/sftp/%u
\tForceCommand internal-sftp
\tAllowTcpForwarding no
Match User carol
\tChrootDirectory %h
Match User carol,alice Address 10.0.0.0/8
\tChrootDirectory=/srv/100%%/%U
Match Address 192.168.0.0/16
\tChrootDirectory /srv/net/%u
"""


@pytest.fixture
def sshd_root(tmp_path: Path) -> Path:
    write(tmp_path, "/etc/passwd", PASSWD)
    write(tmp_path, "/etc/group", GROUP)
    write(tmp_path, "/etc/ssh/sshd_config", DEBIAN_SSHD)
    write(tmp_path, "/etc/ssh/sshd_config.d/00-none.conf", "ChrootDirectory none\n")
    return tmp_path


def test_sshd_match_group_expands_members(sshd_root: Path) -> None:
    jails = [j for j in discover(str(sshd_root)) if j.line == 24]
    # sftponly: alice is a listed member, bob has it as his primary group.
    assert [(j.path, j.user) for j in jails] == [
        ("/srv/sftp/alice", "alice"),
        ("/srv/sftp/bob", "bob"),
    ]


def test_sshd_match_user_home(sshd_root: Path) -> None:
    [j] = [j for j in discover(str(sshd_root)) if j.line == 28]
    assert (j.path, j.user) == ("/jail/carol", "carol")


def test_sshd_percent_and_uid_with_extra_criteria(sshd_root: Path) -> None:
    jails = [j for j in discover(str(sshd_root)) if j.line == 30]
    assert [(j.path, j.user) for j in jails] == [
        ("/srv/100%/1001", "alice"),
        ("/srv/100%/1003", "carol"),
    ]
    assert all(j.note and "address 10.0.0.0/8" in j.note for j in jails)


def test_sshd_unknown_users_stay_unexpanded(sshd_root: Path) -> None:
    [j] = [j for j in discover(str(sshd_root)) if j.line == 32]
    assert (j.path, j.user, j.exists) == ("/srv/net/%u", None, False)
    assert j.note and "cannot list" in j.note


def test_sshd_none_is_not_a_jail(sshd_root: Path) -> None:
    assert all(j.path != "none" for j in discover(str(sshd_root)))
    assert {j.daemon for j in discover(str(sshd_root))} == {"sshd"}


# -- systemd -----------------------------------------------------------------------------------


def test_systemd_root_directory_and_dropin(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/lib/systemd/system/tlsd.service",
        "[Unit]\nDescription=TLS daemon\n\n[Service]\nExecStart=/usr/bin/tlsd\n"
        "RootDirectory=/srv/tlsd\nUser=tlsd\n# PrivateDevices=yes\n",
    )
    write(tmp_path, "/lib/systemd/system/plain.service", "[Service]\nExecStart=/bin/true\n")
    [j] = discover(str(tmp_path))
    assert (j.path, j.daemon, j.user, j.provides_devices) == ("/srv/tlsd", "tlsd", "tlsd", False)
    write(
        tmp_path,
        "/etc/systemd/system/tlsd.service.d/override.conf",
        "[Service]\nRootDirectory=\nRootDirectory=/srv/tlsd2\nPrivateDevices=yes\n",
    )
    [j] = discover(str(tmp_path))
    assert (j.path, j.provides_devices) == ("/srv/tlsd2", True)
    assert j.source_file == "/etc/systemd/system/tlsd.service.d/override.conf"
    assert j.note and "PrivateDevices=yes" in j.note


def test_systemd_masked_unit_hides_vendor_unit(tmp_path: Path) -> None:
    write(tmp_path, "/lib/systemd/system/tlsd.service", "[Service]\nRootDirectory=/srv/x\n")
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/tlsd.service").symlink_to("/dev/null")
    assert discover(str(tmp_path)) == []


def test_systemd_dropins_in_systemds_order_and_a_bad_file_noted(tmp_path: Path) -> None:
    # discover reads a unit as the sandbox model does: prefix folders (tls-.service.d/) and
    # service.d/ apply too, later file names win, and a file systemd would reject is noted.
    write(tmp_path, "/lib/systemd/system/tls-a.service", "[Service]\nRootDirectory=/srv/a\n")
    write(tmp_path, "/lib/systemd/system/tls-b.service", "[Service]\nRootDirectory=/srv/b\n")
    write(tmp_path, "/etc/systemd/system/tls-.service.d/10-root.conf", "[Service]\nUser=tls\n")
    write(tmp_path, "/etc/systemd/system/tls-a.service.d/20-x.conf", "[Service]\nUser=tlsa\n")
    write(tmp_path, "/etc/systemd/system/tls-b.service.d/30-bad.conf", "PrivateDevices=yes\n")
    jails, notes = discover_with_notes(str(tmp_path))
    assert [(j.path, j.user, j.provides_devices) for j in jails] == [
        ("/srv/a", "tlsa", False),
        ("/srv/b", "tls", False),  # the bad drop-in is not applied
    ]
    assert [n.message for n in notes] == [
        "/etc/systemd/system/tls-b.service.d/30-bad.conf:1: an assignment outside any "
        "[section]: skipped"
    ]


# -- all together ------------------------------------------------------------------------------


def test_unreadable_config_is_noted(tmp_path: Path) -> None:
    (tmp_path / "etc/haproxy/haproxy.cfg").mkdir(parents=True)  # not a file
    jails, notes = discover_with_notes(str(tmp_path))
    assert jails == []
    assert [n.message for n in notes] == [
        "/etc/haproxy/haproxy.cfg is not a regular file: not read"
    ]


def test_empty_root_finds_nothing_quietly(tmp_path: Path) -> None:
    assert discover_with_notes(str(tmp_path)) == ([], [])


def test_scan_targets(tmp_path: Path) -> None:
    write(tmp_path, "/etc/haproxy/haproxy.cfg", DEBIAN_HAPROXY)
    (tmp_path / "var/lib/haproxy/dev").mkdir(parents=True)
    write(tmp_path, "/etc/unbound/unbound.conf", "server:\n  chroot: /nowhere\n")
    write(
        tmp_path,
        "/lib/systemd/system/tlsd.service",
        "[Service]\nRootDirectory=/var/lib/haproxy\nUser=tlsd\nPrivateDevices=yes\n",
    )
    targets, notes = scan_targets(str(tmp_path))
    [t] = targets
    assert t.jail == str(tmp_path / "var/lib/haproxy")
    assert t.daemons == ("haproxy", "tlsd")
    assert t.user == "haproxy"  # sorted first of haproxy and tlsd; the other is noted
    assert any("several users" in n for n in t.notes)
    assert t.provides_devices is False  # haproxy uses the on-disk /dev
    assert [n.message for n in notes if "/nowhere" in n.message]


def test_cli_text_and_json(tmp_path: Path, cli: Callable[..., Result]) -> None:
    write(tmp_path, "/etc/haproxy/haproxy.cfg", DEBIAN_HAPROXY)
    r = cli("discover", "--root", str(tmp_path))
    assert r.code == 0, r
    assert "/var/lib/haproxy" in r.stdout and "haproxy" in r.stdout
    r = cli("discover", "--root", str(tmp_path), "--format", "json")
    assert r.code == 0, r
    data = json.loads(r.stdout)
    assert data["schema_version"] == "1.4"
    [j] = data["jails"]
    assert (j["path"], j["user"], j["line"], j["exists"]) == (
        "/var/lib/haproxy",
        "haproxy",
        4,
        False,
    )


def test_cli_bad_root(tmp_path: Path, cli: Callable[..., Result]) -> None:
    r = cli("discover", "--root", str(tmp_path / "nope"))
    assert r.code == 2, r
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_cli_hostile_names_are_printed_literally(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    write(tmp_path, "/etc/haproxy/haproxy.cfg", "global\n  chroot /srv/[bold]x\x1b[31m\n")
    r = cli("discover", "--root", str(tmp_path))
    assert r.code == 0, r
    assert "/srv/[bold]x\\x1b[31m" in r.stdout


_ON_THE_HOST = """
import json, sys
from chrootcheck.discover import discover
print(json.dumps([[j.daemon, j.path, j.source_file] for j in discover()]))
"""


@pytest.mark.root
def test_root_default_is_slash(tmp_path: Path) -> None:
    # On this host: whatever it finds, discover(/) never raises and returns absolute paths or
    # unexpanded patterns.
    for j in discover():
        assert j.path.startswith("/") or "%" in j.path
    assert os.path.isdir("/")
    # And it reads this host's /etc: in a mount namespace of its own, an overlay adds a
    # haproxy.cfg to /etc; discover() with no root, and `chrootcheck discover` with no --root,
    # find its jail, and nothing of it shows outside that namespace.
    jail = f"/var/lib/chrootcheck-test-{os.getpid()}"
    upper = tmp_path / "etc"
    (upper / "haproxy").mkdir(parents=True)
    (upper / "haproxy" / "haproxy.cfg").write_text(f"global\n\tchroot {jail}\n")
    overlay = f"mount -t overlay overlay -o lowerdir={upper}:/etc /etc"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    found = {}
    for name, command in (
        ("api", f"{sys.executable} -c '{_ON_THE_HOST}'"),
        ("cli", f"{sys.executable} -m chrootcheck discover --format json"),
    ):
        out = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-ec",
                f"{overlay}; {command}",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        ).stdout
        found[name] = json.loads(out)
    assert ["haproxy", jail, "/etc/haproxy/haproxy.cfg"] in found["api"]
    assert jail in {j["path"] for j in found["cli"]["jails"]}, found["cli"]
    assert jail not in {j.path for j in discover()}


GARBAGE_FILES = (
    "/etc/haproxy/haproxy.cfg",
    "/etc/unbound/unbound.conf",
    "/etc/default/named",
    "/etc/postfix/master.cf",
    "/etc/postfix/main.cf",
    "/etc/ssh/sshd_config",
    "/etc/passwd",
    "/etc/group",
    "/lib/systemd/system/x.service",
)


def test_parsers_never_raise_on_garbage(tmp_path_factory: pytest.TempPathFactory) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    words = st.sampled_from(
        [
            "global",
            "chroot",
            "server:",
            "chroot:",
            "include:",
            "OPTIONS=",
            "-t",
            "-u",
            "Match",
            "User",
            "Group",
            "ChrootDirectory",
            "%u",
            "%h",
            "%",
            "Include",
            "[Service]",
            "RootDirectory=",
            "\\",
            '"',
            "'",
            "#",
            "=",
            ":",
            "*",
            "/",
            "y",
            "-",
            "\n",
            " ",
            "\t",
            "$",
            "${",
            "queue_directory",
            "x:1:2:3:/h:/s",
        ]
    )

    @settings(max_examples=100, deadline=None)
    @given(st.lists(words, max_size=40).map("".join))
    def check(text: str) -> None:
        root = tmp_path_factory.mktemp("garbage")
        for f in GARBAGE_FILES:
            write(root, f, text)
        jails, notes = discover_with_notes(str(root))
        # A parser bug becomes an error notice (never a traceback); there must be none.
        assert not [n for n in notes if n.kind.value == "error"]
        for j in jails:
            assert j.path

    check()


# -- --root: every path resolved inside the root, never on the host (issue 9, class 6) --------


def test_root_jail_symlinked_to_a_host_folder_stays_in_the_root(tmp_path: Path) -> None:
    host_jail = tmp_path / "host-jail"  # exists on the host, not in the image
    (host_jail / "dev").mkdir(parents=True)
    image = tmp_path / "image"
    write(image, "/etc/haproxy/haproxy.cfg", DEBIAN_HAPROXY)
    (image / "var/lib").mkdir(parents=True)
    (image / "var/lib/haproxy").symlink_to(host_jail)  # absolute: the image's own /tmp/...
    [j] = discover(str(image))
    assert j.path == "/var/lib/haproxy"
    assert j.exists is False and j.resolved is None
    assert j.note == f"a symlink to {host_jail}: /tmp inside the tree is missing"
    targets, notes = scan_targets(str(image))
    assert targets == []
    assert any("/var/lib/haproxy" in n.message and "does not exist" in n.message for n in notes)
    # Once the image has that folder itself, it is the one listed and scanned.
    (image / str(host_jail).lstrip("/")).mkdir(parents=True)
    [j] = discover(str(image))
    assert (j.exists, j.resolved) == (True, str(host_jail))
    assert j.note == f"a symlink: resolved inside the tree to {host_jail}"
    targets, _ = scan_targets(str(image))
    [t] = targets
    assert t.jail == str(image) + str(host_jail)
    assert t.jail != str(host_jail)


def test_root_jail_behind_dotdot_and_relative_links_stays_in_the_root(tmp_path: Path) -> None:
    image = tmp_path / "image"
    (tmp_path / "outside").mkdir()
    write(image, "/etc/unbound/unbound.conf", "server:\n  chroot: /srv/j\n")
    (image / "srv").mkdir(parents=True)
    (image / "srv/j").symlink_to("../../../../../../outside")  # '..' stops at the root
    [j] = discover(str(image))
    assert j.exists is False and j.resolved is None
    (image / "outside").mkdir()
    [j] = discover(str(image))
    assert (j.exists, j.resolved) == (True, "/outside")


HOST_CFG = "global\n  chroot /host-only-jail\n  user hostuser\n"


@pytest.mark.parametrize("target", ["absolute", "relative", "parent-dir"])
def test_root_config_symlinked_out_of_the_root_is_never_read(tmp_path: Path, target: str) -> None:
    host = write(tmp_path, "/host/haproxy.cfg", HOST_CFG)  # the host's file, outside the image
    image = tmp_path / "image"
    cfg_dir = image / "etc/haproxy"
    cfg_dir.mkdir(parents=True)
    if target == "absolute":
        (cfg_dir / "haproxy.cfg").symlink_to(host)
    elif target == "relative":
        (cfg_dir / "haproxy.cfg").symlink_to("../../../../../../../../../.." + str(host))
    else:  # the folder holding the config is the link
        cfg_dir.rmdir()
        cfg_dir.symlink_to(host.parent)
    jails, notes = discover_with_notes(str(image))
    assert jails == []
    link = str(host) if target != "parent-dir" else str(host.parent)
    if target == "relative":
        link = "../../../../../../../../../.." + link
    assert [n.message for n in notes] == [
        f"cannot read /etc/haproxy/haproxy.cfg: a symlink to {link}: /tmp inside the tree is "
        "missing"
    ]
    # The same file inside the image (at the link's target) is the one that is read.
    write(image, str(host), HOST_CFG.replace("host-only", "image"))
    [j] = discover(str(image))
    assert (j.path, j.source_file) == ("/image-jail", "/etc/haproxy/haproxy.cfg")


def test_root_include_globs_and_passwd_stay_in_the_root(tmp_path: Path) -> None:
    host_etc = tmp_path / "host-etc"
    write(host_etc, "/ssh/sshd_config.d/evil.conf", "Match User alice\n  ChrootDirectory /%u\n")
    write(host_etc, "/passwd", "alice:x:1001:1001::/home/alice:/bin/sh\n")
    write(host_etc, "/systemd/system/evil.service", "[Service]\nRootDirectory=/host-unit\n")
    image = tmp_path / "image"
    write(image, "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\n")
    (image / "etc/ssh/sshd_config.d").symlink_to(host_etc / "ssh/sshd_config.d")
    (image / "etc/passwd").symlink_to(host_etc / "passwd")
    (image / "etc/systemd").symlink_to(host_etc / "systemd")
    write(host_etc, "/unbound/u.conf", "server:\n  chroot: /unbound-host\n")
    write(image, "/etc/unbound/unbound.conf", f"include: {host_etc}/*/*.conf\n")
    jails, _ = discover_with_notes(str(image))
    assert jails == []


def test_root_fifo_config_does_not_block(tmp_path: Path, cli: Callable[..., Result]) -> None:
    image = tmp_path / "image"
    (image / "etc/haproxy").mkdir(parents=True)
    os.mkfifo(image / "etc/haproxy/fifo")
    (image / "etc/haproxy/haproxy.cfg").symlink_to("fifo")
    (image / "etc/unbound").mkdir(parents=True)
    os.mkfifo(image / "etc/unbound/unbound.conf")
    r = cli("discover", "--root", str(image), timeout=10)
    assert r.code == 0, r
    assert "/etc/haproxy/haproxy.cfg is not a regular file: not read" in r.stderr
    assert "/etc/unbound/unbound.conf is not a regular file: not read" in r.stderr


def test_root_oversized_config_is_not_read(tmp_path: Path) -> None:
    from chrootcheck.discover._common import MAX_CONFIG_SIZE

    p = write(tmp_path, "/etc/haproxy/haproxy.cfg", DEBIAN_HAPROXY)
    with p.open("a") as f:
        f.truncate(MAX_CONFIG_SIZE + 1)
    jails, notes = discover_with_notes(str(tmp_path))
    assert jails == []
    assert [n.message for n in notes] == ["/etc/haproxy/haproxy.cfg is larger than 8 MiB: not read"]


# -- include loops: each file read once, each cycle noted once ---------------------------------

LOOPS = {
    "unbound-self": {
        "/etc/unbound/unbound.conf": "server:\n  chroot: /j\n"
        + "include: /etc/unbound/unbound.conf\n" * 6,
    },
    "sshd-self": {
        "/etc/ssh/sshd_config": "ChrootDirectory /j\n" + "Include /etc/ssh/sshd_config\n" * 6,
    },
    "unbound-mutual": {
        "/etc/unbound/unbound.conf": "server:\n  chroot: /j\n"
        + "include: /etc/unbound/a.conf\n" * 3,
        "/etc/unbound/a.conf": "include: b.conf\n" * 3,
        "/etc/unbound/b.conf": "include: /etc/unbound/unbound.conf\ninclude: a.conf\n" * 3,
    },
    "unbound-glob": {
        "/etc/unbound/unbound.conf": "server:\n  chroot: /j\n"
        + 'include: "/etc/unbound/*.conf"\n' * 3,
        **{f"/etc/unbound/{c}.conf": 'include: "/etc/unbound/*.conf"\n' * 3 for c in "abcde"},
    },
    "sshd-glob": {
        "/etc/ssh/sshd_config": "ChrootDirectory /j\nInclude sshd_config.d/*.conf\n",
        **{f"/etc/ssh/sshd_config.d/{c}.conf": "Include sshd_config.d/*.conf\n" * 3 for c in "ab"},
    },
    "sshd-diamond": {  # no cycle: 2^8 paths through 8 levels, each file once
        "/etc/ssh/sshd_config": "ChrootDirectory /j\n" + "Include /etc/ssh/l0.conf\n" * 2,
        **{f"/etc/ssh/l{i}.conf": f"Include /etc/ssh/l{i + 1}.conf\n" * 2 for i in range(8)},
    },
}


@pytest.mark.parametrize("case", sorted(LOOPS))
def test_include_loops_finish_fast(tmp_path: Path, cli: Callable[..., Result], case: str) -> None:
    for path, text in LOOPS[case].items():
        write(tmp_path, path, text)
    r = cli("discover", "--root", str(tmp_path), "--format", "json", timeout=10)
    assert r.code == 0, r
    [j] = json.loads(r.stdout)["jails"]
    assert j["path"] == "/j"
    cycles = [line for line in r.stderr.splitlines() if "cycle" in line]
    expected = {
        "unbound-self": ["include cycle: /etc/unbound/unbound.conf -> /etc/unbound/unbound.conf"],
        "sshd-self": ["Include cycle: /etc/ssh/sshd_config -> /etc/ssh/sshd_config"],
        "unbound-mutual": [
            "include cycle: /etc/unbound/a.conf -> /etc/unbound/b.conf -> /etc/unbound/a.conf",
            "include cycle: /etc/unbound/unbound.conf -> /etc/unbound/a.conf -> "
            "/etc/unbound/b.conf -> /etc/unbound/unbound.conf",
        ],
        "sshd-diamond": [],
    }.get(case)
    if expected is not None:
        assert sorted(
            c.split("note: ", 1)[1].removesuffix(": not read again") for c in cycles
        ) == sorted(expected), r.stderr
    else:  # globs: every cycle through the files, each noted once
        assert cycles and len(cycles) == len(set(cycles)), r.stderr


@pytest.mark.parametrize("case", sorted(LOOPS))
def test_include_loops_read_each_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    import stat

    for path, text in LOOPS[case].items():
        write(tmp_path, path, text)
    opened: list[tuple[int, int]] = []
    real_open = os.open

    def counting_open(path: str, flags: int, *args: object, **kwargs: object) -> int:
        fd = real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and not flags & os.O_PATH:  # opened to be read
            opened.append((st.st_dev, st.st_ino))
        return fd

    monkeypatch.setattr(os, "open", counting_open)
    jails = discover(str(tmp_path))
    monkeypatch.undo()
    assert [j.path for j in jails] == ["/j"]
    assert len(opened) == len(set(opened)) == len(LOOPS[case])


def test_include_depth_and_glob_are_capped(tmp_path: Path) -> None:
    from chrootcheck.discover._common import MAX_DEPTH, MAX_GLOB

    chain = MAX_DEPTH + 3
    write(tmp_path, "/etc/ssh/sshd_config", "Include /etc/ssh/l0.conf\n")
    for i in range(chain):
        write(tmp_path, f"/etc/ssh/l{i}.conf", f"Include /etc/ssh/l{i + 1}.conf\n")
    write(tmp_path, f"/etc/ssh/l{chain}.conf", "ChrootDirectory /too-deep\n")
    write(tmp_path, "/etc/unbound/unbound.conf", 'include: "/etc/unbound/d/*.conf"\n')
    for i in range(MAX_GLOB + 1):
        write(tmp_path, f"/etc/unbound/d/{i:05}.conf", "")
    write(tmp_path, "/etc/unbound/d/99999.conf", "server:\n  chroot: /past-the-cap\n")
    jails, notes = discover_with_notes(str(tmp_path))
    assert jails == []
    messages = [n.message for n in notes]
    assert f"/etc/ssh/l{MAX_DEPTH - 1}.conf: Include nested too deep, not read" in messages
    assert (
        f"/etc/unbound/d/*.conf matches more than {MAX_GLOB} paths: the first are read" in messages
    )
