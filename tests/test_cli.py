"""The CLI as a user meets it: exit codes, JSON shape, errors in one line, odd file names."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from chrootcheck.cli import COMMANDS
from chrootcheck.report.model import SCAN_SCHEMA_VERSION
from tests.conftest import Result, good_jail

Cli = Callable[..., Result]


def one_line_error(r: Result) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert "Traceback" not in r.stderr, r
    assert lines, r
    return lines[-1]


# ---------------------------------------------------------------- exit codes


@pytest.mark.root
def test_good_jail_exits_0(jail: Path, cli: Cli) -> None:
    r = cli("scan", str(good_jail(jail)))
    assert r.code == 0, r
    assert "PASS" in r.stdout


def test_bad_jail_exits_1(jail: Path, cli: Cli) -> None:
    r = cli("scan", str(jail), "--no-probe")
    assert r.code == 1, r
    assert "CC101" in r.stdout and "FAIL" in r.stdout


@pytest.mark.root
@pytest.mark.parametrize(
    ("fail_on", "code"), [("critical", 0), ("error", 0), ("warning", 1), ("info", 1)]
)
def test_fail_on_threshold(jail: Path, cli: Cli, fail_on: str, code: int) -> None:
    good_jail(jail)
    os.chmod(jail / "dev" / "random", 0o600)  # a warning (CC131), nothing worse
    r = cli("scan", str(jail), "--no-probe", "--fail-on", fail_on)
    assert r.code == code, r


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "{missing}"],
        ["scan", "{file}"],
        ["scan", "{jail}", "--fail-on", "loud"],
        ["scan", "{jail}", "--format", "yaml"],
        ["scan", "{jail}", "--user", "no-such-user-here"],
        ["scan"],
        ["no-such-command"],
        ["scan", "{jail}", "-o", "/proc/no/such/dir/out.json"],
    ],
)
def test_tool_errors_exit_2_with_one_line(
    tmp_path: Path, jail: Path, cli: Cli, args: list[str]
) -> None:
    (tmp_path / "file").write_text("")
    fmt = {"missing": str(tmp_path / "missing"), "file": str(tmp_path / "file"), "jail": str(jail)}
    r = cli(*[a.format(**fmt) for a in args])
    assert r.code == 2, r
    line = one_line_error(r)
    assert line.startswith(("chrootcheck: error", "Error:")), r


def test_missing_jail_among_good_ones_is_still_exit_2(jail: Path, tmp_path: Path, cli: Cli) -> None:
    r = cli("scan", str(jail), str(tmp_path / "missing"), "--no-probe", "--format", "json")
    assert r.code == 2, r
    data = json.loads(r.stdout)
    assert [j["status"] for j in data["jails"]] == ["fail", "error"]
    assert "does not exist" in one_line_error(r)


# ---------------------------------------------------------------- JSON


def test_json_shape(jail: Path, cli: Cli) -> None:
    (jail / "dev").mkdir()
    (jail / "dev" / "urandom").write_text("same bytes every time")
    r = cli("scan", str(jail), "--no-probe", "--format", "json")
    assert r.code == 1, r
    data = json.loads(r.stdout)
    assert data["schema_version"] == SCAN_SCHEMA_VERSION
    assert data["tool"]["name"] == "chrootcheck"
    (j,) = data["jails"]
    assert j["jail"] == str(jail)
    by_check = {f["check"]: f for f in j["findings"]}
    f = by_check["CC110"]
    assert f["severity"] == "critical"
    assert f["path"] == "/dev/urandom"
    assert f["message"] and f["remediation"]
    assert set(f) >= {"check", "severity", "path", "message", "remediation"}
    assert data["summary"]["findings"]["critical"] == 1
    assert data["summary"]["failing"] >= 2  # CC110 and CC102
    # worst first
    ranks = ["critical", "error", "warning", "info"]
    sev = [ranks.index(x["severity"]) for x in j["findings"]]
    assert sev == sorted(sev)


def test_output_file_and_several_jails(jail: Path, tmp_path: Path, cli: Cli) -> None:
    other = tmp_path / "other"
    (other / "dev").mkdir(parents=True)
    out = tmp_path / "report.json"
    r = cli("scan", str(jail), str(other), "--no-probe", "--format", "json", "-o", str(out))
    assert r.code == 1, r
    assert r.stdout == ""
    data = json.loads(out.read_text())
    assert [j["jail"] for j in data["jails"]] == [str(jail), str(other)]
    assert {f["check"] for f in data["jails"][0]["findings"]} >= {"CC100"}
    assert "CC100" not in {f["check"] for f in data["jails"][1]["findings"]}


def test_two_formats_in_one_run(jail: Path, tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "r.json"
    r = cli("scan", str(jail), "--no-probe", "--format", f"json={out}", "--format", "text")
    assert r.code == 1, r
    assert "CC101" in r.stdout
    assert json.loads(out.read_text())["jails"][0]["jail"] == str(jail)


def test_two_formats_to_stdout_is_refused(jail: Path, cli: Cli) -> None:
    r = cli("scan", str(jail), "--no-probe", "--format", "json", "--format", "text")
    assert r.code == 2
    assert "same place" in one_line_error(r)


# ---------------------------------------------------------------- odd names, no hangs


def test_non_utf8_and_markup_names_print_literally(tmp_path: Path, cli: Cli) -> None:
    jail = tmp_path / "j[bold]x[/bold]"
    (jail / "dev").mkdir(parents=True)
    os.mkfifo(os.fsencode(str(jail)) + b"/dev/\xff\x1b[31mred")
    r = cli("scan", str(jail), "--no-probe")
    assert r.code == 1, r
    assert "j[bold]x[/bold]" in r.stdout  # markup off: brackets survive
    assert "\\xff" in r.stdout  # the undecodable byte is escaped
    assert "\x1b" not in r.stdout  # no escape sequence reaches the terminal
    r = cli("scan", str(jail), "--no-probe", "--format", "json")
    data = json.loads(r.stdout)
    paths = [f["path"] for f in data["jails"][0]["findings"] if f["check"] == "CC162"]
    assert paths == ["/dev/\\xff\\x1b[31mred"]


def test_fifo_in_place_of_urandom_does_not_hang(jail: Path, cli: Cli) -> None:
    (jail / "dev").mkdir()
    os.mkfifo(jail / "dev" / "urandom")
    os.mkfifo(jail / "dev" / "egd-pool")
    r = cli("scan", str(jail), "--probe-timeout", "0.2", timeout=30)
    assert r.code == 1, r
    assert "CC111" in r.stdout and "CC152" in r.stdout


def test_symlink_loop_and_dangling_dev(jail: Path, cli: Cli) -> None:
    os.symlink("dev", jail / "dev")  # /dev -> /dev: a loop in place of the folder
    r = cli("scan", str(jail), "--no-probe", "--format", "json")
    assert r.code == 1, r
    checks = {f["check"] for f in json.loads(r.stdout)["jails"][0]["findings"]}
    assert "CC115" in checks


def test_socket_jail_path_is_not_a_folder(tmp_path: Path, cli: Cli) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock"))
    try:
        r = cli("scan", str(tmp_path / "sock"))
    finally:
        s.close()
    assert r.code == 2
    assert "not a folder" in one_line_error(r)


# ---------------------------------------------------------------- help and colour


def test_every_command_exists() -> None:
    import importlib.util

    assert [n for n, (m, _) in COMMANDS.items() if importlib.util.find_spec(m) is None] == []


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help(name: str, cli: Cli) -> None:
    r = cli(name, "--help")
    assert r.code == 0, r
    assert "Usage:" in r.stdout and len(r.stdout.splitlines()) > 3


def test_version(cli: Cli) -> None:
    from chrootcheck import __version__

    r = cli("--version")
    assert r.code == 0 and __version__ in r.stdout


def test_version_does_not_import_heavy_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from chrootcheck.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('rich', 'cffi', '_cffi_backend')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_colour_only_when_forced(jail: Path, cli: Cli) -> None:
    plain = cli("scan", str(jail), "--no-probe")
    assert "\x1b[" not in plain.stdout
    forced = cli("scan", str(jail), "--no-probe", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert "\x1b[" in forced.stdout
