"""A jail's owner changes it while chrootcheck reads it: truncation, node swaps, symlink flips.

Each test builds the attack for real (a background process or thread rewriting the jail) and
runs the real reader, walker or CLI; the loops are bounded and everything is cleaned up.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chrootcheck.jail import fs as jailfs
from chrootcheck.jail import walker
from tests.conftest import ROOT, Result, make_node

VERSION = b"OpenSSL 3.0.13 30 Jan 2024"


def run_py(code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Python code in a child process: a hang becomes a TimeoutExpired, a SIGBUS a -7."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@contextmanager
def churning(step: Callable[[], None], pause: float = 0.0) -> Iterator[list[int]]:
    """Run ``step`` in a loop on a thread until the block ends; yields a list holding the
    number of steps done (so a test can check the attack really ran)."""
    stop = threading.Event()
    done = [0]
    failure: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                step()
                done[0] += 1
                if pause:
                    time.sleep(pause)
        except BaseException as e:  # pragma: no cover - shown by the assert below
            failure.append(e)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield done
    finally:
        stop.set()
        t.join(10)
    assert not failure, failure


# -- the reader itself -----------------------------------------------------------------------


def test_reader_never_returns_more_than_the_cap(tmp_path: Path) -> None:
    f = tmp_path / "big"
    f.write_bytes(b"x" * 10_000)
    with pytest.raises(jailfs.RefusedRead) as e:
        jailfs.read_regular("big", dir_fd=os.open(tmp_path, os.O_PATH), limit=4096)
    assert e.value.errno == errno.EFBIG and e.value.size == 10_000
    assert "10000 bytes, more than the 4096 bytes" in str(e.value.strerror)
    assert jailfs.read_regular(str(f), limit=10_000) == b"x" * 10_000
    # A file that grows after the size check: read_chunks still stops at the cap.
    fd, st = jailfs.open_regular(str(f), limit=10_000)
    try:
        with open(f, "ab") as grow:
            grow.write(b"y" * 50_000)
        got = b"".join(jailfs.read_chunks(fd, 10_000, chunk=3000))
    finally:
        os.close(fd)
    assert st.st_size == 10_000 and len(got) == 10_000


def test_reader_refuses_a_file_that_grew_past_the_cap(tmp_path: Path) -> None:
    # read_regular reads one byte past the cap to tell "exactly the cap" from "more".
    f = tmp_path / "f"
    f.write_bytes(b"a" * 100)
    fd, _ = jailfs.open_regular(str(f), limit=100)
    os.close(fd)
    with open(f, "ab") as grow:
        grow.write(b"b")
    with pytest.raises(jailfs.RefusedRead) as e:
        jailfs.read_regular(str(f), limit=100)
    assert e.value.errno == errno.EFBIG


def test_reader_handles_a_file_that_shrinks_between_fstat_and_read(tmp_path: Path) -> None:
    f = tmp_path / "libcrypto.so.3"
    f.write_bytes(b"\0" * (1 << 20) + VERSION)
    fd, st = jailfs.open_regular(str(f), limit=2 << 20)
    try:
        os.truncate(f, 10)  # after the fstat, before any read
        got = b"".join(jailfs.read_chunks(fd, 2 << 20))
    finally:
        os.close(fd)
    assert st.st_size == (1 << 20) + len(VERSION)
    assert got == b"\0" * 10


def test_reader_names_what_it_refuses(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    os.symlink("dir", tmp_path / "link")
    (tmp_path / "file").write_bytes(b"content")
    os.symlink("file", tmp_path / "file-link")
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name, word in (("dir", "folder"), ("link", "symlink"), ("file-link", "symlink")):
            with pytest.raises(jailfs.RefusedRead) as e:
                jailfs.read_regular(name, dir_fd=dfd, limit=100)
            assert e.value.strerror == f"a {word}, not a regular file", name
        with pytest.raises(jailfs.RefusedRead) as e:
            jailfs.read_regular("missing", dir_fd=dfd, limit=100)
        assert e.value.errno == errno.ENOENT
        # A host path the administrator chose may be a symlink (follow=True).
        assert jailfs.read_regular(str(tmp_path / "file-link"), follow=True, limit=100) == (
            b"content"
        )
    finally:
        os.close(dfd)


def _read_in_child(folder: Path, name: str) -> subprocess.CompletedProcess[str]:
    return run_py(
        f"""
        import os
        from chrootcheck.jail import fs as jailfs
        from chrootcheck.jail import walker
        dfd = os.open({str(folder)!r}, os.O_RDONLY | os.O_DIRECTORY)
        try:
            jailfs.read_regular({name!r}, dir_fd=dfd, limit=1 << 20)
            print("READ")
        except jailfs.RefusedRead as e:
            print("REFUSED", e.strerror)
        print("WALKER", walker.read_libcrypto_version(dfd, {name!r}))
        """,
        timeout=15,
    )


def test_reader_never_opens_a_fifo(tmp_path: Path) -> None:
    # The swap made deterministic: the name the listing saw as a regular file is a FIFO by
    # the time it is read. Nobody writes to it: opening it for reading could block.
    os.mkfifo(tmp_path / "libcrypto.so.3")
    proc = _read_in_child(tmp_path, "libcrypto.so.3")
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED a FIFO, not a regular file" in proc.stdout
    assert (
        "WALKER (None, 0, 'not read: a FIFO, not a regular file "
        "(it changed after the folder was listed)')" in proc.stdout
    )


@pytest.mark.root
def test_reader_never_opens_a_device(tmp_path: Path) -> None:
    make_node(tmp_path / "libcrypto.so.3", 1, 5)  # /dev/zero: a read would succeed
    make_node(tmp_path / "block", 7, 0, char=False)
    proc = _read_in_child(tmp_path, "libcrypto.so.3")
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED a character device, not a regular file" in proc.stdout
    assert "'not read: a character device, not a regular file (it changed" in proc.stdout
    proc = _read_in_child(tmp_path, "block")
    assert "REFUSED a block device, not a regular file" in proc.stdout


# -- the walker reading a libcrypto that changes -------------------------------------------------


def test_libcrypto_version_found_across_a_chunk_boundary(tmp_path: Path) -> None:
    f = tmp_path / "libcrypto.so.1.1"
    f.write_bytes(b"\0" * (jailfs.READ_CHUNK - 10) + b"OpenSSL 1.1.1w  11 Sep 2023\0" + b"\0" * 99)
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert walker.read_libcrypto_version(dfd, f.name) == (
            "OpenSSL 1.1.1w  11 Sep 2023",
            f.stat().st_size,
            "",
        )
    finally:
        os.close(dfd)


@pytest.fixture
def big_libcrypto(jail: Path) -> Path:
    (jail / "lib").mkdir()
    lib = jail / "lib" / "libcrypto.so.3"
    with open(lib, "wb") as f:
        f.truncate(48 << 20)  # sparse, cheap to write; the version string at the very end
        f.seek(0, os.SEEK_END)
        f.write(VERSION + b"\0")
    return lib


def _truncate_and_regrow(lib: Path) -> Callable[[], None]:
    size = lib.stat().st_size

    def step() -> None:
        fd = os.open(lib, os.O_WRONLY)
        try:
            os.ftruncate(fd, 4096)
            time.sleep(0.003)  # keep it short long enough for a reader to run off the end
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    return step


def test_walker_survives_a_libcrypto_truncated_while_read(big_libcrypto: Path) -> None:
    # In a child process: a SIGBUS shows as returncode -7 instead of killing pytest.
    proc = run_py(
        f"""
        import os, threading, time
        from chrootcheck.jail import walker
        lib = {str(big_libcrypto)!r}
        size = os.stat(lib).st_size
        stop = False
        def churn():
            while not stop:
                fd = os.open(lib, os.O_WRONLY)
                os.ftruncate(fd, 4096); time.sleep(0.003); os.ftruncate(fd, size); os.close(fd)
        t = threading.Thread(target=churn); t.start()
        dfd = os.open(os.path.dirname(lib), os.O_RDONLY | os.O_DIRECTORY)
        try:
            results = set()
            for _ in range(40):
                version, got, note = walker.read_libcrypto_version(dfd, "libcrypto.so.3")
                assert got <= size and note == "", (got, note)
                results.add(version)
        finally:
            stop = True
            t.join()
        print("OK", sorted(map(str, results)))
        """,
        timeout=120,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr}"
    assert proc.stdout.startswith("OK")


def test_scan_survives_a_libcrypto_truncated_while_read(
    big_libcrypto: Path, cli: Callable[..., Result]
) -> None:
    codes = []
    with churning(_truncate_and_regrow(big_libcrypto), pause=0.001) as done:
        for _ in range(6):
            r = cli(
                "scan",
                "--no-probe",
                "--no-late-loads",
                "--format",
                "json",
                str(big_libcrypto.parent.parent),
                beside_threads=True,
            )
            codes.append(r.code)
            assert r.code in (0, 1), str(r)  # not 135 / -7 (SIGBUS), not 2
            data = json.loads(r.stdout)
            (copy,) = data["jails"][0]["libcrypto"]
            assert copy["path"] == "/lib/libcrypto.so.3"
            assert copy["version"] in (None, VERSION.decode())
    assert done[0] > 6, "the truncation loop did not run"


# -- a node swapped for a FIFO or a device after the listing -------------------------------


def _swapper(folder: Path, name: str, sources: list[Path]) -> Callable[[], None]:
    """Each step puts the next source at ``folder/name`` atomically (a hard link renamed over
    it): a regular file one moment, a FIFO or a device the next."""
    state = [0]

    def step() -> None:
        src = sources[state[0] % len(sources)]
        state[0] += 1
        tmp = folder / ".swap"
        os.link(src, tmp)
        os.rename(tmp, folder / name)
        if tmp.exists():  # rename between two links of one inode does nothing
            tmp.unlink()

    return step


def _swap_sources(tmp_path: Path, with_device: bool) -> list[Path]:
    side = tmp_path / "side"
    side.mkdir()
    (side / "reg").write_bytes(b"\0" * 4096 + VERSION + b"\0")
    os.mkfifo(side / "fifo")
    sources = [side / "reg", side / "fifo"]
    if with_device:
        make_node(side / "dev", 1, 5)  # /dev/zero
        sources.append(side / "dev")
    return sources


def _scan_while_swapping(
    jail: Path, tmp_path: Path, cli: Callable[..., Result], with_device: bool
) -> set[str]:
    (jail / "lib").mkdir()
    sources = _swap_sources(tmp_path, with_device)
    os.link(sources[0], jail / "lib" / "libcrypto.so.3")
    seen: set[str] = set()
    with churning(_swapper(jail / "lib", "libcrypto.so.3", sources)) as done:
        for _ in range(8):
            # run_cli's timeout turns a blocked scan into a failure, not a hang.
            r = cli(
                "scan",
                "--no-probe",
                "--no-late-loads",
                "--format",
                "json",
                str(jail),
                timeout=60,
                beside_threads=True,
            )
            assert r.code in (0, 1), str(r)
            for f in json.loads(r.stdout)["jails"][0]["findings"]:
                if f["path"] == "/lib/libcrypto.so.3":
                    seen.add(f["details"].get("not_read") or f["check"])
    assert done[0] > 8, "the swap loop did not run"
    return seen


def test_scan_never_blocks_on_a_libcrypto_swapped_for_a_fifo(
    jail: Path, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    seen = _scan_while_swapping(jail, tmp_path, cli, with_device=False)
    # Every sighting is a copy read (CC170), a FIFO seen by the listing (CC162), or one
    # refused at the read with its type.
    allowed = {
        "CC170",
        "CC162",
        "not read: a FIFO, not a regular file (it changed after the folder was listed)",
    }
    assert seen and seen <= allowed, seen


@pytest.mark.root
def test_scan_never_opens_a_libcrypto_swapped_for_a_device(
    jail: Path, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    seen = _scan_while_swapping(jail, tmp_path, cli, with_device=True)
    allowed = {
        "CC170",
        "CC162",
        "CC160",
        "not read: a FIFO, not a regular file (it changed after the folder was listed)",
        "not read: a character device, not a regular file (it changed after the folder was listed)",
    }
    assert seen and seen <= allowed, seen


# -- a symlink flipped to a file or folder between fstatat and readlinkat -------------------


def _flipper(folder: Path, name: str, make: list[Callable[[Path], None]]) -> Callable[[], None]:
    state = [0]

    def step() -> None:
        tmp = folder / f".flip{state[0] % 2}"
        make[state[0] % len(make)](tmp)
        state[0] += 1
        os.rename(tmp, folder / name)  # a folder cannot replace a non-folder: made so below

    return step


def test_resolve_retries_a_symlink_replaced_by_a_file(jail: Path) -> None:
    dev = jail / "dev"
    dev.mkdir()
    (dev / "random").write_bytes(b"")

    def link(p: Path) -> None:
        os.symlink("random", p)

    def file(p: Path) -> None:
        p.write_bytes(b"")

    (dev / "urandom").write_bytes(b"")
    root = jailfs.open_jail(str(jail))
    errors: dict[int | None, int] = {}
    try:
        with churning(_flipper(dev, "urandom", [link, file])) as done:
            deadline = time.monotonic() + 4
            n = 0
            while time.monotonic() < deadline and n < 20_000:
                with jailfs.resolve(root, "/dev/urandom") as res:
                    errors[res.error] = errors.get(res.error, 0) + 1
                n += 1
    finally:
        os.close(root)
    assert done[0] > 100, "the flip loop did not run"
    assert set(errors) <= {None, errno.EAGAIN}, errors  # never EINVAL, never ENOENT
    assert errors.get(errno.EAGAIN, 0) < n / 100, errors


def _exchange(a: Path, b: Path) -> None:
    """renameat2(RENAME_EXCHANGE): ``a`` and ``b`` swap places atomically (a folder and a
    symlink included, which plain rename cannot do)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), rename_exchange) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a))


