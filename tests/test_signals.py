"""Signals and concurrency, built like the attacks: a real CLI in a subprocess, real signals at
real moments, real mounts, and /proc to see what is left.

- SIGTERM, SIGHUP or SIGINT while probe children sit in a jail (a FIFO at /dev/urandom keeps
  one blocked inside it): the CLI exits 128 + signo at once, and no process is left whose root
  is the jail. SIGKILL of the CLI: its children die with it (PR_SET_PDEATHSIG), even after the
  probe child changed to the service's user (which clears the setting).
  (``fix`` forks no child: its scan after the fix is the quick one, without the probe.)
- A ``fix --bind`` killed between making a placeholder and mounting onto it: ``strace`` holds
  the mount(2) call, so the test sees the placeholder there and nothing mounted, and sends the
  signal in exactly that window.
- Concurrent ``fix`` runs on one jail, repeated: never two mounts on one node, all exit 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import debian
from tests.cli_inprocess import run_forked_together
from tests.conftest import ROOT, Result, mounts_below, run_cli

pytestmark = pytest.mark.subprocess

CATCHABLE = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]
SIG_IDS = [s.name for s in CATCHABLE]


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def jailed(jail: Path) -> list[int]:
    """The processes whose root (readlink /proc/PID/root) is ``jail``."""
    want = os.path.realpath(jail)
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/root") == want:
                    found.append(int(name))
            except OSError:
                pass
    return found


def blocked_in(jail: Path, uid: int) -> list[int]:
    """The processes in ``jail`` that already run as ``uid`` and sleep (on the FIFO)."""
    found = []
    for pid in jailed(jail):
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(status["Uid"].split()[1]) == uid and status["State"].split()[0] == "S":
            found.append(pid)
    return found


def children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != b"Z":
                found.append(int(name))
    return found


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "160"}
    env.pop("CHROOTCHECK_DEBUG", None)
    env.pop("CHROOTCHECK_PROBE_TIMEOUT", None)
    env.update(extra)
    return env


class Spawned:
    """A process started by a test; its output goes to files (no pipe to fill up)."""

    def __init__(self, argv: list[str], out: Path, env: dict[str, str]) -> None:
        self.out, self.err = out.with_suffix(".out"), out.with_suffix(".err")
        with self.out.open("wb") as o, self.err.open("wb") as e:
            self.proc = subprocess.Popen(argv, stdout=o, stderr=e, env=env)

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Spawned]]:
    """Start processes; after the test, kill whatever is left of them and of the jails'
    processes (SIGKILL, then wait), so that one failing test leaves nothing running."""
    started: list[Spawned] = []
    jails: list[Path] = []

    def start(
        *args: str,
        jail: Path | None = None,
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Spawned:
        argv = [*prefix, sys.executable, *args]
        p = Spawned(argv, tmp_path / f"proc{len(started)}", env or _env())
        started.append(p)
        if jail is not None:
            jails.append(jail)
        return p

    yield start
    for p in started:
        for pid in children(p.proc.pid):
            _kill(pid)
        if p.proc.poll() is None:
            p.proc.kill()
        p.proc.wait(timeout=10)
    for jail in jails:
        for pid in jailed(jail):
            _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def cli_args(*args: str) -> tuple[str, ...]:
    return ("-m", "chrootcheck", *args)


@pytest.fixture
def fifo_jail(jail: Path) -> Path:
    """A jail whose /dev/urandom is a FIFO: a probe child that opens it blocks in the jail."""
    (jail / "dev").mkdir()
    os.mkfifo(jail / "dev" / "urandom")
    return jail


def needs_strace() -> str:
    return debian.tool("strace")


# ---------------------------------------------------------------------------- scan, fix, demo


@pytest.mark.root
@pytest.mark.parametrize("sig", CATCHABLE, ids=SIG_IDS)
def test_scan_signalled_leaves_no_process_in_the_jail(
    spawn: Callable[..., Spawned], fifo_jail: Path, sig: signal.Signals
) -> None:
    p = spawn(*cli_args("scan", str(fifo_jail), "--probe-timeout", "30"), jail=fifo_jail)
    wait_for(lambda: jailed(fifo_jail), 20, "a probe child inside the jail")
    started = time.monotonic()
    p.proc.send_signal(sig)
    assert p.proc.wait(timeout=10) == 128 + sig, p.stderr
    assert time.monotonic() - started < 5  # promptly, not at the 30 s probe timeout
    assert f"chrootcheck: interrupted ({sig.name})" in p.stderr
    assert "Traceback" not in p.stderr
    wait_for(lambda: not jailed(fifo_jail), 5, "the jail's processes to be gone")


@pytest.mark.root
@pytest.mark.parametrize(
    ("user", "uid"), [([], 65534), (["--user", "0:0"], 0)], ids=["as-nobody", "as-root"]
)
def test_scan_sigkilled_children_die_with_it(
    spawn: Callable[..., Spawned], fifo_jail: Path, user: list[str], uid: int
) -> None:
    # As nobody (the default as root), the child's setuid cleared PR_SET_PDEATHSIG: it must
    # have armed it again, or it would stay blocked on the FIFO forever. So the parent is killed
    # only once the child runs as that user, blocked on the FIFO.
    p = spawn(*cli_args("scan", str(fifo_jail), "--probe-timeout", "30", *user), jail=fifo_jail)
    wait_for(lambda: blocked_in(fifo_jail, uid), 20, "a probe child blocked in the jail")
    p.proc.kill()
    assert p.proc.wait(timeout=10) == -signal.SIGKILL
    wait_for(lambda: not jailed(fifo_jail), 5, "the orphaned probe children to die")


def _fifo_jails(tmp: Path, n: int) -> list[Path]:
    jails = [tmp / f"fifo{i}" for i in range(n)]
    for j in jails:
        (j / "dev").mkdir(parents=True)
        os.mkfifo(j / "dev" / "urandom")
    return jails


@pytest.mark.root
@pytest.mark.parametrize("sig", [*CATCHABLE, signal.SIGKILL], ids=[*SIG_IDS, "SIGKILL"])
def test_scan_pool_signalled_leaves_no_process_in_any_jail(
    spawn: Callable[..., Spawned], tmp_path: Path, sig: signal.Signals
) -> None:
    """scan --jobs 3 over five FIFO jails: three jails' probes block at once (the pool), never
    a fourth; a signal then leaves no process in any jail (SIGKILL: PR_SET_PDEATHSIG)."""
    jails = _fifo_jails(tmp_path, 5)
    args = cli_args("scan", *map(str, jails), "--jobs", "3", "--probe-timeout", "30")
    p = spawn(*args, jail=jails[0])
    busy = lambda: [j for j in jails if blocked_in(j, 65534)]  # noqa: E731
    wait_for(lambda: len(busy()) == 3, 30, "three jails' probe children blocked at once")
    assert busy() == jails[:3]  # in order, and no more than --jobs
    time.sleep(0.3)
    assert [j for j in jails if jailed(j)] == jails[:3]
    if sig == signal.SIGKILL:
        p.proc.kill()
        assert p.proc.wait(timeout=10) == -signal.SIGKILL
    else:
        p.proc.send_signal(sig)
        assert p.proc.wait(timeout=10) == 128 + sig, p.stderr
        assert f"chrootcheck: interrupted ({sig.name})" in p.stderr
        assert "Traceback" not in p.stderr
    for j in jails:
        wait_for(lambda j=j: not jailed(j), 5, f"{j}'s processes to be gone")


def _demo_jails(tmp: Path) -> list[Path]:
    return list(tmp.glob("chrootcheck-demo-*/var/lib/haproxy"))


@pytest.mark.root
@pytest.mark.parametrize("sig", [*CATCHABLE, signal.SIGKILL], ids=[*SIG_IDS, "SIGKILL"])
def test_demo_signalled_leaves_no_process_in_its_jail(
    spawn: Callable[..., Spawned], tmp_path: Path, sig: signal.Signals
) -> None:
    # The demo's jail is healthy: strace holds every chroot(2) for 2 s on its way out, so the
    # probe children are inside the jail when the signal comes (the probe kills them at 3 s).
    strace = needs_strace()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    held = ("-f", "-qq", "-o", "/dev/null", "-e", "trace=chroot")
    held += ("-e", "inject=chroot:delay_exit=2000000")
    p = spawn(*cli_args("demo", "--mknod"), prefix=(strace, *held), env=_env(TMPDIR=str(tmp)))
    wait_for(lambda: _demo_jails(tmp) and jailed(_demo_jails(tmp)[0]), 30, "a jailed child")
    [jail] = _demo_jails(tmp)
    [cli] = children(p.proc.pid)
    os.kill(cli, sig)
    code = p.proc.wait(timeout=15)  # strace exits as its tracee did
    wait_for(lambda: not jailed(jail), 5, "the demo jail's processes to be gone")
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        shutil.rmtree(tmp)  # nothing is mounted with --mknod: a plain leftover folder
    else:
        assert code == 128 + sig, p.stderr
        assert "Cleaning up" in p.stdout
        assert list(tmp.iterdir()) == []  # the demo removed its jail
    assert mounts_below(tmp_path) == []


# ---------------------------------------------------------------------------- the walker's helper

WALK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from chrootcheck.system import procs
    from chrootcheck.jail import walker

    parent = os.getpid()
    listing = walker._Walk.listing

    def slow(self, fd, path, depth):  # only the helper is slowed: it stays alive meanwhile
        if os.getpid() != parent:
            with open(sys.argv[2] + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(sys.argv[2] + ".tmp", sys.argv[2])
            time.sleep(60)
        return listing(self, fd, path, depth)

    walker._Walk.listing = slow
    fd = os.open(sys.argv[1], os.O_PATH | os.O_DIRECTORY)
    with procs.interrupt_on_signals():
        walker.walk(fd, mounts={}, split_after=1)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_walker_helper_dies_with_the_walk(
    spawn: Callable[..., Spawned], tmp_path: Path, sig: signal.Signals
) -> None:
    tree = tmp_path / "tree"
    for i in range(8):
        (tree / f"d{i}" / "sub").mkdir(parents=True)
    announce = tmp_path / "helper.pid"
    p = spawn("-c", WALK_SCRIPT, str(tree), str(announce))
    wait_for(announce.exists, 20, "the walker's helper")
    helper = int(announce.read_text())
    assert helper in children(p.proc.pid)
    p.proc.send_signal(sig)
    p.proc.wait(timeout=10)
    # SIGTERM: the walk kills and reaps its helper; SIGKILL: the helper's PDEATHSIG does.
    wait_for(lambda: not os.path.exists(f"/proc/{helper}"), 5, "the helper to be gone")


# ---------------------------------------------------------------------------- a killed fix --bind


HOLD = 1.5  # seconds: the test must see the window (polled every 20 ms) and signal within it


def _strace_fix(strace: str) -> tuple[str, ...]:
    # The first mount(2) is held on its way in: the placeholder is made, nothing mounted yet.
    inject = f"inject=mount:delay_enter={int(HOLD * 1_000_000)}:when=1"
    return (strace, "-qq", "-o", "/dev/null", "-e", "trace=mount", "-e", inject)


def _in_the_window(jail: Path) -> bool:
    try:
        st = os.lstat(jail / "dev" / "urandom")
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == 0 and mounts_below(jail) == []


@pytest.mark.root
@pytest.mark.parametrize("sig", CATCHABLE, ids=SIG_IDS)
def test_fix_bind_killed_between_placeholder_and_mount_leaves_nothing(
    spawn: Callable[..., Spawned],
    jail: Path,
    sig: signal.Signals,
    unmount_all: Callable[[], list[str]],
) -> None:
    strace = needs_strace()
    (jail / "dev").mkdir()
    p = spawn(*cli_args("fix", str(jail), "--bind"), prefix=_strace_fix(strace))
    wait_for(lambda: _in_the_window(jail), 20, "the placeholder, before the mount")
    [cli] = children(p.proc.pid)
    os.kill(cli, sig)
    assert mounts_below(jail) == []  # still in the window when the signal went out
    assert p.proc.wait(timeout=45) == 128 + sig, p.stderr
    # The signal waited for the held mount to finish; then the fix undid it and its placeholder.
    assert unmount_all() == []
    assert list((jail / "dev").iterdir()) == []
    assert f"chrootcheck: interrupted ({sig.name})" in p.stderr


@pytest.mark.root
def test_fix_bind_sigkilled_in_the_window_is_repaired_by_the_next_run(
    spawn: Callable[..., Spawned], jail: Path, unmount_all: Callable[[], list[str]]
) -> None:
    strace = needs_strace()
    (jail / "dev").mkdir()
    p = spawn(*cli_args("fix", str(jail), "--bind"), prefix=_strace_fix(strace))
    wait_for(lambda: _in_the_window(jail), 20, "the placeholder, before the mount")
    [cli] = children(p.proc.pid)
    os.kill(cli, signal.SIGKILL)  # nothing can clean up after this
    p.proc.wait(timeout=45)
    assert unmount_all() == []
    # What is left is the empty placeholder, the state a reboot leaves after --bind: a scan
    # calls it critical, the next fix --bind mounts onto it (no lock is left to wait for).
    assert _in_the_window(jail)
    r = run_cli("scan", str(jail), "--no-probe", "--format", "json")
    assert r.code == 1 and "CC110" in r.stdout, str(r)
    r = run_cli("fix", str(jail), "--bind", "--format", "json", timeout=60)
    assert r.code == 0, str(r)
    steps = json.loads(r.stdout)["plan"]["steps"]
    assert [(s["action"], s["path"]) for s in steps] == [
        ("bind", "/dev/urandom"),
        ("placeholder", "/dev/random"),
        ("bind", "/dev/random"),
    ]
    assert sorted(unmount_all()) == [f"{jail}/dev/random", f"{jail}/dev/urandom"]


# ---------------------------------------------------------------------------- concurrent fixes

RUNS = 3
ROUNDS = 20  # stacking showed about once in ten rounds before the lock (measured: 2 in 20)


def _concurrent(jail: Path, workdir: Path, *args: str) -> list[Result]:
    # Real processes, forked from this one (no interpreter start-up each) and released at the
    # same moment: the race is as tight as it gets, and a round costs little.
    workdir.mkdir(exist_ok=True)
    argv = ["fix", str(jail), *args]
    runs = run_forked_together([argv] * RUNS, str(workdir), env=_FORKED_ENV, timeout=120)
    return [Result(*run) for run in runs]


_FORKED_ENV = {"NO_COLOR": "1", "COLUMNS": "160", "CHROOTCHECK_DEBUG": None}


@pytest.mark.root
@pytest.mark.parametrize("start", ["empty-dev", "placeholders"])
def test_concurrent_fix_bind_mounts_once(
    tmp_path: Path,
    jail: Path,
    start: str,
    unmount_all: Callable[[], list[str]],
) -> None:
    # "placeholders": what an earlier --bind leaves after a reboot; every run plans to mount
    # onto them, which is where three mounts used to stack.
    for _ in range(ROUNDS if start == "placeholders" else ROUNDS // 2):
        shutil.rmtree(jail)
        (jail / "dev").mkdir(parents=True)
        if start == "placeholders":
            (jail / "dev" / "urandom").touch(mode=0o644)
            (jail / "dev" / "random").touch(mode=0o644)
        procs = _concurrent(jail, tmp_path / "runs", "--bind")
        points = unmount_all()
        for p in procs:
            assert p.code == 0, p.stdout + p.stderr
            assert "skipped: skipped" not in p.stdout
        assert sorted(points) == [f"{jail}/dev/random", f"{jail}/dev/urandom"], points
        # One mount per node: mounts_below lists distinct points, count the layers too.
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            layers = [line.split()[4] for line in f if line.split()[4] in points]
        assert len(layers) == 2, layers
        assert sorted(os.listdir(jail / "dev")) == ["random", "urandom"]  # no lock file
        assert os.listdir(jail) == ["dev"]
        for point in points:
            subprocess.run(["umount", point], check=True)


@pytest.mark.root
def test_concurrent_fix_mknod_all_succeed(tmp_path: Path, jail: Path) -> None:
    for _ in range(ROUNDS // 2):
        shutil.rmtree(jail)
        jail.mkdir()  # /dev itself is missing: the runs also race to make it
        procs = _concurrent(jail, tmp_path / "runs", "--mknod")
        for p in procs:
            assert p.code == 0, p.stdout + p.stderr
        assert sorted(os.listdir(jail / "dev")) == ["random", "urandom"]
        assert os.listdir(jail) == ["dev"]


@pytest.mark.root
def test_a_mount_appearing_before_ours_makes_ours_undone(
    spawn: Callable[..., Spawned], jail: Path, unmount_all: Callable[[], list[str]]
) -> None:
    # Someone outside the lock (an admin, an older chrootcheck) mounts onto the placeholder
    # after the fix checked it and before its own mount: the fix sees its mount sitting on
    # theirs, undoes it, and fails the step. One mount remains: theirs.
    strace = needs_strace()
    (jail / "dev").mkdir()
    p = spawn(
        *cli_args("fix", str(jail), "--bind", "--only", "urandom"), prefix=_strace_fix(strace)
    )
    wait_for(lambda: _in_the_window(jail), 20, "the placeholder, before the mount")
    point = str(jail / "dev" / "urandom")
    subprocess.run(["mount", "--bind", "/dev/urandom", point], check=True)
    assert p.proc.wait(timeout=45) == 2, p.stdout + p.stderr
    assert "another mount appeared on /dev/urandom meanwhile; ours was undone" in p.stderr
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        layers = [line.split()[4] for line in f if line.split()[4] == point]
    assert layers == [point]
    assert unmount_all() == [point]


def test_the_lock_is_on_the_jail_folder_and_names_its_holder(jail: Path) -> None:
    import fcntl

    from chrootcheck.fix.fixer import jail_lock
    from chrootcheck.report.errors import ToolError

    fd = os.open(jail, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another fix (here: this test) holds it
        with pytest.raises(ToolError, match="holds the fix lock") as e:
            with jail_lock(str(jail), wait=0.2):
                pass
        assert e.value.hint == f"held by pid {os.getpid()}"
        fcntl.flock(fd, fcntl.LOCK_UN)
        with jail_lock(str(jail), wait=0.2), jail_lock(str(jail), wait=0.2):  # re-entrant
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released afterwards
    finally:
        os.close(fd)
    assert list(jail.iterdir()) == []  # no lock file


@pytest.mark.root
def test_a_skipped_step_says_so_once(jail: Path, tmp_path: Path) -> None:
    import io

    from chrootcheck.fix.fixer import FixOptions, FixRun, Method, Status, apply_fix, plan_fix
    from chrootcheck.formats import RenderOptions
    from chrootcheck.formats.fix_format import render_text

    (jail / "dev").mkdir()
    plan = plan_fix(str(jail), FixOptions(Method.MKNOD))
    (jail / "dev").rmdir()
    (jail / "dev").symlink_to(tmp_path)  # /dev fails, so the second node is skipped
    result = apply_fix(plan)
    assert [o.status for o in result.outcomes] == [Status.FAILED, Status.SKIPPED]
    out = io.StringIO()
    render_text(FixRun(plan=plan, dry_run=False, result=result), out, RenderOptions(width=400))
    assert "skipped: an earlier step failed" in out.getvalue()
    assert "skipped: skipped" not in out.getvalue()
