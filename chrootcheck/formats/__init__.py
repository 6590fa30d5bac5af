"""Output formats: one module per format, each with ``render(report, stream, options)``.

A renderer writes to the stream it is given and nowhere else, and raises no ToolError: the
command checks what the user gave (``--sarif-anchor``) and opens every file (outputs,
``$GITHUB_STEP_SUMMARY``). Which checks did not run comes from the report's skip notices.

Chosen through the ``Format`` enum; modules are imported only when used (rich is heavy).
Every format renders the same ``model.Report``; a test loops over the enum so none is forgotten.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the report model is not needed to import a data renderer (ps's JSON)
    from chrootcheck.formats.locations import Location
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
    # A regular file that SARIF, GitHub and GitLab locations point at, already checked by the
    # command (commands.options.check_anchor): relative to the current directory, or absolute.
    sarif_anchor: str | None = None
    step_summary: bool = False  # --format github: the command writes $GITHUB_STEP_SUMMARY too
    scan_seconds: float | None = None  # how long the scan took (prometheus, nagios)
    finished_at: float | None = None  # when it ended, seconds since the epoch (prometheus)
    # Where SARIF, GitHub and GitLab point each finding, keyed by (jail, in-jail path): found
    # on the host by the command before rendering (commands.locations), since renderers do no
    # I/O. None: every finding points at its jail's root folder.
    locations: Mapping[tuple[str, str], Location] | None = None


Renderer = Callable[["Report", TextIO, RenderOptions], None]


def renderer(fmt: Format) -> Renderer:
    module = importlib.import_module(_MODULES[fmt])
    render: Renderer = module.render
    return render
