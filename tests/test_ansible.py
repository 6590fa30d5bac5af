"""The Ansible collection under integrations/ansible, run by the real ansible-core against
localhost: ansible-doc, every module case as a task of one playbook, and the example playbooks
(check mode, idempotence).

ansible-core costs about 1.5 s of CPU per start and half a second per module task, so the module
starts it five times in all, at once in the background (see ``Ansible``), and each test reads its
part of the results."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IS_ROOT, ROOT

# The real ansible-core runs the real executable; one xdist worker runs the whole module, so its
# module fixture (every ansible-core run) runs once.
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


class Started:
    """One ansible-core command started in the background (its own session, its output in
    files): the module starts its commands at once and reads each when a test needs it."""

    def __init__(self, tmp: Path, name: str, cmd: list[str]) -> None:
        self.cmd = cmd
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        with self.out.open("w") as stdout, self.err.open("w") as stderr:
            self.proc = subprocess.Popen(
                cmd,
                stdout=stdout,
                stderr=stderr,
                env=ansible_env(tmp / name),
                start_new_session=True,
            )

    def result(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.kill()
        return subprocess.CompletedProcess(self.cmd, rc, self.out.read_text(), self.err.read_text())

    def kill(self) -> None:
        """Stop it and its workers, if still running (a test that failed first)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def ansible_playbook(tmp: Path, name: str, *args: str, hosts: str = "localhost") -> Started:
    cmd = [tool("ansible-playbook"), "-i", f"{hosts},", "-c", "local", *args]
    return Started(tmp, name, cmd)


def recaps(r: subprocess.CompletedProcess[str]) -> list[dict[str, int]]:
    """The recap of localhost for each play of one ansible-playbook run, and its exit code.

    The default callback's PLAY RECAP after each playbook file sums every play so far; this
    counts each play's tasks from their status lines the way the recap counts them (a task's
    worst status; ok counts the changed tasks too), and checks them against each real recap."""
    sections = re.split(r"^PLAY (\[.*\]|RECAP) \**$", r.stdout, flags=re.M)
    assert sections[-2:-1] == ["RECAP"], (r.stdout, r.stderr)
    plays: list[dict[str, int]] = []
    for heading, body in zip(sections[1::2], sections[2::2], strict=True):
        if heading == "RECAP":
            m = re.search(r"^localhost\s*:\s*(.*)$", body, flags=re.M)
            assert m, (r.stdout, r.stderr)
            total = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}
            counted = {k: sum(p[k] for p in plays) for k in ("ok", "changed", "failed")}
            assert counted == {k: total[k] for k in counted}, r.stdout
            continue
        counts = {"ok": 0, "changed": 0, "failed": 0}
        for task in re.split(r"^TASK \[.*$", body, flags=re.M)[1:]:
            states = set(re.findall(r"^(\w+): \[localhost\]", task, flags=re.M))
            if states & {"failed", "fatal"}:
                counts["failed"] += 1
            elif states & {"ok", "changed"}:
                counts["ok"] += 1
                counts["changed"] += "changed" in states
        plays.append(counts)
    return [{**p, "rc": r.returncode} for p in plays]


def play(tmp: Path, hosts: dict[str, list[dict[str, Any]]]) -> Started:
    """Start one ansible-playbook run (one start-up instead of one per task) in which each of
    ``hosts`` (all this machine) runs its own tasks in order, each with ``ignore_errors`` (a
    failing case does not stop the ones after it); the hosts side by side (strategy free)."""
    for host, tasks in hosts.items():
        (tmp / f"tasks-{host}.yml").write_text(
            json.dumps([{**task, "ignore_errors": True} for task in tasks])
        )
    book = tmp / "play.yml"
    include = {"ansible.builtin.include_tasks": str(tmp / "tasks-{{ inventory_hostname }}.yml")}
    book.write_text(
        json.dumps(
            [{"hosts": "all", "gather_facts": False, "strategy": "free", "tasks": [include]}]
        )
    )
    return ansible_playbook(tmp, "play", "-v", str(book), hosts=",".join(hosts))


