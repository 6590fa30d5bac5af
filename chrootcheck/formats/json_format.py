"""``--format json``: the versioned machine-readable report (docs/json-format.md)."""

from __future__ import annotations

import json
from typing import TextIO

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import report_data
from chrootcheck.model import Report


def render(report: Report, stream: TextIO, options: RenderOptions) -> None:
    json.dump(report_data(report), stream, indent=2, ensure_ascii=False)
    stream.write("\n")
