"""The triggers measured in the jail (issue 11), against the real builds: system 3.0, 3.5.8,
1.1.1g, 1.1.1r, 1.1.1w and 1.0.2q, in an empty jail where "old-kernel, devices closed" fails.

Measured (kernel 6.x): 3.x fails at new thread 64 (each thread's public and private DRBGs
are seeded from the primary, which must reseed from the OS after 256 requests), at the first
RAND_seed (3.x reseeds the primary from the OS) and at the first fork; 1.1.1 at new thread 128,
at the first fork, and RAND_seed holds (1.1.1 takes the buffer as the entropy); 1.0.2 holds
everywhere (no DRBG). Many draws from one thread hold on every version (the public DRBG
reseeds from the primary every 65,536 requests, not from the OS).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from chrootcheck.formats.common import to_data
from chrootcheck.formats.probe_text import probe_renderables, triggers_compact
from chrootcheck.probe import ProbeOptions, Verdict, run_probe
from chrootcheck.probe.model import ScenarioResult
from chrootcheck.probe.protocol import Failed, TriggerRun
from chrootcheck.probe.trigger_table import from_outcome
from tests import openssl_builds as builds
from tests.conftest import open_up
from tests.probe_helpers import verdicts

CLOSED = "old-kernel, devices closed"
HELD = False

# version -> (threads, rand-seed, fork): the try at which each breaks, or HELD.
EXPECTED: dict[str, tuple[int | bool, int | bool, int | bool]] = {
    "3.0": (64, 1, 1),
    "3.5": (64, 1, 1),
    "1.1.1g": (128, HELD, 1),
    "1.1.1r": (128, HELD, 1),
    "1.1.1w": (128, HELD, 1),
}
WHEELS = {
    "3.5": builds.OPENSSL_35,
    "1.1.1g": builds.OPENSSL_111G,
    "1.1.1r": builds.OPENSSL_111,
    "1.1.1w": builds.OPENSSL_111W,
    "1.0.2q": builds.OPENSSL_102,
}


def _library(name: str) -> str:
    if name == "3.0":
        from chrootcheck.openssl.library import ssl_module_libcrypto

        path = ssl_module_libcrypto()
        assert path is not None and ".so.3" in path, path
        return path
    try:
        return str(builds.fetch_wheel_lib(WHEELS[name]))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        builds._unavailable(f"OpenSSL {name} is not available: {e}")
        raise


@pytest.fixture
def empty_jail(tmp_path: Path) -> Path:
    jail = tmp_path / "jail"
    (jail / "dev").mkdir(parents=True)
    open_up(jail)  # the children run as nobody
    return jail


def _by(sc: ScenarioResult) -> dict[str, tuple[bool | None, int | None]]:
    return {t.trigger: (t.breaks, t.at) for t in sc.triggers}


@pytest.mark.root
@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_trigger_table_per_version(version: str, empty_jail: Path) -> None:
    report = run_probe(str(empty_jail), [], ProbeOptions(libcrypto=_library(version), cycles=1))
    assert verdicts(report) == {
        "as-is": Verdict.PASS,
        "no-getrandom": Verdict.RISK,
        "old-kernel": Verdict.PASS,
        CLOSED: Verdict.FAIL,
    }
    # Only the failing scenario gets a table: the others pass or fail before the chroot.
    for sc in report.scenarios:
        assert bool(sc.triggers) == (sc.verdict is Verdict.FAIL), sc.name
    closed = next(s for s in report.scenarios if s.name == CLOSED)
    threads, seed, fork = EXPECTED[version]
    got = _by(closed)
    assert [t.trigger for t in closed.triggers] == ["time", "threads", "rand-seed", "fork", "draws"]
    assert got["time"] == (True, 3600)
    for name, want in (("threads", threads), ("rand-seed", seed), ("fork", fork)):
        assert got[name] == ((True, want) if want else (False, None)), (name, got)
    assert got["draws"] == (False, None)  # 65,552 draws: the public DRBG reseeds from the primary
    by_name = {t.trigger: t for t in closed.triggers}
    assert by_name["threads"].chain, "the failing draw's chain"
    assert any(r.reason == "error retrieving entropy" for r in by_name["threads"].chain)
    assert by_name["threads"].summary == (
        f"fails at new thread {threads} ({int(threads) - 1} new threads used up the primary DRBG)"
    )
    assert f"at about connection {threads} after start" in report.prediction
    assert ("at the first RAND_seed" in report.prediction) == bool(seed)
    assert "forked after the chroot" in report.prediction
    # The text shows the table on one line.
    compact = triggers_compact(closed)
    assert compact.startswith(f"time 3600 s, threads at {threads}, RAND_seed ")
    assert "fork 1st" in compact and "draws held (65552)" in compact
    # JSON: a list of plain rows per scenario.
    data = json.loads(json.dumps(to_data(report)))
    rows = next(s for s in data["scenarios"] if s["name"] == CLOSED)["triggers"]
    assert {r["trigger"] for r in rows} == {"time", "threads", "rand-seed", "fork", "draws"}
    assert set(rows[1]) == {"trigger", "what", "breaks", "at", "tried", "summary", "chain"}


@pytest.mark.root
def test_openssl_102_holds_every_trigger(empty_jail: Path) -> None:
    report = run_probe(str(empty_jail), [], ProbeOptions(libcrypto=_library("1.0.2q"), cycles=1))
    for sc in report.scenarios:
        # never a fail: the library does not reseed; measured where RAND_poll reads nothing
        assert sc.verdict is Verdict.PASS and sc.triggers
        assert all(t.breaks is False for t in sc.triggers), _by(sc)
        time = sc.triggers[0]
        assert time.summary.startswith("never: no DRBG (md_rand)")
        assert "unless the application calls RAND_poll" in time.summary
    assert "measured" in report.prediction and "RAND_poll" in report.prediction


@pytest.mark.root
def test_no_triggers_without_a_failure_or_when_turned_off(empty_jail: Path) -> None:
    lib = _library("3.0")
    off = run_probe(str(empty_jail), [], ProbeOptions(libcrypto=lib, cycles=1, triggers=False))
    assert verdicts(off)[CLOSED] is Verdict.FAIL
    assert all(s.triggers == () for s in off.scenarios)
    assert "3600 s" in off.prediction  # the prediction without a table: the reseed interval
    for dev, minor in (("urandom", 9), ("random", 8)):
        os.mknod(empty_jail / "dev" / dev, 0o20666, os.makedev(1, minor))
    fine = run_probe(str(empty_jail), [], ProbeOptions(libcrypto=lib, cycles=1))
    assert all(s.triggers == () for s in fine.scenarios)


@pytest.mark.root
def test_trigger_children_leave_no_process(empty_jail: Path) -> None:
    # The fork trigger forks inside the jail: the grandchild is reaped there, and every
    # trigger child by the probe.
    run_probe(str(empty_jail), [], ProbeOptions(libcrypto=_library("3.0"), cycles=1))
    me = str(os.getpid())
    left = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                left.append(pid)
    assert left == []


def test_an_unmeasured_trigger_says_why() -> None:
    hung = from_outcome("threads", (), timed_out=True, signal=None, error=None, legacy=False)
    assert hung.breaks is None and hung.summary == "not measured: its child hung and was killed"
    died = from_outcome("fork", (), timed_out=False, signal="SIGSEGV", error=None, legacy=False)
    assert died.summary == "not measured: its child died of SIGSEGV"
    failed = from_outcome(
        "draws", (Failed("boom"),), timed_out=False, signal=None, error=None, legacy=False
    )
    assert failed.summary == "not measured: boom"
    seed = from_outcome(
        "rand-seed", (TriggerRun("rand-seed", True, 3, 16),), timed_out=False, signal=None,
        error=None, legacy=False,
    )  # fmt: skip
    assert (seed.breaks, seed.at, seed.summary) == (True, 3, "fails at RAND_seed 3")


@pytest.mark.root
def test_text_report_shows_the_table(empty_jail: Path) -> None:
    report = run_probe(str(empty_jail), [], ProbeOptions(libcrypto=_library("3.0"), cycles=1))
    buf = io.StringIO()
    console = Console(file=buf, width=200, color_system=None)
    for r in probe_renderables(report):
        console.print(r)
    text = buf.getvalue()
    assert "triggers (measured): time 3600 s, threads at 64, RAND_seed 1st, fork 1st" in text
    assert "cannot start, or starts without TLS" in text  # no-getrandom: the risk text


@pytest.mark.root
def test_cli_json_and_no_triggers(empty_jail: Path) -> None:
    from tests.conftest import run_cli

    def closed(*extra: str) -> dict[str, object]:
        res = run_cli("scan", str(empty_jail), "--format", "json", "--scenario", CLOSED, *extra)
        assert res.code == 1, res
        probe = json.loads(res.stdout)["jails"][0]["probe"]
        sc: dict[str, object] = probe["scenarios"][0]
        assert "new threads used up the primary DRBG" in probe["prediction"] or extra
        return sc

    rows = closed()["triggers"]
    assert isinstance(rows, list) and [r["trigger"] for r in rows][:2] == ["time", "threads"]
    assert rows[1]["breaks"] is True and rows[1]["at"] == 64
    assert closed("--no-triggers")["triggers"] == []


@pytest.mark.root
def test_daemon_profiles_join_the_measured_triggers(tmp_path: Path) -> None:
    from tests.conftest import run_cli
    from tests.test_discover_stunnel import DEBIAN_STUNNEL

    root = tmp_path / "root"
    (root / "etc/stunnel").mkdir(parents=True)
    (root / "etc/stunnel/web.conf").write_text(DEBIAN_STUNNEL.replace("setuid = stunnel4\n", ""))
    (root / "var/lib/stunnel4/dev").mkdir(parents=True)
    open_up(root / "var/lib/stunnel4")

    def prediction(*args: str) -> str:
        res = run_cli("scan", *args, "--format", "json", "--scenario", CLOSED, "--scenario",
                      "no-getrandom")  # fmt: skip
        assert res.code == 1, res
        probe = json.loads(res.stdout)["jails"][0]["probe"]
        return f"{probe['daemon']} :: {probe['prediction']}"

    # discover finds stunnel in the foreground: a thread per connection
    found = prediction("--discover", "--discover-root", str(root))
    assert found.startswith("stunnel (foreground) :: ")
    assert "stunnel (foreground): TLS fails at about connection 64 after start (63 new threads" in (
        found
    )
    assert "exits 1 at start: 'PRNG was not seeded with enough random bytes'" in found
    jail = str(root / "var/lib/stunnel4")
    # by hand, and a mode by hand
    daemon = prediction(jail, "--daemon", "stunnel:daemon")
    assert "TLS fails from the first connection (it forks after the chroot" in daemon
    postfix = prediction(jail, "--daemon", "postfix")
    assert "TLS fails from the first STARTTLS" in postfix
    assert "0A0000EA" in postfix and "SYNC_CHROOT=n" in postfix
    assert "postfix (smtpd) cannot start, or starts without TLS (it starts, logs" in postfix
    assert "'454 4.7.0 TLS not available due to local problem', and accepts mail in clear" in (
        postfix
    )
    haproxy = prediction(jail, "--daemon", "haproxy:single process")
    assert "haproxy (single process): TLS fails within 3600 s of start" in haproxy
    assert "not measured on a real one" in prediction(jail, "--daemon", "unbound")
    bad = run_cli("scan", jail, "--daemon", "stunnel:threads")
    assert bad.code == 2 and bad.stderr.startswith("chrootcheck: error: ")
    assert "stunnel (foreground, daemon)" in bad.stderr and "Traceback" not in bad.stderr


def _jails(tmp_path: Path, names: list[str]) -> list[Path]:
    jails = []
    for name in names:
        jail = tmp_path / name
        (jail / "dev").mkdir(parents=True)
        jails.append(jail)
    open_up(tmp_path)  # the children run as nobody
    return jails


def _scan_closed(*jails: Path) -> list[dict[str, object]]:
    from tests.conftest import run_cli

    res = run_cli("scan", *map(str, jails), "--format", "json", "--scenario", CLOSED)
    assert res.code == 1, res
    probes: list[dict[str, object]] = [j["probe"] for j in json.loads(res.stdout)["jails"]]
    return probes


def _table(probe: dict[str, object]) -> list[tuple[object, ...]]:
    (sc,) = probe["scenarios"]  # type: ignore[misc]
    return [(t["trigger"], t["breaks"], t["at"], t["tried"], t["summary"]) for t in sc["triggers"]]


def _shared_from(probe: dict[str, object]) -> list[str]:
    notes: list[str] = probe["notes"]  # type: ignore[assignment]
    return [n for n in notes if "were measured in" in n]


@pytest.mark.root
def test_jails_alike_share_one_measurement_of_the_triggers(tmp_path: Path) -> None:
    """A host of many jails alike (issue 14) measures the triggers once per scan: the others
    that fail the scenario alike and look alike from inside take that measurement, say so, and
    it is what measuring them would have given."""
    first, second, third = _jails(tmp_path, ["a", "b", "c"])
    probes = _scan_closed(first, second, third)
    assert _shared_from(probes[0]) == []
    for probe in probes[1:]:
        (note,) = _shared_from(probe)
        assert f"measured in {first}," in note and CLOSED in note
        assert _table(probe) == _table(probes[0])
    assert _table(probes[0])[1][:3] == ("threads", True, 64)
    (alone,) = _scan_closed(third)  # measured by itself: the same table
    assert _shared_from(alone) == [] and _table(alone) == _table(probes[2])


@pytest.mark.root
@pytest.mark.parametrize(
    "differs",
    ["unreadable urandom", "dangling link", "a file at hwrng", "another node in dev"],
)
def test_a_jail_that_looks_different_inside_is_measured_itself(
    tmp_path: Path, differs: str
) -> None:
    """The same failure with other seed sources behind it (a device the user cannot read, a
    link to nowhere, a file OpenSSL would read, another node a build's DEVRANDOM may name):
    never given the first jail's measurement."""
    from tests.conftest import make_node

    first, other = _jails(tmp_path, ["a", "b"])
    dev = other / "dev"
    if differs == "unreadable urandom":
        make_node(dev / "urandom", 1, 9, mode=0o600)
    elif differs == "dangling link":
        (dev / "urandom").symlink_to("/dev/nowhere")
    elif differs == "a file at hwrng":
        (dev / "hwrng").write_bytes(b"")
    else:
        make_node(dev / "null", 1, 3)
    probes = _scan_closed(first, other)
    assert _shared_from(probes[1]) == [], probes[1]["notes"]
    (sc,) = probes[1]["scenarios"]  # type: ignore[misc]
    assert sc["verdict"] == "fail" and len(sc["triggers"]) == 5


@pytest.mark.root
def test_seed_views_of_odd_dev_folders(tmp_path: Path) -> None:
    """A /dev over the view's cap is never compared (each such jail is measured itself, and
    listing it stops at the cap); a name that is not UTF-8 is compared like any other."""
    crowded = _jails(tmp_path / "crowded", ["a", "b"])
    for jail in crowded:
        for i in range(600):
            (jail / "dev" / f"n{i}").mkdir()
    odd = _jails(tmp_path / "odd", ["a", "b"])
    for jail in odd:
        os.mkdir(bytes(jail / "dev") + b"/\xff\xfe")
    probes = _scan_closed(*crowded, *odd)
    assert [bool(_shared_from(p)) for p in probes] == [False, False, False, True]
    assert all(len(p["scenarios"][0]["triggers"]) == 5 for p in probes)  # type: ignore[index]
