"""Shared fixtures: real jails in tmp_path, the root marker, a CLI runner that shows output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# These machines set PYTHONDONTWRITEBYTECODE: then every xdist worker compiles (and pytest
# rewrites) every module again, about 5 s per worker, and every `python -m chrootcheck` a
# test starts compiles what it imports. The suite keeps its bytecode caches (the gitignored
# __pycache__ folders), for itself and for the processes it starts.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

pytest_plugins = ["tests.openssl_builds"]

ROOT = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))
IS_ROOT = os.geteuid() == 0


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"chrootcheck tests: root={IS_ROOT} CI={IN_CI} cli={CLI_MODE}"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "subprocess: runs chrootcheck as a real process (smoke tests, signals, ttys, start-up); "
        "every other test calls the CLI in process",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that need root skip elsewhere with a reason, but never under CI: CI runs as root,
    # and a skipped root test there would hide exactly what it is meant to prove.
    if IS_ROOT:
        return
    for item in items:
        if item.get_closest_marker("root"):
            if IN_CI:
                item.add_marker(
                    pytest.mark.xfail(reason="CI must run as root", strict=True, run=False)
                )
                item.add_marker(pytest.mark.usefixtures("_fail_not_root"))
            else:
                item.add_marker(pytest.mark.skip(reason="needs root (mknod, mount, chroot)"))


@pytest.fixture
def _fail_not_root() -> None:
    pytest.fail("this test needs root and CI is set: run CI as root")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


# The environment every CLI run gets: plain output, wide lines, and a short probe timeout (a
# FIFO in a test jail makes a probe scenario wait until it).
CLI_ENV = {"NO_COLOR": "1", "COLUMNS": "160", "CHROOTCHECK_PROBE_TIMEOUT": "1"}
# CHROOTCHECK_TESTS_CLI=subprocess runs every ``cli`` call as a real process instead, the way
# the whole suite ran before: a check that the in-process runner changes nothing.
CLI_MODE = os.environ.get("CHROOTCHECK_TESTS_CLI", "in-process")


def run_cli(
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    beside_threads: bool = False,
) -> Result:
    """Run the CLI as ``chrootcheck ARGS`` would, in this process: ``cli.main`` with its own
    stdin/stdout/stderr, environment and exit code (see ``tests/cli_inprocess.py``).
    ``beside_threads``: the test's own threads race the run (which must not probe then)."""
    if CLI_MODE == "subprocess":
        return run_cli_subprocess(*args, input=input, env=env, timeout=timeout)
    from tests.cli_inprocess import run_in_process

    code, out, err = run_in_process(
        list(args),
        input=input,
        env={**CLI_ENV, "CHROOTCHECK_DEBUG": None, **(env or {})},
        timeout=timeout,
        beside_threads=beside_threads,
    )
    return Result(code, out, err)


