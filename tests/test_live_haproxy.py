"""The real haproxy (Debian's package, installed on demand) chrooted in master-worker mode
(-W) with a TLS frontend on loopback, started once for the module: what `ps` and
`scan --pid` report against what was set up. The listening socket is bound to port 0 by the
test and handed to haproxy as fd@N (haproxy refuses port 0 itself)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chrootcheck.report import catalogue
from tests.conftest import Result, stop_daemon
from tests.debian import tool
from tests.live_support import jail_of
from tests.realdaemons import self_signed

pytestmark = pytest.mark.root


def _get(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return tls.recv(4096)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    binary = tool("haproxy")
    openssl = tool("openssl")
    base = tmp_path_factory.mktemp("haproxy")
    jail = base / "jail"
    (jail / "dev").mkdir(parents=True)  # what Debian's package leaves: an empty dev/
    key, cert = self_signed(openssl, base)
    pem = base / "site.pem"
    pem.write_bytes(key.read_bytes() + cert.read_bytes())
    cfg = base / "haproxy.cfg"
    cfg.write_text(
        f"global\n    chroot {jail}\n    master-worker\n    user nobody\n    group nogroup\n"
        "    nbthread 2\n"
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
        "    timeout server 5s\n"
        f"frontend tls\n    bind fd@{{fd}} ssl crt {pem}\n"
        "    http-request return status 200 content-type text/plain string ok\n"
    )
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    cfg.write_text(cfg.read_text().replace("{fd}", str(listener.fileno())))
    log = base / "haproxy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "-W", "-db", "-f", str(cfg)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )  # fmt: skip
    listener.close()
    try:
        deadline = time.monotonic() + 20
        while not _children(proc.pid):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no haproxy worker: {log.read_text()}"
            time.sleep(0.02)
        assert _get(port).endswith(b"ok"), log.read_text()  # TLS works now
        yield {"master": proc.pid, "workers": _children(proc.pid), "jail": jail, "port": port}
    finally:
        stop_daemon(proc)


def test_ps_groups_the_workers_in_the_jail_with_their_library(
    cli: Callable[..., Result], haproxy: dict[str, Any]
) -> None:
    from chrootcheck.openssl.library import load

    result = cli("ps", "--format", "json")
    assert result.code == 0, str(result)
    report = json.loads(result.stdout)
    [worker] = haproxy["workers"]
    j = jail_of(report, worker)
    assert (j["root"], j["confinement"]) == (str(haproxy["jail"]), "chroot")
    assert [p["pid"] for p in j["processes"]] == [worker]  # the master stays in the host root
    assert j["leaders"] == [worker]
    assert {d["path"]: d["status"] for d in j["devices"]} == {
        "/dev/urandom": "missing",
        "/dev/random": "missing",
    }
    p = j["processes"][0]
    assert (p["ppid"], p["uid"], p["user"]) == (haproxy["master"], 65534, "nobody")
    assert p["command"] == "haproxy"
    crypto = next(lib for lib in p["libraries"] if lib["kind"] == "libcrypto")
    system = load()
    assert os.path.samefile(crypto["path"], system.path)
    assert crypto["version"] == system.version_text and crypto["on_disk"] == "same"
    assert p["random_devices"] == []  # getrandom works: OpenSSL 3 opened no device
    assert p["seccomp"]["mode"] == "disabled"
    assert p["verdict"].startswith("at risk without getrandom")
    # --read-seccomp: haproxy runs without a filter; nothing to read, and it is not stopped.
    named = cli("ps", "--pid", str(worker), "--read-seccomp", "--format", "json")
    assert named.code == 0, str(named)
    [q] = json.loads(named.stdout)["jails"][0]["processes"]
    assert (q["seccomp"]["mode"], q["seccomp_dump"]) == ("disabled", None)


def test_scan_pid_of_the_master_scans_its_workers_jail(
    cli: Callable[..., Result], haproxy: dict[str, Any]
) -> None:
    from chrootcheck.openssl.library import load

    result = cli(
        "scan", "--pid", str(haproxy["master"]), "--read-seccomp", "--no-late-loads",
        "--scenario", "as-is", "--scenario", "as-running",
        "--scenario", "old-kernel, devices closed", "-f", "json",
    )  # fmt: skip
    assert result.code == 1, str(result)  # the empty dev/ is an error finding
    [worker] = haproxy["workers"]
    assert result.stderr == (
        f"chrootcheck: process {haproxy['master']} runs in the host's root; scanning the jail "
        f"of its children {worker} ({haproxy['jail']})\n"
    )
    [j] = json.loads(result.stdout)["jails"]
    assert j["jail"] == f"/proc/{worker}/root"
    assert {catalogue.URANDOM_MISSING.id, catalogue.RANDOM_MISSING.id} <= {
        f["check"] for f in j["findings"]
    }
    p = j["process"]
    assert (p["pid"], p["uid"], p["gid"], p["daemon"]) == (
        worker,
        65534,
        65534,
        "haproxy:master-worker",
    )
    assert p["library_probed"] == f"its own libcrypto, {p['library']}"
    assert j["probe"]["libcrypto"]["version"] == load().version_text
    assert j["probe"]["uid"] == 65534  # the probe ran as the worker's user
    assert p["getrandom"] == "allowed (no seccomp filter)" and p["holds_urandom"] is False
    assert p["old_kernel"].startswith("at risk without getrandom")
    verdicts = {s["name"]: s["verdict"] for s in j["probe"]["scenarios"]}
    assert verdicts == {"as-is": "pass", "as-running": "pass", "old-kernel, devices closed": "fail"}
    ttf = p["time_to_failure"]
    assert (ttf["verdict"], ttf["seconds"]) == ("safe", None)
    assert ttf["text"].startswith(f"haproxy[{worker}] (master-worker), started ")
    # On an old kernel, holding no device in an empty dev/: measured, it fails, and a reload's
    # new workers (a fork) fail at once.
    old = p["old_kernel_time_to_failure"]
    assert (old["verdict"], old["trigger"]) == ("fails", "time")
    assert "sooner at once in every process it forks" in old["text"]
    assert _get(haproxy["port"]).endswith(b"ok")  # nothing we did disturbed it
