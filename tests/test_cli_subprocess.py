"""Smoke tests: each command run as a real process (``python -m chrootcheck``), the way a user
or a CI job runs it. Every other CLI test calls ``cli.main`` in process (tests/conftest.py);
these make sure the process around it behaves the same: the exit status the shell sees, the
streams flushed, one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, Result, good_jail

pytestmark = pytest.mark.subprocess

Cli = Callable[..., Result]


def test_version_and_help(cli_subprocess: Cli) -> None:
    from chrootcheck import __version__

    r = cli_subprocess("--version")
    assert (r.code, r.stderr) == (0, ""), r
    assert __version__ in r.stdout
    r = cli_subprocess("--help")
    assert r.code == 0 and "Usage:" in r.stdout, r


def test_scan_findings_exit_1(cli_subprocess: Cli, bad_jail: Path) -> None:
    r = cli_subprocess("scan", str(bad_jail), "--no-probe", "--format", "json")
    assert r.code == 1, r
    data = json.loads(r.stdout)
    assert "CC111" in {f["check"] for f in data["jails"][0]["findings"]}


@pytest.mark.root
def test_scan_with_the_probe_exit_0(cli_subprocess: Cli, jail: Path) -> None:
    from tests.conftest import good_jail

    r = cli_subprocess("scan", str(good_jail(jail)))
    assert r.code == 0, r
    assert "PASS" in r.stdout


def test_usage_error_is_exit_2_with_one_line(cli_subprocess: Cli) -> None:
    r = cli_subprocess("scan", "/", "--fail-on", "loud")
    assert r.code == 2, r
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("chrootcheck: error: ") and "--fail-on" in line, r


def test_info(cli_subprocess: Cli) -> None:
    r = cli_subprocess("info", "--format", "json")
    assert r.code == 0, r
    assert json.loads(r.stdout)


def test_fix_dry_run_changes_nothing(cli_subprocess: Cli, jail: Path) -> None:
    r = cli_subprocess("fix", str(jail), "--mknod", "--dry-run", "--format", "json")
    assert r.code in (0, 1), r
    assert json.loads(r.stdout)["plan"]["steps"]
    assert list(jail.iterdir()) == []


def test_decode_reads_stdin(cli_subprocess: Cli) -> None:
    line = (
        "140135125062464:error:2406C06E:random number generator:RAND_DRBG_instantiate:"
        "error retrieving entropy:crypto/rand/drbg_lib.c:221:\n"
    )
    r = cli_subprocess("decode", "--format", "json", input=line)
    assert r.code in (0, 1), r
    assert "2406C06E" in r.stdout.upper()


def test_discover_under_a_root(cli_subprocess: Cli, tmp_path: Path) -> None:
    r = cli_subprocess("discover", "--root", str(tmp_path), "--format", "json")
    assert r.code == 0, r
    assert json.loads(r.stdout)["jails"] == []


def test_ps(cli_subprocess: Cli) -> None:
    r = cli_subprocess("ps", "--format", "json")
    assert r.code in (0, 1), r
    assert "processes" in r.stdout or "jails" in r.stdout


def test_demo_usage_error(cli_subprocess: Cli, tmp_path: Path) -> None:
    r = cli_subprocess("demo", "--mknod", "--bind", env={"TMPDIR": str(tmp_path)})
    assert r.code == 2, r
    assert "at most one" in r.stderr


@pytest.mark.root
@pytest.mark.parametrize(
    "args",
    [("scan", "--no-probe"), ("scan", "--no-probe", "-f", "json"), ("discover", "--root")],
    ids=["scan-text", "scan-json", "discover"],
)
def test_a_closed_stdout_is_exit_2_not_findings(tmp_path: Path, args: tuple[str, ...]) -> None:
    # `chrootcheck scan JAIL | head`: the report could not be written. rich and click both
    # turn EPIPE into exit 1, which a pipeline would read as "findings found".
    jail = good_jail(tmp_path / "jail")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chrootcheck", *args, str(jail)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    proc.stdout.close()  # closed before the child writes a byte
    assert proc.wait(timeout=60) == 2
