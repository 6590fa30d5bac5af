"""`chrootcheck ps` against real jailed processes (tests/live_helper.py): what was set up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, good_jail
from tests.live_support import jail_of, process_of, running

pytestmark = pytest.mark.root


def ps_json(cli: Callable[..., Result], *args: str) -> dict[str, Any]:
    result = cli("ps", "--format", "json", *args)
    assert result.code == 0, str(result)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def system_libcrypto() -> str:
    from chrootcheck.openssl.library import load

    return load().path


def test_a_chrooted_master_and_its_workers(cli: Callable[..., Result], jail: Path) -> None:
    good_jail(jail)
    started = time.time()
    with running({"jail": str(jail), "workers": 2, "hold_urandom": True}) as h:
        report = ps_json(cli)
        j = jail_of(report, h["pid"])
        assert j["root"] == str(jail)
        assert j["confinement"] == "chroot"
        assert j["mnt_ns"] == report["host_mnt_ns"]
        assert j["inode"] == os.stat(jail).st_ino
        assert j["leaders"] == [h["pid"]]
        assert [p["pid"] for p in j["processes"]] == [h["pid"], *sorted(h["workers"])]
        assert {d["path"]: d["status"] for d in j["devices"]} == {
            "/dev/urandom": "ok",
            "/dev/random": "ok",
        }
        master = j["processes"][0]
        assert master["children"] == sorted(h["workers"])
        assert (master["pid"], master["ppid"]) == (h["popen"].pid, os.getpid())
        assert master["uid"] == 0 and master["user"] == "root"
        assert abs(master["start_time"] - started) < 10
        assert 0 <= master["uptime"] < 30
        assert "live_helper.py" in master["cmdline"]
        crypto = [lib for lib in master["libraries"] if lib["kind"] == "libcrypto"]
        assert len(crypto) == 1
        assert os.path.samefile(crypto[0]["path"], h["libcrypto"])
        st = os.stat(h["libcrypto"])
        assert crypto[0]["inode"] == st.st_ino
        assert crypto[0]["device"] == f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
        assert crypto[0]["version"] == h["version"]
        assert crypto[0]["version_read_from"] == "map_files"
        assert (crypto[0]["on_disk"], crypto[0]["resolved_in"]) == ("same", "host root")
        assert not crypto[0]["deleted"]
        assert master["random_devices"] == [
            {"fd": h["held_fd"], "device": "1:9", "which": "urandom", "name": "/dev/urandom"}
        ]
        assert master["seccomp"] == {"mode": "disabled", "filters": 0, "no_new_privs": False}
        assert master["verdict"].startswith("ok without getrandom: holds /dev/urandom open")
        for worker in j["processes"][1:]:
            assert worker["ppid"] == h["pid"]
            assert worker["random_devices"][0]["fd"] == h["held_fd"]  # inherited


def test_text_output_names_the_jail_and_what_the_process_holds(
    cli: Callable[..., Result], jail: Path
) -> None:
    with running({"jail": str(jail), "hold_urandom": True}) as h:
        result = cli("ps")
    assert result.code == 0, str(result)
    assert f"Jail {jail}  chroot" in result.stdout
    assert f"pid {h['pid']}  ppid" in result.stdout
    assert f"holds open: fd {h['held_fd']} urandom (1:9)" in result.stdout
    assert "/dev/urandom missing" in result.stdout  # the test jail is empty
    assert f"libcrypto  {h['libcrypto']}  {h['version'].split()[1]}" in result.stdout


def test_no_random_device_and_an_empty_jail_is_at_risk(
    cli: Callable[..., Result], jail: Path
) -> None:
    with running({"jail": str(jail)}) as h:
        proc = process_of(ps_json(cli), h["pid"])
    assert proc["random_devices"] == []
    assert proc["verdict"].startswith("at risk without getrandom")
    assert "/dev/urandom is missing" in proc["verdict"]


def copied_libcrypto(tmp_path: Path) -> str:
    libdir = tmp_path / "lib"
    libdir.mkdir()
    copy = libdir / "libcrypto.so.3"
    shutil.copyfile(system_libcrypto(), copy)
    return str(copy)


def test_a_deleted_library(cli: Callable[..., Result], jail: Path, tmp_path: Path) -> None:
    copy = copied_libcrypto(tmp_path)
    with running({"jail": str(jail), "libcrypto": copy, "delete_library": True}) as h:
        assert not os.path.exists(copy)
        proc = process_of(ps_json(cli), h["pid"])
    lib = next(lib for lib in proc["libraries"] if lib["kind"] == "libcrypto")
    assert lib["path"] == copy
    assert lib["deleted"] is True
    assert lib["on_disk"] == "deleted"
    assert lib["version"] == h["version"]  # read from the deleted file through map_files
    assert "from a deleted file" in lib["note"]


def test_a_replaced_library_means_a_restart_is_pending(
    cli: Callable[..., Result], jail: Path, tmp_path: Path
) -> None:
    copy = copied_libcrypto(tmp_path)
    newer = "OpenSSL 3.0.22 11 Feb 2027"
    with running({"jail": str(jail), "libcrypto": copy, "replace_library": newer}) as h:
        proc = process_of(ps_json(cli), h["pid"])
        text = cli("ps", "--pid", str(h["pid"])).stdout
    lib = next(lib for lib in proc["libraries"] if lib["kind"] == "libcrypto")
    assert lib["deleted"] is True  # the old inode lost its name when the new one took it
    assert (lib["on_disk"], lib["on_disk_path"]) == ("replaced", copy)
    assert lib["on_disk_version"] == newer
    assert lib["version"] == h["version"]
    running_short = h["version"].split()[1]
    assert (
        lib["note"] == f"running {running_short}; the file on disk is now 3.0.22: restart pending"
    )
    assert "restart pending" in text


def test_a_chroot_inside_another_mount_namespace(cli: Callable[..., Result], jail: Path) -> None:
    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed")
    with running({"jail": str(jail)}, prefix=("unshare", "-m", "--propagation", "private")) as h:
        ns = os.stat(f"/proc/{h['pid']}/ns/mnt").st_ino
        report = ps_json(cli)
    j = jail_of(report, h["pid"])
    assert j["mnt_ns"] == ns != report["host_mnt_ns"]
    assert j["confinement"] == "chroot in a container"
    lib = next(lib for lib in j["processes"][0]["libraries"] if lib["kind"] == "libcrypto")
    # loaded before the chroot: resolved from the namespace's root, where it still is
    assert (lib["on_disk"], lib["resolved_in"]) == ("same", "namespace root")


def test_a_container_at_its_own_root(cli: Callable[..., Result], jail: Path) -> None:
    (jail / "dev").mkdir()
    with running({"jail": str(jail), "container": True}) as h:
        ns = os.stat(f"/proc/{h['pid']}/ns/mnt").st_ino
        report = ps_json(cli)
    j = jail_of(report, h["pid"])
    assert j["mnt_ns"] == ns != report["host_mnt_ns"]
    assert j["confinement"] == "container"
    assert j["root"] == "/"  # the kernel prints its root relative to its own namespace


def test_a_zombie_is_shown_on_its_parent_and_cannot_be_named(
    cli: Callable[..., Result], jail: Path
) -> None:
    with running({"jail": str(jail), "zombie": True}) as h:
        zombie = h["zombie"]
        deadline = time.time() + 5
        while not Path(f"/proc/{zombie}/stat").read_text().rsplit(")", 1)[1].startswith(" Z"):
            assert time.time() < deadline
            time.sleep(0.01)
        proc = process_of(ps_json(cli), h["pid"])
        named = cli("ps", "--pid", str(zombie))
    assert proc["zombies"] == [zombie]
    assert zombie in proc["children"]
    assert named.code == 2, str(named)
    assert named.stdout == ""
    assert named.stderr.count("\n") == 1
    assert f"process {zombie} is a zombie" in named.stderr
    assert f"its parent {h['pid']} has not reaped it" in named.stderr


def test_a_pid_that_does_not_exist_exits_2_with_one_line(cli: Callable[..., Result]) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    result = cli("ps", "--pid", str(proc.pid))
    assert result.code == 2, str(result)
    assert result.stderr == f"chrootcheck: error: no process {proc.pid}\n"


def test_a_named_pid_outside_any_jail_is_shown_as_host(cli: Callable[..., Result]) -> None:
    report = ps_json(cli, "--pid", str(os.getpid()))
    [j] = report["jails"]
    assert j["confinement"] == "host"
    assert [p["pid"] for p in j["processes"]] == [os.getpid()]


CHURN = r"""
import os, sys, time
jail = sys.argv[1]
end = time.time() + float(sys.argv[2])
while time.time() < end:
    pid = os.fork()
    if pid == 0:
        os.chroot(jail)
        time.sleep(0.002)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_processes_that_exit_while_being_read_never_break_the_listing(
    cli: Callable[..., Result], jail: Path
) -> None:
    churners = [subprocess.Popen([sys.executable, "-c", CHURN, str(jail), "4"]) for _ in range(2)]
    try:
        for _ in range(6):
            result = cli("ps", "--format", "json")
            assert result.code == 0, str(result)
            assert result.stderr == ""
            json.loads(result.stdout)
    finally:
        for c in churners:
            c.kill()
            c.wait()


