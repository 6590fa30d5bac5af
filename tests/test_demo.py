"""`chrootcheck demo`: red, fix, green, and nothing left behind (folders or mounts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from chrootcheck.app.demo import DemoOptions, DemoRun, run_demo
from chrootcheck.fix.fixer import Method
from tests.conftest import ROOT, Result, mounts_below

CLI = Callable[..., Result]


def demo_mounts(tmp: Path) -> list[str]:
    # Only under this test's TMPDIR: other test sessions on the machine run demos too.
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        return [
            p
            for line in f
            if "chrootcheck-demo-" in (p := line.split()[4]) and p.startswith(f"{tmp}/")
        ]


@pytest.mark.root
@pytest.mark.parametrize("method", [[], ["--mknod"], ["--bind"]])
def test_demo_red_to_green_and_cleans_up(cli: CLI, tmp_path: Path, method: list[str]) -> None:
    r = cli("demo", *method, env={"TMPDIR": str(tmp_path)})
    assert r.code == 0, str(r)
    out = r.stdout
    assert "Traceback" not in r.stderr
    # The scan before is red (a critical fake file, a missing urandom), the one after green.
    assert out.index("FAIL") < out.index("CC110") < out.index("PASS")
    assert "CC101" in out
    assert "Nothing at or above error (exit 0)" in out
    assert "rename-aside" in out  # the fake /dev/random is moved aside, not deleted
    if method == ["--bind"]:
        assert "does not survive a reboot" in out and "unmounted" in out
    assert "removed " in out
    assert list(tmp_path.iterdir()) == []
    assert demo_mounts(tmp_path) == []


def test_demo_without_privileges_still_scans(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "chrootcheck", "demo"]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", *cmd]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
        "COLUMNS": "160",
        "TMPDIR": str(tmp_path),
    }
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAIL" in r.stdout and "CC110" in r.stdout  # the scan is still shown
    assert "needs root (CAP_MKNOD)" in r.stdout
    assert "PASS" not in r.stdout
    assert list(tmp_path.iterdir()) == []


def _stop_at(
    stage: str, action: Callable[[], None], seen: list[DemoRun]
) -> Callable[[str, DemoRun], None]:
    def emit(s: str, run: DemoRun) -> None:
        seen.append(run)
        if s == stage:
            action()

    return emit


def _raise_interrupt() -> None:
    raise KeyboardInterrupt


def _raise_error() -> None:
    raise RuntimeError("boom")


def _sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.root
@pytest.mark.parametrize(
    ("stage", "action", "exc"),
    [
        ("fix", _raise_interrupt, KeyboardInterrupt),  # Ctrl-C with the bind mounts in place
        ("before", _raise_error, RuntimeError),
        ("fix", _sigterm, KeyboardInterrupt),
    ],
)
def test_demo_cleans_up_on_interruption(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
    action: Callable[[], None],
    exc: type[BaseException],
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[DemoRun] = []
    mounted: list[list[str]] = []

    def act() -> None:
        mounted.append(mounts_below(tmp_path))
        action()

    with pytest.raises(exc):
        run_demo(DemoOptions(method=Method.BIND), _stop_at(stage, act, seen))
    if stage == "fix":
        assert len(mounted[0]) == 2  # the demo really had two bind mounts up
    assert list(tmp_path.iterdir()) == []
    assert mounts_below(tmp_path) == []
    assert any("removed" in line for line in seen[-1].cleanup)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_demo_unusable_temp_folder_is_a_tool_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chrootcheck.report.errors import ToolError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    stages: list[str] = []
    with pytest.raises(ToolError, match="temporary folder"):
        run_demo(DemoOptions(), lambda stage, run: stages.append(stage))
    assert stages == []


def test_demo_both_methods_is_a_usage_error(cli: CLI, tmp_path: Path) -> None:
    r = cli("demo", "--mknod", "--bind", env={"TMPDIR": str(tmp_path)})
    assert r.code == 2, str(r)
    assert "at most one" in r.stderr
    assert list(tmp_path.iterdir()) == []
