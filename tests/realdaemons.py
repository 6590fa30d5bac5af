"""What the tests that run real daemons (stunnel, haproxy, Postfix, the HSM case) share: a
free loopback port, whether something listens on it, a self-signed certificate and a small
shared library compiled with cc."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A loopback port free now (the daemon binds it a moment later: take it as late as can be)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port: int = s.getsockname()[1]
    return port


def listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (read from /proc: no probing connection, which
    a daemon would count as a client)."""
    want = f":{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(want) and fields[3] == "0A":  # LISTEN
            return True
    return False


def wait_listening(
    port: int, proc: subprocess.Popen[bytes] | subprocess.Popen[str], log: Path, name: str
) -> None:
    """Poll until ``proc`` listens on ``port`` (at most 20 s); fail with its log if it exits."""
    deadline = time.monotonic() + 20
    while not listening(port):
        assert proc.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, f"{name} did not start listening"
        time.sleep(0.02)


def self_signed(openssl: str, folder: Path) -> tuple[Path, Path]:
    """(key, certificate) for CN=localhost in ``folder``, made by the real openssl."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "2", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


def compile_shim(cc: str, source: str, out: Path) -> Path:
    """``source`` (C) compiled with the real cc into the shared library ``out``."""
    c = out.with_suffix(".c")
    c.write_text(source)
    subprocess.run([cc, "-shared", "-fPIC", "-o", out, c, "-ldl"], check=True)
    return out
