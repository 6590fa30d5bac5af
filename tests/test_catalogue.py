"""The check catalogue: every check defined once, in id order, with its stage; the named sets
code decides on; the device specs and the mknod text written once; and every finding the
package makes comes from a catalogue check."""

from __future__ import annotations

import ast
import functools
import io
import json
import os
import re
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chrootcheck.formats import Format, RenderOptions, renderer
from chrootcheck.report import catalogue
from chrootcheck.report.catalogue import ALL, CHECKS, Check, CheckSet
from chrootcheck.report.devices import (
    ENTROPY_DEVICES,
    NULL,
    RANDOM,
    URANDOM,
    ZERO,
    known_device,
    mknod_command,
)
from chrootcheck.report.model import JailReport, Report, Stage
from tests.conftest import ROOT, make_socket

PACKAGE = ROOT / "chrootcheck"


def test_ids_are_unique_and_in_order() -> None:
    ids = [c.id for c in ALL]
    assert len(ids) == len(set(ids)) >= 40
    assert ids == sorted(ids)
    assert all(re.fullmatch(r"CC[1-9]\d\d", i) for i in ids), ids
    names = [c.name for c in ALL]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in names), names
    assert list(CHECKS) == ids and all(CHECKS[c.id] is c for c in ALL)
    assert catalogue.get("CC118") is catalogue.NODE_CHANGING
    with pytest.raises(KeyError):
        catalogue.get("CC999")


def test_every_check_is_one_constant_named_after_its_slug() -> None:
    constants = {k: v for k, v in vars(catalogue).items() if isinstance(v, Check)}
    assert sorted(constants.values(), key=lambda c: c.id) == list(ALL)
    for key, check in constants.items():
        assert key == check.name.upper().replace("-", "_"), key


def test_every_check_has_its_texts_and_the_stage_of_its_range() -> None:
    for c in ALL:
        assert c.title and c.why and c.remediation, c.id
        assert "\n" not in c.title, c.id
        assert c.help_uri == f"{catalogue.DOCS_URL}#{c.id.lower()}-{c.name}"
        want = {
            "1": Stage.INSPECT,
            "2": Stage.PROBE,
            "3": Stage.LATE_LOADS,
            "4": Stage.SANDBOX,
            "5": Stage.LIVE,
        }[c.id[2]]
        # CC21x: the PKCS#11 modules' state (static, with the late loads); CC22x: the late-load
        # probe of a daemon's engine key (issue 16).
        want = {"CC21": Stage.LATE_LOADS, "CC22": Stage.LATE_LOAD_PROBE}.get(c.id[:4], want)
        assert c.stage is want, c.id
    assert [c.id for c in catalogue.in_stage(Stage.PROBE)] == ["CC200", "CC201"]
    assert [c.id for c in catalogue.in_stage(Stage.LATE_LOAD_PROBE)] == ["CC220", "CC221", "CC222"]
    assert {c.stage for c in ALL} == {
        Stage.INSPECT,
        Stage.PROBE,
        Stage.LATE_LOADS,
        Stage.SANDBOX,
        Stage.LATE_LOAD_PROBE,
        Stage.LIVE,
    }


def test_a_finding_takes_the_checks_id_and_defaults() -> None:
    f = catalogue.URANDOM_MISSING.finding("/dev/urandom", "missing", errno="ENOENT")
    assert (f.check, f.severity, f.remediation) == (
        "CC101",
        catalogue.URANDOM_MISSING.severity,
        catalogue.URANDOM_MISSING.remediation,
    )
    assert dict(f.details) == {"errno": "ENOENT"}
    with pytest.raises(TypeError):
        f.details["x"] = 1  # type: ignore[index]


