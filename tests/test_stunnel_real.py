"""The real stunnel4 (Debian's package, installed on demand) in a jail with an empty dev/,
under the devices-closed conditions: a seccomp filter making getrandom fail, the UNAME26
personality, and an LD_PRELOAD shim calling RAND_keep_random_devices_open(0) (compiled here
with cc). TLS clients on loopback count the connection at which it fails; chrootcheck's
prediction (--daemon stunnel, measured triggers) must be within 25 % of it (issue 11).

Measured here: stunnel 5.68 on the system's OpenSSL 3.0 fails at connection 63; the probe's
threads trigger predicts 64.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import open_up, run_cli_subprocess, stop_daemon
from tests.debian import tool
from tests.realdaemons import compile_shim, free_port, self_signed, wait_listening

ROOT = Path(__file__).resolve().parent.parent
CLOSED = "old-kernel, devices closed"
CAP = 200  # connections: the prediction is about 64

SHIM = r"""
#include <dlfcn.h>
__attribute__((constructor)) static void close_devices(void) {
    void (*keep)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "RAND_keep_random_devices_open");
    if (keep) keep(0);
}
"""

# Applies the scenario to itself, then becomes stunnel (seccomp and personality survive exec).
# Its own IPC namespace first: under UNAME26 OpenSSL marks SysV shm key 0x72, which on the host
# would outlive the test and change every later OpenSSL (and the probe's shm test).
WRAPPER = """
import os, sys
from chrootcheck.probe import sandbox
from chrootcheck.system import libc
sandbox.unshare(libc.CLONE_NEWIPC)
sandbox.set_uname26()
sandbox.block_getrandom()
os.execve(sys.argv[1], sys.argv[1:], {**os.environ, "LD_PRELOAD": sys.argv[-1]})
"""


def _shm_keys() -> list[int]:
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return [int(line.split()[0]) for line in lines if line.strip()]


@pytest.fixture
def echo_backend() -> Iterator[int]:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(3)
                try:
                    conn.sendall(conn.recv(64))
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(5)
    srv.close()


@pytest.mark.root
def test_real_stunnel_fails_where_predicted(tmp_path: Path, echo_backend: int) -> None:
    shm_before = set(_shm_keys())
    stunnel = tool("stunnel4")
    cc = tool("cc", "gcc")
    openssl = tool("openssl")
    shim = compile_shim(cc, SHIM, tmp_path / "shim.so")
    key, cert = self_signed(openssl, tmp_path)
    pem = tmp_path / "stunnel.pem"
    pem.write_bytes(key.read_bytes() + cert.read_bytes())
    jail = tmp_path / "jail"
    (jail / "dev").mkdir(parents=True)  # empty: what Debian's package leaves
    open_up(jail)
    port = free_port()
    conf = tmp_path / "stunnel.conf"
    conf.write_text(
        f"foreground = yes\nchroot = {jail}\nsetuid = nobody\nsetgid = nogroup\npid =\n"
        f"debug = 4\n[t]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{echo_backend}\n"
        f"cert = {pem}\n"
    )
    log = tmp_path / "stunnel.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, stunnel, str(conf), str(shim)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_listening(port, proc, log, "stunnel")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        failed_at = None
        for n in range(1, CAP + 1):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                    with ctx.wrap_socket(raw) as tls:
                        tls.sendall(b"ping")
                        assert tls.recv(8) == b"ping"
            except (OSError, ssl.SSLError):
                failed_at = n
                break
    finally:
        stop_daemon(proc)
    text = log.read_text(errors="replace")
    assert set(_shm_keys()) <= shm_before, "stunnel's shm segment leaked to the host"
    assert failed_at is not None, f"stunnel never failed in {CAP} connections:\n{text[-2000:]}"
    assert "1C8000BD" in text  # error retrieving entropy, in stunnel's own log

    # A real process: this test's TLS backend thread is still running.
    res = run_cli_subprocess(
        "scan", str(jail), "--user", "nobody", "--daemon", "stunnel", "--scenario", CLOSED,
        "--format", "json", timeout=120,
    )  # fmt: skip
    assert res.code == 1, res
    probe = json.loads(res.stdout)["jails"][0]["probe"]
    threads = next(t for t in probe["scenarios"][0]["triggers"] if t["trigger"] == "threads")
    m = re.search(
        r"stunnel \(foreground\): TLS fails at about connection (\d+)", probe["prediction"]
    )
    assert m is not None, probe["prediction"]
    predicted = int(m.group(1))
    assert predicted == threads["at"]
    assert abs(predicted - failed_at) <= 0.25 * failed_at, (predicted, failed_at)
    print(f"stunnel: predicted connection {predicted}, real {failed_at}")  # shown with -s