def test_scan_is_not_a_tool_error_while_dev_flips(jail: Path, cli: Callable[..., Result]) -> None:
    # /dev itself flips between a symlink and a folder, and /realdev/urandom between a symlink
    # and a regular file: the old resolver ended in exit 2 "Invalid argument at /dev" when
    # readlinkat met the folder that fstatat had seen as a symlink.
    real = jail / "realdev"
    real.mkdir()
    (real / "random").write_bytes(b"")
    (real / "urandom").write_bytes(b"")
    os.symlink("realdev", jail / "dev")
    (jail / "devdir").mkdir()
    (jail / "devdir" / "urandom").write_bytes(b"")

    def link(p: Path) -> None:
        os.symlink("random", p)

    def file(p: Path) -> None:
        p.write_bytes(b"")

    flip_dev = lambda: _exchange(jail / "dev", jail / "devdir")  # noqa: E731
    with churning(flip_dev) as flips, churning(_flipper(real, "urandom", [link, file])) as swaps:
        for _ in range(12):
            r = cli(
                "scan",
                "--no-probe",
                "--no-late-loads",
                "--format",
                "json",
                str(jail),
                beside_threads=True,
            )
            assert r.code in (0, 1), str(r)
            assert "Invalid argument" not in r.stdout + r.stderr
            notices = json.loads(r.stdout)["jails"][0]["notices"]
            assert not [n for n in notices if n["kind"] == "error"], notices
    assert flips[0] > 12 and swaps[0] > 12, "the flip loops did not run"


