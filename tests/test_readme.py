"""The README's two set-up commands are the ones CI and a newcomer run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sh_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = sh_blocks(readme)
    test_cmd = next(b for b in blocks if "pytest" in b)
    assert test_cmd in ci.splitlines()


def test_readme_names_the_main_job_first() -> None:
    blocks = sh_blocks((ROOT / "README.md").read_text())
    assert "chrootcheck demo" in blocks[0]
    assert "pip install" in blocks[0]


def test_readme_documents_every_exit_code() -> None:
    from chrootcheck.report.exitcodes import ExitCode

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", section, flags=re.M), code
