"""Output formats: one module per format, each with ``render(report, stream, options)``.

Chosen through the ``Format`` enum; modules are imported only when used (rich is heavy).
Every format renders the same ``model.Report``; a test loops over the enum so none is forgotten.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from chrootcheck.report.model import Report


class Format(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    GITHUB = "github"
    GITLAB = "gitlab"
    JUNIT = "junit"
    PROMETHEUS = "prometheus"  # node_exporter's textfile collector (docs/fleet.md)
    NAGIOS = "nagios"  # a Nagios/Icinga plugin line; plugin exit codes (exitcodes.for_plugin)


_MODULES: dict[Format, str] = {f: f"chrootcheck.formats.{f.value}_format" for f in Format}


@dataclass(frozen=True)
class RenderOptions:
    color: bool = False  # only the text format uses colour, and only on a terminal
    width: int | None = None
    sarif_anchor: str | None = None  # a regular file that SARIF locations may point at
    step_summary: str | None = None  # $GITHUB_STEP_SUMMARY for --format github
    scan_seconds: float | None = None  # how long the scan took (prometheus, nagios)
    finished_at: float | None = None  # when it ended, seconds since the epoch (prometheus)
    not_run: tuple[str, ...] = ()  # check-id prefixes of parts skipped on request ("CC2")


Renderer = Callable[[Report, TextIO, RenderOptions], None]


def renderer(fmt: Format) -> Renderer:
    module = importlib.import_module(_MODULES[fmt])
    render: Renderer = module.render
    return render