def test_resolve_retries_a_symlink_exchanged_with_a_folder(jail: Path) -> None:
    (jail / "realdev").mkdir()
    (jail / "realdev" / "urandom").write_bytes(b"")
    os.symlink("realdev", jail / "dev")
    (jail / "devdir").mkdir()
    (jail / "devdir" / "urandom").write_bytes(b"")
    root = jailfs.open_jail(str(jail))
    errors: dict[int | None, int] = {}
    try:
        with churning(lambda: _exchange(jail / "dev", jail / "devdir")) as done:
            deadline = time.monotonic() + 4
            n = 0
            while time.monotonic() < deadline and n < 20_000:
                with jailfs.resolve(root, "/dev/urandom") as res:
                    errors[res.error] = errors.get(res.error, 0) + 1
                n += 1
    finally:
        os.close(root)
    assert done[0] > 100, "the exchange loop did not run"
    assert set(errors) <= {None, errno.EAGAIN}, errors
    assert errors.get(errno.EAGAIN, 0) < n / 100, errors


def test_walk_skips_a_folder_replaced_after_the_listing(jail: Path) -> None:
    # sub/ flips between a folder and a symlink (exchanged atomically) during walks: a walk
    # sees it as one or the other, never as an unreadable folder.
    (jail / "sub").mkdir()
    (jail / "sub" / "f").write_bytes(b"")
    os.symlink("/etc", jail / "other")
    root = jailfs.open_jail(str(jail))
    kinds: set[str] = set()
    try:
        with churning(lambda: _exchange(jail / "sub", jail / "other")) as done:
            for _ in range(3000):
                kinds.update(m.kind for m in walker.walk(root, mounts={}).met)
    finally:
        os.close(root)
    assert done[0] > 100, "the exchange loop did not run"
    assert "unreadable" not in kinds


def test_a_device_path_that_keeps_changing_is_a_finding_not_a_tool_error() -> None:
    from chrootcheck.jail import inspector
    from chrootcheck.report.model import JailReport, Severity

    # What resolve() returns once MAX_RETRIES looks all lost the race.
    res = jailfs.Resolution("/dev/urandom", "/dev", errno.EAGAIN, "/dev")
    report = JailReport(jail="/j")
    assert inspector._unresolved(res, "/dev/urandom", "urandom", "ok", "", report) is None
    (f,) = report.findings
    assert (f.check, f.severity, f.path) == ("CC118", Severity.WARNING, "/dev/urandom")
    assert "kept changing during the scan (at /dev" in f.message
    assert not report.tool_error and not report.notices
