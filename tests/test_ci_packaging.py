"""The CI entry points: scripts/ci-preflight passes exit codes through; action.yml is safe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PREFLIGHT = ROOT / "scripts" / "ci-preflight"


def preflight(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "GITLAB", "CHROOTCHECK"))
    }
    # The jails hold a FIFO: a short probe timeout keeps the probe from waiting on it for long.
    full.update(
        {
            "PYTHONPATH": str(ROOT),
            "NO_COLOR": "1",
            "CHROOTCHECK_PROBE_TIMEOUT": "0.2",
            "CHROOTCHECK": f"{sys.executable} -m chrootcheck",
            **env,
        }
    )
    return subprocess.run(
        [str(PREFLIGHT), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120
    )


def test_preflight_passes_exit_codes_through(bad_jail: Path, tmp_path: Path) -> None:
    assert preflight(str(bad_jail), cwd=tmp_path).returncode == 1
    assert preflight(str(tmp_path / "missing"), cwd=tmp_path).returncode == 2
    r = preflight(cwd=tmp_path)
    assert r.returncode == 2 and "no jail given" in r.stderr
    assert preflight(str(bad_jail), cwd=tmp_path, CHROOTCHECK="no-such-chrootcheck").returncode == 2


def test_preflight_under_github_actions(bad_jail: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    r = preflight(
        cwd=tmp_path,
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(summary),
        CHROOTCHECK_JAILS=f"  {bad_jail}  \n\n{bad_jail}\n",
    )
    assert r.returncode == 1, r
    assert "::error " in r.stdout
    assert (tmp_path / "chrootcheck.sarif").is_file()
    assert "CC111" in summary.read_text()


def test_preflight_under_gitlab(bad_jail: Path, tmp_path: Path) -> None:
    r = preflight(str(bad_jail), cwd=tmp_path, GITLAB_CI="true", CHROOTCHECK_FAIL_ON="critical")
    assert r.returncode == 1, r
    assert (tmp_path / "gl-code-quality-report.json").is_file()
    assert (tmp_path / "chrootcheck-junit.xml").is_file()


def test_preflight_does_not_evaluate_its_inputs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    r = preflight(cwd=tmp_path, CHROOTCHECK_JAILS=f"$(touch {marker})\n`touch {marker}`")
    assert r.returncode == 2
    assert not marker.exists()


def _steps(text: str) -> list[str]:
    body = text.split("\n  steps:\n", 1)[1]
    return re.split(r"\n    - ", "\n" + body)[1:]


def test_action_every_run_step_has_a_shell_and_no_inline_inputs() -> None:
    text = (ROOT / "action.yml").read_text()
    assert "using: composite" in text
    steps = _steps(text)
    runs = [s for s in steps if re.search(r"^\s*run:", s, re.MULTILINE)]
    assert len(runs) >= 2
    for step in steps:
        if re.search(r"^\s*run:", step, re.MULTILINE):
            assert re.search(r"^\s*shell: \w+", step, re.MULTILINE), step
            script = step.split("run:", 1)[1]
            assert "${{" not in script, step  # inputs go through env:, never into the script
    assert "github/codeql-action/upload-sarif" in text


@pytest.mark.parametrize("doc", ["ci.md", "decode.md", "checks.md"])
def test_docs_exist(doc: str) -> None:
    assert (ROOT / "docs" / doc).stat().st_size > 500
