"""`chrootcheck fix`: adversarial jails, real mknod and real mounts.

Every test that changes something proves two things: nothing outside the jail changed (a
snapshot of the host side of tmp_path, contents and mtimes, is equal before and after) and
no content inside the jail was lost (what was in the way is still there, byte for byte).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chrootcheck.fix.fixer import Action, FixOptions, Method, Status, apply_fix, plan_fix
from chrootcheck.report.errors import ToolError
from tests.conftest import Result, good_jail, make_node

Snapshot = dict[str, tuple[Any, ...]]
CLI = Callable[..., Result]

# What the host side of tmp_path looks like: bait a fixer that escapes the jail would touch.
PASSWD = b"root:x:0:0:root:/root:/bin/bash\n"
SECRET = b"host secret, must never change\n"


def snapshot(top: Path, skip: Path | None = None) -> Snapshot:
    """Every entry below ``top`` (not following symlinks): type, mode, owner, size, mtime,
    and the content of regular files, the target of symlinks, the numbers of devices."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(top):
        if skip is not None and Path(dirpath) == skip.parent:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in [*dirnames, *filenames, "."]:
            p = Path(dirpath, name)
            st = os.lstat(p)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            out[str(p.relative_to(top))] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
                extra,
            )
    return out


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """The host side next to the jail: tmp_path/etc/passwd (what ../../etc/passwd from
    jail/dev reaches on the host) and tmp_path/host with files and a dev/ folder."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(PASSWD)
    h = tmp_path / "host"
    (h / "dev").mkdir(parents=True)
    (h / "secret").write_bytes(SECRET)
    (h / "dev" / "urandom").write_bytes(SECRET)
    return h


def host_side(tmp_path: Path, jail: Path) -> Snapshot:
    return snapshot(tmp_path, skip=jail)


def assert_node(path: Path, numbers: tuple[int, int], mode: int = 0o666) -> None:
    st = os.lstat(path)
    assert stat.S_ISCHR(st.st_mode), f"{path} is not a character device"
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == numbers
    assert stat.S_IMODE(st.st_mode) == mode
    assert (st.st_uid, st.st_gid) == (0, 0)


def asides(dev: Path, name: str) -> list[Path]:
    return sorted(dev.glob(f"{name}.chrootcheck-*"))


def check(result: Result, code: int) -> Result:
    assert result.code == code, str(result)
    assert "Traceback" not in result.stderr, str(result)
    return result


def one_error_line(result: Result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("chrootcheck: error:")]
    assert len(lines) == 1, str(result)
    return lines[0]


# ---------------------------------------------------------------------------- usage and bad input


def test_method_is_required(cli: CLI, jail: Path) -> None:
    r = check(cli("fix", str(jail)), 2)
    assert "--mknod" in r.stderr and "--bind" in r.stderr
    r = check(cli("fix", str(jail), "--mknod", "--bind"), 2)
    assert "choose one way" in r.stderr
    assert not (jail / "dev").exists()


@pytest.mark.parametrize("mode", ["9999", "rw", "01777", "-1"])
def test_bad_mode(cli: CLI, jail: Path, mode: str) -> None:
    r = check(cli("fix", str(jail), "--mknod", "--mode", mode), 2)
    assert "--mode" in r.stderr
    assert not (jail / "dev").exists()


def test_mode_with_bind_is_a_usage_error(cli: CLI, jail: Path) -> None:
    r = check(cli("fix", str(jail), "--bind", "--mode", "0666"), 2)
    assert "--mknod only" in r.stderr


def test_missing_jail_and_not_a_folder(cli: CLI, tmp_path: Path) -> None:
    line = one_error_line(check(cli("fix", str(tmp_path / "nope"), "--mknod"), 2))
    assert "does not exist" in line
    f = tmp_path / "file"
    f.write_text("x")
    line = one_error_line(check(cli("fix", str(f), "--mknod"), 2))
    assert "not a folder" in line
    assert f.read_text() == "x"


@pytest.mark.parametrize("how", ["slash", "dotdot", "symlink"])
def test_host_root_refused(cli: CLI, tmp_path: Path, how: str) -> None:
    target = {"slash": "/", "dotdot": str(tmp_path) + "/" + "../" * 12, "symlink": None}[how]
    if target is None:
        (tmp_path / "to-root").symlink_to("/")
        target = str(tmp_path / "to-root")
    before = os.lstat("/").st_mtime_ns
    line = one_error_line(check(cli("fix", target, "--mknod", "--dry-run"), 2))
    assert "host's root" in line
    assert os.lstat("/").st_mtime_ns == before


# ---------------------------------------------------------------------------- adversarial jails


@pytest.mark.root
@pytest.mark.parametrize("method", ["--mknod", "--bind"])
@pytest.mark.parametrize("replace", [False, True])
def test_dev_symlink_to_host_folder_refused(
    cli: CLI,
    tmp_path: Path,
    jail: Path,
    host: Path,
    method: str,
    replace: bool,
    unmount_all: Callable[[], list[str]],
) -> None:
    (jail / "dev").symlink_to(host / "dev")
    before = snapshot(tmp_path)
    args = ["fix", str(jail), method] + (["--replace"] if replace else [])
    line = one_error_line(check(cli(*args), 2))
    assert "symlink" in line
    assert snapshot(tmp_path) == before
    assert unmount_all() == []
    assert (host / "dev" / "urandom").read_bytes() == SECRET
    assert not (host / "dev" / "random").exists()


@pytest.mark.root
def test_dev_relative_symlink_escaping_refused(
    cli: CLI, tmp_path: Path, jail: Path, host: Path
) -> None:
    # "../host/dev" would reach the host's folder if a host path lookup followed it.
    (jail / "dev").symlink_to("../host/dev")
    before = snapshot(tmp_path)
    check(cli("fix", str(jail), "--mknod", "--replace"), 2)
    assert snapshot(tmp_path) == before


@pytest.mark.root
@pytest.mark.parametrize("target", ["../../etc/passwd", "ABSOLUTE"])
def test_urandom_symlink_left_alone(
    cli: CLI, tmp_path: Path, jail: Path, host: Path, target: str
) -> None:
    (jail / "dev").mkdir()
    link = str(host / "secret") if target == "ABSOLUTE" else target
    (jail / "dev" / "urandom").symlink_to(link)
    before = host_side(tmp_path, jail)
    # The symlink is still a finding. Wide: a long tmp_path must not wrap the words apart.
    r = check(cli("fix", str(jail), "--mknod", env={"COLUMNS": "400"}), 1)
    assert "left alone" in r.stdout
    assert os.readlink(jail / "dev" / "urandom") == link
    assert_node(jail / "dev" / "random", (1, 8))
    assert host_side(tmp_path, jail) == before
    assert (tmp_path / "etc" / "passwd").read_bytes() == PASSWD
    assert (host / "secret").read_bytes() == SECRET


@pytest.mark.root
@pytest.mark.parametrize("target", ["../../etc/passwd", "ABSOLUTE"])
def test_urandom_symlink_replaced(
    cli: CLI, tmp_path: Path, jail: Path, host: Path, target: str
) -> None:
    (jail / "dev").mkdir()
    link = str(host / "secret") if target == "ABSOLUTE" else target
    (jail / "dev" / "urandom").symlink_to(link)
    before = host_side(tmp_path, jail)
    check(cli("fix", str(jail), "--mknod", "--replace"), 0)
    assert_node(jail / "dev" / "urandom", (1, 9))
    [aside] = asides(jail / "dev", "urandom")
    assert os.readlink(aside) == link  # the link itself moved, its target untouched
    assert host_side(tmp_path, jail) == before
    assert (tmp_path / "etc" / "passwd").read_bytes() == PASSWD


@pytest.mark.root
def test_regular_file_in_the_way(cli: CLI, tmp_path: Path, jail: Path, host: Path) -> None:
    (jail / "dev").mkdir()
    content = b"not random at all\n" * 3
    (jail / "dev" / "urandom").write_bytes(content)
    before = host_side(tmp_path, jail)
    r = check(cli("fix", str(jail), "--mknod"), 1)
    assert "CC110" in r.stdout  # the re-scan still shows it
    assert (jail / "dev" / "urandom").read_bytes() == content
    assert asides(jail / "dev", "urandom") == []

    r = check(cli("fix", str(jail), "--mknod", "--replace"), 0)
    assert_node(jail / "dev" / "urandom", (1, 9))
    [aside] = asides(jail / "dev", "urandom")
    assert aside.read_bytes() == content
    assert host_side(tmp_path, jail) == before


@pytest.mark.root
def test_existing_correct_nodes_untouched(cli: CLI, tmp_path: Path, jail: Path, host: Path) -> None:
    good_jail(jail)
    before = snapshot(tmp_path)
    r = check(cli("fix", str(jail), "--mknod", "--replace"), 0)
    assert "Nothing to change" in r.stdout
    assert snapshot(tmp_path) == before


@pytest.mark.root
def test_nodev_tmpfs(
    cli: CLI,
    tmp_path: Path,
    jail: Path,
    host: Path,
    tmpfs: Callable[..., Path],
    unmount_all: Callable[[], list[str]],
) -> None:
    tmpfs(jail, "nodev")
    (jail / "dev").mkdir()
    before = snapshot(tmp_path)
    host_before = host_side(tmp_path, jail)
    line = one_error_line(check(cli("fix", str(jail), "--mknod"), 2))
    assert "nodev" in line and "--bind" in line
    assert snapshot(tmp_path) == before

    r = check(cli("fix", str(jail), "--bind"), 0)
    assert "does not survive a reboot" in r.stdout
    assert f"/dev/urandom {jail}/dev/urandom none bind 0 0" in r.stdout
    assert "[Mount]" in r.stdout and f"Where={jail}/dev/random" in r.stdout
    assert_node(
        jail / "dev" / "urandom", (1, 9), mode=stat.S_IMODE(os.stat("/dev/urandom").st_mode)
    )
    assert sorted(unmount_all()) == sorted([str(jail), f"{jail}/dev/random", f"{jail}/dev/urandom"])
    # The node really opens and reads (nodev would make a mknod'ed node fail with EACCES).
    with open(jail / "dev" / "urandom", "rb") as f:
        assert len(f.read(16)) == 16
    assert host_side(tmp_path, jail) == host_before

    # Idempotent: the bind mounts are recognised as correct.
    r = check(cli("fix", str(jail), "--bind"), 0)
    assert "Nothing to change" in r.stdout
    assert len(unmount_all()) == 3


@pytest.mark.root
def test_bind_reuses_placeholder_after_reboot(
    cli: CLI, jail: Path, unmount_all: Callable[[], list[str]]
) -> None:
    (jail / "dev").mkdir()
    check(cli("fix", str(jail), "--bind", "--only", "urandom"), 1)  # random still missing
    assert len(unmount_all()) == 1
    subprocess.run(["umount", str(jail / "dev" / "urandom")], check=True)  # "a reboot"
    assert (jail / "dev" / "urandom").stat().st_size == 0
    r = check(cli("fix", str(jail), "--bind", "--only", "urandom", "--format", "json"), 1)
    plan = json.loads(r.stdout)["plan"]
    assert [s["action"] for s in plan["steps"]] == ["bind"]
    assert plan["persistence"]["fstab"] == [f"/dev/urandom {jail}/dev/urandom none bind 0 0"]
    [unit] = plan["persistence"]["systemd_units"]
    assert unit["name"].endswith("-dev-urandom.mount") and "/" not in unit["name"]
    assert f"Where={jail}/dev/urandom" in unit["lines"] and "Options=bind" in unit["lines"]
    assert unmount_all() == [f"{jail}/dev/urandom"]


@pytest.mark.root
def test_read_only_bind_mount(
    cli: CLI, tmp_path: Path, jail: Path, host: Path, unmount_all: Callable[[], list[str]]
) -> None:
    (jail / "dev").mkdir()
    subprocess.run(["mount", "--bind", str(jail), str(jail)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(jail)], check=True)
    before = snapshot(tmp_path)
    for method in ("--mknod", "--bind"):
        line = one_error_line(check(cli("fix", str(jail), method), 2))
        assert "read-only" in line
    assert snapshot(tmp_path) == before
    assert unmount_all() == [str(jail)]


@pytest.mark.root
def test_no_cap_mknod_suggests_bind(
    tmp_path: Path, jail: Path, unmount_all: Callable[[], list[str]]
) -> None:
    (jail / "dev").mkdir()
    before = snapshot(tmp_path)
    drop = ["setpriv", "--inh-caps=-mknod", "--bounding-set=-mknod", sys.executable]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "NO_COLOR": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*drop, "-m", "chrootcheck", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    r = run("fix", str(jail), "--mknod")
    assert r.returncode == 2, r.stderr
    assert "CAP_MKNOD" in r.stderr and "--bind" in r.stderr
    assert snapshot(tmp_path) == before
    r = run("fix", str(jail), "--bind")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(unmount_all()) == 2


def test_without_privileges_refused(cli: CLI, jail: Path) -> None:
    if os.geteuid() == 0:
        # Root with every capability dropped: what a container or PrivateDevices= gives.
        r = subprocess.run(
            [
                "setpriv",
                "--inh-caps=-all",
                "--bounding-set=-all",
                sys.executable,
                "-m",
                "chrootcheck",
                "fix",
                str(jail),
                "--mknod",
            ],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
            capture_output=True,
            text=True,
            check=False,
        )
        result = Result(r.returncode, r.stdout, r.stderr)
    else:
        result = cli("fix", str(jail), "--mknod")
    line = one_error_line(check(result, 2))
    assert ("not running as root" in line or "no CAP_MKNOD" in line) and "--bind" in line
    assert not (jail / "dev").exists()


@pytest.fixture
def as_nobody() -> Iterator[tuple[Path, Callable[..., Result]]]:
    """A world-readable folder and a runner for the CLI as uid 65534 (root only). Root's
    Python lives in /root (mode 0700), so the packages the CLI needs are copied next to it."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs root, setpriv and a system python3 to become another user")
    base = Path(tempfile.mkdtemp(prefix="chrootcheck-nobody-"))
    base.chmod(0o755)
    site = base / "site"
    site.mkdir()
    for name in (
        "click",
        "rich",
        "markdown_it",
        "mdurl",
        "pygments",
        "cffi",
        "pycparser",
        "chrootcheck",
    ):
        mod = __import__(name)
        src = Path(mod.__file__ or "").parent
        shutil.copytree(src, site / name, ignore=shutil.ignore_patterns("__pycache__"))
    import _cffi_backend  # the probe's binding: a compiled module beside the packages

    shutil.copy(_cffi_backend.__file__, site)
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)

    def run(*args: str) -> Result:
        r = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/env",
                f"PYTHONPATH={site}",
                "NO_COLOR=1",
                "/usr/bin/python3",
                "-m",
                "chrootcheck",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        return Result(r.returncode, r.stdout, r.stderr)

    try:
        yield base, run
    finally:
        shutil.rmtree(base)