SIBLINGS = r"""
import ctypes, os, sys
jail, lib, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
r, w = os.pipe()
kids = []
for i in range(n):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        if i == 1:
            ctypes.CDLL(lib)  # this sibling alone maps libcrypto, after the fork
        os.chroot(jail)
        os.write(1, b"%d\n" % os.getpid())
        os.read(r, 1)
        os._exit(0)
    kids.append(pid)
os.close(r)
sys.stdin.read()
os.close(w)
for pid in kids:
    os.waitpid(pid, 0)
"""


def test_siblings_share_one_read_of_their_maps_only_while_their_outline_is_the_same(
    cli: Callable[..., Result], jail: Path
) -> None:
    """The listing reads maps once per executable and address-space outline among siblings:
    one that loaded libcrypto after the fork is read on its own."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SIBLINGS, str(jail), system_libcrypto(), "4"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        kids = [int(proc.stdout.readline()) for _ in range(4)]
        report = ps_json(cli)
        maps = {pid: [lib["kind"] for lib in process_of(report, pid)["libraries"]] for pid in kids}
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the siblings end with it, reaped
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    loaded = [pid for pid, kinds in maps.items() if "libcrypto" in kinds]
    assert len(loaded) == 1, maps  # the one that loaded it, whichever order they started in
    assert sum(1 for kinds in maps.values() if not kinds) == 3
