"""docs/checks.md documents every check, at the anchor its SARIF helpUri points to."""

from __future__ import annotations

import importlib.util
import re

from chrootcheck.report import catalogue as checks
from chrootcheck.report.catalogue import DOCS_URL
from tests.conftest import ROOT


def _catalogue() -> dict[str, checks.Check]:
    # The generator decides which modules register checks; it has no .py suffix, so load it
    # through an explicit source loader.
    from importlib.machinery import SourceFileLoader

    loader = SourceFileLoader("gen_checks_doc", str(ROOT / "scripts/gen-checks-doc"))
    spec = importlib.util.spec_from_loader("gen_checks_doc", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    module.load_catalogue()
    return dict(checks.CHECKS)


def test_every_check_has_its_anchor_in_docs() -> None:
    docs = (ROOT / "docs" / "checks.md").read_text()
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', docs))
    headings = re.findall(r"^## (CC\d+) (\S+)$", docs, re.MULTILINE)
    catalogue = _catalogue()
    assert catalogue, "empty catalogue"
    for check in catalogue.values():
        assert check.help_uri.startswith(DOCS_URL + "#")
        anchor = check.help_uri.split("#", 1)[1]
        assert anchor in anchors, f"{check.id}: run scripts/gen-checks-doc"
        # GitHub's own heading slug gives the same anchor, so the link works either way.
        assert (check.id, check.name) in headings, check.id
    assert len(anchors) == len(catalogue)  # nothing documented that does not exist
