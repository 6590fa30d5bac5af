"""Real OpenSSL builds for the tests: the system's 3.0 and a 1.1.1 from a PyPI wheel.

The 1.1.1 is ``psycopg2_binary.libs/libcrypto-*.so.1.1`` (1.1.1r) from psycopg2-binary==2.9.5,
downloaded once with pip into a cache ($CHROOTCHECK_TEST_CACHE, else
~/.cache/chrootcheck-test-builds) and never committed. Without network the 1.1.1 tests skip,
except under CI (env CI set), where they fail: CI must test both libraries.

Also: a guard that fails any binding test leaving an OpenSSL error queue non-empty.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.locks import held

IN_CI = bool(os.environ.get("CI"))
WHEEL_REQ = "psycopg2-binary==2.9.5"
WHEEL_MEMBER_GLOB = "psycopg2_binary.libs/libcrypto-*.so.1.1"
# libssl comes along: it needs the libcrypto beside it (no run path), which tests the loader.
WHEEL_SSL_GLOB = "psycopg2_binary.libs/libssl-*.so.1.1"


def cache_dir() -> Path:
    env = os.environ.get("CHROOTCHECK_TEST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "chrootcheck-test-builds"


@dataclass(frozen=True)
class Build:
    name: str  # "3.0" or "1.1.1": the test id
    path: str
    series: str  # as Libcrypto.series reports it


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message} (CI is set: the OpenSSL builds are required)")
    pytest.skip(message)


@dataclass(frozen=True)
class WheelLib:
    """A libcrypto inside a psycopg2-binary wheel, with the siblings it comes with."""

    requirement: str
    python: str
    platform: str
    members: tuple[str, ...]  # globs inside the wheel; the first is the libcrypto

    @property
    def folder(self) -> str:
        return self.requirement.replace("==", "-")


OPENSSL_111 = WheelLib(
    WHEEL_REQ, "3.11", "manylinux_2_17_x86_64", (WHEEL_MEMBER_GLOB, WHEEL_SSL_GLOB)
)
# 1.0.2q: no DRBG, and it needs the libz-*.so.1.2.3 beside it (DT_NEEDED, no run path).
OPENSSL_102 = WheelLib(
    "psycopg2-binary==2.7.7",
    "3.7",
    "manylinux1_x86_64",
    ("psycopg2/.libs/libcrypto-*.so.1.0.2q", "psycopg2/.libs/libz-*.so.1.2.3"),
)

# 3.5.8: the newest series, whose empty-jail chain starts with "entropy source strength too weak".
OPENSSL_35 = WheelLib(
    "psycopg2-binary==2.9.13",
    "3.11",
    "manylinux_2_17_x86_64",
    ("psycopg2_binary.libs/libcrypto-*.so.3", "psycopg2_binary.libs/libssl-*.so.3"),
)

# The first and the last 1.1.1 with a wheel here (1.1.1g needs its bundled libz, as 1.0.2q).
OPENSSL_111G = WheelLib(
    "psycopg2-binary==2.8.6",
    "3.8",
    "manylinux1_x86_64",
    ("psycopg2_binary.libs/libcrypto-*.so.1.1.1g", "psycopg2_binary.libs/libz-*.so.1.2.3"),
)
OPENSSL_111W = WheelLib(
    "psycopg2-binary==2.9.10", "3.11", "manylinux_2_17_x86_64", (WHEEL_MEMBER_GLOB,)
)


def fetch_wheel_lib(spec: WheelLib) -> Path:
    """The wheel's libcrypto, downloading and unpacking it into the cache if needed."""
    with held("wheels"):  # two worker processes never download into the cache at once
        return _fetch_wheel_lib(spec)


