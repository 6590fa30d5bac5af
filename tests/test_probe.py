"""The probe against real libraries in real jails (real chroot, real mknod, real seccomp).

Expected on a kernel >= 4.8 (issue 3), for both the system's 3.0 and the wheel's 1.1.1r:
empty jail: as-is passes, no-getrandom fails before the chroot (an environment risk),
old-kernel passes (the device fd opened before the chroot is kept), old-kernel with devices
closed fails inside the jail; correct nodes: every old-kernel scenario passes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from chrootcheck.formats.common import to_data
from chrootcheck.formats.probe_text import probe_renderables
from chrootcheck.openssl import library, rand
from chrootcheck.openssl.results import Step
from chrootcheck.probe import ProbeOptions, ProbeReport, Verdict, run_probe
from chrootcheck.report import catalogue as checks
from chrootcheck.report.errors import ToolError
from chrootcheck.report.model import Finding
from tests import debian
from tests.conftest import open_up
from tests.openssl_builds import Build
from tests.probe_helpers import verdicts

ROOT = Path(__file__).resolve().parent.parent
CLOSED = "old-kernel, devices closed"


def _node(path: Path, major: int, minor: int) -> None:
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    os.chmod(path, 0o666)


@pytest.fixture
def empty_jail(tmp_path: Path) -> Path:
    jail = tmp_path / "jail"
    (jail / "dev").mkdir(parents=True)
    open_up(jail)
    return jail


@pytest.fixture
def correct_jail(empty_jail: Path) -> Path:
    _node(empty_jail / "dev" / "urandom", 1, 9)
    _node(empty_jail / "dev" / "random", 1, 8)
    return empty_jail


def _finding(check: str, path: str) -> Finding:
    return checks.get(check).finding(path, "static finding for the test")


def _codes(report: ProbeReport, name: str) -> set[int]:
    return {e.code for e in next(s for s in report.scenarios if s.name == name).chain}


@pytest.mark.root
def test_empty_jail(libcrypto_build: Build, empty_jail: Path) -> None:
    report = run_probe(str(empty_jail), [], ProbeOptions(libcrypto=libcrypto_build.path))
    assert report.skipped_reason is None
    assert verdicts(report) == {
        "as-is": Verdict.PASS,
        "no-getrandom": Verdict.RISK,
        "old-kernel": Verdict.PASS,
        CLOSED: Verdict.FAIL,
    }
    closed = next(s for s in report.scenarios if s.name == CLOSED)
    assert [c.ok for c in closed.cycles] == [True, False, False, False]  # control, then 3
    assert closed.phase == "done" and closed.caused_by == ()
    risk = next(s for s in report.scenarios if s.name == "no-getrandom")
    # The control cycle before the chroot fails: that is what makes it a risk, not a finding.
    assert not risk.cycles[0].ok and risk.cycles[0].state in ("absent", "error")
    if libcrypto_build.series == "3.x":
        assert 0x1C8000BD in _codes(report, CLOSED)
        assert 0x1C8000BD in _codes(report, "no-getrandom")
    else:
        assert {0x2406C06E, 0x2406B072} <= _codes(report, CLOSED)  # the origin story's chain
        assert 0x2406C06E in _codes(report, "no-getrandom")
    # The jail failure no static finding explains becomes a finding; the risk never does.
    assert [f.check for f in report.findings] == ["CC200"]
    assert report.findings[0].details["scenario"] == CLOSED
    assert "3600 s" in report.prediction and "forked after the chroot" in report.prediction
    assert (report.uid, report.gid, report.mode) == (65534, 65534, "root")


_FRESH = """
import json, sys
from chrootcheck.probe import ProbeOptions, run_probe
options = ProbeOptions(triggers=False, libcrypto=sys.argv[2] or None, cycles=1)
r = run_probe(sys.argv[1], [], options)
sc = {s.name: s for s in r.scenarios}["no-getrandom"]
print(json.dumps({"verdict": sc.verdict.value, "state": sc.cycles[0].state,
                  "codes": [e.code for e in sc.chain]}))