@pytest.mark.root
def test_not_root(as_nobody: tuple[Path, Callable[..., Result]]) -> None:
    base, run = as_nobody
    jail = base / "jail"
    jail.mkdir()
    os.chown(jail, 65534, 65534)  # the user's own jail: readable, but no mknod, no mount
    r = check(run("fix", str(jail), "--mknod"), 2)
    line = one_error_line(r)
    assert "not running as root" in line and "--bind" in line
    r = check(run("fix", str(jail), "--bind"), 2)
    assert "not running as root" in one_error_line(r)
    assert not (jail / "dev").exists()
    # A dry run still shows the plan, and its refusal.
    r = check(run("fix", str(jail), "--mknod", "--dry-run", "--format", "json"), 2)
    data = json.loads(r.stdout)
    assert data["plan"]["steps"][0]["action"] == "mkdir"
    assert "not running as root" in data["plan"]["refusal"]["message"]
    # demo: the steps that need root are named, the scan is still shown.
    r = check(run("demo"), 0)
    assert "needs root (CAP_MKNOD)" in r.stdout and "CC110" in r.stdout


@pytest.mark.root
def test_unreadable_dev_is_one_line(as_nobody: tuple[Path, Callable[..., Result]]) -> None:
    base, run = as_nobody
    jail = base / "jail"
    (jail / "dev").mkdir(parents=True)
    (jail / "dev").chmod(0o700)  # root's, unreadable by nobody
    r = check(run("fix", str(jail), "--mknod"), 2)
    assert "Traceback" not in r.stderr
    one_error_line(r)


