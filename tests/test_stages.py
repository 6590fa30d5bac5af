"""Stages as types (issue 10): a stage that did not run makes its checks skipped, never passed,
in every format; exit codes per command; renderers write only to their stream."""

from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from chrootcheck.formats import Format, RenderOptions, renderer
from chrootcheck.report import catalogue as checks
from chrootcheck.report.exitcodes import (
    ExitCode,
    for_decode,
    for_discover,
    for_fix,
    for_listing,
    for_report,
)
from chrootcheck.report.model import (
    JailReport,
    Notice,
    NoticeKind,
    Report,
    Severity,
    Stage,
    stage_skipped,
)
from tests.conftest import good_jail

NOT_RUN = ("--no-probe", "--no-late-loads")


def _ids(prefix: str) -> list[str]:
    return [c for c in checks.CHECKS if c.startswith(prefix)]


def test_the_catalogue_has_probe_and_late_load_checks() -> None:
    # The tests below are only worth something if there is something to skip.
    assert {"CC200", "CC201"} <= set(_ids("CC2"))
    assert {f"CC3{i:02d}" for i in range(12)} <= set(_ids("CC3"))


def test_notice_topic_is_a_stage() -> None:
    assert Notice(NoticeKind.SKIPPED, "probe", "x").topic is Stage.PROBE
    with pytest.raises(ValueError):
        Notice(NoticeKind.SKIPPED, "late-load", "x")  # the old spelling that skipped nothing
    walk = Notice(NoticeKind.NOTE, Stage.INSPECT, "m", part="walk")
    assert walk.label == "walk" and not walk.skips_stage
    assert stage_skipped(Stage.PROBE, "--no-probe").skips_stage
    partial = Notice(NoticeKind.SKIPPED, Stage.LATE_LOADS, "engine", part="engine")
    assert not partial.skips_stage  # one file not checked: the stage ran


@pytest.mark.root
def test_junit_lists_skipped_stages_as_skipped(cli, jail: Path) -> None:
    good_jail(jail)
    r = cli("scan", *NOT_RUN, "-f", "junit", str(jail))
    assert r.code == 0, r
    suite = ET.fromstring(r.stdout).find("testsuite")
    assert suite is not None
    cases = {c.get("classname", "").removeprefix("chrootcheck."): c for c in suite}
    not_run = _ids("CC2") + _ids("CC3") + _ids("CC4") + _ids("CC5")
    for check_id in not_run:
        assert cases[check_id].find("skipped") is not None, check_id
    for check_id in _ids("CC1"):
        assert cases[check_id].find("skipped") is None, check_id
    assert suite.get("skipped") == str(len(not_run))
    skipped = cases["CC200"].find("skipped")
    assert skipped is not None and "--no-probe" in skipped.get("message", "")


@pytest.mark.root
def test_sarif_names_the_skipped_rules(cli, jail: Path) -> None:
    good_jail(jail)
    r = cli("scan", *NOT_RUN, "-f", "sarif", str(jail))
    assert r.code == 0, r
    invocation = json.loads(r.stdout)["runs"][0]["invocations"][0]
    notes = {n["descriptor"]["id"]: n for n in invocation["toolExecutionNotifications"]}
    assert notes["probe"]["properties"]["kind"] == "skipped"
    assert notes["late-loads"]["properties"]["kind"] == "skipped"
    assert invocation["properties"]["skippedChecks"] == {
        "late-loads": _ids("CC3"),
        "probe": _ids("CC2"),
        "sandbox": _ids("CC4"),
        "live": _ids("CC5"),
    }


