"""SARIF output: valid against the official 2.1.0 schema, and GitHub's stricter rules."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.sarif_format import sarif_log
from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import JailReport, Report
from tests.conftest import IN_CI, make_node

_HERE = Path(__file__).resolve()
SCHEMA_CANDIDATES = [
    _HERE.parents[2] / "shared/data/sarif-schema-2.1.0.json",  # CI: shared/ beside the clone
    Path("/work/shared/data/sarif-schema-2.1.0.json"),
]


@pytest.fixture(scope="session")
def sarif_schema() -> dict[str, Any]:
    for candidate in SCHEMA_CANDIDATES:
        if candidate.is_file():
            schema: dict[str, Any] = json.loads(candidate.read_text())
            return schema
    where = ", ".join(map(str, SCHEMA_CANDIDATES))
    if IN_CI:  # in CI the schema is part of the job: its absence is a failure, not a skip
        pytest.fail(f"SARIF schema not found (looked in {where})")
    pytest.skip(f"SARIF schema not found (looked in {where})")


def validate(log: dict[str, Any], schema: dict[str, Any], cwd: Path | None = None) -> None:
    """The schema, then what GitHub code scanning adds to it."""
    import jsonschema

    jsonschema.Draft7Validator(schema).validate(log)
    assert log["version"] == "2.1.0" and "$schema" in log
    ids = [run["automationDetails"]["id"] for run in log["runs"]]
    assert len(set(ids)) == len(ids), ids  # one category per jail
    for run in log["runs"]:
        rules = run["tool"]["driver"]["rules"]
        rule_ids = [r["id"] for r in rules]
        for rule in rules:
            props = rule.get("properties", {})
            if "security-severity" in props:
                assert "security" in props["tags"], rule
                assert 0.1 <= float(props["security-severity"]) <= 10
        bases = {k: v["uri"] for k, v in run.get("originalUriBaseIds", {}).items()}
        for result in run["results"]:
            assert result["ruleId"] in rule_ids
            assert rule_ids[result["ruleIndex"]] == result["ruleId"]
            assert result["partialFingerprints"]
            assert result["level"] in {"none", "note", "warning", "error"}
            [loc] = result["locations"]
            phys = loc["physicalLocation"]
            assert phys["region"]["startLine"] >= 1
            art = phys["artifactLocation"]
            uri = art["uri"]
            if uri.startswith("file://"):  # an anchor outside the checkout
                assert "uriBaseId" not in art
                target = Path(_path(uri.removeprefix("file://")))
            else:
                assert "://" not in uri and not uri.startswith("/"), uri
                base = (
                    _path(bases[art["uriBaseId"]].removeprefix("file://"))
                    if "uriBaseId" in art
                    else str(cwd or os.getcwd())
                )
                target = Path(base) / _path(uri)
            # What GitHub's uploader would open: a folder (skipped) or a regular file.
            mode = os.lstat(target).st_mode
            assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), (target, result)


def _path(uri: str) -> str:
    """A percent-encoded URI path back to the file name, bytes that are not UTF-8 included."""
    return os.fsdecode(unquote_to_bytes(uri))


def scan_sarif(cli, *args: str) -> tuple[int, dict[str, Any], str]:
    r = cli("scan", *args, "--no-probe", "--format", "sarif")
    try:
        return r.code, json.loads(r.stdout), r.stderr
    except json.JSONDecodeError:
        pytest.fail(str(r))


def test_bad_jail(cli, bad_jail: Path, sarif_schema: dict[str, Any]) -> None:
    code, log, _ = scan_sarif(cli, str(bad_jail))
    assert code == 1
    validate(log, sarif_schema)
    [run] = log["runs"]
    by_rule = {r["ruleId"]: r for r in run["results"]}
    assert set(by_rule) >= {"CC110", "CC111", "CC161", "CC162"}
    fifo = by_rule["CC111"]
    assert fifo["level"] == "error"
    assert "/dev/urandom" in fifo["message"]["text"]
    assert fifo["properties"]["path"] == "/dev/urandom"
    assert fifo["properties"]["hostPath"] == f"{bad_jail}/dev/urandom"
    art = fifo["locations"][0]["physicalLocation"]["artifactLocation"]
    assert art == {"uri": "dev/", "uriBaseId": "JAILROOT"}
    assert run["originalUriBaseIds"]["JAILROOT"]["uri"] == f"file://{bad_jail}/"
    sock = by_rule["CC161"]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert sock["uri"] == "run/"


def test_every_check_is_a_rule_with_help(cli, bad_jail: Path) -> None:
    _, log, _ = scan_sarif(cli, str(bad_jail))
    rules = {r["id"]: r for r in log["runs"][0]["tool"]["driver"]["rules"]}
    catalogue = checks.CHECKS
    assert set(rules) == set(catalogue)
    for check in catalogue.values():
        rule = rules[check.id]
        assert rule["helpUri"] == check.help_uri
        assert check.remediation in rule["help"]["text"]
        assert rule["help"]["markdown"]
        tagged = "security" in rule["properties"]["tags"]
        assert tagged == ("security-severity" in rule["properties"])
    assert rules["CC111"]["properties"]["security-severity"] == "9.5"
    assert rules["CC101"]["properties"]["security-severity"] == "8.0"
    assert "security-severity" not in rules["CC160"]["properties"]


def test_two_jails_two_runs(
    cli, bad_jail: Path, tmp_path: Path, sarif_schema: dict[str, Any]
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    code, log, _ = scan_sarif(cli, str(bad_jail), str(other))
    assert code == 1
    validate(log, sarif_schema)
    assert len(log["runs"]) == 2
    ids = [run["automationDetails"]["id"] for run in log["runs"]]
    assert ids[0].startswith("chrootcheck/") and ids[0].endswith("jail/")
    assert ids[1].endswith("other/")
    # /dev is missing in "other": located at the jail root itself.
    [missing] = [r for r in log["runs"][1]["results"] if r["ruleId"] == "CC100"]
    assert missing["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "./"


def test_tool_error_is_a_notification_not_a_result(
    cli, tmp_path: Path, sarif_schema: dict[str, Any]
) -> None:
    code, log, stderr = scan_sarif(cli, str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in stderr
    validate(log, sarif_schema)
    [run] = log["runs"]
    assert run["results"] == []
    [inv] = run["invocations"]
    assert inv["executionSuccessful"] is False
    [note] = inv["toolExecutionNotifications"]
    assert note["level"] == "error" and "does not exist" in note["message"]["text"]


def test_skip_notice_goes_to_notifications(sarif_schema: dict[str, Any]) -> None:
    from chrootcheck.report.model import Notice, NoticeKind

    jail = JailReport(
        jail="/nonexistent/jail", notices=[Notice(NoticeKind.SKIPPED, "probe", "needs root")]
    )
    jail.findings.append(checks.get("CC101").finding("/dev/urandom", "missing"))
    log = sarif_log(Report(jails=[jail]), RenderOptions())
    # (not validate(): the jail does not exist on disk, so its locations cannot be checked)
    run = log["runs"][0]
    assert [r["ruleId"] for r in run["results"]] == ["CC101"]
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert notes == [
        {
            "level": "note",
            "message": {"text": "probe: needs root"},
            "descriptor": {"id": "probe"},
            "properties": {"kind": "skipped"},
        }
    ]
    assert run["invocations"][0]["executionSuccessful"] is True


def test_anchor(cli, bad_jail: Path, tmp_path: Path, sarif_schema: dict[str, Any]) -> None:
    anchor = tmp_path / "jail.conf"
    anchor.write_text("jail definition\n")
    r = cli("scan", str(bad_jail), "--no-probe", "--format", "sarif", "--sarif-anchor", str(anchor))
    assert r.code == 1, r
    log = json.loads(r.stdout)
    validate(log, sarif_schema)
    for result in log["runs"][0]["results"]:
        art = result["locations"][0]["physicalLocation"]["artifactLocation"]
        assert art == {"uri": f"file://{anchor}"}


@pytest.mark.parametrize("kind", ["fifo", "dir", "missing"])
def test_anchor_must_be_a_regular_file(cli, bad_jail: Path, kind: str) -> None:
    target = {
        "fifo": bad_jail / "dev" / "urandom",
        "dir": bad_jail / "dev",
        "missing": bad_jail / "nope",
    }[kind]
    r = cli("scan", str(bad_jail), "--no-probe", "--format", "sarif", "--sarif-anchor", str(target))
    assert r.code == 2, r
    assert len(r.stderr.splitlines()) == 1 and "--sarif-anchor" in r.stderr, r
    assert "Traceback" not in r.stderr


def test_jail_inside_the_checkout_is_linked_relative_to_it(
    bad_jail: Path, monkeypatch: pytest.MonkeyPatch, sarif_schema: dict[str, Any]
) -> None:
    from chrootcheck.app.scan import ScanRequest, scan
    from chrootcheck.jail.inspector import ScanOptions

    checkout = bad_jail.parent
    monkeypatch.chdir(checkout)
    from chrootcheck.commands.locations import locate

    report = scan([str(bad_jail)], ScanRequest(inspect=ScanOptions()))
    # The command finds the locations on the host; the renderer only writes them.
    log = sarif_log(report, RenderOptions(locations=locate(report)))
    validate(log, sarif_schema, cwd=checkout)
    fifo = next(r for r in log["runs"][0]["results"] if r["ruleId"] == "CC111")
    art = fifo["locations"][0]["physicalLocation"]["artifactLocation"]
    assert art == {"uri": f"{bad_jail.name}/dev/"}
    # Without them (the API), the renderer does no I/O and points at the jail's root.
    bare = sarif_log(report, RenderOptions())["runs"][0]["results"]
    art = next(r for r in bare if r["ruleId"] == "CC111")["locations"][0]["physicalLocation"]
    assert art["artifactLocation"] == {"uri": "./", "uriBaseId": "JAILROOT"}


def test_symlinked_dev_is_not_followed(
    cli, jail: Path, tmp_path: Path, sarif_schema: dict[str, Any]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "urandom")
    (jail / "dev").symlink_to(outside)
    code, log, _ = scan_sarif(cli, str(jail))
    assert code == 1
    validate(log, sarif_schema)
    for result in log["runs"][0]["results"]:
        art = result["locations"][0]["physicalLocation"]["artifactLocation"]
        assert art["uri"] == "./", result  # the jail root, never the symlinked dev/


@pytest.mark.root
def test_device_nodes_are_never_locations(cli, jail: Path, sarif_schema: dict[str, Any]) -> None:
    (jail / "dev").mkdir()
    make_node(jail / "dev" / "urandom", 1, 3)  # /dev/null in disguise
    make_node(jail / "dev" / "random", 1, 5)  # /dev/zero
    make_node(jail / "dev" / "sda", 8, 0, char=False)
    code, log, _ = scan_sarif(cli, str(jail))
    assert code == 1
    validate(log, sarif_schema)  # checks every location is a folder or a regular file
    rules = {r["ruleId"] for r in log["runs"][0]["results"]}
    assert "CC121" in rules and "CC160" in rules


def test_hostile_jail_name(cli, tmp_path: Path, sarif_schema: dict[str, Any]) -> None:
    name = os.fsdecode(b"j\xff [x]%20,\n")
    jail = tmp_path / name
    (jail / "dev").mkdir(parents=True)
    os.mkfifo(jail / "dev" / "urandom")
    code, log, _ = scan_sarif(cli, str(jail))
    assert code == 1
    validate(log, sarif_schema)  # the URIs percent-encode the raw bytes and resolve back
    run = log["runs"][0]
    assert _path(run["originalUriBaseIds"]["JAILROOT"]["uri"].removeprefix("file://")) == f"{jail}/"
    assert "\\xff" in run["properties"]["jail"] and "\\n" in run["properties"]["jail"]
