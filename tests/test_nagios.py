"""--format nagios: the plugin line, perfdata and the plugin exit codes, through the real CLI."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from chrootcheck.commands.plugin import wants_plugin
from tests.conftest import good_jail

STATUS = re.compile(r"^CHROOTCHECK (OK|WARNING|CRITICAL|UNKNOWN) - ([^|\n]+) \| (.+)$")
PERF = re.compile(r"^([a-z_]+)=(\d+(?:\.\d+)?)(s?);;;0$")


def plugin_output(stdout: str) -> tuple[str, str, dict[str, float], list[str]]:
    first, *long_output = stdout.splitlines()
    m = STATUS.match(first)
    assert m, stdout
    perf = {}
    for item in m.group(3).split(" "):
        p = PERF.match(item)
        assert p, item
        perf[p.group(1)] = float(p.group(2))
    assert all("|" not in line for line in long_output)
    return m.group(1), m.group(2), perf, long_output


def test_critical_with_perfdata_and_long_output(cli, bad_jail: Path) -> None:
    r = cli("scan", str(bad_jail), "--no-probe", "--format", "nagios")
    assert r.code == 2, r
    state, summary, perf, lines = plugin_output(r.stdout)
    assert state == "CRITICAL"
    assert f"1 of 1 jail(s) fail: {bad_jail} (critical CC1" in summary
    assert perf["jails"] == 1 and perf["failing_jails"] == 1 and perf["critical"] == 2
    assert perf["tool_errors"] == 0 and "time" in perf
    assert any("CC111 /dev/urandom" in line for line in lines), lines


def test_fail_on_still_decides(cli, bad_jail: Path) -> None:
    # Only infos and criticals in bad_jail; --fail-on critical still counts the criticals.
    r = cli("scan", str(bad_jail), "--no-probe", "--format", "nagios", "--fail-on", "critical")
    assert (r.code, plugin_output(r.stdout)[0]) == (2, "CRITICAL"), r


def test_findings_below_fail_on_are_ok(cli, jail: Path) -> None:
    # An empty jail: /dev missing is an error, below --fail-on critical.
    r = cli("scan", str(jail), "--no-probe", "--format", "nagios", "--fail-on", "critical")
    state, summary, perf, lines = plugin_output(r.stdout)
    assert (r.code, state) == (0, "OK"), r
    assert "nothing at or above critical" in summary and "below it" in summary
    assert perf["error"] >= 1 and perf["failing_jails"] == 0 and lines == []


@pytest.mark.root
def test_ok_and_warning_on_a_correct_jail(cli, jail: Path) -> None:
    good_jail(jail)
    os.chmod(jail / "dev" / "random", 0o600)  # a warning (CC131), nothing worse
    r = cli("scan", str(jail), "--no-probe", "--format", "nagios")
    state, summary, perf, _ = plugin_output(r.stdout)
    assert (r.code, state) == (0, "OK"), r
    assert "nothing at or above error" in summary and perf["warning"] == 1
    r = cli("scan", str(jail), "--no-probe", "--format", "nagios", "--fail-on", "warning")
    assert (r.code, plugin_output(r.stdout)[0]) == (1, "WARNING"), r


@pytest.mark.parametrize(
    "args",
    [
        ["{missing}"],
        ["{jail}", "--fail-on", "loud"],
        ["{jail}", "--format", "yaml"],
        ["{jail}", "--user", "no-such-user-here"],
        ["{jail}", "-o", "/proc/no/such/dir/out.txt"],
        [],
    ],
)
def test_tool_and_usage_errors_are_unknown(
    cli, jail: Path, tmp_path: Path, args: list[str]
) -> None:
    fmt = {"missing": str(tmp_path / "missing"), "jail": str(jail)}
    r = cli("scan", *[a.format(**fmt) for a in args], "--no-probe", "-f", "nagios")
    assert r.code == 3, r
    assert r.stdout.startswith("CHROOTCHECK UNKNOWN - "), r
    errors = [x for x in r.stderr.splitlines() if x.startswith("chrootcheck: error: ")]
    assert len(errors) == 1, r


def test_without_nagios_the_codes_stay(cli, jail: Path) -> None:
    r = cli("scan", str(jail), "--no-probe", "--fail-on", "loud")
    assert r.code == 2 and r.stdout == "", r


def test_hostile_jail_name_cannot_forge_perfdata(cli, tmp_path: Path) -> None:
    jail = tmp_path / "a|critical=99 b\nCHROOTCHECK OK - x"
    jail.mkdir()
    r = cli("scan", str(jail), "--no-probe", "--format", "nagios")
    assert r.code == 2, r
    state, _, perf, lines = plugin_output(r.stdout)
    assert state == "CRITICAL" and perf["critical"] == 0
    assert not any(line.startswith("CHROOTCHECK") for line in lines)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["x", "--format", "nagios"], True),
        (["x", "--format=nagios=/tmp/n"], True),
        (["x", "-fNagios"], True),
        (["x", "-f", "json", "-f", "nagios"], True),
        (["x", "--format", "json"], False),
        (["--", "--format", "nagios"], False),
        (["nagios"], False),
    ],
)
def test_wants_plugin(args: list[str], expected: bool) -> None:
    assert wants_plugin(args) is expected
