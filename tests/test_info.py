"""``chrootcheck info`` and gather_info, against both real libraries."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chrootcheck.openssl import library
from chrootcheck.openssl.info import gather_info, kernel_below, shm_key_status
from tests.conftest import Result
from tests.openssl_builds import Build

pytestmark = pytest.mark.usefixtures("error_queue_guard")


def test_gather_info(libcrypto_build: Build) -> None:
    info = gather_info(library.load(libcrypto_build.path))
    assert info.path == os.path.realpath(libcrypto_build.path)
    assert (info.reseed.primary_requests, info.reseed.primary_seconds) == (256, 3600)
    assert (info.reseed.public_requests, info.reseed.public_seconds) == (65536, 420)
    assert info.kernel == os.uname().release
    assert info.getrandom_works  # this host has getrandom; the probe's scenarios block it
    assert info.keep_devices_open.startswith("keep")
    assert info.rand_method.startswith("the library's own DRBG")
    if libcrypto_build.series == "3.x":
        assert info.seed_source == "os-specific"
        assert info.seed_source_origin == "OPENSSL_info(OPENSSL_INFO_SEED_SOURCE)"
        assert info.reseed.source == "library"
        assert info.openssldir == "/usr/lib/ssl"
        assert info.modulesdir and "ossl-modules" in info.modulesdir
    else:
        assert info.seed_source == "not exposed"
        assert "os-specific" in info.seed_source_origin
        assert info.reseed.source == "documented defaults"
        assert info.modulesdir is None
        assert info.openssldir and '"' not in info.openssldir  # unquoted OPENSSLDIR: "..."
        assert "engines-1.1" in info.enginesdir


def test_kernel_version_comparison() -> None:
    assert kernel_below("4.4.0-210-generic", (4, 8))
    assert not kernel_below("4.8.0", (4, 8))
    assert not kernel_below("6.18.44-fc", (4, 8))
    assert kernel_below("2.6.40", (4, 8))  # what UNAME26 reports


def test_shm_key_status_sees_a_real_segment() -> None:
    # Made in a child inside a new IPC namespace, so nothing lands on the host.
    from chrootcheck.probe.sandbox import unshare
    from chrootcheck.system.libc import CLONE_NEWIPC

    host_before = shm_key_status(0x72)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            unshare(CLONE_NEWIPC)
            before = shm_key_status(0x72)[0]
            libc = _libc_shm()
            shm_id = libc.shmget(0x72, 1, 0o1000 | 0o444)  # IPC_CREAT | 0444, like OpenSSL
            after, detail = shm_key_status(0x72)
            os.write(w, json.dumps([before, shm_id >= 0, after, detail]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    data = json.loads(os.read(r, 4096))
    os.close(r)
    os.waitpid(pid, 0)
    assert data[:3] == [False, True, True]
    assert data[3].startswith("exists")
    assert shm_key_status(0x72) == host_before  # the host's IPC namespace is unchanged


def _libc_shm() -> Any:
    import cffi  # type: ignore[import-untyped, unused-ignore]

    ffi = cffi.FFI()
    ffi.cdef("int shmget(int key, size_t size, int shmflg);")
    return ffi.dlopen("libc.so.6")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_info_command(cli: Callable[..., Result], libcrypto_build: Build, fmt: str) -> None:
    res = cli("info", "--libcrypto", libcrypto_build.path, "--format", fmt)
    assert res.code == 0, res
    assert res.stderr == ""
    if fmt == "json":
        data = json.loads(res.stdout)
        assert data["path"] == os.path.realpath(libcrypto_build.path)
        assert data["reseed"]["primary_seconds"] == 3600
        assert data["capabilities"]["has_evp_rand"] is (libcrypto_build.series == "3.x")
        assert data["shm_0x72"] in (True, False)
    else:
        assert "seed source" in res.stdout and "SysV shm key 0x72" in res.stdout
        assert (
            "EVP_RAND (3.x)" if libcrypto_build.series == "3.x" else "RAND_DRBG (1.1.1)"
        ) in res.stdout


def test_info_default_library(cli: Callable[..., Result], libcrypto_30: Build) -> None:
    res = cli("info", "--format", "json")
    assert res.code == 0, res
    assert json.loads(res.stdout)["path"] == os.path.realpath(libcrypto_30.path)


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda p: p / "missing.so", "no such file"),
        (lambda p: p, "is a directory"),
        (lambda p: _file(p / "fake [x].so", "#" * 200), "invalid ELF header"),
    ],
)
def test_info_bad_libcrypto(
    cli: Callable[..., Result], tmp_path: Path, make: Callable[[Path], Path], expect: str
) -> None:
    path = make(tmp_path)
    res = cli("info", "--libcrypto", str(path))
    assert res.code == 2, res
    assert res.stdout == ""
    assert len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith("chrootcheck: error: cannot load libcrypto: ")
    assert str(path) in res.stderr and expect in res.stderr
    assert "Traceback" not in res.stderr


def test_info_bad_format(cli: Callable[..., Result]) -> None:
    res = cli("info", "--format", "xml")
    assert res.code == 2 and "Traceback" not in res.stderr


def _file(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_cli_startup_does_not_import_cffi() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from chrootcheck.cli import cli; import chrootcheck.probe; "
        "import chrootcheck.openssl.errcodes, chrootcheck.probe.analysis, "
        "chrootcheck.formats.probe_text; print('cffi' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"