"""


@pytest.mark.root
def test_fresh_daemon_3x_primary_cannot_be_created(libcrypto_30: Build, empty_jail: Path) -> None:
    # In a process that never used the library (a daemon at start; this test process has),
    # 3.0 cannot even create its primary DRBG without getrandom: RAND_get0_primary is NULL.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH, str(empty_jail), libcrypto_30.path],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    out = json.loads(proc.stdout)
    assert out["verdict"] == "risk"
    assert out["state"] == "absent"
    assert 0x1200006C in out["codes"]  # rand_new_drbg: error instantiating drbg
    assert out["codes"][0] == 0x1C8000BD


@pytest.mark.root
def test_correct_jail(libcrypto_build: Build, correct_jail: Path) -> None:
    report = run_probe(
        str(correct_jail), [], ProbeOptions(triggers=False, libcrypto=libcrypto_build.path)
    )
    assert verdicts(report) == {
        "as-is": Verdict.PASS,
        "no-getrandom": Verdict.RISK,
        "old-kernel": Verdict.PASS,
        CLOSED: Verdict.PASS,
    }
    assert report.findings == ()  # a correct jail gives exit 0: risks are not findings
    assert all(c.ok for s in report.scenarios if s.verdict is Verdict.PASS for c in s.cycles)


@pytest.mark.root
def test_static_findings_explain_the_failure(libcrypto_30: Build, empty_jail: Path) -> None:
    static = [
        _finding("CC101", "/dev/urandom"),
        _finding("CC102", "/dev/random"),
        _finding("CC160", "/dev/tty"),
    ]
    options = ProbeOptions(
        triggers=False, libcrypto=libcrypto_30.path, scenarios=(CLOSED,), cycles=1
    )
    report = run_probe(str(empty_jail), static, options)
    (closed,) = report.scenarios
    assert closed.verdict is Verdict.FAIL
    assert closed.caused_by == ("CC101", "CC102")  # not the unrelated CC160
    assert "CC101" in closed.explanation
    assert report.findings == ()  # explained already: no duplicate finding


@pytest.mark.root
@pytest.mark.parametrize("content", [b"0123456789abcdef" * 4, None])
def test_a_fake_node_that_reseeds_is_not_a_pass(
    libcrypto_build: Build, empty_jail: Path, content: bytes | None
) -> None:
    """OpenSSL reads a regular file of fixed bytes, or /dev/zero, as if it were entropy: the
    reseed succeeds, silently predictable. The probe must say fail and name the node."""
    from chrootcheck.jail.inspector import inspect_jail

    if content is None:
        _node(empty_jail / "dev" / "urandom", 1, 5)  # /dev/zero in urandom's place
    else:
        (empty_jail / "dev" / "random").write_bytes(content)  # no urandom: OpenSSL falls back
        os.chmod(empty_jail / "dev" / "random", 0o644)
    static = inspect_jail(str(empty_jail)).findings
    options = ProbeOptions(
        triggers=False, libcrypto=libcrypto_build.path, scenarios=("as-is", CLOSED), cycles=2
    )
    report = run_probe(str(empty_jail), static, options)
    assert verdicts(report)["as-is"] is Verdict.PASS  # getrandom: nothing read from the jail
    closed = next(s for s in report.scenarios if s.name == CLOSED)
    assert closed.verdict is Verdict.FAIL, closed.explanation
    assert closed.caused_by == (("CC121",) if content is None else ("CC110",))
    assert "predictable" in closed.explanation
    assert all(c.ok for c in closed.cycles)  # OpenSSL itself saw no error at all


@pytest.mark.root
def test_jail_root_not_searchable_by_the_user_fails(
    libcrypto_30: Build, correct_jail: Path
) -> None:
    # Correct nodes, but the jail's root folder is 0700: nobody cannot reach /dev/urandom.
    os.chmod(correct_jail, 0o700)
    options = ProbeOptions(
        triggers=False, libcrypto=libcrypto_30.path, scenarios=(CLOSED,), cycles=1
    )
    assert verdicts(run_probe(str(correct_jail), [], options)) == {CLOSED: Verdict.FAIL}
    as_root = ProbeOptions(
        triggers=False, libcrypto=libcrypto_30.path, scenarios=(CLOSED,), cycles=1, uid=0, gid=0
    )
    assert verdicts(run_probe(str(correct_jail), [], as_root)) == {CLOSED: Verdict.PASS}


@pytest.mark.root
def test_fifo_in_place_of_urandom_times_out(libcrypto_build: Build, empty_jail: Path) -> None:
    os.mkfifo(empty_jail / "dev" / "urandom", 0o666)
    options = ProbeOptions(
        triggers=False, libcrypto=libcrypto_build.path, scenarios=(CLOSED,), cycles=1, timeout=0.5
    )
    report = run_probe(str(empty_jail), [], options)
    (sc,) = report.scenarios
    assert sc.verdict is Verdict.TIMEOUT
    assert sc.phase == "jailed" and sc.signal == "SIGKILL"
    assert [f.check for f in report.findings] == ["CC201"]
    explained = run_probe(str(empty_jail), [_finding("CC111", "/dev/urandom")], options)
    assert explained.scenarios[0].caused_by == ("CC111",)
    assert explained.findings == ()


def _shm_keys() -> list[int]:
    with open("/proc/sysvipc/shm", encoding="ascii") as f:
        return [int(line.split()[0]) for line in list(f)[1:]]


def _children() -> list[int]:
    me = str(os.getpid())
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                kids.append(int(entry))
    return kids


@pytest.mark.root
def test_leaves_no_shm_mount_or_process(libcrypto_build: Build, correct_jail: Path) -> None:
    shm_before = _shm_keys()
    mounts_before = Path("/proc/self/mountinfo").read_text()
    fds_before = set(os.listdir("/proc/self/fd"))
    report = run_probe(
        str(correct_jail), [], ProbeOptions(triggers=False, libcrypto=libcrypto_build.path)
    )
    # The old-kernel children really created shm key 0x72 (in their own IPC namespace) ...
    assert verdicts(report)["old-kernel"] is Verdict.PASS
    # ... and none of it is left on the host.
    assert 0x72 not in _shm_keys()
    assert _shm_keys() == shm_before
    # Other tests' lazily detached mounts may come and go meanwhile: look for ours.
    new_mounts = set(Path("/proc/self/mountinfo").read_text().splitlines()) - set(
        mounts_before.splitlines()
    )
    assert [m for m in new_mounts if str(correct_jail) in m or " - mqueue " in m] == []
    assert _children() == []
    assert set(os.listdir("/proc/self/fd")) == fds_before


@pytest.mark.root
def test_parent_already_seeded(libcrypto_build: Build, empty_jail: Path) -> None:
    # A caller that used the same libcrypto before (its DRBGs exist): same verdicts.
    lc = library.load(libcrypto_build.path)
    assert rand.for_library(lc).draw(8).ok
    report = run_probe(
        str(empty_jail), [], ProbeOptions(triggers=False, libcrypto=libcrypto_build.path)
    )
    assert verdicts(report)[CLOSED] is Verdict.FAIL
    assert verdicts(report)["no-getrandom"] is Verdict.RISK
    assert verdicts(report)["old-kernel"] is Verdict.PASS


@pytest.mark.root
def test_refuses_a_libcrypto_inside_the_jail(libcrypto_111: Build, correct_jail: Path) -> None:
    inside = correct_jail / "lib" / Path(libcrypto_111.path).name
    inside.parent.mkdir()
    shutil.copy(libcrypto_111.path, inside)
    with pytest.raises(ToolError, match="inside the jail"):
        run_probe(str(correct_jail), [], ProbeOptions(triggers=False, libcrypto=str(inside)))
    allowed = ProbeOptions(
        triggers=False, libcrypto=str(inside), allow_jail_libcrypto=True, scenarios=("as-is",)
    )
    report = run_probe(str(correct_jail), [], allowed)
    assert report.libcrypto is not None and report.libcrypto.path == str(inside)
    assert verdicts(report) == {"as-is": Verdict.PASS}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ProbeOptions(triggers=False, cycles=0), "--cycles"),
        (ProbeOptions(triggers=False, timeout=0), "timeout"),
        (ProbeOptions(triggers=False, scenarios=("no-such",)), "unknown probe scenario"),
        (ProbeOptions(triggers=False, libcrypto="/no/such/libcrypto.so"), "cannot load libcrypto"),
    ],
)
def test_bad_input_is_a_tool_error(tmp_path: Path, options: ProbeOptions, message: str) -> None:
    with pytest.raises(ToolError, match=message) as e:
        run_probe(str(tmp_path), [], options)
    assert "\n" not in e.value.message


def test_missing_jail_is_a_tool_error(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="not a folder"):
        run_probe(str(tmp_path / "nope"), [], ProbeOptions(triggers=False))


_AS_NOBODY = """
import json, os, sys
from chrootcheck.probe import ProbeOptions, run_probe
import chrootcheck.probe.run
from chrootcheck.openssl.library import load
from chrootcheck.system import libc
load(None)  # Python and the package live under /root: import and load all before dropping
libc.load()  # (cffi itself: the libcrypto binding is built ahead and does not import it)
os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = {}
for jail in sys.argv[1:]:
    r = run_probe(jail, [], ProbeOptions(triggers=False, cycles=1))
    out[jail] = {"skipped": r.skipped_reason, "mode": r.mode, "uid": r.uid,
                 "verdicts": {s.name: s.verdict.value for s in r.scenarios}}
