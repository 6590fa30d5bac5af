"""The real Postfix (Debian's package, installed on demand) with smtpd chrooted in a jail, under
the conditions of chrootcheck's scenarios, against chrootcheck's verdict and prediction for the
same jail (issue 11). The model is tests/test_stunnel_real.py.

A private instance per case: its own config_directory, queue_directory (the jail, made by
Postfix's own post-install), data_directory and maillog_file, smtpd chrooted (master.cf column 5
= y) on a free loopback port, a self-signed certificate, smtpd_tls_security_level = may. master
runs in the foreground (-d) under a wrapper that first applies the scenario to itself (its own
IPC namespace, then UNAME26, the getrandom filter, and the LD_PRELOAD shim calling
RAND_keep_random_devices_open(0)); seccomp filter, personality and namespace pass to every
process master forks and execs, and import_environment passes LD_PRELOAD on. It is stopped by
SIGTERM (master kills its process group), then SIGKILL to the group, and the test asserts that
no process of the group is left.

Measured here (Postfix 3.7.11, the system's OpenSSL 3.0): devices closed in an empty jail, the
first STARTTLS fails (smtpd logs only 0A0000EA, the session-ticket callback; tlsmgr spins);
getrandom blocked, smtpd logs "disabling TLS support", still offers STARTTLS but answers it 454
"TLS not available due to local problem", and takes mail in clear text; with dev/urandom and
dev/random in the jail every STARTTLS works.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chrootcheck.report import catalogue
from tests.conftest import good_jail, run_cli_subprocess, stop_daemon
from tests.debian import tool
from tests.realdaemons import compile_shim, free_port, listening, self_signed

ROOT = Path(__file__).resolve().parent.parent
CLOSED = "old-kernel, devices closed"
NO_GETRANDOM = "no-getrandom"
# Debian's postinst asks what kind of mail system to configure: none (no /etc/postfix/main.cf,
# nothing to start); tests/debian.py also keeps any service from starting during the install.
PRESEED = "postfix postfix/main_mailer_type select No configuration\n"

SHIM = r"""
#include <dlfcn.h>
__attribute__((constructor)) static void close_devices(void) {
    void (*keep)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "RAND_keep_random_devices_open");
    if (keep) keep(0);
}
"""

# Applies a scenario to itself, then becomes master: argv = MODE SHIM PROGRAM ARGS...
# Its own IPC namespace first: under UNAME26 OpenSSL marks SysV shm key 0x72, which on the host
# would outlive the test and change every later OpenSSL; without UNAME26 the new namespace has
# no such key, so OpenSSL on this kernel refuses /dev/urandom, as chrootcheck's no-getrandom.
WRAPPER = """
import os, sys
from chrootcheck.probe import sandbox
from chrootcheck.system import libc
mode, shim, *argv = sys.argv[1:]
sandbox.unshare(libc.CLONE_NEWIPC)
env = dict(os.environ)
if mode == "closed":
    sandbox.set_uname26()
    env["LD_PRELOAD"] = shim
sandbox.block_getrandom()
os.execve(argv[0], argv, env)
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {jail}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = chrootcheck.test
mydestination = localhost
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
local_transport = discard:
default_transport = discard:
smtpd_peername_lookup = no
maillog_file = {log}
maillog_file_prefixes = {log}
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME
    LD_PRELOAD
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
biff = no
"""

# The services an SMTP session and its mail go through; smtpd and tlsmgr chrooted, as Debian's.
MASTER_CF = """\
127.0.0.1:{port} inet n - y - - smtpd
tlsmgr    unix  -  -  y  1000?  1  tlsmgr
cleanup   unix  n  -  y  -      0  cleanup
qmgr      unix  n  -  n  300    1  qmgr
rewrite   unix  -  -  y  -      -  trivial-rewrite
bounce    unix  -  -  y  -      0  bounce
defer     unix  -  -  y  -      0  bounce
trace     unix  -  -  y  -      0  bounce
discard   unix  -  -  y  -      -  discard
anvil     unix  -  -  y  -      1  anvil
postlog   unix-dgram n - n  -   1  postlogd
"""


@dataclass(frozen=True)
class Kit:
    postfix: str
    daemon_directory: Path
    shim: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Instance:
    port: int
    jail: Path
    log: Path


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    """Postfix installed, the shim compiled and a certificate made: once for the module."""
    postfix = tool("postfix", preseed=PRESEED)
    postconf = tool("postconf", "postfix")
    cc = tool("cc", "gcc")
    openssl = tool("openssl")
    base = tmp_path_factory.mktemp("postfix-kit")
    shim = compile_shim(cc, SHIM, base / "shim.so")
    key, cert = self_signed(openssl, base)
    daemons = subprocess.run(
        [postconf, "-d", "-h", "daemon_directory"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Kit(postfix, Path(daemons), shim, cert, key)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """The instance's folder: a fresh one in the temporary folder, which mail_owner can
    traverse (master opens data_directory/master.lock as postfix). Not under pytest's basetemp:
    every pytest run, this one's other workers included, resets /tmp/pytest-of-root to 0700."""
    base = Path(tempfile.mkdtemp(prefix="chrootcheck-postfix-"))
    os.chmod(base, 0o711)
    yield base
    shutil.rmtree(base)


