"""`scan --pid` / `--running` against real jailed processes (tests/live_helper.py): the jail is
scanned through /proc/PID/root, the as-running scenario copies the process, and the time to
failure follows from what was set up."""

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

from chrootcheck.report import catalogue
from tests.conftest import Result, good_jail
from tests.live_support import running

pytestmark = pytest.mark.root

AS_RUNNING = ("--scenario", "as-running", "--no-late-loads")


def scan_json(cli: Callable[..., Result], *args: str, code: int | None = None) -> dict[str, Any]:
    result = cli("scan", "--format", "json", *args)
    assert result.code in ((0, 1) if code is None else (code,)), str(result)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def scenario(jail: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in jail["probe"]["scenarios"] if s["name"] == name)


def system_libcrypto() -> str:
    from chrootcheck.openssl.library import load

    return load().path


def test_a_jailed_process_is_scanned_through_its_root_with_its_own_library_and_ids(
    cli: Callable[..., Result], jail: Path, tmp_path: Path
) -> None:
    good_jail(jail)
    out = tmp_path / "report.txt"
    with running({"jail": str(jail), "workers": 1, "hold_urandom": True}) as h:
        data = scan_json(cli, "--pid", str(h["pid"]), "--no-late-loads", "-f", f"text={out}")
    [j] = data["jails"]
    [worker] = h["workers"]
    assert data["schema_version"] == "1.1"
    assert j["jail"] == f"/proc/{worker}/root"  # the worker does the TLS: it is the subject
    assert j["status"] == "pass"
    p = j["process"]
    assert (p["pid"], p["root"], p["confinement"]) == (worker, str(jail), "chroot")
    assert p["processes"] == [h["pid"], worker] and p["leaders"] == [h["pid"]]
    assert (p["uid"], p["gid"]) == (0, 0)
    assert os.path.samefile(p["library"], h["libcrypto"])
    assert p["library_version"] == h["version"] and p["library_on_disk"] == "same"
    assert p["library_probed"].startswith("its own libcrypto, ")
    assert p["holds_urandom"] is True
    assert p["random_devices"] == [f"fd {h['held_fd']}: /dev/urandom (1:9)"]
    assert p["getrandom"] == "allowed (no seccomp filter)"
    assert p["old_kernel"].startswith("ok without getrandom: holds /dev/urandom open")
    assert 0 <= p["uptime"] < 60
    names = [s["name"] for s in j["probe"]["scenarios"]]
    assert names[-1] == "as-running" and "as-is" in names
    assert scenario(j, "as-running")["verdict"] == "pass"
    assert j["probe"]["libcrypto"]["version"] == h["version"]
    assert j["probe"]["prediction"].startswith("As the process runs now: ")
    ttf = p["time_to_failure"]
    assert (ttf["verdict"], ttf["seconds"]) == ("safe", None)
    assert f"python3[{worker}]" in ttf["text"] and "safe: getrandom allowed" in ttf["text"]
    old = p["old_kernel_time_to_failure"]  # it holds urandom: the "old-kernel" scenario
    assert (old["verdict"], old["seconds"]) == ("safe", None)
    assert "the 'old-kernel' scenario" in old["text"] and "the device it holds open" in old["text"]
    text = " ".join(out.read_text().split())  # rich wraps long lines
    assert f"process: python3[{worker}] as root (uid 0, gid 0)" in text
    assert f"chroot at {jail}".replace(" ", "") in text.replace(" ", "")
    assert "time to failure: " in text
    # The inspector judged the jail through the process's root.
    assert not j["findings"] or all(f["severity"] == "info" for f in j["findings"])