# ---------------------------------------------------------------------------- round trip


@pytest.mark.root
def test_round_trip_and_idempotent(cli: CLI, tmp_path: Path, jail: Path, host: Path) -> None:
    (jail / "dev").mkdir()  # Debian's haproxy jail: an empty dev/
    host_before = host_side(tmp_path, jail)
    r = check(cli("scan", str(jail)), 1)
    assert "CC101" in r.stdout and "CC102" in r.stdout
    r = check(cli("fix", str(jail), "--mknod"), 0)
    assert "PASS" in r.stdout
    assert_node(jail / "dev" / "urandom", (1, 9))
    assert_node(jail / "dev" / "random", (1, 8))
    check(cli("scan", str(jail)), 0)

    after_first = snapshot(tmp_path)
    r = check(cli("fix", str(jail), "--mknod", "--format", "json"), 0)
    data = json.loads(r.stdout)
    assert data["changed"] is False
    assert {s["action"] for s in data["plan"]["steps"]} == {"keep"}
    assert {o["status"] for o in data["outcomes"]} == {"unchanged"}
    assert data["scan"]["jails"][0]["status"] == "pass"
    assert snapshot(tmp_path) == after_first
    assert host_side(tmp_path, jail) == host_before


@pytest.mark.root
def test_whole_dev_missing(cli: CLI, jail: Path) -> None:
    check(cli("fix", str(jail), "--mknod"), 0)
    st = os.lstat(jail / "dev")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755