def _port_used(port: int) -> bool:
    want = f":{port:04X}"
    return any(
        line.split()[1].endswith(want)
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
    )


def _shm_keys() -> set[int]:
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(line.split()[0]) for line in lines if line.strip()}


def _live_in_group(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that are not zombies."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def _wait_for(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _log_has(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text(errors="replace")


def _start_master(kit: Kit, conf: Path, mode: str, out: Path) -> subprocess.Popen[bytes]:
    """master in the foreground (-d) under the wrapper, in a session of its own (master's
    SIGTERM handler kills its process group: this one)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LD_PRELOAD", None)
    with open(out, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-c", WRAPPER, mode, str(kit.shim),
             str(kit.daemon_directory / "master"), "-d", "-c", str(conf)],
            stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM: master kills its process group (smtpd, tlsmgr, ...) and exits; then SIGKILL
    to whatever of the group is left, until nothing is."""
    stop_daemon(proc)
    pgid = proc.pid  # a session leader: its pid is the group's id
    deadline = time.monotonic() + 10
    while (left := _live_in_group(pgid)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    assert not _live_in_group(pgid), "a Postfix process was left running"


@contextmanager
def postfix_instance(kit: Kit, base: Path, mode: str, nodes: bool = False) -> Iterator[Instance]:
    """A private Postfix whose master runs under the wrapper in scenario ``mode`` ("closed":
    devices closed; "no-getrandom"); ``nodes``: dev/urandom and dev/random in the jail."""
    conf, jail, data, log = base / "conf", base / "jail", base / "data", base / "maillog"
    conf.mkdir()
    cert, key = base / "cert.pem", base / "key.pem"  # beside the rest, out of pytest's basetemp
    shutil.copy(kit.cert, cert)
    shutil.copy(kit.key, key)
    (jail / "dev").mkdir(parents=True)  # empty, as when nothing copies the devices in
    if nodes:
        good_jail(jail)
    (conf / "main.cf").write_text(MAIN_CF.format(jail=jail, data=data, log=log, cert=cert, key=key))
    # Postfix's own installer makes the queue folders and data_directory with their owners.
    subprocess.run(
        [kit.daemon_directory / "post-install", f"config_directory={conf}",
         "meta_directory=/etc/postfix", "create-missing"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    shm_before = _shm_keys()
    port = free_port()  # as late as can be: nothing else may take it before master binds it
    (conf / "master.cf").write_text(MASTER_CF.format(port=port))
    proc = _start_master(kit, conf, mode, base / "master.out")
    try:
        deadline = time.monotonic() + 20
        while not listening(port):
            if proc.poll() is not None:
                # master's own fatal errors go to syslog only, before postlogd runs
                said = (base / "master.out").read_text(errors="replace")
                pytest.fail(
                    f"master exited {proc.returncode} (port {port} in use by another: "
                    f"{_port_used(port)}): {said[-2000:]}"
                )
            assert time.monotonic() < deadline, "Postfix did not start listening"
            time.sleep(0.05)
    except BaseException:
        _stop(proc)
        raise
    try:
        yield Instance(port, jail, log)
    finally:
        _stop(proc)
    assert _shm_keys() <= shm_before, "Postfix's shm segment leaked to the host"


def _client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _session(port: int) -> tuple[bool, str]:
    """EHLO and STARTTLS: (STARTTLS offered, what happened: "tls" after a handshake and a new
    EHLO over TLS, "failed: ..." when the handshake failed or the server dropped it)."""
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10)
    try:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            return False, "not offered"
        try:
            smtp.starttls(context=_client_context())
            code, _ = smtp.ehlo()
        except (OSError, ssl.SSLError, smtplib.SMTPException) as e:
            return True, f"failed: {e}"
        return True, "tls" if code == 250 else f"failed: EHLO over TLS {code}"
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def _scan(jail: Path, scenario: str) -> tuple[int, dict[str, Any], list[str]]:
    """scan JAIL --daemon postfix: exit code, the probe, the checks found."""
    res = run_cli_subprocess(
        "scan", str(jail), "--user", "postfix", "--daemon", "postfix", "--scenario", scenario,
        "--format", "json", timeout=120,
    )  # fmt: skip
    assert res.code in (0, 1), res
    found: dict[str, Any] = json.loads(res.stdout)["jails"][0]
    return res.code, found["probe"], [f["check"] for f in found["findings"]]


@pytest.mark.root
def test_devices_closed_first_starttls_fails(kit: Kit, workdir: Path, tmp_path: Path) -> None:
    """(a) Devices closed, empty dev/: the first STARTTLS fails; smtpd logs only 0A0000EA."""
    with postfix_instance(kit, workdir, "closed") as pf:
        sessions = [_session(pf.port) for _ in range(3)]
        _wait_for("no 0A0000EA in the maillog", lambda: _log_has(pf.log, "0A0000EA"), 10)
    assert sessions[0][0], "STARTTLS was not offered"
    assert all(s[1].startswith("failed") for s in sessions), sessions  # from the first one
    assert "ALERT_INTERNAL_ERROR" in sessions[0][1]  # alert 80: the server's handshake failed
    lines = pf.log.read_text(errors="replace").splitlines()
    [ticket, *_] = [line for line in lines if "0A0000EA" in line]
    assert "postfix/smtpd" in ticket and "callback failed" in ticket
    assert not any(c in line for line in lines for c in ("1C8000BD", "2406C06E")), (
        "smtpd logged an entropy code after all"
    )

    code, probe, _ = _scan(pf.jail, CLOSED)
    assert code == 1
    [scenario] = probe["scenarios"]
    assert scenario["verdict"] == "fail"
    seed = next(t for t in scenario["triggers"] if t["trigger"] == "rand-seed")
    assert seed["breaks"] is True and seed["at"] == 1
    prediction = str(probe["prediction"])
    assert "postfix (smtpd): TLS fails from the first STARTTLS" in prediction, prediction
    assert "0A0000EA" in prediction

    # What the user pastes: smtpd's line, explained as entropy in the Postfix jail.
    line = tmp_path / "pasted.log"
    line.write_text(ticket + "\n")
    res = run_cli_subprocess("decode", str(line), "--format", "json")
    assert res.code == 1, res
    [chain] = json.loads(res.stdout)["chains"]
    assert chain["entropy_problem"] is True
    assert chain["errors"][0]["knowledge"] == "postfix-smtpd-callback-failed"


@pytest.mark.root
def test_getrandom_blocked_tls_silently_disabled(kit: Kit, workdir: Path) -> None:
    """(b) getrandom blocked: smtpd starts without TLS and takes mail in clear text. It still
    offers STARTTLS, and answers it 454 "TLS not available due to local problem"."""
    with postfix_instance(kit, workdir, "no-getrandom") as pf:
        sessions = [_session(pf.port) for _ in range(2)]
        with smtplib.SMTP("127.0.0.1", pf.port, local_hostname="client.test", timeout=10) as s:
            s.ehlo()
            refused = s.sendmail("a@client.test", ["u@localhost"], b"Subject: t\r\n\r\nclear\r\n")
        _wait_for(
            "the mail and the postmaster's notice were not delivered",
            lambda: _log_has(pf.log, "to=<u@localhost>") and _log_has(pf.log, "to=<postmaster@"),
            10,
        )
    for offered, what in sessions:
        assert offered and "454" in what and "TLS not available due to local problem" in what
    assert refused == {}  # accepted, in clear text
    text = pf.log.read_text(errors="replace")
    assert "postfix/smtpd" in text and "cannot allocate server SSL_CTX: disabling TLS" in text
    assert "to=<postmaster@" in text  # each such session mails the postmaster a notice

    code, probe, _ = _scan(pf.jail, NO_GETRANDOM)
    assert code == 1
    [scenario] = probe["scenarios"]
    assert scenario["verdict"] == "risk"
    prediction = str(probe["prediction"])
    assert "cannot start, or starts without TLS" in prediction, prediction
    assert "disabling TLS support" in prediction and "clear text" in prediction
    assert "454 4.7.0" in prediction


@pytest.mark.root
def test_correct_jail_starttls_works(kit: Kit, workdir: Path) -> None:
    """(c) dev/urandom and dev/random in the jail, devices closed: every STARTTLS works."""
    with postfix_instance(kit, workdir, "closed", nodes=True) as pf:
        sessions = [_session(pf.port) for _ in range(5)]
    assert sessions == [(True, "tls")] * 5, sessions
    text = pf.log.read_text(errors="replace")
    assert "0A0000EA" not in text and "disabling TLS" not in text

    # a live Postfix jail: its Unix sockets (private/, public/) are told as info, never opened
    code, probe, checks = _scan(pf.jail, CLOSED)
    assert code == 0
    assert catalogue.OTHER_SOCKET.id in checks
    [scenario] = probe["scenarios"]
    assert scenario["verdict"] == "pass"
    assert "No failure predicted" in str(probe["prediction"]), probe["prediction"]