def play_results(run: Started, hosts: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Each host's task results as the default callback prints them with ``-v``, in order, with
    their status (ok, changed or fatal) as ``_state``."""
    r = run.result()
    results: dict[str, list[dict[str, Any]]] = {host: [] for host in hosts}
    for state, host, result in re.findall(
        r"^(ok|changed|fatal): \[(\w+)\](?:: FAILED!)? => (\{.*\})$", r.stdout, re.M
    ):
        results.setdefault(host, []).append({**json.loads(result), "_state": state})
    assert {host: len(found) for host, found in results.items()} == hosts, (r.stdout, r.stderr)
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


class Ansible:
    """Everything this module asks of ansible-core, started at once by the module fixture:
    ansible-doc of both modules (the text, whose sections show what its JSON would), one
    playbook with every module case as a task (chrootcheck_info's error and report cases and a
    check-mode run; as root, chrootcheck_fix's sequence and its refusal), and as root the
    example playbooks: scan.yml, fix.yml twice in one run, then (a thread waits for the fix)
    fix.yml and scan.yml in check mode in one more run."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.names = {"missing": str(tmp / "missing"), "jail": str(tmp / "info-jail")}
        (tmp / "info-jail").mkdir()
        info = []
        for args in [a for a, _ in ERROR_CASES] + REPORT_CASES:
            text = json.dumps(args)
            for k, v in self.names.items():
                text = text.replace("{" + k + "}", v)
            info.append({INFO: json.loads(text)})
        checked = {INFO: {"jails": [self.names["jail"]], "probe": False}, "check_mode": True}
        # chrootcheck_info's cases on one host, chrootcheck_fix's on another, side by side.
        hosts = {"info": [*info, checked]}
        if IS_ROOT:
            hosts["fix"] = self.fix_tasks()
        self.tasks = {host: len(tasks) for host, tasks in hosts.items()}
        self.play = play(tmp, hosts)
        self.doc = Started(tmp, "doc", [tool("ansible-doc"), INFO, FIX])
        self.started = [self.play, self.doc]
        self.examples: Future[list[dict[str, int]]] | None = None
        if IS_ROOT:
            self.pool = ThreadPoolExecutor(1)
            self.examples = self.pool.submit(self.run_examples, *self.start_examples())

    # chrootcheck_fix: check mode with a diff, a look at the disk, then for real, again, and
    # check mode again; then a jail whose dev is a symbolic link out of it.
    def fix_tasks(self) -> list[dict[str, Any]]:
        self.fix_jail, self.refused_jail = self.tmp / "fix-jail", self.tmp / "refused-jail"
        self.elsewhere = self.tmp / "elsewhere"
        for d in (self.fix_jail, self.refused_jail, self.elsewhere):
            d.mkdir()
        (self.refused_jail / "dev").symlink_to(self.elsewhere)
        fix = {FIX: {"jail": str(self.fix_jail)}}
        look = {"ansible.builtin.stat": {"path": str(self.fix_jail / "dev")}}
        refused = {FIX: {"jail": str(self.refused_jail)}}
        return [
            {**fix, "check_mode": True, "diff": True},
            look,
            fix,
            fix,
            {**fix, "check_mode": True},
            refused,
        ]

    # The example playbooks, run as files the way their comments say: an empty jail, and one
    # that fix.yml fixes.
    def start_examples(self) -> tuple[Started, Started]:
        self.empty, self.fixed = self.tmp / "example-empty", self.tmp / "example-fixed"
        self.empty.mkdir()
        self.fixed.mkdir()
        scan = self.scan_vars(self.empty)
        fix = {"chrootcheck_jails": [str(self.fixed)]}
        runs = (
            ansible_playbook(self.tmp, "scan", *self.extra(scan), str(EXAMPLES / "scan.yml")),
            ansible_playbook(
                self.tmp,
                "fix-twice",
                *self.extra(fix),
                str(EXAMPLES / "fix.yml"),
                str(EXAMPLES / "fix.yml"),
            ),
        )
        self.started += runs
        return runs

    @staticmethod
    def scan_vars(jail: Path) -> dict[str, Any]:
        return {
            "chrootcheck_jails": [str(jail)],
            "chrootcheck_discover": False,
            "chrootcheck_probe": False,
        }

    @staticmethod
    def extra(variables: dict[str, Any]) -> list[str]:
        return ["-e", "ansible_become=false", "-e", json.dumps(variables)]

    def run_examples(self, scanned: Started, fixed: Started) -> list[dict[str, int]]:
        """The recaps of scan.yml (the empty jail), fix.yml twice, then in check mode with a
        diff fix.yml (the empty jail) and scan.yml (the fixed one): one playbook that imports
        both, each with its variables."""
        runs = [*recaps(scanned.result()), *recaps(fixed.result())]
        book = self.tmp / "check.yml"
        book.write_text(
            json.dumps(
                [
                    {
                        "import_playbook": str(EXAMPLES / "fix.yml"),
                        "vars": {"chrootcheck_jails": [str(self.empty)]},
                    },
                    {
                        "import_playbook": str(EXAMPLES / "scan.yml"),
                        "vars": self.scan_vars(self.fixed),
                    },
                ]
            )
        )
        checked = ansible_playbook(
            self.tmp, "check", "--check", "--diff", "-e", "ansible_become=false", str(book)
        )
        self.started.append(checked)
        return runs + recaps(checked.result())

    def stop(self) -> None:
        """Stop what still runs (after a failed test): the example thread's runs, then the
        one it may have started meanwhile."""
        for run in self.started:
            run.kill()
        if self.examples is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        for run in self.started:
            run.kill()

    @functools.cached_property
    def docs(self) -> str:
        """ansible-doc of both modules, as text (one run)."""
        text = self.doc.result(120)
        assert text.returncode == 0 and "WARNING" not in text.stderr, text
        assert "ERROR" not in text.stderr, text
        return text.stdout

    @functools.cached_property
    def results(self) -> dict[str, list[dict[str, Any]]]:
        return play_results(self.play, self.tasks)


@pytest.fixture(scope="module")
def ansible(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ansible]:
    started = Ansible(tmp_path_factory.mktemp("ansible"))
    yield started
    started.stop()


@pytest.mark.parametrize(
    ("module", "options"),
    [
        (INFO, {"jails", "discover", "user", "fail_on", "probe", "executable"}),
        (FIX, {"jail", "method", "replace", "only", "mode", "fail_on", "executable"}),
    ],
)
def test_ansible_doc_renders(ansible: Ansible, module: str, options: set[str]) -> None:
    # The text of this module: from its "> MODULE name" heading to the next module's.
    parts = re.split(r"^> MODULE ", ansible.docs, flags=re.M)
    (own,) = [part for part in parts if part.startswith(f"{module} ")]
    for heading in ("OPTIONS", "EXAMPLES", "RETURN VALUES"):
        assert heading in own, own
    # Its sections, each from its heading at the start of a line ("OPTIONS (= indicates it is
    # required):", "EXAMPLES:") to the next: every option ("- name", "= name" if required),
    # the return values and the examples.
    split = re.split(r"^([A-Z][A-Z ]*[A-Z])(?: \(.*\))?:", own, flags=re.M)
    sections = dict(zip(split[1::2], split[2::2], strict=True))
    assert set(re.findall(r"^[-=] (\w+)", sections["OPTIONS"], flags=re.M)) == options, own
    assert re.search(r"^- \w+", sections["RETURN VALUES"], flags=re.M), own
    assert sections["EXAMPLES"].strip(), own


def test_info_reports_and_never_changes(ansible: Ansible) -> None:
    jail = Path(ansible.names["jail"])
    reported, below, checked = ansible.results["info"][len(ERROR_CASES) :]
    for result in (reported, checked):
        assert result["_state"] == "ok" and result["changed"] is False, result
        assert result["failing"] is True and result["exit_code"] == 1
        (j,) = result["report"]["jails"]
        assert j["jail"] == str(jail) and j["status"] == "fail"
        assert "CC100" in {f["check"] for f in j["findings"]}
    result = below
    assert result["failing"] is False and result["exit_code"] == 0


@pytest.mark.parametrize("case", range(len(ERROR_CASES)), ids=[m for _, m in ERROR_CASES])
def test_info_errors_fail_with_one_clear_message(ansible: Ansible, case: int) -> None:
    result = ansible.results["info"][case]
    assert result["_state"] == "fatal", result
    expected = ERROR_CASES[case][1].format(**ansible.names)
    assert expected in result["msg"], result


@pytest.mark.root
def test_fix_check_mode_diff_then_apply_then_idempotent(ansible: Ansible) -> None:
    jail = ansible.fix_jail
    planned, after_check, applied, again, checked = ansible.results["fix"][:5]
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
def test_fix_refusal_fails_with_the_error_line(ansible: Ansible) -> None:
    result = ansible.results["fix"][5]
    assert result["_state"] == "fatal" and result["exit_code"] == 2, result
    assert result["msg"].startswith("chrootcheck: error: "), result
    assert list(ansible.elsewhere.iterdir()) == []


@pytest.mark.root
def test_example_playbooks(ansible: Ansible) -> None:
    assert ansible.examples is not None
    scanned, fixed, again, checked_fix, checked_scan = ansible.examples.result(600)
    assert scanned["failed"] == 1  # the empty jail fails
    recap = checked_fix
    assert (recap["changed"], recap["failed"]) == (1, 0), recap
    assert not (ansible.empty / "dev").exists()
    recap = fixed
    assert (recap["changed"], recap["failed"], recap["rc"]) == (1, 0, 0), recap
    recap = again
    assert (recap["changed"], recap["failed"], recap["rc"]) == (0, 0, 0), recap
    recap = checked_scan
    assert (recap["ok"], recap["changed"], recap["failed"], recap["rc"]) == (2, 0, 0, 0), recap