@pytest.mark.root
def test_dev_is_a_file(cli: CLI, jail: Path) -> None:
    (jail / "dev").write_bytes(b"x")
    check(cli("fix", str(jail), "--mknod"), 1)
    assert (jail / "dev").read_bytes() == b"x"
    check(cli("fix", str(jail), "--mknod", "--replace"), 0)
    [aside] = list(jail.glob("dev.chrootcheck-*"))
    assert aside.read_bytes() == b"x"
    assert_node(jail / "dev" / "urandom", (1, 9))


@pytest.mark.root
def test_only_and_mode(cli: CLI, jail: Path) -> None:
    (jail / "dev").mkdir()
    r = check(cli("fix", str(jail), "--mknod", "--only", "urandom", "--mode", "0640"), 1)
    assert "CC102" in r.stdout  # random was not asked for and is still missing
    assert_node(jail / "dev" / "urandom", (1, 9), mode=0o640)
    assert not (jail / "dev" / "random").exists()
    r = check(
        cli("fix", str(jail), "--mknod", "--only", "urandom", "--mode", "0640", "--format", "json"),
        1,
    )
    assert [s["action"] for s in json.loads(r.stdout)["plan"]["steps"]] == ["keep"]
    # Without --mode the 0640 node is one others cannot read: reported, left alone.
    r = check(cli("fix", str(jail), "--mknod", "--only", "urandom", "--format", "json"), 1)
    [step] = json.loads(r.stdout)["plan"]["steps"]
    assert step["action"] == "leave" and "others cannot read" in step["reason"]
    assert_node(jail / "dev" / "urandom", (1, 9), mode=0o640)


