"""docs/checks.md documents every check, at the anchor its SARIF helpUri points to, and is
what scripts/gen-checks-doc writes from the catalogue today."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from chrootcheck.formats.checks_doc import render
from chrootcheck.report.catalogue import ALL, DOCS_URL, SETS
from tests.conftest import ROOT


def test_checks_md_is_up_to_date() -> None:
    assert (ROOT / "docs" / "checks.md").read_text() == render(), "run scripts/gen-checks-doc"


def test_every_check_has_its_anchor_in_docs() -> None:
    docs = (ROOT / "docs" / "checks.md").read_text()
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', docs))
    headings = re.findall(r"^## (CC\d+) (\S+)$", docs, re.MULTILINE)
    assert ALL, "empty catalogue"
    for check in ALL:
        assert check.help_uri.startswith(DOCS_URL + "#")
        anchor = check.help_uri.split("#", 1)[1]
        assert anchor in anchors, f"{check.id}: run scripts/gen-checks-doc"
        # GitHub's own heading slug gives the same anchor, so the link works either way.
        assert (check.id, check.name) in headings, check.id
        assert f"stage: `{check.stage.value}`" in docs
    assert len(anchors) == len(ALL)  # nothing documented that does not exist
    assert [h[0] for h in headings] == [c.id for c in ALL]  # in id order
    for s in SETS:
        assert f"- `{s.name}` (" in docs


def test_the_script_writes_the_rendered_catalogue(tmp_path: Path) -> None:
    """scripts/gen-checks-doc, run for real on a copy of the tree layout (it writes next to
    itself, so the repository's docs are never touched)."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "docs").mkdir()
    script = tmp_path / "scripts" / "gen-checks-doc"
    script.write_bytes((ROOT / "scripts" / "gen-checks-doc").read_bytes())
    (tmp_path / "chrootcheck").symlink_to(ROOT / "chrootcheck")
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert r.stdout.strip() == "wrote docs/checks.md"
    assert (tmp_path / "docs" / "checks.md").read_text() == render()
