"""Every output format, through the real ``scan`` command on real jails."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chrootcheck.formats import Format, RenderOptions, renderer
from chrootcheck.formats.github_format import (
    MAX_PER_LEVEL,
    command,
    escape_property,
    render_summary,
)
from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import (
    Finding,
    JailReport,
    Notice,
    NoticeKind,
    Report,
    Severity,
    Stage,
)
from tests.conftest import good_jail, make_node


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_has_its_module(fmt: Format) -> None:
    assert callable(renderer(fmt))


def parse(fmt: Format, text: str) -> object:
    """Each format's own reader: fails if the output is not what the format promises."""
    if fmt in (Format.JSON, Format.SARIF, Format.GITLAB):
        return json.loads(text)
    if fmt is Format.JUNIT:
        return ET.fromstring(text.encode())
    if fmt is Format.PROMETHEUS:
        from prometheus_client.parser import text_string_to_metric_families

        return list(text_string_to_metric_families(text))
    if fmt is Format.NAGIOS:
        first = text.splitlines()[0]
        assert re.match(r"CHROOTCHECK (OK|WARNING|CRITICAL|UNKNOWN) - [^|]+ \| \S+=", first), text
        return first
    if fmt is Format.GITHUB:
        lines = text.splitlines()
        assert all(line.startswith(("::", "chrootcheck: ")) for line in lines), text
        return lines
    assert text.rstrip().splitlines()[-1].startswith(tuple("0123456789")), text  # the summary
    return text


@pytest.mark.parametrize("fmt", list(Format))
def test_each_format_renders_a_real_scan(cli, bad_jail: Path, tmp_path: Path, fmt: Format) -> None:
    out = tmp_path / f"out.{fmt.value}"
    r = cli("scan", str(bad_jail), "--no-probe", "--format", f"{fmt.value}={out}")
    assert r.code == (2 if fmt is Format.NAGIOS else 1), r  # nagios: CRITICAL
    assert r.stdout == "", r  # the report went to the file only
    text = out.read_text()
    parse(fmt, text)
    # Every format names the critical FIFO finding and (but metrics) the node's in-jail path.
    assert "CC111" in text
    assert fmt is Format.PROMETHEUS or "/dev/urandom" in text


@pytest.mark.parametrize("fmt", list(Format))
def test_each_format_renders_an_empty_report(cli, tmp_path: Path, fmt: Format) -> None:
    r = cli("scan", str(tmp_path / "missing"), "--format", fmt.value)
    assert r.code == (3 if fmt is Format.NAGIOS else 2), r  # nagios: UNKNOWN
    parse(fmt, r.stdout)
    assert r.stderr.count("\n") == 1 and "does not exist" in r.stderr, r


def test_several_outputs_in_one_run(cli, bad_jail: Path, tmp_path: Path) -> None:
    files = {f: tmp_path / f"report.{f.value}" for f in Format if f is not Format.TEXT}
    args = [a for f, p in files.items() for a in ("--format", f"{f.value}={p}")]
    r = cli("scan", str(bad_jail), "--no-probe", *args, "--format", "text")
    assert r.code == 2, r  # a nagios output makes it the plugin's CRITICAL
    assert "CC111" in r.stdout and not r.stdout.lstrip().startswith("{")
    for fmt, path in files.items():
        parse(fmt, path.read_text())


def test_two_formats_on_stdout_are_refused(cli, bad_jail: Path) -> None:
    r = cli("scan", str(bad_jail), "--no-probe", "--format", "sarif", "--format", "gitlab")
    assert r.code == 2, r
    assert "same place" in r.stderr


# --- GitHub ---------------------------------------------------------------------------------


def test_github_escaping() -> None:
    line = command("error", "50% of\r\nit", title="a:b,c", file="x,y:z%", line=1)
    assert line == "::error file=x%2Cy%3Az%25,line=1,title=a%3Ab%2Cc::50%25 of%0D%0Ait"
    assert escape_property("100%") == "100%25"


def _report(n_errors: int, n_warnings: int) -> Report:
    jail = JailReport(jail="/srv/jail")
    check = checks.get("CC101")
    jail.findings += [check.finding(f"/dev/e{i}", f"error {i}") for i in range(n_errors)]
    warn = checks.get("CC131")
    jail.findings += [warn.finding(f"/dev/w{i}", f"warning {i}") for i in range(n_warnings)]
    jail.notices.append(Notice(NoticeKind.SKIPPED, "probe", "not root"))
    return Report(jails=[jail])


def test_github_caps_each_level_and_writes_the_full_table(tmp_path: Path) -> None:
    import io

    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    out = io.StringIO()
    options = RenderOptions(step_summary=True)
    renderer(Format.GITHUB)(_report(13, 4), out, options)
    with summary.open("a") as stream:  # the command opens $GITHUB_STEP_SUMMARY, not the renderer
        render_summary(_report(13, 4), stream, options)
    lines = out.getvalue().splitlines()
    errors = [x for x in lines if x.startswith("::error")]
    warnings = [x for x in lines if x.startswith("::warning")]
    assert len(errors) == MAX_PER_LEVEL
    assert len(warnings) == 4
    assert [x for x in lines if x.startswith("::notice")] == [
        "::notice title=chrootcheck skipped::/srv/jail: probe: not root"
    ]
    assert any("3 more error annotation(s)" in x for x in lines)
    table = summary.read_text()
    assert table.startswith("earlier step\n")  # appended, never truncated
    for i in range(13):
        assert f"`/dev/e{i}`" in table
    assert "**skipped** probe: not root" in table


