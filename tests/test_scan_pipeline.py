"""The scan pipeline's stages together: late loads change the verdict, the probe adds to it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result, good_jail

Cli = Callable[..., Result]

JITTER_CNF = """\
openssl_conf = init

[init]
random = random_sect

[random_sect]
seed = JITTER
"""


def findings(r: Result) -> dict[str, dict[str, str]]:
    return {f["check"]: f for f in json.loads(r.stdout)["jails"][0]["findings"]}


def test_seed_jitter_makes_missing_devices_a_warning(jail: Path, tmp_path: Path, cli: Cli) -> None:
    (jail / "dev").mkdir()
    cnf = tmp_path / "openssl.cnf"
    cnf.write_text(JITTER_CNF)
    plain = cli("scan", str(jail), "--no-probe", "--format", "json")
    assert plain.code == 1, plain
    assert findings(plain)["CC101"]["severity"] == "error"

    r = cli("scan", str(jail), "--no-probe", "--format", "json", env={"OPENSSL_CONF": str(cnf)})
    assert r.code == 0, r
    urandom = findings(r)["CC101"]
    assert urandom["severity"] == "warning"
    assert "JITTER" in urandom["message"]


@pytest.mark.root
def test_probe_failure_of_an_empty_jail_names_the_static_finding(jail: Path, cli: Cli) -> None:
    (jail / "dev").mkdir()
    r = cli("scan", str(jail), "--format", "json", "--no-late-loads")
    assert r.code == 1, r
    data = json.loads(r.stdout)["jails"][0]
    probe = data["probe"]
    verdicts = {s["name"]: s for s in probe["scenarios"]}
    closed = verdicts["old-kernel, devices closed"]
    assert closed["verdict"] == "fail"
    assert "CC101" in closed["caused_by"]
    assert verdicts["no-getrandom"]["verdict"] == "risk"
    assert closed["chain"], "the decoded chain travels in the JSON"
    assert {"CC101", "CC102"} <= {f["check"] for f in data["findings"]}


@pytest.mark.root
def test_a_correct_jail_passes_with_the_probe(jail: Path, cli: Cli) -> None:
    good_jail(jail)
    r = cli("scan", str(jail), "--format", "json")
    assert r.code == 0, r  # the no-getrandom risk is the environment's, not a finding
    data = json.loads(r.stdout)["jails"][0]
    verdicts = {s["name"]: s["verdict"] for s in data["probe"]["scenarios"]}
    assert verdicts == {
        "as-is": "pass",
        "no-getrandom": "risk",
        "old-kernel": "pass",
        "old-kernel, devices closed": "pass",
    }


def test_no_probe_means_no_probe(jail: Path, cli: Cli) -> None:
    r = cli("scan", str(jail), "--no-probe", "--format", "json")
    assert json.loads(r.stdout)["jails"][0]["probe"] is None


def test_missing_libcrypto_is_a_tool_error(jail: Path, tmp_path: Path, cli: Cli) -> None:
    r = cli("scan", str(jail), "--libcrypto", str(tmp_path / "nope.so"))
    assert r.code == 2
    assert "no such file" in r.stderr


def _without_times(data: object) -> object:
    if isinstance(data, dict):
        return {k: _without_times(v) for k, v in data.items() if k != "seconds"}
    if isinstance(data, list):
        return [_without_times(v) for v in data]
    return data


@pytest.mark.root
def test_scan_jobs_keeps_the_jails_order_and_their_verdicts(tmp_path: Path, cli: Cli) -> None:
    """Seven jails (good, empty, one missing in the middle) in batches of 3: the report lists
    them as given, each with its own probe, exactly as one jail at a time does."""
    jails = []
    for i in range(7):
        j = tmp_path / f"j{i}"
        if i == 3:
            jails.append(j)  # missing: an error report in its place
            continue
        (j / "dev").mkdir(parents=True)
        if i % 2 == 0:
            good_jail(j)
        os.chmod(j, 0o755)
        jails.append(j)
    os.chmod(tmp_path, 0o755)
    runs = {}
    for jobs in ("3", "1"):
        r = cli("scan", *map(str, jails), "--format", "json", "--jobs", jobs)
        assert r.code == 2, r  # the missing jail is a tool error; the others still scanned
        runs[jobs] = json.loads(r.stdout)["jails"]
    pooled = runs["3"]
    assert [j["jail"] for j in pooled] == [str(j) for j in jails]
    assert pooled[3]["probe"] is None and "jail" in json.dumps(pooled[3]["notices"])
    for i, j in enumerate(pooled):
        if i == 3:
            continue
        assert j["probe"]["jail"] == str(jails[i])
        verdicts = {s["name"]: s["verdict"] for s in j["probe"]["scenarios"]}
        old = verdicts["old-kernel, devices closed"]
        assert old == ("pass" if i % 2 == 0 else "fail"), (i, old)
    assert _without_times(pooled) == _without_times(runs["1"])


@pytest.mark.parametrize("bad", ["0", "-1", "x", "257"])
def test_scan_jobs_refuses_nonsense(jail: Path, cli: Cli, bad: str) -> None:
    r = cli("scan", str(jail), "--no-probe", "--jobs", bad)
    assert r.code == 2, r
    assert r.stderr.startswith("chrootcheck: error: ") and len(r.stderr.splitlines()) == 1
