"""The layers of docs/architecture.md, enforced: import-linter's contract in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports finds the package through sys.path and the contract in the working folder.
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
        ],
        cwd=where,
        env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_imports_never_run_up_a_layer() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "layers KEPT" in done.stdout


def test_an_import_up_a_layer_breaks_the_contract(tmp_path: Path) -> None:
    # The same contract on a copy of the package in which the report model imports a renderer.
    shutil.copytree(
        ROOT / "chrootcheck", tmp_path / "chrootcheck", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    model = tmp_path / "chrootcheck" / "report" / "model.py"
    model.write_text(model.read_text() + "\nfrom chrootcheck.formats import common  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "layers BROKEN" in done.stdout
    assert "chrootcheck.report is not allowed to import chrootcheck.formats" in done.stdout
