"""The Ansible collection under integrations/ansible, run by the real ansible-core against
localhost: ansible-doc, ad-hoc module runs and the example playbooks (check mode, idempotence)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

# The real ansible-core runs the real executable; one xdist worker runs the whole module, so its
# module fixtures (ansible-doc, the batched ad-hoc run) run once.
pytestmark = [pytest.mark.subprocess, pytest.mark.xdist_group("ansible")]

COLLECTIONS = ROOT / "integrations" / "ansible"
COLLECTION = COLLECTIONS / "ansible_collections" / "chrootcheck" / "chrootcheck"
EXAMPLES = COLLECTION / "examples"
INFO = "chrootcheck.chrootcheck.chrootcheck_info"
FIX = "chrootcheck.chrootcheck.chrootcheck_fix"


# The bin folder of the interpreter that runs the tests, where pip installed ansible-core and
# chrootcheck: first, because a version manager's shim found on PATH first (pyenv's) costs a
# tenth of a second of bash per start.
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = str(BIN / name) if (BIN / name).exists() else shutil.which(name)
    assert found, f"{name} missing: pip install -e '.[test]' installs ansible-core"
    return found


def ansible_env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_HOME": str(tmp / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        # The modules find chrootcheck on PATH (or via the interpreter); this checkout's code.
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "PYTHONPATH": str(ROOT),
        "CHROOTCHECK_PROBE_TIMEOUT": "1",
    }


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return ansible_env(tmp_path)


def adhoc(env: dict[str, str], module: str, args: dict[str, Any], *flags: str) -> dict[str, Any]:
    r = subprocess.run(
        [
            tool("ansible"),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-m",
            module,
            "-a",
            json.dumps(args),
            *flags,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    m = re.search(r"^localhost \| (\w+)!? => (\{.*)", r.stdout, flags=re.S | re.M)
    assert m, (r.stdout, r.stderr)
    result: dict[str, Any] = json.loads(m.group(2))
    result["_state"] = m.group(1)
    return result


def playbook(env: dict[str, str], name: str, extra: dict[str, Any], *flags: str) -> dict[str, int]:
    r = subprocess.run(
        [
            tool("ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            "ansible_become=false",
            "-e",
            json.dumps(extra),
            *flags,
            str(EXAMPLES / name),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    m = re.search(r"^localhost\s*:\s*(.*)$", r.stdout, flags=re.M)
    assert m, (r.stdout, r.stderr)
    recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}
    recap["rc"] = r.returncode
    return recap


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """ansible-doc of both modules, as text and as JSON: one run each."""
    env = ansible_env(tmp_path_factory.mktemp("ansible-doc"))
    text = subprocess.run(
        [tool("ansible-doc"), INFO, FIX], capture_output=True, text=True, env=env, timeout=120
    )
    assert text.returncode == 0 and "WARNING" not in text.stderr, text
    assert "ERROR" not in text.stderr, text
    r = subprocess.run(
        [tool("ansible-doc"), "--json", INFO, FIX],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return text.stdout, json.loads(r.stdout)


@pytest.mark.parametrize(
    ("module", "options"),
    [
        (INFO, {"jails", "discover", "user", "fail_on", "probe", "executable"}),
        (FIX, {"jail", "method", "replace", "only", "mode", "fail_on", "executable"}),
    ],
)
def test_ansible_doc_renders(
    docs: tuple[str, dict[str, Any]], module: str, options: set[str]
) -> None:
    text, data = docs
    # The text of this module: from its "> MODULE name" heading to the next module's.
    parts = re.split(r"^> MODULE ", text, flags=re.M)
    (own,) = [part for part in parts if part.startswith(f"{module} ")]
    for heading in ("OPTIONS", "EXAMPLES", "RETURN VALUES"):
        assert heading in own, own
    doc = data[module]
    assert set(doc["doc"]["options"]) == options
    assert doc["return"] and doc["examples"].strip()


def adhoc_cases(env: dict[str, str], module: str, cases: list[dict[str, Any]]) -> list[Any]:
    """One ad-hoc run of ``module`` for several argument sets at once: one inventory host per
    case (all local, run side by side), whose ``case`` variable holds the arguments (those a
    case does not give are omitted). The results in the order of ``cases``."""
    hosts = {f"case{i}": {"case": args} for i, args in enumerate(cases)}
    inventory = Path(env["ANSIBLE_LOCAL_TEMP"]).parent / f"inventory-{len(cases)}.json"
    inventory.write_text(
        json.dumps({"all": {"vars": {"ansible_connection": "local"}, "hosts": hosts}})
    )
    options = sorted({o for args in cases for o in args})
    r = subprocess.run(
        [
            tool("ansible"),
            "all",
            "-i",
            str(inventory),
            "-m",
            module,
            "-a",
            " ".join(f"{o}={{{{ case.{o} | default(omit) }}}}" for o in options),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    results: list[Any] = [None] * len(cases)
    for m in re.finditer(r"^case(\d+) \| (\w+)!? => (\{.*?^\})$", r.stdout, flags=re.S | re.M):
        result = json.loads(m.group(3))
        result["_state"] = m.group(2)
        results[int(m.group(1))] = result
    assert None not in results, (r.stdout, r.stderr)
    return results


ERROR_CASES = [
    ({"jails": ["{missing}"], "probe": False}, "chrootcheck: error: jail: jail '{missing}'"),
    ({"jails": {"a": 1}}, "jails"),
    ({"jails": ["{jail}"], "fail_on": "loud"}, "fail_on"),
    ({"jails": ["{jail}"], "probe": "maybe"}, "probe"),
    ({"discover": False}, "give jails"),
]
REPORT_CASES = [
    {"jails": ["{jail}"], "probe": False},
    {"jails": ["{jail}"], "probe": False, "fail_on": "critical"},
]


@pytest.fixture(scope="module")
def info_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], list[Any]]:
    """chrootcheck_info with each of ERROR_CASES, then each of REPORT_CASES (an empty jail):
    all in one ad-hoc run."""
    tmp = tmp_path_factory.mktemp("ansible-info")
    (tmp / "jail").mkdir()
    names = {"missing": str(tmp / "missing"), "jail": str(tmp / "jail")}
    cases = []
    for args in [a for a, _ in ERROR_CASES] + REPORT_CASES:
        text = json.dumps(args)
        for k, v in names.items():
            text = text.replace("{" + k + "}", v)
        cases.append(json.loads(text))
    return names, adhoc_cases(ansible_env(tmp), INFO, cases)


def test_info_reports_and_never_changes(
    env: dict[str, str], info_runs: tuple[dict[str, str], list[Any]]
) -> None:
    names, results = info_runs
    jail = Path(names["jail"])
    reported, below = results[len(ERROR_CASES) :]
    checked = adhoc(env, INFO, {"jails": [str(jail)], "probe": False}, "--check")
    for result in (reported, checked):
        assert result["_state"] == "SUCCESS" and result["changed"] is False, result
        assert result["failing"] is True and result["exit_code"] == 1
        (j,) = result["report"]["jails"]
        assert j["jail"] == str(jail) and j["status"] == "fail"
        assert "CC100" in {f["check"] for f in j["findings"]}
    result = below
    assert result["failing"] is False and result["exit_code"] == 0


@pytest.mark.parametrize("case", range(len(ERROR_CASES)), ids=[m for _, m in ERROR_CASES])
def test_info_errors_fail_with_one_clear_message(
    info_runs: tuple[dict[str, str], list[Any]], case: int
) -> None:
    names, results = info_runs
    result = results[case]
    assert result["_state"] == "FAILED", result
    expected = ERROR_CASES[case][1].format(**names)
    assert expected in result["msg"], result


def play(env: dict[str, str], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``tasks`` in order in one ansible-playbook run (one start-up instead of one per
    task); each task's result as the default callback prints it with ``-v``, in order."""
    book = Path(env["ANSIBLE_LOCAL_TEMP"]).parent / "play.yml"
    book.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    r = subprocess.run(
        [tool("ansible-playbook"), "-v", "-i", "localhost,", "-c", "local", str(book)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    found = re.findall(
        r"^(ok|changed|fatal): \[localhost\](?:: FAILED!)? => (\{.*\})$", r.stdout, re.M
    )
    assert len(found) == len(tasks), (r.stdout, r.stderr)
    return [{**json.loads(result), "_state": state} for state, result in found]


@pytest.mark.root
def test_fix_check_mode_diff_then_apply_then_idempotent(env: dict[str, str], jail: Path) -> None:
    fix = {FIX: {"jail": str(jail)}}
    look = {"ansible.builtin.stat": {"path": str(jail / "dev")}}
    # check mode with a diff, a look at the disk, then for real, again, and check mode again:
    # one run.
    planned, after_check, applied, again, checked = play(
        env,
        [{**fix, "check_mode": True, "diff": True}, look, fix, fix, {**fix, "check_mode": True}],
    )
    assert planned["_state"] == "changed" and planned["changed"] is True, planned
    assert after_check["stat"]["exists"] is False  # check mode changes nothing
    assert "outcomes" not in planned
    assert [s["action"] for s in planned["plan"]["steps"]] == ["mkdir", "mknod", "mknod"]
    assert planned["made"] == ["/dev/urandom", "/dev/random"]
    assert applied["changed"] is True and applied["failing"] is False, applied
    assert applied["made"] == ["/dev/urandom", "/dev/random"]
    assert {o["status"] for o in applied["outcomes"]} == {"done"}
    assert os.major((jail / "dev" / "urandom").stat().st_rdev) == 1
    assert applied["scan"]["jails"][0]["status"] == "pass"
    assert again["_state"] == "ok" and again["changed"] is False, again
    assert again["made"] == [] and {o["status"] for o in again["outcomes"]} == {"unchanged"}
    assert checked["changed"] is False, checked


@pytest.mark.root
def test_fix_refusal_fails_with_the_error_line(
    env: dict[str, str], jail: Path, tmp_path: Path
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (jail / "dev").symlink_to(tmp_path / "elsewhere")
    result = adhoc(env, FIX, {"jail": str(jail)})
    assert result["_state"] == "FAILED" and result["exit_code"] == 2, result
    assert result["msg"].startswith("chrootcheck: error: "), result
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.root
def test_example_playbooks(env: dict[str, str], jail: Path) -> None:
    jails = {"chrootcheck_jails": [str(jail)]}
    scan = {**jails, "chrootcheck_discover": False, "chrootcheck_probe": False}
    assert playbook(env, "scan.yml", scan)["failed"] == 1  # the empty jail fails
    recap = playbook(env, "fix.yml", jails, "--check", "--diff")
    assert (recap["changed"], recap["failed"]) == (1, 0), recap
    assert not (jail / "dev").exists()
    recap = playbook(env, "fix.yml", jails)
    assert (recap["changed"], recap["failed"], recap["rc"]) == (1, 0, 0), recap
    recap = playbook(env, "fix.yml", jails)
    assert (recap["changed"], recap["failed"], recap["rc"]) == (0, 0, 0), recap
    recap = playbook(env, "scan.yml", scan, "--check")
    assert (recap["ok"], recap["changed"], recap["failed"], recap["rc"]) == (2, 0, 0, 0), recap
