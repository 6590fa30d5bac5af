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
    for p in [j, *j.parents]:  # the children run as nobody
        if p == Path("/"):
            break
        os.chmod(p, os.stat(p).st_mode | 0o055)
    return j


def profile(tmp_path: Path, doc: object) -> Sandbox:
    p = tmp_path / "profile.json"
    p.write_text(json.dumps(doc))
    return oci.read_profile(str(p))


def unit(text: str) -> Sandbox:
    return systemd.parse_unit([("/etc/systemd/system/svc.service", "[Service]\n" + text)])


def probe(jail: Path, sandbox: Sandbox, lib: str | None = None) -> ProbeReport:
    scenarios = ("as-is", "no-getrandom", AS_CONFIGURED)
    options = ProbeOptions(libcrypto=lib, cycles=1, scenarios=scenarios, sandbox=sandbox)
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


def test_private_devices_is_told_not_guessed(jail: Path) -> None:
    r = result(probe(jail, unit("PrivateDevices=yes\n")))
    assert r.verdict is Verdict.SKIPPED and "PrivateDevices=yes" in r.explanation


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
    mounts_before = Path("/proc/self/mountinfo").read_text()
    options = ProbeOptions(
        cycles=1, timeout=2, scenarios=(AS_CONFIGURED,), sandbox=unit("DevicePolicy=strict\n")
    )
    report = run_probe(str(jail), [], options)
    r = result(report)
    # past the mounts, and getrandom needs nothing from the jail
    assert (r.verdict, r.phase) == (Verdict.PASS, "done"), r
    assert Path("/proc/self/mountinfo").read_text() == mounts_before
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
        jail, unit("SystemCallFilter=~clone clone3\nDevicePolicy=strict\n"), libcrypto_102.path
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
    measured = result(probe(jail, strict, libcrypto_102.path)).triggers
    assert [t.breaks for t in measured] == [False] * 5, measured