@pytest.mark.root
def test_github_and_gitlab_show_the_skipped_stages(cli, jail: Path, tmp_path: Path) -> None:
    good_jail(jail)
    summary = tmp_path / "summary.md"
    r = cli("scan", *NOT_RUN, "-f", "github", str(jail), env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.code == 0, r
    notices = [x for x in r.stdout.splitlines() if x.startswith("::notice")]
    assert any(": probe: not run: --no-probe" in x for x in notices), notices
    assert any(": late-loads: not run: --no-late-loads" in x for x in notices), notices
    table = summary.read_text()
    assert "skipped checks" in table and "CC200" in table and "CC311" in table

    r = cli("scan", *NOT_RUN, "-f", "gitlab", str(jail))
    assert r.code == 0, r
    issues = {i["check_name"]: i for i in json.loads(r.stdout)}
    assert issues["skipped:probe"]["severity"] == "info"
    assert all(c in issues["skipped:probe"]["description"] for c in _ids("CC2"))
    assert all(c in issues["skipped:late-loads"]["description"] for c in _ids("CC3"))


def test_prometheus_and_junit_agree_on_what_ran(jail: Path) -> None:
    report = Report([JailReport(jail=str(jail), notices=[stage_skipped(Stage.PROBE, "x")])])
    out = io.StringIO()
    renderer(Format.PROMETHEUS)(report, out, RenderOptions())
    exported = {
        line.split('check="')[1].split('"')[0]
        for line in out.getvalue().splitlines()
        if line.startswith("chrootcheck_findings{")
    }
    assert exported and not [c for c in exported if c.startswith("CC2")]
    assert {c for c in exported if c.startswith("CC3")} == set(_ids("CC3"))


@pytest.mark.root
def test_every_scan_notice_has_a_stage(cli, jail: Path) -> None:
    good_jail(jail)
    r = cli("scan", *NOT_RUN, "-f", "json", str(jail))
    notices = json.loads(r.stdout)["jails"][0]["notices"]
    assert {(n["kind"], n["topic"]) for n in notices} == {
        ("skipped", "probe"),
        ("skipped", "late-loads"),
        ("skipped", "sandbox"),
        ("skipped", "live"),
    }


# -- exit codes: one module decides them for every command ----------------------------------


@dataclass
class _Fix:
    refused: bool = False
    steps_failed: bool = False
    scan: Report | None = None


def _report(*severities: Severity, error: bool = False) -> Report:
    jail = JailReport(jail="/j")
    jail.findings += [checks.get("CC101").finding("/dev/urandom", "x")] * len(severities)
    if error:
        jail.notices.append(Notice(NoticeKind.ERROR, Stage.INSPECT, "gone", part="jail"))
    return Report([jail])


@pytest.mark.parametrize(
    ("decided", "code"),
    [
        (lambda: for_report(_report()), 0),
        (lambda: for_report(_report(Severity.ERROR)), 1),
        (lambda: for_report(_report(Severity.ERROR, error=True)), 2),
        (lambda: for_fix(_Fix()), 0),  # a dry run whose plan can be applied
        (lambda: for_fix(_Fix(scan=_report())), 0),
        (lambda: for_fix(_Fix(scan=_report(Severity.ERROR))), 1),
        (lambda: for_fix(_Fix(refused=True)), 2),
        (lambda: for_fix(_Fix(steps_failed=True, scan=_report())), 2),
        (lambda: for_decode(0), 0),
        (lambda: for_decode(3), 1),
        (lambda: for_discover(0), 0),
        (lambda: for_discover(1), 2),
        (for_listing, 0),
    ],
)
def test_exit_code_table(decided, code: int) -> None:  # type: ignore[no-untyped-def]
    assert int(decided()) == code


@pytest.mark.root
def test_exit_codes_per_command(cli, jail: Path, tmp_path: Path) -> None:
    good_jail(jail)
    empty = tmp_path / "empty"
    empty.mkdir()
    table = [
        (("scan", *NOT_RUN, str(jail)), ExitCode.OK),
        (("scan", *NOT_RUN, str(empty)), ExitCode.FINDINGS),
        (("scan", *NOT_RUN, str(tmp_path / "missing")), ExitCode.TOOL_ERROR),
        (("fix", "--dry-run", "--mknod", str(empty)), ExitCode.OK),
        (("fix", "--mknod", "--bind", str(empty)), ExitCode.TOOL_ERROR),
        (("discover", "--root", str(empty)), ExitCode.OK),
        (("discover", "--root", str(tmp_path / "missing")), ExitCode.TOOL_ERROR),
        (("info",), ExitCode.OK),
        (("ps", "--pid", str(os.getpid())), ExitCode.OK),
        (("nosuchcommand",), ExitCode.TOOL_ERROR),
    ]
    for args, code in table:
        r = cli(*args)
        assert r.code == code, (args, r)
    assert cli("decode", "-", input="nothing\n").code == ExitCode.OK
    entropy = (
        "140135125062464:error:2406C06E:random number generator:RAND_DRBG_instantiate:"
        "error retrieving entropy:crypto/rand/drbg_lib.c:221:\n"
    )
    assert cli("decode", "-", input=entropy).code == ExitCode.FINDINGS


# -- renderers write to their stream and nowhere else -----------------------------------------


@pytest.mark.parametrize("fmt", list(Format))
def test_renderers_do_no_host_io(
    fmt: Format, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    jail = JailReport(jail=str(tmp_path / "jail"))
    jail.findings.append(checks.get("CC101").finding("/dev/urandom", "missing"))
    jail.notices.append(stage_skipped(Stage.PROBE, "--no-probe"))
    out = io.StringIO()
    # An anchor the command would have refused: the renderer takes it as given, checks nothing.
    options = RenderOptions(step_summary=True, sarif_anchor="no-such-anchor.conf")
    renderer(fmt)(Report([jail]), out, options)
    assert out.getvalue()
    assert not summary.exists(), "only the command writes $GITHUB_STEP_SUMMARY"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.root
def test_a_bad_anchor_is_refused_before_the_scan(cli, jail: Path) -> None:
    good_jail(jail)
    r = cli("scan", *NOT_RUN, "-f", "sarif", "--sarif-anchor", str(jail), str(jail))
    assert r.code == ExitCode.TOOL_ERROR, r
    assert r.stderr.startswith("chrootcheck: error: --sarif-anchor ") and "regular file" in r.stderr
    assert r.stdout == ""
    # A format that points at nothing does not look at it.
    r = cli("scan", *NOT_RUN, "--sarif-anchor", str(jail), str(jail))
    assert r.code == ExitCode.OK, r


# -- one context per jail ---------------------------------------------------------------------


def test_each_jail_is_opened_once_per_scan(
    jail: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chrootcheck.app.scan import ScanRequest, scan
    from chrootcheck.jail import fs as jailfs

    opened: list[str] = []
    real = jailfs.open_jail

    def counting(path: str) -> int:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(jailfs, "open_jail", counting)
    other = tmp_path / "other"
    other.mkdir()
    report = scan([str(jail), str(other)], ScanRequest(late_loads=True))
    assert opened == [str(jail), str(other)]
    for j in report.jails:
        assert not j.tool_error, j.notices
        assert [n.label for n in j.notices if n.skips_stage] == ["sandbox", "probe", "live"]