def test_getrandom_blocked_by_its_filter_fails_at_the_next_primary_reseed(
    cli: Callable[..., Result], jail: Path, tmp_path: Path
) -> None:
    (jail / "dev").mkdir()  # Debian's haproxy jail: an empty dev/
    prom = tmp_path / "metrics.prom"
    with running({"jail": str(jail), "seccomp": "ENOSYS"}) as h:
        pid = h["pid"]
        outs = {f: tmp_path / f"out.{f}" for f in ("sarif", "junit", "gitlab", "github")}
        data = scan_json(
            cli,
            "--pid",
            str(pid),
            "--read-seccomp",
            *AS_RUNNING,
            "-f",
            f"prometheus={prom}",
            *[x for f, path in outs.items() for x in ("-f", f"{f}={path}")],
        )
        unread = scan_json(cli, "--pid", str(pid), *AS_RUNNING)
    [j] = data["jails"]
    p = j["process"]
    assert p["seccomp"] == "filter" and p["seccomp_filters"] == 1
    assert p["getrandom"] == "fails with ENOSYS (Function not implemented) under its filter"
    assert p["holds_urandom"] is False
    as_running = scenario(j, "as-running")
    assert as_running["verdict"] in ("fail", "risk")  # risk: OpenSSL 3 refuses the devices
    assert "its seccomp filter programs as dumped" in as_running["description"]
    assert "not installed" not in json.dumps(as_running)  # the programs, not the fallback
    assert [c["ok"] for c in as_running["cycles"] if c["inside_jail"]] == [False] * 3
    ttf = p["time_to_failure"]
    assert ttf["verdict"] == "fails" and ttf["trigger"] == "time"
    assert 3600 - 60 < ttf["seconds"] <= 3600 - p["uptime"] + 1
    assert "holds no /dev/urandom" in ttf["text"]
    assert "TLS fails at the next primary reseed, in about 60 min" in ttf["text"]
    [cc500] = [f for f in j["findings"] if f["check"] == catalogue.RUNNING_TLS_FAILS.id]
    assert cc500["message"] == ttf["text"] and cc500["details"]["seconds"] == ttf["seconds"]
    cc = catalogue.RUNNING_TLS_FAILS.id
    for f, path in outs.items():  # every format carries the finding
        assert cc in path.read_text(), f
    sarif = json.loads(outs["sarif"].read_text())["runs"][0]
    assert sarif["properties"]["process"]["time_to_failure"] == ttf
    assert [r["ruleId"] for r in sarif["results"]].count(cc) == 1
    metrics = prom.read_text()
    line = next(x for x in metrics.splitlines() if x.startswith("chrootcheck_time_to_failure"))
    assert f'pid="{pid}"' in line and float(line.rsplit(" ", 1)[1]) == ttf["seconds"]
    # Without --read-seccomp the filter is unknown: no number is made up.
    q = unread["jails"][0]["process"]
    assert q["getrandom"] == "unknown: its seccomp filter was not read"
    assert q["time_to_failure"]["seconds"] is None
    assert scenario(unread["jails"][0], "as-running")["verdict"] == "pass"
    assert catalogue.RUNNING_TLS_FAILS.id not in {
        f["check"] for f in unread["jails"][0]["findings"]
    }


def test_safe_now_but_on_an_old_kernel_it_fails_at_the_next_reseed(
    cli: Callable[..., Result], jail: Path, tmp_path: Path
) -> None:
    (jail / "dev").mkdir()  # an empty dev/, no device held, getrandom allowed
    out = tmp_path / "report.txt"
    with running({"jail": str(jail)}) as h:
        data = scan_json(
            cli,
            "--pid",
            str(h["pid"]),
            *AS_RUNNING,
            "--scenario",
            "old-kernel, devices closed",
            "-f",
            f"text={out}",
            code=1,
        )
    [j] = data["jails"]
    p = j["process"]
    assert p["time_to_failure"]["verdict"] == "safe"  # getrandom works on this kernel
    assert scenario(j, "old-kernel, devices closed")["verdict"] == "fail"
    old = p["old_kernel_time_to_failure"]
    assert (old["verdict"], old["trigger"]) == ("fails", "time")
    assert 3600 - 60 < old["seconds"] <= 3600 - p["uptime"] + 1
    assert "the 'old-kernel, devices closed' scenario with its library and ids" in old["text"]
    assert "TLS fails at the next primary reseed, in about 60 min" in old["text"]
    text = " ".join(out.read_text().split())
    assert "on an old kernel: " in text
    # Only what ran is said: without the old-kernel scenario, no old-kernel time to failure.
    with running({"jail": str(jail)}) as h:
        only = scan_json(cli, "--pid", str(h["pid"]), *AS_RUNNING)
    assert only["jails"][0]["process"]["old_kernel_time_to_failure"] is None


def test_a_filter_that_kills_on_getrandom(cli: Callable[..., Result], jail: Path) -> None:
    good_jail(jail)
    with running({"jail": str(jail), "seccomp": "kill"}) as h:
        data = scan_json(cli, "--pid", str(h["pid"]), "--read-seccomp", *AS_RUNNING)
    j = data["jails"][0]
    assert j["process"]["getrandom"] == "kills the process (SIGSYS) under its filter"
    as_running = scenario(j, "as-running")
    assert (as_running["verdict"], as_running["signal"]) == ("crashed", "SIGSYS")
    assert "its seccomp filter programs as dumped" in as_running["description"]
    ttf = j["process"]["time_to_failure"]
    assert (ttf["verdict"], ttf["seconds"], ttf["trigger"]) == ("fails", 0.0, "getrandom")


