"""`info --binary`: which libcrypto a program loads, checked against the real loader.

The programs are built here with gcc; the dynamic loader's own answer (`ld.so --list`, which
maps the libraries of *our* test program without running it) is the reference.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from chrootcheck.live.elfdeps import ElfError, read_elf, resolve_binary
from tests.conftest import IN_CI, Result

SOURCE = r"""
#include <stdio.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
int main(void) {
    FILE *f = fopen(MARKER, "w"); if (f) fclose(f);  /* proof that it ran */
#ifdef USE_SSL
    OPENSSL_init_ssl(0, NULL);
#else
    puts(OpenSSL_version(0));
#endif
    return 0;
}
"""
LOADER = "/lib64/ld-linux-x86-64.so.2"


@pytest.fixture
def build(tmp_path: Path) -> Callable[..., Path]:
    if not shutil.which("gcc") or not Path("/usr/include/openssl/crypto.h").exists():
        if IN_CI:
            pytest.fail("gcc and libssl-dev are needed")
        pytest.skip("gcc and libssl-dev are needed")
    src = tmp_path / "prog.c"
    src.write_text(SOURCE)

    def make(name: str, *flags: str) -> Path:
        out = tmp_path / "bin" / name
        out.parent.mkdir(exist_ok=True)
        marker = f'-DMARKER="{tmp_path / "ran"}"'
        cmd = ["gcc", marker, str(src), "-o", str(out), *flags]
        subprocess.run(cmd, check=True, capture_output=True)
        return out

    return make


def loader_says(binary: Path, soname: str) -> str:
    """What ld.so maps for ``soname`` (it loads the libraries, never runs the program)."""
    if not Path(LOADER).exists():
        pytest.fail(f"{LOADER} is needed as the reference")
    out = subprocess.run([LOADER, "--list", str(binary)], capture_output=True, text=True)
    m = re.search(rf"^\s*{re.escape(soname)} => (\S+)", out.stdout, flags=re.M)
    assert m, out.stdout
    return m.group(1)


def system_version() -> str:
    from chrootcheck.openssl.library import load

    return load().version_text


def private_copies(where: Path, *names: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(f"/lib/x86_64-linux-gnu/{name}", where / name)


def test_plain_binary_uses_the_cache(build: Callable[..., Path], tmp_path: Path) -> None:
    binary = build("plain", "-lcrypto")
    r = resolve_binary(str(binary))
    assert r.libcrypto == loader_says(binary, "libcrypto.so.3")
    assert r.libcrypto_via == "/etc/ld.so.cache"
    assert r.version == system_version()
    assert r.static is False and r.interpreter == LOADER
    assert not (tmp_path / "ran").exists()  # never run


@pytest.mark.parametrize(
    ("dtags", "tag"), [("--enable-new-dtags", "DT_RUNPATH"), ("--disable-new-dtags", "DT_RPATH")]
)
def test_origin_in_runpath_and_rpath(
    build: Callable[..., Path], tmp_path: Path, dtags: str, tag: str
) -> None:
    binary = build("app", "-lcrypto", "-Wl,-rpath,$ORIGIN/../private", f"-Wl,{dtags}")
    private_copies(tmp_path / "private", "libcrypto.so.3")
    r = resolve_binary(str(binary))
    expected = str(tmp_path / "bin" / ".." / "private" / "libcrypto.so.3")
    assert os.path.realpath(loader_says(binary, "libcrypto.so.3")) == os.path.realpath(expected)
    assert os.path.realpath(r.libcrypto or "") == os.path.realpath(expected)
    assert r.libcrypto_via == f"{tag} of {binary}"


@pytest.mark.parametrize(
    ("dtags", "private"), [("--enable-new-dtags", False), ("--disable-new-dtags", True)]
)
def test_runpath_is_not_inherited_by_libssl_but_rpath_is(
    build: Callable[..., Path], tmp_path: Path, dtags: str, private: bool
) -> None:
    """libssl (no path of its own) needs libcrypto: the binary's RPATH applies to that search,
    its RUNPATH does not (ld.so(8)), so libcrypto then comes from the cache."""
    binary = build(
        "sslapp",
        "-DUSE_SSL",
        "-Wl,--no-as-needed",
        "-lssl",
        "-Wl,-rpath,$ORIGIN/private",
        f"-Wl,{dtags}",
    )
    private_copies(binary.parent / "private", "libssl.so.3", "libcrypto.so.3")
    r = resolve_binary(str(binary))
    assert [lo.name for lo in r.chain] == ["libssl.so.3", "libcrypto.so.3"]
    assert r.chain[1].needed_by == r.libssl
    assert r.libssl == loader_says(binary, "libssl.so.3")
    assert r.libcrypto == loader_says(binary, "libcrypto.so.3")
    assert (r.libcrypto or "").startswith(str(binary.parent / "private")) is private


def test_openssl_linked_statically(build: Callable[..., Path], tmp_path: Path) -> None:
    binary = build("static", "-static", "-lcrypto", "-lpthread")
    r = resolve_binary(str(binary))
    assert r.static is True and r.libcrypto is None
    assert r.version == system_version()
    assert r.summary.endswith("linked statically (no libcrypto among its DT_NEEDED)")
    assert not (tmp_path / "ran").exists()


def test_not_an_elf_file(tmp_path: Path) -> None:
    script = tmp_path / "daemon"
    script.write_text("#!/bin/sh\ntouch ran\n")
    with pytest.raises(ElfError, match="not an ELF file"):
        read_elf(str(script))
    os.mkfifo(tmp_path / "fifo")  # never opened for a blocking read
    with pytest.raises(ElfError, match="not a regular file"):
        read_elf(str(tmp_path / "fifo"))


def test_info_binary_cli(
    build: Callable[..., Path], cli: Callable[..., Result], tmp_path: Path
) -> None:
    binary = build("plain", "-lcrypto")
    text = cli("info", "--binary", str(binary))
    assert text.code == 0, str(text)
    assert "via /etc/ld.so.cache" in text.stdout
    data = json.loads(cli("info", "--binary", str(binary), "--format", "json").stdout)
    assert data["libcrypto"] == loader_says(binary, "libcrypto.so.3")
    assert data["version"] == system_version()
    (tmp_path / "notes.txt").write_text("not a program\n")
    bad = cli("info", "--binary", str(tmp_path / "notes.txt"))
    assert bad.code == 2 and bad.stderr.count("\n") == 1 and "not an ELF file" in bad.stderr
