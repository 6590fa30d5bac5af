"""One test per check, positive and negative, on real jails with real nodes, sockets and mounts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chrootcheck.jail.inspector import ScanOptions, inspect_jail
from chrootcheck.jail.users import parse_user
from chrootcheck.report.model import JailReport, Severity
from tests.conftest import good_jail, make_node

SYSTEM_LIBCRYPTO = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"


def scan(jail: Path, **kw: object) -> JailReport:
    return inspect_jail(str(jail), ScanOptions(**kw))  # type: ignore[arg-type]


def ids(report: JailReport, path: str | None = None) -> set[str]:
    return {f.check for f in report.findings if path is None or f.path == path}


def finding(report: JailReport, check: str, path: str | None = None):  # type: ignore[no-untyped-def]
    found = [f for f in report.findings if f.check == check and (path is None or f.path == path)]
    assert found, f"no {check} in {[(f.check, f.path) for f in report.findings]}"
    return found[0]


# ---------------------------------------------------------------- a correct jail


@pytest.mark.root
def test_correct_jail_has_no_error(jail: Path) -> None:
    report = scan(good_jail(jail))
    assert report.at_or_above(Severity.WARNING) == []
    assert not report.tool_error


@pytest.mark.root
def test_symlink_to_a_correct_node_inside_the_jail_is_fine(jail: Path) -> None:
    (jail / "devices").mkdir()
    make_node(jail / "devices" / "urandom", 1, 9)
    (jail / "dev").mkdir()
    os.symlink("/devices/urandom", jail / "dev" / "urandom")
    make_node(jail / "dev" / "random", 1, 8)
    report = scan(jail)
    assert ids(report, "/dev/urandom") == set()


# ---------------------------------------------------------------- missing


def test_dev_missing(jail: Path) -> None:
    report = scan(jail)
    assert {"CC100", "CC101", "CC102"} <= ids(report)
    assert finding(report, "CC100").path == "/dev"
    assert "whole /dev" in finding(report, "CC101").message


def test_dev_present_nodes_missing(jail: Path) -> None:
    (jail / "dev").mkdir()
    report = scan(jail)
    assert "CC100" not in ids(report)
    assert {"CC101", "CC102"} <= ids(report)
    assert finding(report, "CC101").severity is Severity.ERROR


@pytest.mark.root
def test_only_random_missing(jail: Path) -> None:
    (jail / "dev").mkdir()
    make_node(jail / "dev" / "urandom", 1, 9)
    report = scan(jail)
    assert ids(report, "/dev/random") == {"CC102"}
    assert ids(report, "/dev/urandom") == set()


# ---------------------------------------------------------------- wrong kinds


@pytest.mark.parametrize("content", [b"", b"not random at all"])
def test_regular_file_is_critical(jail: Path, content: bytes) -> None:
    (jail / "dev").mkdir()
    (jail / "dev" / "urandom").write_bytes(content)
    f = finding(scan(jail), "CC110", "/dev/urandom")
    assert f.severity is Severity.CRITICAL
    assert ("empty" in f.message) == (content == b"")
    assert f.details["size"] == len(content)


def test_fifo_is_reported_without_blocking(jail: Path, cli: Callable[..., object]) -> None:
    (jail / "dev").mkdir()
    os.mkfifo(jail / "dev" / "urandom")
    os.mkfifo(jail / "dev" / "random")
    report = scan(jail)  # would hang forever if anything opened the FIFO for reading
    assert finding(report, "CC111", "/dev/urandom").severity is Severity.CRITICAL
    assert "CC111" in ids(report, "/dev/random")


def test_socket(jail: Path) -> None:
    (jail / "dev").mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(jail / "dev" / "urandom"))
    try:
        assert "CC112" in ids(scan(jail), "/dev/urandom")
    finally:
        s.close()


def test_directory(jail: Path) -> None:
    (jail / "dev" / "urandom").mkdir(parents=True)
    assert "CC113" in ids(scan(jail), "/dev/urandom")


def test_symlink_to_host_path_dangles_inside_the_jail(jail: Path) -> None:
    (jail / "dev").mkdir()
    os.symlink("/etc/hostname", jail / "dev" / "urandom")  # exists on the host, not in the jail
    os.symlink("../../../../../../etc/passwd", jail / "dev" / "random")
    report = scan(jail)
    f = finding(report, "CC114", "/dev/urandom")
    assert "/etc/hostname" in f.message
    assert "CC114" in ids(report, "/dev/random")


def test_symlink_loop(jail: Path) -> None:
    (jail / "dev").mkdir()
    os.symlink("/dev/urandom", jail / "dev" / "urandom")  # points at itself once chrooted
    os.symlink("random2", jail / "dev" / "random")
    os.symlink("random", jail / "dev" / "random2")
    report = scan(jail)
    assert "CC115" in ids(report, "/dev/urandom")
    assert "CC115" in ids(report, "/dev/random")


@pytest.mark.root
def test_block_device(jail: Path) -> None:
    (jail / "dev").mkdir()
    make_node(jail / "dev" / "urandom", 7, 0, char=False)
    assert "CC116" in ids(scan(jail), "/dev/urandom")


def test_dev_is_a_file(jail: Path) -> None:
    (jail / "dev").write_text("oops")
    report = scan(jail)
    assert "CC117" in ids(report, "/dev/urandom")
    assert "CC100" not in ids(report)


# ---------------------------------------------------------------- device numbers


@pytest.mark.root
@pytest.mark.parametrize(
    ("numbers", "check", "severity"),
    [
        ((1, 3), "CC121", Severity.CRITICAL),  # /dev/null
        ((1, 5), "CC121", Severity.CRITICAL),  # /dev/zero
        ((1, 7), "CC120", Severity.ERROR),  # /dev/full
        ((1, 8), "CC120", Severity.WARNING),  # random in urandom's place: still the kernel's CSPRNG
        ((4, 1), "CC120", Severity.ERROR),  # a tty
    ],
)
def test_wrong_numbers(
    jail: Path, numbers: tuple[int, int], check: str, severity: Severity
) -> None:
    good_jail(jail)
    (jail / "dev" / "urandom").unlink()
    make_node(jail / "dev" / "urandom", *numbers)
    f = finding(scan(jail), check, "/dev/urandom")
    assert f.severity is severity
    assert (f.details["major"], f.details["minor"]) == numbers


# ---------------------------------------------------------------- permissions


@pytest.mark.root
def test_not_readable_by_others_without_user(jail: Path) -> None:
    good_jail(jail)
    os.chmod(jail / "dev" / "urandom", 0o600)
    report = scan(jail)
    assert finding(report, "CC131", "/dev/urandom").severity is Severity.WARNING
    assert "CC131" not in ids(report, "/dev/random")


@pytest.mark.root
def test_user_cannot_read_node(jail: Path) -> None:
    good_jail(jail)
    os.chmod(jail / "dev" / "urandom", 0o660)
    user = parse_user("nobody")
    report = scan(jail, user=user)
    f = finding(report, "CC130", "/dev/urandom")
    assert "nobody" in f.message
    assert "CC130" not in ids(report, "/dev/random")
    # the owner may read it: same node, no finding for root
    assert "CC130" not in ids(scan(jail, user=parse_user("0")))


@pytest.mark.root
def test_user_cannot_search_dev(jail: Path) -> None:
    good_jail(jail)
    os.chmod(jail / "dev", 0o700)
    f = finding(scan(jail, user=parse_user("65534:65534")), "CC130", "/dev/urandom")
    assert "/dev" in f.details["blocked_folders"]


@pytest.mark.root
def test_group_bits_apply_to_the_group(jail: Path) -> None:
    good_jail(jail)
    node = jail / "dev" / "urandom"
    os.chown(node, 0, 4242)
    os.chmod(node, 0o640)
    assert "CC130" not in ids(scan(jail, user=parse_user("5000:4242")), "/dev/urandom")
    assert "CC130" in ids(scan(jail, user=parse_user("5000:5000")), "/dev/urandom")


# ---------------------------------------------------------------- mounts


@pytest.mark.root
def test_nodev_mount(jail: Path, tmpfs: Callable[..., Path]) -> None:
    dev = tmpfs(jail / "dev", "nodev,mode=0755")
    make_node(dev / "urandom", 1, 9)
    make_node(dev / "random", 1, 8)
    report = scan(jail)
    assert finding(report, "CC140", "/dev/urandom").severity is Severity.ERROR
    assert "CC140" in ids(report, "/dev/random")


@pytest.mark.root
def test_dev_mount_without_nodev_is_fine(jail: Path, tmpfs: Callable[..., Path]) -> None:
    dev = tmpfs(jail / "dev", "mode=0755")
    make_node(dev / "urandom", 1, 9)
    make_node(dev / "random", 1, 8)
    assert "CC140" not in ids(scan(jail))


@pytest.mark.root
def test_readonly_dev(jail: Path, tmpfs: Callable[..., Path]) -> None:
    dev = tmpfs(jail / "dev", "mode=0755")
    subprocess.run(["mount", "-o", "remount,ro", str(dev)], check=True)
    report = scan(jail)
    assert finding(report, "CC141", "/dev").severity is Severity.INFO
    assert {"CC101", "CC102"} <= ids(report)


@pytest.mark.root
def test_host_node_bind_mounted_is_correct(jail: Path) -> None:
    (jail / "dev").mkdir()
    for name in ("urandom", "random"):
        (jail / "dev" / name).write_bytes(b"")  # the placeholder, an empty regular file
        subprocess.run(["mount", "--bind", f"/dev/{name}", str(jail / "dev" / name)], check=True)
    try:
        report = scan(jail)
        assert report.at_or_above(Severity.WARNING) == [], report.findings
    finally:
        for name in ("urandom", "random"):
            subprocess.run(["umount", str(jail / "dev" / name)], check=False)
    # once unmounted the placeholder is what is left: an empty regular file, critical
    assert "CC110" in ids(scan(jail), "/dev/urandom")


@pytest.mark.root
def test_walk_stays_on_the_jail_file_system(jail: Path, tmpfs: Callable[..., Path]) -> None:
    data = tmpfs(jail / "data")
    os.mkfifo(data / "pipe")
    report = scan(jail)
    assert "/data/pipe" not in {f.path for f in report.findings}
    assert any("/data" in n.message and "--cross-mounts" in n.message for n in report.notices)
    crossed = scan(jail, cross_mounts=True)
    assert "CC162" in ids(crossed, "/data/pipe")


def test_proc_and_sys_are_not_walked(jail: Path) -> None:
    for d in ("proc", "sys", "srv"):
        (jail / d).mkdir()
        os.mkfifo(jail / d / "fifo")
    paths = {f.path for f in scan(jail).findings}
    assert "/srv/fifo" in paths
    assert "/proc/fifo" not in paths and "/sys/fifo" not in paths


# ---------------------------------------------------------------- EGD


@pytest.fixture
def egd_server(jail: Path) -> Iterator[Path]:
    """A tiny real EGD daemon: answers command 0x00 with 4 big-endian bytes."""
    (jail / "var" / "run").mkdir(parents=True)
    path = jail / "var" / "run" / "egd-pool"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen()
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                if conn.recv(1) == b"\x00":
                    conn.sendall((4096).to_bytes(4, "big"))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield path
    stop.set()
    t.join()
    srv.close()


def test_egd_daemon_answers(jail: Path, egd_server: Path) -> None:
    f = finding(scan(jail), "CC150", "/var/run/egd-pool")
    assert f.details["entropy_bits"] == 4096
    assert f.severity is Severity.INFO


def test_egd_socket_nobody_answers(jail: Path) -> None:
    (jail / "dev").mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(jail / "dev" / "egd-pool"))  # bound, never listening: a dead socket file
    s.close()
    f = finding(scan(jail), "CC151", "/dev/egd-pool")
    assert f.severity is Severity.WARNING
    assert "refused" in f.message


def test_egd_path_not_a_socket(jail: Path) -> None:
    (jail / "etc").mkdir()
    (jail / "etc" / "entropy").write_text("x")
    report = scan(jail)
    assert "CC152" in ids(report, "/etc/entropy")
    assert not ids(report, "/etc/egd-pool")


def test_egd_symlink_to_host_socket_is_not_followed(jail: Path, tmp_path: Path) -> None:
    host = tmp_path / "host.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(host))
    srv.listen()
    srv.settimeout(1.0)
    try:
        (jail / "etc").mkdir()
        os.symlink(str(host), jail / "etc" / "egd-pool")
        report = scan(jail)
        assert not ids(report, "/etc/egd-pool")  # dangles inside the jail: nothing to query
        with pytest.raises(TimeoutError):
            srv.accept()  # and nobody connected to the host's socket
    finally:
        srv.close()


# ---------------------------------------------------------------- what the walk meets


@pytest.mark.root
def test_other_nodes_are_listed_as_info(jail: Path) -> None:
    good_jail(jail)
    make_node(jail / "dev" / "null", 1, 3)
    os.mkfifo(jail / "dev" / "initctl")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(jail / "dev" / "log"))
    s.close()
    report = scan(jail)
    assert finding(report, "CC160", "/dev/null").severity is Severity.INFO
    assert "/dev/null" in finding(report, "CC160", "/dev/null").message
    assert "CC162" in ids(report, "/dev/initctl")
    assert "CC161" in ids(report, "/dev/log")
    # the entropy devices themselves are checked, not listed again
    assert "CC160" not in ids(report, "/dev/urandom")


def test_libcrypto_copies_with_version(jail: Path) -> None:
    (jail / "usr" / "lib").mkdir(parents=True)
    shutil.copy(SYSTEM_LIBCRYPTO, jail / "usr" / "lib" / "libcrypto.so.3")
    (jail / "lib").mkdir()
    (jail / "lib" / "libcrypto.so.1.1").write_bytes(b"\x7fELF not really")
    os.symlink("/usr/lib/libcrypto.so.3", jail / "lib" / "libcrypto.so")  # links are not copies
    report = scan(jail)
    versions = {c.path: c.version for c in report.libcrypto}
    assert versions["/usr/lib/libcrypto.so.3"] is not None
    assert versions["/usr/lib/libcrypto.so.3"].startswith("OpenSSL 3.")
    assert versions["/lib/libcrypto.so.1.1"] is None
    assert "/lib/libcrypto.so" not in versions
    assert "CC170" in ids(report, "/usr/lib/libcrypto.so.3")


def test_non_utf8_names(jail: Path) -> None:
    raw = os.fsencode(str(jail)) + b"/dev/\xff\xfe-pipe"
    (jail / "dev").mkdir()
    os.mkfifo(raw)
    report = scan(jail)
    paths = [f.path for f in report.findings if f.check == "CC162"]
    assert len(paths) == 1
    assert os.fsencode(paths[0]) == b"/dev/\xff\xfe-pipe"


def test_unreadable_folder_is_reported_not_fatal(
    tmp_path: Path, cli: Callable[..., object]
) -> None:
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="cc-unreadable-"))
    try:
        os.chmod(base, 0o755)
        (base / "dev").mkdir()
        (base / "secret").mkdir()
        os.chmod(base / "secret", 0o700)
        if os.geteuid() == 0:
            # root reads everything: scan as nobody to meet a folder it cannot read
            # import first: nobody cannot read root's Python installation
            code = (
                "import os,json,sys; from chrootcheck.jail.inspector import inspect_jail;"
                "os.setgroups([]); os.setgid(65534); os.setuid(65534);"
                f"r=inspect_jail({str(base)!r});"
                "print(json.dumps([[f.check,f.path] for f in r.findings]))"
            )
            out = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent.parent,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            found = {tuple(x) for x in __import__("json").loads(out.stdout)}
        else:
            found = {(f.check, f.path) for f in inspect_jail(str(base)).findings}
        assert ("CC180", "/secret") in found
        assert ("CC101", "/dev/urandom") in found  # and the scan went on
    finally:
        os.chmod(base / "secret", 0o755)
        shutil.rmtree(base)


def test_jail_errors_are_notices_not_exceptions(tmp_path: Path) -> None:
    missing = inspect_jail(str(tmp_path / "nope"))
    assert missing.tool_error and "does not exist" in missing.notices[0].message
    (tmp_path / "file").write_text("")
    afile = inspect_jail(str(tmp_path / "file"))
    assert afile.tool_error and "not a folder" in afile.notices[0].message