@pytest.mark.root
def test_dry_run_changes_nothing_and_plan_matches(
    cli: CLI, tmp_path: Path, jail: Path, host: Path
) -> None:
    (jail / "dev").mkdir()
    (jail / "dev" / "random").symlink_to("../../etc/passwd")
    before = snapshot(tmp_path)
    dry = check(cli("fix", str(jail), "--mknod", "--dry-run", "--format", "json"), 0)
    assert snapshot(tmp_path) == before
    dry_data = json.loads(dry.stdout)
    assert dry_data["dry_run"] is True and dry_data["outcomes"] is None
    assert dry_data["scan"] is None
    text = check(cli("fix", str(jail), "--mknod", "--dry-run"), 0)
    assert "Dry run: nothing was changed" in text.stdout
    assert snapshot(tmp_path) == before
    real = check(cli("fix", str(jail), "--mknod", "--format", "json"), 1)
    real_data = json.loads(real.stdout)
    assert real_data["plan"] == dry_data["plan"]
    assert [s["action"] for s in real_data["plan"]["steps"]] == ["mknod", "leave"]
    assert [o["status"] for o in real_data["outcomes"]] == ["done", "unchanged"]


@pytest.mark.root
def test_dry_run_with_refusal_exits_2_and_shows_plan(
    cli: CLI, tmp_path: Path, jail: Path, host: Path
) -> None:
    (jail / "dev").symlink_to(host / "dev")
    r = check(cli("fix", str(jail), "--mknod", "--dry-run", "--format", "json"), 2)
    data = json.loads(r.stdout)
    assert data["plan"]["steps"][0]["action"] == "refuse"
    assert "symlink" in data["plan"]["refusal"]["message"]


# ---------------------------------------------------------------------------- odd shapes


def _make(kind: str, p: Path, host: Path) -> None:
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
        s.close()
    elif kind == "folder":
        p.mkdir()
        (p / "inside").write_bytes(b"kept")
    elif kind == "null":
        make_node(p, 1, 3)
    elif kind == "block":
        make_node(p, 7, 0, char=False)
    elif kind == "swapped":
        make_node(p, 1, 8)  # random's numbers at urandom's place
    elif kind == "unreadable":
        make_node(p, 1, 9, mode=0o600)
    elif kind == "empty":
        p.touch()
    elif kind == "loop":
        p.symlink_to("urandom")
    elif kind == "dangling":
        p.symlink_to("/nowhere/at/all")
    elif kind == "hardlink":
        os.link(host / "secret", p)  # the same inode as a host file
    else:
        raise AssertionError(kind)


