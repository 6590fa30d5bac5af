"""The as-configured scenario: the service's own filter (from a seccomp profile or a systemd
unit) and device policy, built with libseccomp and run for real in the probe child."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from chrootcheck.probe import ProbeOptions, ProbeReport, ScenarioResult, Verdict, run_probe
from chrootcheck.probe.analysis import legacy_blind
from chrootcheck.report.errors import ToolError
from chrootcheck.sandbox import oci, systemd
from chrootcheck.sandbox.model import Sandbox
from tests import debian
from tests.conftest import mounts_below, open_up
from tests.openssl_builds import Build
from tests.probe_helpers import verdicts

pytestmark = pytest.mark.root
AS_CONFIGURED = "as-configured"


@pytest.fixture
def jail(tmp_path: Path) -> Path:
    j = tmp_path / "jail"
    (j / "dev").mkdir(parents=True)
    for name, minor in (("urandom", 9), ("random", 8)):
        os.mknod(j / "dev" / name, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        os.chmod(j / "dev" / name, 0o666)
    open_up(j)  # the children run as nobody
    return j


def profile(tmp_path: Path, doc: object) -> Sandbox:
    p = tmp_path / "profile.json"
    p.write_text(json.dumps(doc))
    return oci.read_profile(str(p))


def unit(text: str) -> Sandbox:
    return systemd.parse_unit([("/etc/systemd/system/svc.service", "[Service]\n" + text)])


def probe(
    jail: Path, sandbox: Sandbox, lib: str | None = None, *, triggers: bool = False
) -> ProbeReport:
    """The as-configured scenario beside two what-ifs; the triggers (a few hundred ms of
    children) only for the tests about them."""
    scenarios = ("as-is", "no-getrandom", AS_CONFIGURED)
    options = ProbeOptions(
        libcrypto=lib, cycles=1, scenarios=scenarios, sandbox=sandbox, triggers=triggers
    )
    return run_probe(str(jail), [], options)


def result(report: ProbeReport) -> ScenarioResult:
    return next(s for s in report.scenarios if s.name == AS_CONFIGURED)


def test_a_filter_that_kills_on_getrandom(tmp_path: Path, jail: Path) -> None:
    sb = profile(
        tmp_path,
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getrandom"], "action": "SCMP_ACT_KILL_PROCESS"}],
        },
    )
    report = probe(jail, sb)
    r = result(report)
    assert r.verdict is Verdict.CRASHED and r.signal == "SIGSYS"
    assert "kills on getrandom" in r.explanation
    assert report.prediction.startswith("Under the service's own sandbox: the service is killed")
    assert verdicts(report)["as-is"] is Verdict.PASS


def test_errno_matches_the_generic_what_if(tmp_path: Path, jail: Path) -> None:
    sb = profile(
        tmp_path,
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getrandom"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}],
        },
    )
    report = probe(jail, sb)
    # ENOSYS on getrandom is exactly the no-getrandom what-if: the same measured verdict.
    assert result(report).verdict is verdicts(report)["no-getrandom"]
    assert result(report).verdict is not Verdict.PASS  # the system's 3.x refuses the devices


def test_argument_conditions_run_for_real(tmp_path: Path, jail: Path) -> None:
    # getrandom allowed only with GRND_NONBLOCK: OpenSSL calls it with flags 0, so it fails.
    only_nonblock = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["getrandom"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 38,
                "args": [{"index": 2, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        ],
    }
    assert result(probe(jail, profile(tmp_path, only_nonblock))).verdict is not Verdict.PASS
    # the same rule for a flag OpenSSL never passes (GRND_RANDOM): it never applies
    only_random = json.loads(json.dumps(only_nonblock))
    only_random["syscalls"][0]["args"][0].update(value=2, valueTwo=2)
    assert result(probe(jail, profile(tmp_path, only_random))).verdict is Verdict.PASS


def test_the_containers_common_default_profile_passes(jail: Path) -> None:
    path = "/usr/share/containers/seccomp.json"
    if not os.path.exists(path):
        why = debian.install("golang-github-containers-common")
        if not os.path.exists(path):
            if os.environ.get("CI"):
                pytest.fail(f"containers-common's seccomp.json is needed: {why}")
            pytest.skip(str(why))
    assert result(probe(jail, oci.read_profile(path))).verdict is Verdict.PASS


def test_a_unit_allow_list_with_kill_as_default(jail: Path) -> None:
    debian.tool("systemd-analyze", "systemd")
    # @system-service has what OpenSSL needs: everything else would kill.
    assert result(probe(jail, unit("SystemCallFilter=@system-service\n"))).verdict is Verdict.PASS
    killed = result(
        probe(jail, unit("SystemCallFilter=@system-service\nSystemCallFilter=~getrandom\n"))
    )
    assert killed.verdict is Verdict.CRASHED and killed.signal == "SIGSYS"


def test_a_device_policy_that_denies_urandom(jail: Path, libcrypto_102: Build) -> None:
    # A strict policy makes the jail's devices unreadable though the nodes exist, as a device
    # cgroup does. 1.0.2 never rereads them by itself (pass, as the trigger issue measured),
    # but an application's RAND_poll inside the jail would read nothing: the probe's look says
    # so under the policy, and not without it.
    strict = unit("DevicePolicy=strict\nDeviceAllow=/dev/null rw\n")
    report = probe(jail, strict, libcrypto_102.path)
    assert verdicts(report)["as-is"] is Verdict.PASS
    assert legacy_blind(result(report))
    assert not legacy_blind(next(r for r in report.scenarios if r.name == "as-is"))
    allowed = unit("DevicePolicy=strict\nDeviceAllow=/dev/urandom r\nDeviceAllow=/dev/random r\n")
    assert not legacy_blind(result(probe(jail, allowed, libcrypto_102.path)))
    # nothing is left mounted on the jail's devices
    assert str(jail) not in Path("/proc/self/mountinfo").read_text()


def rooted(text: str) -> Sandbox:
    """A unit whose RootDirectory= is the jail: its mounts are made in the jail."""
    return unit("RootDirectory=/srv/jail\n" + text)


@pytest.mark.parametrize("dev", ["no /dev", "empty /dev"])
def test_private_devices_is_measured(tmp_path: Path, libcrypto_102: Build, dev: str) -> None:
    # A jail without devices: 1.0.2's RAND_poll reads nothing in it, except under
    # PrivateDevices=yes, which the child reproduces (a tmpfs /dev with systemd's nodes, in its
    # own mount namespace: the jail itself is never written, even to make its missing /dev).
    bare = tmp_path / "bare"
    bare.mkdir()
    if dev == "empty /dev":
        (bare / "dev").mkdir()
    before = sorted(p.name for p in bare.iterdir())
    # Only this test's mounts: other workers of the run mount and unmount meanwhile.
    mounts_before = mounts_below(tmp_path)
    without = result(probe(bare, rooted(""), libcrypto_102.path))
    assert without.verdict is Verdict.PASS and legacy_blind(without)
    private = result(probe(bare, rooted("PrivateDevices=yes\n"), libcrypto_102.path))
    assert private.verdict is Verdict.PASS and not legacy_blind(private), private
    assert "PrivateDevices=yes" in private.description
    # the system's 3.x too (getrandom: a pass either way, now measured instead of skipped)
    assert result(probe(bare, rooted("PrivateDevices=yes\n"))).verdict is Verdict.PASS
    assert sorted(p.name for p in bare.iterdir()) == before
    assert mounts_below(tmp_path) == mounts_before


def test_private_devices_without_root_directory_is_the_hosts(
    tmp_path: Path, libcrypto_102: Build
) -> None:
    # Without RootDirectory= the daemon chroots itself: PrivateDevices= changes the host's
    # /dev, never the jail's, so the jail's missing devices still count.
    bare = tmp_path / "bare"
    (bare / "dev").mkdir(parents=True)
    r = result(probe(bare, unit("PrivateDevices=yes\n"), libcrypto_102.path))
    assert legacy_blind(r) and "without RootDirectory=" in r.description


def test_a_missing_bind_source_keeps_the_unit_from_starting(tmp_path: Path, jail: Path) -> None:
    r = result(probe(jail, rooted(f"BindReadOnlyPaths={tmp_path}/nowhere:/dev/urandom\n")))
    assert r.verdict is Verdict.SKIPPED and "the unit does not start" in r.explanation, r
    # with "-" it is ignored, as systemd does
    r = result(probe(jail, rooted(f"BindReadOnlyPaths=-{tmp_path}/nowhere:/dev/urandom\n")))
    assert r.verdict is Verdict.PASS, r


def test_bind_paths_bring_urandom_in(tmp_path: Path, libcrypto_102: Build) -> None:
    bare = tmp_path / "bare"
    (bare / "dev").mkdir(parents=True)
    open_up(bare)
    brought = rooted("BindReadOnlyPaths=/dev/urandom\n")
    r = result(probe(bare, brought, libcrypto_102.path))
    assert not legacy_blind(r), r
    hidden = rooted("BindReadOnlyPaths=/dev/urandom\nTemporaryFileSystem=/dev\n")
    assert not legacy_blind(result(probe(bare, hidden, libcrypto_102.path)))  # parents first
    assert legacy_blind(
        result(
            probe(
                jail_with_devices(tmp_path),
                rooted("TemporaryFileSystem=/dev\n"),
                libcrypto_102.path,
            )
        )
    )
    assert os.listdir(bare / "dev") == []


def jail_with_devices(tmp_path: Path) -> Path:
    j = tmp_path / "full"
    (j / "dev").mkdir(parents=True)
    for name, minor in (("urandom", 9), ("random", 8)):
        os.mknod(j / "dev" / name, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        os.chmod(j / "dev" / name, 0o666)
    return j


def _view(jail: Path, sandbox: Sandbox, look: list[str]) -> dict[str, object]:
    """What a process sees after the unit's mounts and the chroot: a child of this test in
    its own mount namespace runs probe.sandbox.build_namespace for real, chroots, and reports
    the kind (and text, for a file) of each path in ``look`` and whether it can write it."""
    from chrootcheck.probe import sandbox as psandbox
    from chrootcheck.probe.scenarios import as_configured
    from chrootcheck.system import libc

    scenario = as_configured(sandbox)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            psandbox.enter_namespaces(True)
            fd = os.open(jail, os.O_PATH | os.O_DIRECTORY)
            fd = psandbox.build_namespace(
                fd, scenario.private_devices, scenario.mounts, scenario.sources_root
            )
            os.fchdir(fd)
            os.chroot(".")
            seen: dict[str, object] = {}
            for path in look:
                try:
                    st = os.lstat(path)
                except OSError as e:
                    seen[path] = e.strerror
                    continue
                if stat.S_ISDIR(st.st_mode):
                    seen[path] = sorted(os.listdir(path))
                elif stat.S_ISCHR(st.st_mode):
                    seen[path] = f"char {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
                elif stat.S_ISFIFO(st.st_mode):
                    seen[path] = "fifo"
                elif stat.S_ISLNK(st.st_mode):
                    seen[path] = "-> " + os.readlink(path)
                else:
                    with open(path) as f:
                        seen[path] = f.read()
                seen[path + " writable"] = os.access(path, os.W_OK) and not (
                    os.statvfs(path).f_flag & os.ST_RDONLY
                )
            os.write(w, json.dumps(seen).encode())
            code = 0
        except BaseException as e:
            os.write(w, repr(e).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, data
    del libc
    out: dict[str, object] = json.loads(data)
    return out


def test_the_units_mounts_as_the_service_sees_them(tmp_path: Path) -> None:
    # A jail with no /dev, a file, a symlink and a FIFO at its top (kept in the shadow of its
    # root: bound back, never opened), a bind source on the host brought to a new folder,
    # read-only, and a TemporaryFileSystem= over the jail's /tmp.
    j = tmp_path / "j"
    (j / "etc").mkdir(parents=True)
    (j / "etc" / "hosts").write_text("jail hosts")
    (j / "tmp").mkdir()
    (j / "tmp" / "secret").write_text("x")
    (j / "link").symlink_to("/etc/hosts")
    os.mkfifo(j / "pipe")
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.txt").write_text("host data")
    before = sorted(p.name for p in j.iterdir())
    sb = rooted(
        f"PrivateDevices=yes\nBindReadOnlyPaths={src}:/srv/data\nTemporaryFileSystem=/tmp\n"
    )
    seen = _view(
        j,
        sb,
        [
            "/dev",
            "/dev/urandom",
            "/dev/random",
            "/dev/tty",
            "/etc/hosts",
            "/link",
            "/pipe",
            "/srv/data/data.txt",
            "/tmp",
        ],
    )
    assert seen["/dev"] == sorted(
        [
            "null",
            "zero",
            "full",
            "random",
            "urandom",
            "tty",
            "fd",
            "stdin",
            "stdout",
            "stderr",
            "shm",
        ]
    )
    assert (seen["/dev/urandom"], seen["/dev/random"]) == ("char 1:9", "char 1:8")
    assert seen["/dev/tty"] == "char 5:0"
    assert seen["/etc/hosts"] == "jail hosts" and seen["/link"] == "-> /etc/hosts"
    assert seen["/pipe"] == "fifo"
    assert seen["/srv/data/data.txt"] == "host data"
    assert seen["/srv/data/data.txt writable"] is False
    assert seen["/tmp"] == []
    # nothing was made or changed in the jail, nothing stays mounted
    assert sorted(p.name for p in j.iterdir()) == before
    assert str(j) not in Path("/proc/self/mountinfo").read_text()


def test_a_target_symlink_never_leads_out(tmp_path: Path) -> None:
    # The jail's /dev points out of it: resolved inside the jail (dangling there), so the
    # private /dev is made in a shadow of the jail's root, never on the host's folder.
    j = tmp_path / "j"
    j.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (j / "dev").symlink_to(outside)
    r = result(probe(j, rooted("PrivateDevices=yes\n")))
    assert r.verdict is Verdict.SKIPPED and "cannot set up the unit's mounts" in r.explanation
    assert list(outside.iterdir()) == []
    assert str(outside) not in Path("/proc/self/mountinfo").read_text()


def test_as_configured_needs_a_sandbox(jail: Path) -> None:
    with pytest.raises(ToolError, match="needs a sandbox"):
        run_probe(str(jail), [], ProbeOptions(scenarios=(AS_CONFIGURED,)))


def test_a_hostile_jail_under_a_device_policy(tmp_path: Path, jail: Path) -> None:
    # A FIFO at /dev/urandom (never opened by the bind mount: no hang) and a /dev/random that
    # points out of the jail (resolved inside it after the chroot: dangling there, skipped).
    (jail / "dev" / "urandom").unlink()
    os.mkfifo(jail / "dev" / "urandom", 0o666)
    (jail / "dev" / "random").unlink()
    outside = tmp_path / "host-random"
    outside.write_text("host file")
    (jail / "dev" / "random").symlink_to(outside)
    # Only this test's mounts: other workers of the run mount and unmount meanwhile.
    mounts_before = mounts_below(tmp_path)
    options = ProbeOptions(
        cycles=1, timeout=2, scenarios=(AS_CONFIGURED,), sandbox=unit("DevicePolicy=strict\n")
    )
    report = run_probe(str(jail), [], options)
    r = result(report)
    # past the mounts, and getrandom needs nothing from the jail
    assert (r.verdict, r.phase) == (Verdict.PASS, "done"), r
    assert mounts_below(tmp_path) == mounts_before
    assert outside.read_text() == "host file"


def test_a_fifo_as_profile_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "profile.json"
    os.mkfifo(fifo)
    with pytest.raises(ToolError, match="not a regular file"):
        oci.read_profile(str(fifo))


def test_the_triggers_run_under_the_sandbox_too(jail: Path, libcrypto_102: Build) -> None:
    # 1.0.2 under a strict device policy: RAND_poll would read nothing inside the jail, so the
    # trigger children run, each under the same filter and policy: the filter kills clone and
    # clone3, so the service's threads and forks die of SIGSYS there (and only there), while
    # RAND_seed and many draws hold; the kill-by-default allow-list of @system-service lets
    # every trigger be measured.
    report = probe(
        jail,
        unit("SystemCallFilter=~clone clone3\nDevicePolicy=strict\n"),
        libcrypto_102.path,
        triggers=True,
    )
    by = {t.trigger: t for t in result(report).triggers}
    assert list(by) == ["time", "threads", "rand-seed", "fork", "draws"]
    for name in ("threads", "fork"):
        assert by[name].breaks is None and "seccomp filter (SIGSYS)" in by[name].summary, by[name]
    assert by["rand-seed"].breaks is False and by["draws"].breaks is False
    assert "own sandbox kills it at fork, threads" in report.prediction
    as_is = next(r for r in report.scenarios if r.name == "as-is")
    assert not as_is.triggers  # the jail's devices are readable without the policy
    debian.tool("systemd-analyze", "systemd")
    strict = unit("SystemCallFilter=@system-service\nDevicePolicy=strict\n")
    measured = result(probe(jail, strict, libcrypto_102.path, triggers=True)).triggers
    assert [t.breaks for t in measured] == [False] * 5, measured


def _x32_getpid_under(sandbox: Sandbox) -> str:
    """In a child of this test: the as-configured filter installed for real, then getpid as
    an x32 system call (the x32 bit on x86-64's number, through syscall(2)): "killed" (SIGSYS)
    or "returned"."""
    from chrootcheck.probe import sandbox as psandbox
    from chrootcheck.probe.scenarios import as_configured
    from chrootcheck.system import libc

    flt = as_configured(sandbox).seccomp
    assert flt is not None
    libc.load(with_seccomp=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3  # the filter could not be installed
        try:
            psandbox.apply_filter(flt)
            libc.libc().syscall(libc.ffi().cast("long", 0x40000000 | 39))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == 31, status  # SIGSYS
        return "killed"
    assert os.WEXITSTATUS(status) == 0
    return "returned"


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x32 calls exist on x86-64 only")
def test_system_call_architectures_are_enforced(jail: Path) -> None:
    native = unit("SystemCallArchitectures=native\n")
    assert native.seccomp is not None and native.seccomp.bad_arch is not None
    assert any("SystemCallArchitectures=native" in n for n in native.notes)
    assert _x32_getpid_under(native) == "killed"
    assert _x32_getpid_under(unit("SystemCallArchitectures=native x32\n")) == "returned"
    # without it, systemd filters x86 and x32 calls with the same rules: not killed for that
    debian.tool("systemd-analyze", "systemd")
    service = unit("SystemCallFilter=@system-service\n")
    assert _x32_getpid_under(service) == "returned"
    assert (
        _x32_getpid_under(
            unit("SystemCallFilter=@system-service\nSystemCallArchitectures=native\n")
        )
        == "killed"
    )
    # OpenSSL's own (native) calls pass under it, measured
    assert result(probe(jail, native)).verdict is Verdict.PASS