def run_cli_subprocess(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> Result:
    """Run the real CLI in a subprocess (``python -m chrootcheck``), from this checkout: for
    the smoke tests and for what needs a process of its own (signals, ttys, start-up)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **CLI_ENV}
    full_env.pop("CHROOTCHECK_DEBUG", None)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "chrootcheck", *args],
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        errors="surrogateescape",
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli() -> Callable[..., Result]:
    """The CLI, in process (fast); ``cli_subprocess`` for a real process."""
    return run_cli


@pytest.fixture
def cli_subprocess() -> Callable[..., Result]:
    return run_cli_subprocess


def make_node(path: Path, major: int, minor: int, mode: int = 0o666, char: bool = True) -> None:
    import stat

    kind = stat.S_IFCHR if char else stat.S_IFBLK
    os.mknod(path, kind | mode, os.makedev(major, minor))
    os.chmod(path, mode)  # mknod's mode is filtered by the umask


def open_up(path: Path) -> None:
    """Let any user search every folder from / down to ``path`` (pytest's folders are 0700):
    the probe's children and the daemons run as nobody or the service's user."""
    for p in [path, *path.parents]:
        if p == Path("/"):
            break
        os.chmod(p, os.stat(p).st_mode | 0o055)


def good_jail(root: Path) -> Path:
    """A jail with correct /dev/urandom and /dev/random (needs root for mknod)."""
    (root / "dev").mkdir(parents=True, exist_ok=True)
    make_node(root / "dev" / "urandom", 1, 9)
    make_node(root / "dev" / "random", 1, 8)
    return root


@pytest.fixture
def jail(tmp_path: Path) -> Path:
    root = tmp_path / "jail"
    root.mkdir()
    return root


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount real tmpfs file systems (root only); unmounted after the test."""
    mounted: list[Path] = []

    def mount(where: Path, options: str = "") -> Path:
        where.mkdir(parents=True, exist_ok=True)
        cmd = (
            ["mount", "-t", "tmpfs"] + (["-o", options] if options else []) + ["tmpfs", str(where)]
        )
        subprocess.run(cmd, check=True, capture_output=True)
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


# --- fixtures added for `chrootcheck fix` and `demo` (tests/test_fix.py, tests/test_demo.py) ---


def mounts_below(top: Path) -> list[str]:
    """Mount points strictly below ``top`` (host paths), deepest first."""
    prefix = os.path.realpath(top).rstrip("/") + "/"
    points: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                points.append(point)
    return sorted(set(points), key=lambda p: -p.count("/"))


@pytest.fixture
def unmount_all(tmp_path: Path) -> Iterator[Callable[[], list[str]]]:
    """Whatever a test (or the fixer's --bind) mounted under tmp_path is unmounted after it.
    The fixture value lists those mounts, so a test can assert on them too."""
    yield lambda: mounts_below(tmp_path)
    for _ in range(3):  # stacked mounts need one pass per layer
        points = mounts_below(tmp_path)
        if not points:
            break
        for point in points:
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def make_socket(path: Path) -> None:
    """A Unix socket file nobody listens on (bound, then closed: the file stays)."""
    import socket

    # Bound through the folder's descriptor: a sun_path holds 107 bytes, and a deep tmp_path
    # (a pytest-xdist worker's) is longer than that.
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(f"/proc/self/fd/{folder}/{path.name}")
    finally:
        os.close(folder)


@pytest.fixture
def bad_jail(jail: Path) -> Path:
    """A jail whose entropy devices are non-regular traps, built without root: /dev/urandom a
    FIFO (critical), /dev/random an empty regular file (critical), plus a socket and a FIFO
    elsewhere (info). A location pointing at any of them would hang GitHub's uploader."""
    (jail / "dev").mkdir()
    os.mkfifo(jail / "dev" / "urandom")
    (jail / "dev" / "random").write_bytes(b"")
    (jail / "run").mkdir()
    make_socket(jail / "run" / "app.sock")
    (jail / "var" / "spool").mkdir(parents=True)
    os.mkfifo(jail / "var" / "spool" / "fifo")
    return jail


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool from Debian's prometheus package. Not installed system-wide (the package's
    maintainer scripts would start a Prometheus server): the .deb is fetched with apt-get
    download and only promtool is kept, in the builds' cache, once for every worker and run.
    Fails under CI when it cannot be had; skips elsewhere."""
    found = shutil.which("promtool")
    if found:
        return found
    from tests.locks import held
    from tests.openssl_builds import cache_dir

    tool = cache_dir() / "promtool"
    with held("promtool"):
        if not tool.exists():
            _fetch_promtool(tool)
    return str(tool)


def _fetch_promtool(tool: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        for attempt in ("download", "update-then-download"):
            if attempt != "download":
                subprocess.run(["apt-get", "update"], capture_output=True, timeout=300)
            r = subprocess.run(
                ["apt-get", "download", "prometheus"],
                cwd=where,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if r.returncode == 0:
                break
        debs = list(where.glob("prometheus_*.deb"))
        if not debs:
            message = f"promtool unavailable (apt-get download prometheus: {r.stderr.strip()})"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(where / "root")], check=True)
        tool.parent.mkdir(parents=True, exist_ok=True)
        part = tool.with_suffix(".part")
        shutil.copy2(where / "root" / "usr" / "bin" / "promtool", part)
        os.replace(part, tool)  # whole or absent: a killed run never leaves half a tool


def stop_daemon(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 10) -> None:
    """Stop a real daemon a test started: SIGTERM, then SIGKILL after ``grace`` seconds;
    reaped either way."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)