KINDS = [
    "fifo",
    "socket",
    "folder",
    "null",
    "block",
    "swapped",
    "unreadable",
    "empty",
    "loop",
    "dangling",
    "hardlink",
]


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_odd_shapes(cli: CLI, tmp_path: Path, jail: Path, host: Path, kind: str) -> None:
    dev = jail / "dev"
    dev.mkdir()
    _make(kind, dev / "urandom", host)
    ident = (os.lstat(dev / "urandom").st_dev, os.lstat(dev / "urandom").st_ino)
    before_host = host_side(tmp_path, jail)
    before_node = snapshot(dev)["urandom"]
    r = check(cli("fix", str(jail), "--mknod", "--only", "urandom", "--format", "json"), 1)
    data = json.loads(r.stdout)
    assert data["plan"]["steps"][0]["action"] == "leave"
    assert snapshot(dev)["urandom"] == before_node

    r = check(
        cli("fix", str(jail), "--mknod", "--only", "urandom", "--replace", "--format", "json"), 1
    )  # 1: /dev/random is still missing (--only)
    data = json.loads(r.stdout)
    assert [s["action"] for s in data["plan"]["steps"]] == ["rename-aside", "mknod"]
    assert_node(dev / "urandom", (1, 9))
    [aside] = asides(dev, "urandom")
    assert (os.lstat(aside).st_dev, os.lstat(aside).st_ino) == ident
    if kind == "folder":
        assert (aside / "inside").read_bytes() == b"kept"
    findings = data["scan"]["jails"][0]["findings"]
    assert not [f for f in findings if f["path"] == "/dev/urandom"]
    assert host_side(tmp_path, jail) == before_host
    assert (host / "secret").read_bytes() == SECRET


# ---------------------------------------------------------------------------- races (API level)


@pytest.mark.root
def test_dev_swapped_for_symlink_after_planning(tmp_path: Path, jail: Path, host: Path) -> None:
    (jail / "dev").mkdir()
    plan = plan_fix(str(jail), FixOptions(Method.MKNOD))
    assert [s.action for s in plan.steps] == [Action.MKNOD, Action.MKNOD]
    (jail / "dev").rmdir()
    (jail / "dev").symlink_to(host / "dev")  # the attacker's move between check and change
    before = snapshot(tmp_path)
    result = apply_fix(plan)
    assert [o.status for o in result.outcomes] == [Status.FAILED, Status.SKIPPED]
    assert snapshot(tmp_path) == before
    assert not (host / "dev" / "random").exists()


@pytest.mark.root
def test_dev_appears_as_symlink_before_mkdir(tmp_path: Path, jail: Path, host: Path) -> None:
    plan = plan_fix(str(jail), FixOptions(Method.MKNOD))
    assert plan.steps[0].action is Action.MKDIR
    (jail / "dev").symlink_to(host / "dev")
    before = snapshot(tmp_path)
    result = apply_fix(plan)
    assert result.outcomes[0].status is Status.FAILED and "EEXIST" in result.outcomes[0].message
    assert {o.status for o in result.outcomes[1:]} == {Status.SKIPPED}
    assert snapshot(tmp_path) == before


@pytest.mark.root
def test_object_swapped_before_rename_is_not_touched(jail: Path) -> None:
    (jail / "dev").mkdir()
    (jail / "dev" / "urandom").write_bytes(b"first")
    plan = plan_fix(str(jail), FixOptions(Method.MKNOD, only=("urandom",), replace=True))
    (jail / "dev" / "urandom").unlink()
    (jail / "dev" / "urandom").write_bytes(b"second")  # often the very same inode number
    result = apply_fix(plan)
    assert result.outcomes[0].status is Status.FAILED
    assert "changed since the plan" in result.outcomes[0].message
    assert (jail / "dev" / "urandom").read_bytes() == b"second"
    assert asides(jail / "dev", "urandom") == []


def test_apply_refuses_a_refused_plan(jail: Path, host: Path) -> None:
    (jail / "dev").symlink_to(host / "dev")
    plan = plan_fix(str(jail), FixOptions(Method.MKNOD))
    assert plan.refusal is not None
    with pytest.raises(ToolError):
        apply_fix(plan)