def copied_libcrypto(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "libcrypto.so.3"
    shutil.copyfile(system_libcrypto(), copy)
    return str(copy)


def test_a_deleted_library_is_probed_through_map_files(
    cli: Callable[..., Result], jail: Path, tmp_path: Path
) -> None:
    copy = copied_libcrypto(tmp_path / "lib")
    with running({"jail": str(jail), "libcrypto": copy, "delete_library": True}) as h:
        assert not os.path.exists(copy)
        data = scan_json(cli, "--pid", str(h["pid"]), *AS_RUNNING)
    j = data["jails"][0]
    assert j["process"]["library_on_disk"] == "deleted"
    probed = j["process"]["library_probed"]
    assert probed.startswith("its own libcrypto, the mapped file itself (/proc/")
    assert f"{copy} (deleted)" in probed
    assert j["probe"]["libcrypto"]["path"] == f"{copy} (deleted)"
    assert scenario(j, "as-running")["verdict"] == "pass"


def test_a_library_inside_the_jail_is_never_loaded_by_root(
    cli: Callable[..., Result], jail: Path
) -> None:
    good_jail(jail)
    copy = copied_libcrypto(jail / "lib")
    with running({"jail": str(jail), "libcrypto": copy}) as h:
        refused = scan_json(cli, "--pid", str(h["pid"]), *AS_RUNNING)
        consented = scan_json(cli, "--pid", str(h["pid"]), *AS_RUNNING, "--allow-jail-libcrypto")
    p = refused["jails"][0]["process"]
    assert "lies inside the jail and is not loaded by root" in p["library_probed"]
    assert refused["jails"][0]["probe"]["libcrypto"]["path"] != copy
    q = consented["jails"][0]["process"]
    assert "loaded only by the probe's unprivileged children" in q["library_probed"]
    probe = consented["jails"][0]["probe"]
    assert probe["uid"] != 0 and "after dropping root" in " ".join(probe["notes"])
    from chrootcheck.openssl.library import _CACHE

    assert all(os.path.realpath(lc.path) != copy for lc in _CACHE.values())


def test_a_chroot_in_another_mount_namespace(cli: Callable[..., Result], jail: Path) -> None:
    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed")
    good_jail(jail)
    with running({"jail": str(jail)}, prefix=("unshare", "-m", "--propagation", "private")) as h:
        data = scan_json(cli, "--pid", str(h["pid"]), *AS_RUNNING)
    j = data["jails"][0]
    assert j["process"]["confinement"] == "chroot in a container"
    # loaded from the namespace's file system: not root's to load without consent
    assert "is not loaded by root" in j["process"]["library_probed"]
    assert scenario(j, "as-running")["verdict"] == "pass"
    assert not [f for f in j["findings"] if f["severity"] != "info"]


# In a PID namespace of its own with its own /proc: --running sees the helper and nothing
# else of the host (other tests' jails, other users' services).
DRIVER = r"""
import json, os, subprocess, sys
sys.path.insert(0, os.environ["PYTHONPATH"])
from tests.live_support import running
with running({"jail": sys.argv[1]}) as h:
    out = subprocess.run(
        [sys.executable, "-m", "chrootcheck", "scan", "--running", "--no-probe",
         "--no-late-loads", "-f", "json"],
        capture_output=True, text=True, timeout=120,
    )
print(json.dumps({"pid": h["pid"], "code": out.returncode, "stdout": out.stdout,
                  "stderr": out.stderr}))
"""


def test_running_scans_every_jail_that_maps_openssl(jail: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is needed")
    (jail / "dev").mkdir()
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [unshare, "--pid", "--fork", "--mount-proc", sys.executable, "-c", DRIVER, str(jail)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["code"] == 1, run  # the empty dev/: error findings
    [only] = json.loads(run["stdout"])["jails"]
    assert only["process"]["pid"] == run["pid"]
    assert catalogue.URANDOM_MISSING.id in {f["check"] for f in only["findings"]}
    assert only["process"]["time_to_failure"]["verdict"] == "unknown"  # no probe
    assert ("skipped", "live") in {(n["kind"], n["topic"]) for n in only["notices"]}


def test_bad_pids_are_one_line_and_exit_2(cli: Callable[..., Result], jail: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    cases = {
        str(gone.pid): f"no process {gone.pid}",
        str(os.getpid()): "runs in the host's root, not in a jail",
        "2": "is a kernel thread",
    }
    for pid, said in cases.items():
        result = cli("scan", "--pid", pid, "--no-probe")
        assert result.code == 2, str(result)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and said in result.stderr, str(result)
    with running({"jail": str(jail), "zombie": True}) as h:
        deadline = time.time() + 5
        zombie = h["zombie"]
        while not Path(f"/proc/{zombie}/stat").read_text().rsplit(")", 1)[1].startswith(" Z"):
            assert time.time() < deadline
            time.sleep(0.01)
        result = cli("scan", "--pid", str(zombie), "--no-probe")
    assert result.code == 2 and "is a zombie" in result.stderr, str(result)
    for args in (
        ("--pid", "1", str(jail)),
        ("--running", "--pid", "1"),
        ("--read-seccomp", str(jail)),
        ("--pid", "1", "--user", "nobody"),
        ("--pid", "0"),
        ("--scenario", "as-running", str(jail)),
    ):
        result = cli("scan", *args)
        assert result.code == 2, str(result)
        assert result.stderr.startswith("chrootcheck: error: ") and result.stderr.count("\n") == 1


def _process(uptime: float, **kw: Any) -> Any:
    from chrootcheck.report.model import RunningProcess

    fields: dict[str, Any] = dict(
        pid=1234, command="haproxy", cmdline="haproxy -W", uid=99, gid=99, groups=(),
        user="haproxy", start_time=0.0, uptime=uptime, root="/var/lib/haproxy",
        confinement="chroot", mnt_ns=1, processes=(1234,), leaders=(1234,),
        daemon="haproxy:master-worker", library="/usr/lib/libcrypto.so.3",
        library_version="OpenSSL 3.0.19", library_on_disk="same", library_probed="its own",
        random_devices=(), holds_urandom=False, seccomp="filter", seccomp_filters=1,
        getrandom="fails with ENOSYS (Function not implemented) under its filter",
    )  # fmt: skip
    fields.update(kw)
    return RunningProcess(**fields)


def _probe(verdict: str, fork_breaks: bool = True) -> Any:
    from chrootcheck.openssl.results import ReseedSettings
    from chrootcheck.probe.model import ProbeReport, ScenarioResult, TriggerResult, Verdict

    triggers = (TriggerResult("fork", "a fork", fork_breaks, at=1 if fork_breaks else None),)
    result = ScenarioResult("as-running", "", Verdict(verdict), "", triggers=triggers)
    settings = ReseedSettings("library", primary_seconds=3600)
    return ProbeReport(jail="/proc/1234/root", libcrypto=None, scenarios=(result,), reseed=settings)


def test_time_to_failure_from_uptime_interval_profile_and_triggers() -> None:
    from chrootcheck.app.running import time_to_failure

    ttf = time_to_failure(_process(47 * 60), _probe("fail"))
    assert (ttf.verdict, ttf.seconds, ttf.trigger) == ("fails", 780.0, "time")
    assert ttf.text == (
        "haproxy[1234] (master-worker), started 47 min ago, holds no /dev/urandom, getrandom "
        "fails with ENOSYS (Function not implemented) under its filter: TLS fails at the next "
        "primary reseed, in about 13 min; sooner at once in every process it forks from now on "
        "(a reload's new workers)"
    )
    overdue = time_to_failure(_process(2 * 3600), _probe("fail", fork_breaks=False))
    assert overdue.seconds == 0 and "TLS fails now: its primary DRBG's reseed was due 60 min" in (
        overdue.text
    )
    safe = time_to_failure(
        _process(60, getrandom="allowed (no seccomp filter)", holds_urandom=True,
                 random_devices=("fd 5: /dev/urandom (1:9)",)),
        _probe("pass"),
    )  # fmt: skip
    assert (safe.verdict, safe.seconds) == ("safe", None)
    assert "safe: getrandom allowed, device kept" in safe.text
    assert time_to_failure(_process(60), None).verdict == "unknown"


def test_the_library_it_runs_decides_the_interval_or_that_it_never_reseeds(
    cli: Callable[..., Result], jail: Path, libcrypto_111: Any, libcrypto_102: Any
) -> None:
    """A process running a 1.1.1 build: probed with that build, its reseed interval read from
    it; one running 1.0.2: it never reseeds, whatever its filter does to getrandom."""
    (jail / "dev").mkdir()
    found = {}
    for build in (libcrypto_111, libcrypto_102):
        with running({"jail": str(jail), "libcrypto": build.path, "seccomp": "ENOSYS"}) as h:
            data = scan_json(cli, "--pid", str(h["pid"]), "--read-seccomp", *AS_RUNNING)
        [j] = data["jails"]
        assert j["probe"]["libcrypto"]["series"] == build.series
        assert j["process"]["library_probed"] == f"its own libcrypto, {build.path}"
        found[build.series] = (scenario(j, "as-running")["verdict"], j["process"])
    verdict, p = found[libcrypto_111.series]
    assert verdict in ("fail", "risk")
    ttf = p["time_to_failure"]
    assert ttf["verdict"] == "fails" and 3600 - 60 < ttf["seconds"] <= 3600
    verdict, p = found["1.0.2"]
    assert verdict == "pass"
    ttf = p["time_to_failure"]
    assert (ttf["verdict"], ttf["seconds"]) == ("safe", None)
    assert "OpenSSL 1.0.2 never reseeds from the OS by itself" in ttf["text"]