def test_named_sets() -> None:
    assert catalogue.SEED_SOURCE_MISSING.ids == {"CC100", "CC101", "CC102"}
    assert catalogue.FAKE_NODE.ids == {"CC110", "CC120", "CC121"}
    assert catalogue.EXPLAINS_RESEED_FAILURE.ids == {
        "CC100", "CC101", "CC102", "CC110", "CC111", "CC112", "CC113", "CC114", "CC115",
        "CC116", "CC117", "CC120", "CC121", "CC130", "CC131", "CC140",
    }  # fmt: skip
    assert catalogue.FOUND_BY_WALK.ids == {"CC160", "CC161", "CC162", "CC170", "CC180"}
    for s in catalogue.SETS:
        assert isinstance(s, CheckSet) and s.meaning
        assert all(CHECKS[c.id] is c for c in s)  # only catalogue checks
    # A finding's id and the check itself are members; a neighbour is not.
    assert "CC101" in catalogue.SEED_SOURCE_MISSING
    assert catalogue.RANDOM_MISSING in catalogue.SEED_SOURCE_MISSING
    assert "CC110" not in catalogue.SEED_SOURCE_MISSING
    assert catalogue.NODE_CHANGING not in catalogue.EXPLAINS_RESEED_FAILURE
    assert dict(catalogue.DEVICE_MISSING) == {
        URANDOM: catalogue.URANDOM_MISSING,
        RANDOM: catalogue.RANDOM_MISSING,
    }
    named = {k for k, v in vars(catalogue).items() if isinstance(v, CheckSet)}
    assert named == {s.name.upper().replace("-", "_") for s in catalogue.SETS}


