"""``--format json``: the versioned machine-readable report (docs/json-format.md)."""

from __future__ import annotations

import json
from typing import TextIO

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import report_data
from chrootcheck.report.model import Report


def render(report: Report, stream: TextIO, options: RenderOptions) -> None:
    # Compact on purpose: with indent= the json module falls back to its pure-Python encoder,
    # which took half the run time on a 100k-entry jail. Pipe to `jq .` to read it.
    stream.write(json.dumps(report_data(report), ensure_ascii=False))
    stream.write("\n")