@pytest.mark.parametrize(
    ("path", "unit"),
    [
        ("/srv/jail/dev/urandom", "srv-jail-dev-urandom"),
        ("/var/lib/haproxy/dev/random", "var-lib-haproxy-dev-random"),
        ("/srv/my jail/.hidden/dev-x", "srv-my\\x20jail-.hidden-dev\\x2dx"),
        ("/.srv/x", "\\x2esrv-x"),
    ],
)
def test_systemd_unit_names(path: str, unit: str) -> None:
    # The same names as `systemd-escape --path` gives (a unit for Where= must have it).
    from chrootcheck.fix.fixer import systemd_escape_path

    assert systemd_escape_path(path) == unit
    if shutil.which("systemd-escape"):
        real = subprocess.run(
            ["systemd-escape", "--path", path], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert real == unit


# ---------------------------------------------------------------------------- property test

SHAPES = [
    "absent",
    "correct",
    "content",
    "empty",
    "fifo",
    "link-passwd",
    "link-host",
    "folder",
    "null",
    "mode0600",
]
DEV_SHAPES = ["missing", "folder", "file", "link-host", "link-relative"]


def _shape(kind: str, p: Path, numbers: tuple[int, int], host: Path) -> None:
    if kind == "absent":
        return
    if kind == "correct":
        make_node(p, *numbers)
    elif kind == "content":
        p.write_bytes(b"fixed 'entropy' " + p.name.encode())
    elif kind == "link-passwd":
        p.symlink_to("../../etc/passwd")
    elif kind == "link-host":
        p.symlink_to(host / "secret")
    elif kind == "mode0600":
        make_node(p, *numbers, mode=0o600)
    else:
        _make({"empty": "empty", "fifo": "fifo", "folder": "folder", "null": "null"}[kind], p, host)


def _by_inode(top: Path) -> dict[tuple[int, int], tuple[Any, ...]]:
    """Every object below ``top`` by identity, with what must survive: type and content."""
    return {(v[6], v[0]): (v[0], v[4], v[7]) for v in snapshot(top).values()}


@pytest.mark.root
def test_property_odd_jails() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(
        dev=st.sampled_from(DEV_SHAPES),
        urandom=st.sampled_from(SHAPES),
        random=st.sampled_from(SHAPES),
        replace=st.booleans(),
    )
    def prop(dev: str, urandom: str, random: str, replace: bool) -> None:
        with tempfile.TemporaryDirectory() as d:
            top = Path(d)
            (top / "etc").mkdir()
            (top / "etc" / "passwd").write_bytes(PASSWD)
            host = top / "host"
            (host / "dev").mkdir(parents=True)
            (host / "secret").write_bytes(SECRET)
            jail = top / "jail"
            jail.mkdir()
            if dev == "folder":
                (jail / "dev").mkdir()
                _shape(urandom, jail / "dev" / "urandom", (1, 9), host)
                _shape(random, jail / "dev" / "random", (1, 8), host)
            elif dev == "file":
                (jail / "dev").write_bytes(b"dev as a file")
            elif dev == "link-host":
                (jail / "dev").symlink_to(host / "dev")
            elif dev == "link-relative":
                (jail / "dev").symlink_to("../host/dev")
            ids_before = {
                n: (os.lstat(jail / "dev" / n).st_dev, os.lstat(jail / "dev" / n).st_ino)
                for n in ("urandom", "random")
                if dev == "folder" and os.path.lexists(jail / "dev" / n)
            }
            host_before = host_side(top, jail)
            jail_before = _by_inode(jail)
            everything_before = snapshot(top)

            plan = plan_fix(str(jail), FixOptions(Method.MKNOD, replace=replace))
            if plan.refusal is not None:
                assert dev.startswith("link")
                with pytest.raises(ToolError):
                    apply_fix(plan)
                assert snapshot(top) == everything_before
                return
            assert not dev.startswith("link")
            result = apply_fix(plan)
            assert not result.failed, result.outcomes
            assert host_side(top, jail) == host_before
            # No content lost: every object of the jail is still there, same type and content.
            jail_after = _by_inode(jail)
            for ident, what in jail_before.items():
                assert jail_after.get(ident) == what, (ident, what)
            shapes = {"urandom": urandom, "random": random}
            for name, numbers in (("urandom", (1, 9)), ("random", (1, 8))):
                p = jail / "dev" / name
                shape = shapes[name] if dev == "folder" else "absent"
                if dev == "file" and not replace:
                    assert (jail / "dev").read_bytes() == b"dev as a file"
                elif replace or shape in ("absent", "correct"):
                    assert_node(p, numbers)
                elif shape == "mode0600":
                    assert_node(p, numbers, mode=0o600)  # left alone
                else:  # wrong and left alone: the very same object is still at its path
                    st_now = os.lstat(p)
                    assert (st_now.st_dev, st_now.st_ino) == ids_before[name]
            again = plan_fix(str(jail), FixOptions(Method.MKNOD, replace=replace))
            assert not again.changes  # idempotent

    prop()


# ---------------------------------------------------------------------------- user namespaces


def _in_userns(*args: str) -> Result:
    """The CLI as root of a new user namespace: every capability in CapEff, yet the kernel
    refuses device nodes and (without its own mount namespace) mounts."""
    r = subprocess.run(
        ["unshare", "-Ur", sys.executable, "-m", "chrootcheck", *args],
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).parent.parent),
            "NO_COLOR": "1",
            "COLUMNS": "160",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    return Result(r.returncode, r.stdout, r.stderr)


