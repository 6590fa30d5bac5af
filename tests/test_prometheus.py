"""--format prometheus: real scans, parsed by prometheus_client's parser and checked by promtool."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from chrootcheck.formats import Format, RenderOptions, renderer
from chrootcheck.formats.common import printable
from chrootcheck.formats.prometheus_format import escape_label
from chrootcheck.report.catalogue import CHECKS, in_stage
from chrootcheck.report.model import JailReport, Report, Stage, stage_skipped
from tests.conftest import good_jail


def samples(text: str) -> list[Sample]:
    families = list(text_string_to_metric_families(text))
    for fam in families:
        assert fam.name.startswith("chrootcheck_"), fam.name
        assert fam.type == "gauge" and fam.documentation, fam
    return [s for fam in families for s in fam.samples]


def values(text: str, name: str, **labels: str) -> list[float]:
    return [
        s.value
        for s in samples(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def promtool_check(promtool: str, text: str) -> None:
    r = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r, text)


def test_a_real_scan_parses_and_passes_promtool(cli, bad_jail: Path, promtool: str) -> None:
    r = cli("scan", str(bad_jail), "--no-probe", "--format", "prometheus")
    assert r.code == 1, r
    text = r.stdout
    promtool_check(promtool, text)
    jail = str(bad_jail)
    assert values(text, "chrootcheck_findings", jail=jail, check="CC111", severity="critical") == [
        1
    ]
    assert values(text, "chrootcheck_findings", jail=jail, check="CC110") == [1]
    # Checked and clean: a zero series, so `== 0` can be asserted in alerts.
    assert values(text, "chrootcheck_findings", jail=jail, check="CC121") == [0]
    # --no-probe: the probes' checks did not run, so they have no series at all.
    probes = {c.id for s in (Stage.PROBE, Stage.LATE_LOAD_PROBE) for c in in_stage(s)}
    assert not [s for s in samples(text) if s.labels.get("check", "") in probes]
    assert not values(text, "chrootcheck_scenario_pass")
    assert values(text, "chrootcheck_jail_scan_ok", jail=jail) == [1]
    assert values(text, "chrootcheck_jail_failing", jail=jail) == [1]
    (ts,) = values(text, "chrootcheck_last_run_timestamp_seconds")
    assert abs(ts - __import__("time").time()) < 120
    (duration,) = values(text, "chrootcheck_scan_duration_seconds")
    assert 0 < duration < 60
    # The live view does not exist yet: its family is left out entirely.
    assert "chrootcheck_time_to_failure_seconds" not in text


def test_every_catalogued_check_has_a_series_for_a_checked_jail(cli, jail: Path) -> None:
    r = cli("scan", str(jail), "--no-probe", "--format", "prometheus")
    checks = {s.labels["check"] for s in samples(r.stdout) if s.name == "chrootcheck_findings"}
    # no probe, no sandbox (--unit, --seccomp-profile), no --pid: their checks are skipped
    skipped = {Stage.PROBE, Stage.LATE_LOAD_PROBE, Stage.SANDBOX, Stage.LIVE}
    assert checks == {c for c, check in CHECKS.items() if check.stage not in skipped}


def test_a_jail_that_could_not_be_checked(cli, jail: Path, tmp_path: Path, promtool: str) -> None:
    missing = tmp_path / "missing"
    r = cli("scan", str(jail), str(missing), "--no-probe", "--format", "prometheus")
    assert r.code == 2, r
    promtool_check(promtool, r.stdout)
    assert values(r.stdout, "chrootcheck_jail_scan_ok", jail=str(missing)) == [0]
    assert values(r.stdout, "chrootcheck_jail_scan_ok", jail=str(jail)) == [1]
    # No claim about a jail that was not checked: no zero series, no failing flag.
    assert not values(r.stdout, "chrootcheck_findings", jail=str(missing))
    assert not values(r.stdout, "chrootcheck_jail_failing", jail=str(missing))


def test_hostile_jail_names_stay_valid(cli, tmp_path: Path, promtool: str) -> None:
    names = [b'quo"te', b"back\\slash", b"new\nline", b"bad\xffbyte", b'}x{y="1"} 2']
    paths = []
    for raw in names:
        path = os.path.join(os.fsencode(tmp_path), raw)
        os.mkdir(path)
        paths.append(os.fsdecode(path))
    out = tmp_path / "hostile.prom"
    r = cli("scan", *paths, "--no-probe", "--format", f"prometheus={out}")
    assert r.code == 1, r
    data = out.read_bytes()
    text = data.decode("utf-8")  # valid UTF-8, whatever the names hold
    promtool_check(promtool, text)
    jails = {s.labels["jail"] for s in samples(text) if s.name == "chrootcheck_jail_scan_ok"}
    # The label value is the same safe text as the JSON report's "jail".
    assert jails == {printable(p) for p in paths}
    assert len(text.splitlines()) == len(
        [line for line in text.splitlines() if line.startswith(("#", "chrootcheck_"))]
    )


def test_escape_label() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert escape_label(os.fsdecode(b"x\xff")) == "x\\\\xff"


def test_a_jail_given_twice_is_exported_once(cli, jail: Path, promtool: str) -> None:
    r = cli("scan", str(jail), str(jail), "--no-probe", "--format", "prometheus")
    promtool_check(promtool, r.stdout)
    assert values(r.stdout, "chrootcheck_jail_scan_ok") == [1]


def test_skipped_parts_have_no_zero_series() -> None:
    # The stages that did not run say so in the report: one source of truth for every format.
    skipped = [
        stage_skipped(Stage.LATE_LOADS, "x"),
        stage_skipped(Stage.PROBE, "--no-probe"),
        stage_skipped(Stage.SANDBOX, "not asked for"),
        stage_skipped(Stage.LATE_LOAD_PROBE, "--no-probe"),
        stage_skipped(Stage.LIVE, "not asked for"),
    ]
    jail = JailReport(jail="/srv/j", notices=skipped)
    out = io.StringIO()
    renderer(Format.PROMETHEUS)(Report(jails=[jail]), out, RenderOptions())
    checks = {
        s.labels["check"] for s in samples(out.getvalue()) if s.name == "chrootcheck_findings"
    }
    assert checks and all(c.startswith("CC1") for c in checks)


@pytest.mark.root
def test_probe_scenarios(cli, jail: Path, promtool: str) -> None:
    good_jail(jail)
    r = cli("scan", str(jail), "--format", "prometheus", "--scenario", "as-is")
    assert r.code == 0, r
    promtool_check(promtool, r.stdout)
    assert values(r.stdout, "chrootcheck_scenario_pass", jail=str(jail), scenario="as-is") == [1]
    verdicts = {
        s.labels["verdict"]: s.value
        for s in samples(r.stdout)
        if s.name == "chrootcheck_scenario_verdict"
    }
    assert verdicts["pass"] == 1 and sum(verdicts.values()) == 1
    assert values(r.stdout, "chrootcheck_findings", jail=str(jail), check="CC200") == [0]
    (seconds,) = values(r.stdout, "chrootcheck_probe_duration_seconds", jail=str(jail))
    assert seconds > 0