def _fetch_wheel_lib(spec: WheelLib) -> Path:
    target = cache_dir() / spec.folder
    found = [sorted(glob.glob(str(target / Path(m).name))) for m in spec.members]
    if all(found):
        return Path(found[0][0])
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", spec.python, "--platform", spec.platform, spec.requirement,
        "-d", str(wheels), "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pip download {spec.requirement} failed: {proc.stderr.strip()[-300:]}")
    name, _, version = spec.requirement.partition("==")
    wheel = next(iter(sorted(wheels.glob(f"{name.replace('-', '_')}-{version}-*.whl"))), None)
    if wheel is None:
        raise RuntimeError(f"pip download {spec.requirement} left no wheel in {wheels}")
    with zipfile.ZipFile(wheel) as zf:
        target.mkdir(parents=True, exist_ok=True)
        outs = []
        for pattern in spec.members:
            members = [m for m in zf.namelist() if Path(m).match(pattern)]
            if not members:
                raise RuntimeError(f"{wheel.name} has no {pattern}")
            out = target / Path(members[0]).name
            tmp = out.with_suffix(".part")
            tmp.write_bytes(zf.read(members[0]))
            os.replace(tmp, out)  # atomic: a concurrent run never loads half a library
            outs.append(out)
    return outs[0]


def fetch_openssl_111() -> Path:
    """The 1.1.1r libcrypto (and its libssl) from psycopg2-binary 2.9.5."""
    return fetch_wheel_lib(OPENSSL_111)


@pytest.fixture(scope="session")
def libcrypto_111() -> Build:
    try:
        path = fetch_openssl_111()
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        _unavailable(f"OpenSSL 1.1.1 from {WHEEL_REQ} is not available: {e}")
        raise  # unreachable: skip/fail raise
    return Build("1.1.1", str(path), "1.1.1")


@pytest.fixture(scope="session")
def libcrypto_102() -> Build:
    """An extra: OpenSSL 1.0.2q, to check the no-DRBG path and the bundled-libz loading."""
    try:
        path = fetch_wheel_lib(OPENSSL_102)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        _unavailable(f"OpenSSL 1.0.2 from {OPENSSL_102.requirement} is not available: {e}")
        raise
    return Build("1.0.2", str(path), "1.0.2")


@pytest.fixture(scope="session")
def libcrypto_35() -> Build:
    """OpenSSL 3.5.8 from a wheel: the 3.x series beyond the system's 3.0."""
    try:
        path = fetch_wheel_lib(OPENSSL_35)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        _unavailable(f"OpenSSL 3.5 from {OPENSSL_35.requirement} is not available: {e}")
        raise
    return Build("3.5", str(path), "3.x")


@pytest.fixture(scope="session")
def libcrypto_30() -> Build:
    from chrootcheck.openssl.library import ssl_module_libcrypto

    path = ssl_module_libcrypto()
    if path is None or ".so.3" not in path:
        _unavailable(f"the ssl module's libcrypto is not an OpenSSL 3 ({path})")
        raise AssertionError("unreachable")
    return Build("3.0", path, "3.x")


@pytest.fixture(scope="session", params=["3.0", "1.1.1"])
def libcrypto_build(request: pytest.FixtureRequest) -> Build:
    """Each test using this runs once per real OpenSSL build."""
    name = "libcrypto_30" if request.param == "3.0" else "libcrypto_111"
    build: Build = request.getfixturevalue(name)
    return build


@pytest.fixture
def error_queue_guard() -> Iterator[None]:
    """Fail the test if it leaves an error in any loaded libcrypto's queue (this thread)."""
    yield
    from chrootcheck.openssl import library
    from chrootcheck.openssl.errors import drain

    leftovers = []
    for lc in list(library._CACHE.values()):
        records = drain(lc)  # also empties it, so the next test starts clean
        leftovers += [f"{lc.version_text}: {r.openssl_line()}" for r in records]
    if leftovers:
        pytest.fail("error queue left non-empty:\n" + "\n".join(leftovers))


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    try:
        from chrootcheck.openssl.library import ssl_module_libcrypto

        lines.append(f"libcrypto (ssl module): {ssl_module_libcrypto()}")
    except Exception as e:  # a header must never break the run
        lines.append(f"libcrypto (ssl module): unknown ({e})")
    cached = sorted(glob.glob(str(cache_dir() / "psycopg2-binary-2.9.5" / "libcrypto-*")))
    lines.append(f"libcrypto 1.1.1 ({WHEEL_REQ}): {cached[0] if cached else 'not cached yet'}")
    return lines