@pytest.mark.root
def test_user_namespace_mknod_and_bind_fail_cleanly(tmp_path: Path, jail: Path, host: Path) -> None:
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1)")
    (jail / "dev").mkdir()
    before = snapshot(tmp_path)
    r = check(_in_userns("fix", str(jail), "--mknod"), 2)
    line = one_error_line(r)
    assert "EPERM" in line and "use --bind" in line
    assert snapshot(tmp_path) == before
    r = check(_in_userns("fix", str(jail), "--bind"), 2)
    line = one_error_line(r)
    assert "mounting is not allowed" in line and "removed again" in line
    # The placeholders it made were taken back: the jail is as it was, not worse (only
    # dev/'s mtime tells that something was made and removed in it).
    after = snapshot(tmp_path)
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if k != "jail/dev"} == {
        k: v for k, v in before.items() if k != "jail/dev"
    }


@pytest.mark.root
def test_bind_covers_correct_nodes_on_nodev(
    cli: CLI, jail: Path, tmpfs: Callable[..., Path], unmount_all: Callable[[], list[str]]
) -> None:
    tmpfs(jail, "nodev")
    good_jail(jail)  # right numbers, but nodev makes them unusable
    r = check(cli("scan", str(jail)), 1)
    assert "CC140" in r.stdout
    line = one_error_line(check(cli("fix", str(jail), "--mknod", "--replace"), 2))
    assert "nodev" in line
    r = check(cli("fix", str(jail), "--bind", "--format", "json"), 0)
    steps = json.loads(r.stdout)["plan"]["steps"]
    assert [s["action"] for s in steps] == ["bind", "bind"]
    assert all(s["expect"] for s in steps)  # the existing nodes, checked again before mounting
    assert len(unmount_all()) == 3
    subprocess.run(
        ["umount", str(jail / "dev" / "urandom"), str(jail / "dev" / "random")], check=True
    )
    assert_node(jail / "dev" / "urandom", (1, 9))  # the node underneath is untouched


@pytest.mark.root
def test_odd_jail_name_prints_literally(cli: CLI, tmp_path: Path) -> None:
    jail = tmp_path / "j\nail [red]x\x1b[31m"
    (jail / "dev").mkdir(parents=True)
    r = check(cli("fix", str(jail), "--mknod"), 0)
    assert "\x1b[31m" not in r.stdout and "\\x1b" in r.stdout
    assert "[red]x" in r.stdout  # markup off: printed, not interpreted
    r = check(cli("fix", str(jail), "--bind", "--dry-run", "--format", "json"), 0)
    data = json.loads(r.stdout)
    assert data["plan"]["jail"].endswith("\\nail [red]x\\x1b[31m")
    assert_node(jail / "dev" / "urandom", (1, 9))


@pytest.mark.root
def test_placeholder_swapped_before_bind_is_not_mounted(
    jail: Path, host: Path, unmount_all: Callable[[], list[str]]
) -> None:
    (jail / "dev").mkdir()
    (jail / "dev" / "urandom").touch()  # an earlier --bind's placeholder
    plan = plan_fix(str(jail), FixOptions(Method.BIND, only=("urandom",)))
    assert [s.action for s in plan.steps] == [Action.BIND]
    (jail / "dev" / "urandom").unlink()
    (jail / "dev" / "urandom").symlink_to(host / "secret")  # swapped for a link to the host
    result = apply_fix(plan)
    assert result.outcomes[0].status is Status.FAILED
    assert unmount_all() == []
    assert (host / "secret").read_bytes() == SECRET
    assert os.readlink(jail / "dev" / "urandom") == str(host / "secret")