def test_github_step_summary_through_the_cli(cli, bad_jail: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    r = cli(
        "scan",
        str(bad_jail),
        "--no-probe",
        "--format",
        "github",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert r.code == 1, r
    assert "::error " in r.stdout and "title=CC111 " in r.stdout
    assert "CC111" in summary.read_text() and "CC161" in summary.read_text()


def test_github_hostile_jail_name_is_escaped(cli, tmp_path: Path) -> None:
    jail = tmp_path / "a,b:c%d\nx"
    jail.mkdir()
    r = cli("scan", str(jail), "--no-probe", "--format", "github")
    assert r.code == 1, r
    assert "%25d" in r.stdout and "\n::" in "\n" + r.stdout
    assert all(x.startswith(("::", "chrootcheck: ")) for x in r.stdout.splitlines()), r


# --- GitLab ---------------------------------------------------------------------------------


def test_gitlab_code_quality(cli, bad_jail: Path) -> None:
    r = cli("scan", str(bad_jail), "--no-probe", "--format", "gitlab")
    assert r.code == 1, r
    issues = json.loads(r.stdout)
    assert {i["check_name"] for i in issues} >= {"CC110", "CC111", "CC161", "CC162"}
    fingerprints = [i["fingerprint"] for i in issues]
    assert len(set(fingerprints)) == len(fingerprints)
    for i in issues:
        assert i["severity"] in {"info", "minor", "major", "critical", "blocker"}
        assert not i["location"]["path"].startswith("/")
        assert i["location"]["lines"]["begin"] == 1
        # The location is a folder of the jail, never the device/FIFO/socket itself.
        target = bad_jail / i["location"]["path"]
        assert target.is_dir() and not target.is_symlink(), i
    fifo = next(i for i in issues if i["check_name"] == "CC111")
    assert fifo["severity"] == "critical" and "/dev/urandom" in fifo["description"]


# --- JUnit ----------------------------------------------------------------------------------


def test_junit_one_case_per_check(cli, bad_jail: Path) -> None:
    r = cli("scan", str(bad_jail), "--no-probe", "--format", "junit", "--fail-on", "critical")
    assert r.code == 1, r
    root = ET.fromstring(r.stdout)
    suite = root.find("testsuite")
    assert suite is not None
    cases = {c.get("classname"): c for c in suite.iter("testcase")}
    for check_id in checks.CHECKS:
        assert f"chrootcheck.{check_id}" in cases
    assert cases["chrootcheck.CC111"].find("failure") is not None
    assert cases["chrootcheck.CC110"].find("failure") is not None
    # Below --fail-on: passes, with the finding shown.
    info = cases["chrootcheck.CC161"]
    assert info.find("failure") is None and "app.sock" in (info.findtext("system-out") or "")
    assert cases["chrootcheck.CC101"].find("failure") is None
    assert suite.get("failures") == "2" and root.get("failures") == "2"


def test_junit_skips_and_errors() -> None:
    import io

    rep = _report(1, 0)
    gone = Notice(NoticeKind.ERROR, Stage.INSPECT, "gone", part="jail")
    broken = JailReport(jail="/srv/gone", notices=[gone])
    rep.jails.append(broken)
    out = io.StringIO()
    renderer(Format.JUNIT)(rep, out, RenderOptions())
    root = ET.fromstring(out.getvalue())
    first, second = root.findall("testsuite")
    # The probe's skip covers its checks; without them it gets a case of its own.
    skipped = [c.get("classname") for c in first.iter("testcase") if c.find("skipped") is not None]
    probe_ids = [f"chrootcheck.{c.id}" for c in checks.in_stage(Stage.PROBE)]
    assert skipped == (probe_ids or ["chrootcheck.run"])
    assert second.get("errors") == str(len(checks.CHECKS))
    assert root.get("skipped") == str(len(skipped)) and root.get("failures") == "1"


@pytest.mark.root
def test_correct_jail_is_clean_in_every_format(cli, jail: Path, tmp_path: Path) -> None:
    good_jail(jail)
    make_node(jail / "dev" / "null", 1, 3)  # an info finding only (other device)
    # One scan (with the probe) written in every format at once.
    outs = {fmt: tmp_path / f"clean.{fmt.value}" for fmt in Format}
    args = [a for f, o in outs.items() for a in ("--format", f"{f.value}={o}")]
    r = cli("scan", str(jail), *args)
    for fmt, out in outs.items():
        assert r.code == 0, r
        parse(fmt, out.read_text())
    assert "::error" not in (tmp_path / "clean.github").read_text()
    sarif = json.loads((tmp_path / "clean.sarif").read_text())
    assert {r["level"] for r in sarif["runs"][0]["results"]} == {"note"}


def test_renderers_accept_a_finding_with_unknown_check() -> None:
    import io

    jail = JailReport(jail="/srv/j", findings=[Finding("CC999", Severity.ERROR, "/x", "m", "r")])
    for fmt in Format:
        out = io.StringIO()
        renderer(fmt)(Report(jails=[jail]), out, RenderOptions())
        assert "CC999" in out.getvalue(), fmt