print(json.dumps(out))
"""


@pytest.fixture
def world_jails() -> Iterator[tuple[Path, Path]]:
    base = Path(tempfile.mkdtemp(prefix="chrootcheck-probe-"))
    try:
        os.chmod(base, 0o755)
        empty, correct = base / "empty", base / "correct"
        for j in (empty, correct):
            (j / "dev").mkdir(parents=True)
        _node(correct / "dev" / "urandom", 1, 9)
        _node(correct / "dev" / "random", 1, 8)
        for p in (empty, correct, empty / "dev", correct / "dev"):
            os.chmod(p, 0o755)
        yield empty, correct
    finally:
        shutil.rmtree(base)


@pytest.mark.root
def test_without_root_in_a_user_namespace(world_jails: tuple[Path, Path]) -> None:
    empty, correct = world_jails
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, str(empty), str(correct)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for jail, result in out.items():
        if result["skipped"] is not None:  # no unprivileged user namespaces on this host
            assert "\n" not in result["skipped"] and result["skipped"].startswith("not root")
            pytest.skip(f"the probe skipped itself, as it should here: {result['skipped']}")
        assert result["mode"] == "user namespace" and result["uid"] == 65534
        closed = "fail" if jail == str(empty) else "pass"
        assert result["verdicts"] == {
            "as-is": "pass",
            "no-getrandom": "risk",
            "old-kernel": "pass",
            CLOSED: closed,
        }


@pytest.mark.root
def test_report_is_plain_data_and_renders(libcrypto_111: Build, tmp_path: Path) -> None:
    jail = tmp_path / "odd [x] name"
    (jail / "dev").mkdir(parents=True)
    open_up(jail)
    report = run_probe(
        str(jail), [], ProbeOptions(triggers=False, libcrypto=libcrypto_111.path, cycles=1)
    )
    data = json.loads(json.dumps(to_data(report)))
    assert data["jail"] == str(jail)
    assert [s["verdict"] for s in data["scenarios"]] == ["pass", "risk", "pass", "fail"]
    assert data["scenarios"][3]["chain"][0]["code"] in (0x2406E06E, 0x2406C06E)
    buf = io.StringIO()
    console = Console(file=buf, width=200, markup=False, highlight=False, emoji=False)
    for r in probe_renderables(report):
        console.print(r)
    text = buf.getvalue()
    assert (
        "error:2406C06E:random number generator:RAND_DRBG_instantiate:error retrieving "
        "entropy:crypto/rand/drbg_lib.c:" in text
    )
    assert "means: no seed source answered" in text
    assert "prediction:" in text and "old-kernel, devices closed" in text


def test_skipped_report_renders_one_line() -> None:
    report = ProbeReport(
        jail="/srv/[b]jail",
        libcrypto=None,
        skipped_reason="not root, and no unprivileged user namespace here",
    )
    buf = io.StringIO()
    for r in probe_renderables(report):
        Console(file=buf, width=200, markup=False).print(r)
    assert buf.getvalue().strip() == (
        "probe: skipped: not root, and no unprivileged user namespace here"
    )


@pytest.mark.root
def test_openssl_102_without_drbg(libcrypto_102: Build, empty_jail: Path) -> None:
    # No DRBG: md_rand is seeded once before the chroot and never reseeded from the OS unless
    # the application calls RAND_poll, so nothing fails in any scenario (issue 11: the probe's
    # own look at the devices is not counted as the library's).
    options = ProbeOptions(triggers=False, libcrypto=libcrypto_102.path, cycles=1)
    report = run_probe(str(empty_jail), [], options)
    assert set(verdicts(report).values()) == {Verdict.PASS}
    assert report.findings == ()  # no CC200: the library never failed
    assert "pid, uid and time" in report.prediction and "RAND_poll" in report.prediction
    assert all(s.chain == () for s in report.scenarios)  # silent: no OpenSSL error at all
    for sc in report.scenarios:
        assert "unless the application calls RAND_poll" in sc.explanation
        assert "reads none of /dev/urandom" in sc.explanation
        assert all(c.ok for c in sc.cycles)
    _node(empty_jail / "dev" / "urandom", 1, 9)
    fixed = run_probe(str(empty_jail), [], dataclasses.replace(options, triggers=True))
    assert set(verdicts(fixed).values()) == {Verdict.PASS}
    assert fixed.findings == ()
    assert all("RAND_poll there would read /dev/urandom" in s.explanation for s in fixed.scenarios)
    assert all(s.triggers == () for s in fixed.scenarios)
    assert "pid, uid and time" not in fixed.prediction


@pytest.mark.root
def test_a_crashing_child_is_reported_with_its_signal(
    libcrypto_30: Build, empty_jail: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real crash in the real library: EVP_RAND_reseed on a NULL DRBG, inside the jail.
    from chrootcheck.openssl.cdefs import ffi
    from chrootcheck.probe import child

    original = child._cycle_steps

    def crash_inside(r: rand.Rand, inside: bool) -> list[Step]:
        if inside:
            r.lib.EVP_RAND_reseed(ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0)
        return original(r, inside)

    monkeypatch.setattr(child, "_cycle_steps", crash_inside)
    options = ProbeOptions(
        triggers=False, libcrypto=libcrypto_30.path, scenarios=("as-is",), cycles=1
    )
    report = run_probe(str(empty_jail), [], options)
    (sc,) = report.scenarios
    assert sc.verdict is Verdict.CRASHED
    assert sc.signal == "SIGSEGV"
    assert sc.phase == "jailed"
    assert report.findings == ()  # a crash is the tool's or the library's problem, not the jail's
    assert list(empty_jail.iterdir()) == [empty_jail / "dev"]  # and no core file in the jail


@pytest.mark.root
def test_scan_leaves_the_parent_unseeded_for_the_probe(tmp_path: Path) -> None:
    """scan asks the library for its folders before probing; that must not create a DRBG in
    the parent, or every later child would inherit it (3.0: a NULL primary turns into a failed
    reseed). Checked in a fresh process, by the chain the no-getrandom child reports."""
    jail = tmp_path / "jail"
    jail.mkdir()
    code = (
        "import json\n"
        "from chrootcheck.lateload.check import default_paths\n"
        "from chrootcheck.probe import ProbeOptions, run_probe\n"
        "default_paths(None)\n"
        "options = ProbeOptions(triggers=False, scenarios=('no-getrandom',))\n"
        f"r = run_probe({str(jail)!r}, [], options)\n"
        "print(json.dumps(sorted({e.code for e in r.scenarios[0].chain})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # the system's 3.0 in an unseeded process: the primary DRBG cannot even be created
    assert 0x1200006C in set(json.loads(out.stdout))


BROKEN_PROVIDER_CNF = """\
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
bogus = bogus_sect
[bogus_sect]
module = /nonexistent/bogus.so
activate = 1
"""


@pytest.mark.root
def test_the_parents_warm_up_leaves_the_config_to_each_child(tmp_path: Path) -> None:
    """The parent loads the error strings before forking (openssl.rand.warm_up), never the
    config: a config that breaks the DRBG (a provider that cannot load, so the default one is
    never activated) still breaks it in every child, as it would in the daemon, and the
    parent stays unseeded (its own primary DRBG was never created)."""
    jail = tmp_path / "jail"
    jail.mkdir()
    cnf = tmp_path / "openssl.cnf"
    cnf.write_text(BROKEN_PROVIDER_CNF)
    code = (
        "import json\n"
        "from chrootcheck.probe import ProbeOptions, run_probe\n"
        f"r = run_probe({str(jail)!r}, [], ProbeOptions(cycles=1, triggers=False))\n"
        "print(json.dumps({s.name: [s.verdict.value, sorted({e.code for e in s.chain})]"
        " for s in r.scenarios}))\n"
    )
    trace = tmp_path / "trace"
    strace = debian.tool("strace")
    out = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=openat", "-o", str(trace), sys.executable, "-c", code],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=120,
        env={**os.environ, "OPENSSL_CONF": str(cnf)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    scenarios = json.loads(out.stdout)
    assert len(scenarios) == 4
    for name, (verdict, codes) in scenarios.items():
        assert verdict != "pass", name
        assert 0x12000090 in codes, name  # rand_new_drbg: unable to fetch drbg
    # Who read the config: each of the four children, never the parent (the first pid).
    lines = trace.read_text().splitlines()
    parent = lines[0].split()[0]
    readers = {line.split()[0] for line in lines if f'"{cnf}"' in line}
    assert len(readers) == 4 and parent not in readers, (parent, readers)


@pytest.mark.root
@pytest.mark.parametrize("swap", ["another-folder", "symlink-to-host-folder"])
def test_children_enter_the_folder_the_scan_opened(
    libcrypto_30: Build, tmp_path: Path, swap: str
) -> None:
    # The scan opens the jail once; if its path is swapped afterwards (for another folder, or a
    # symlink that leads elsewhere), the probe must still judge the folder that was opened.
    judged = tmp_path / "jail"
    (judged / "dev").mkdir(parents=True)  # empty: the devices-closed scenario fails here
    open_up(judged)
    fd = os.open(judged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        elsewhere = tmp_path / "elsewhere"
        (elsewhere / "dev").mkdir(parents=True)
        _node(elsewhere / "dev" / "urandom", 1, 9)
        _node(elsewhere / "dev" / "random", 1, 8)
        open_up(elsewhere)
        judged.rename(tmp_path / "jail.moved")
        if swap == "another-folder":
            elsewhere.rename(judged)
        else:
            judged.symlink_to(elsewhere)
        options = ProbeOptions(
            triggers=False, libcrypto=libcrypto_30.path, scenarios=(CLOSED,), cycles=1
        )
        # By path, the probe sees the correct folder now in its place ...
        assert verdicts(run_probe(str(judged), [], options)) == {CLOSED: Verdict.PASS}
        # ... through the scan's descriptor, the empty folder it judged.
        through_fd = ProbeOptions(
            triggers=False, libcrypto=libcrypto_30.path, scenarios=(CLOSED,), cycles=1, root_fd=fd
        )
        assert verdicts(run_probe(str(judged), [], through_fd)) == {CLOSED: Verdict.FAIL}
    finally:
        os.close(fd)