def test_device_specs_are_linuxs() -> None:
    assert (URANDOM.path, URANDOM.numbers, URANDOM.name, URANDOM.spec) == (
        "/dev/urandom", (1, 9), "urandom", "c 1:9",
    )  # fmt: skip
    assert (RANDOM.path, RANDOM.numbers, RANDOM.name) == ("/dev/random", (1, 8), "random")
    assert ENTROPY_DEVICES == (URANDOM, RANDOM)
    # This machine's own nodes agree.
    for d in (*ENTROPY_DEVICES, NULL, ZERO):
        st = os.stat(d.path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == d.rdev, d
        assert known_device(os.major(st.st_rdev), os.minor(st.st_rdev)) == d
    assert known_device(8, 0) is None


def test_the_mknod_text() -> None:
    assert mknod_command(*ENTROPY_DEVICES, mkdir=True) == (
        "mkdir -p JAIL/dev && mknod -m 0666 JAIL/dev/urandom c 1 9 && "
        "mknod -m 0666 JAIL/dev/random c 1 8"
    )
    assert mknod_command(RANDOM, mode=0o640) == "mknod -m 0640 JAIL/dev/random c 1 8"
    # The catalogue's remediations, the inspector's and the decoder's advice all use it.
    assert catalogue.URANDOM_MISSING.remediation.startswith(
        mknod_command(*ENTROPY_DEVICES, mkdir=True) + " (or: chrootcheck fix JAIL"
    )
    assert mknod_command(URANDOM) in catalogue.NODE_REGULAR_FILE.remediation
    from chrootcheck.decode.knowledge import ENTROPY

    assert mknod_command(*ENTROPY_DEVICES, mkdir=True) in ENTROPY.fix


@pytest.mark.root
def test_the_mknod_text_makes_the_right_nodes(tmp_path: Path) -> None:
    jail = tmp_path / "jail"
    jail.mkdir()
    cmd = mknod_command(*ENTROPY_DEVICES, mkdir=True).replace("JAIL", str(jail))
    subprocess.run(["sh", "-ec", cmd], check=True)
    for d in ENTROPY_DEVICES:
        st = os.lstat(jail / d.path.lstrip("/"))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == d.rdev


# --- only the catalogue makes checks and findings -------------------------------------------


# The three tests that read every module's syntax tree share one parse (about 1.3 s of CPU),
# on one worker.
SOURCES = pytest.mark.xdist_group("catalogue-sources")


@functools.cache
def _package_sources() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        out.append((rel, ast.parse(path.read_text(), rel)))
    return out


def _calls(tree: ast.AST, name: str) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            called = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if called == name:
                lines.append(node.lineno)
    return lines


@SOURCES
def test_only_the_catalogue_makes_checks_and_findings() -> None:
    """Check.finding is the one way to a Finding, so every finding names a catalogue check."""
    outside, inside = [], {"Finding": 0, "Check": 0}
    for rel, tree in _package_sources():
        for name in inside:
            lines = _calls(tree, name)
            if rel == "chrootcheck/report/catalogue.py":
                inside[name] += len(lines)
            else:
                outside += [f"{rel}:{line}: {name}(...)" for line in lines]
    assert outside == []
    assert inside == {"Finding": 1, "Check": len(ALL)}


@SOURCES
def test_no_check_id_string_outside_the_catalogue() -> None:
    """Code names checks by constant (catalogue.URANDOM_MISSING) or by named set, never "CC101"."""
    found = []
    for rel, tree in _package_sources():
        if rel == "chrootcheck/report/catalogue.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"CC\d{3}", node.value):
                    found.append(f"{rel}:{node.lineno}: {node.value}")
    assert found == []


@SOURCES
def test_device_numbers_and_mknod_text_written_once() -> None:
    found = []
    for rel, tree in _package_sources():
        if rel == "chrootcheck/report/devices.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if "mknod -m" in node.value:
                    found.append(f"{rel}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.Tuple) and len(node.elts) == 2:
                values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                if values in ([1, 8], [1, 9]):
                    found.append(f"{rel}:{node.lineno}: (1, {values[1]})")
            if isinstance(node, ast.Call) and _calls(node, "makedev"):
                args = node.args
                if [a.value for a in args if isinstance(a, ast.Constant)] in ([1, 8], [1, 9]):
                    found.append(f"{rel}:{node.lineno}: makedev")
    assert found == []


def test_a_real_scan_makes_only_catalogue_findings(jail: Path) -> None:
    from chrootcheck.jail.inspector import inspect_jail

    (jail / "dev").mkdir()
    os.mkfifo(jail / "dev" / "urandom")
    (jail / "dev" / "random").write_bytes(b"same bytes every time")
    (jail / "run").mkdir()
    make_socket(jail / "run" / "app.sock")
    os.mkfifo(jail / "fifo")
    (jail / "etc").mkdir()
    os.symlink("/etc/loop", jail / "etc" / "loop")
    report = inspect_jail(str(jail))
    assert {f.check for f in report.findings} >= {"CC110", "CC111", "CC161", "CC162"}
    for f in report.findings:
        check = CHECKS[f.check]
        assert check.stage is Stage.INSPECT
        assert f.remediation and f.message


# --- every format that lists all checks lists the catalogue, in id order --------------------


def _render(fmt: Format) -> str:
    out = io.StringIO()
    renderer(fmt)(Report(jails=[JailReport(jail="/srv/jail")]), out, RenderOptions())
    return out.getvalue()


def test_sarif_rules_are_the_catalogue() -> None:
    log = json.loads(_render(Format.SARIF))
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [c.id for c in ALL]
    for r, c in zip(rules, ALL, strict=True):
        assert r["shortDescription"]["text"] == c.title
        assert r["helpUri"] == c.help_uri
        assert c.remediation in r["help"]["text"]


def test_junit_cases_are_the_catalogue() -> None:
    suite = ET.fromstring(_render(Format.JUNIT)).find("testsuite")
    assert suite is not None
    cases = [c.get("classname") for c in suite.iter("testcase")]
    assert cases == [f"chrootcheck.{c.id}" for c in ALL]
    names = [c.get("name") for c in suite.iter("testcase")]
    assert names == [f"{c.id} {c.name}: /srv/jail" for c in ALL]


def test_the_catalogue_is_all_the_scanner_needs() -> None:
    """No check registers on import any more: a fresh interpreter that imports only the
    catalogue sees every check, the probe's and the late loads' included."""
    python = shutil.which("python3") or "python3"
    code = (
        "import sys\n"
        "from chrootcheck.report import catalogue\n"
        "print(len(catalogue.ALL), catalogue.ALL[-1].id)\n"
        "assert not [m for m in sys.modules if m.startswith(('chrootcheck.probe', "
        "'chrootcheck.lateload'))]\n"
    )
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert r.stdout.split() == [str(len(ALL)), ALL[-1].id]
    assert ALL[-1].id.startswith("CC5") and "CC200" in CHECKS
