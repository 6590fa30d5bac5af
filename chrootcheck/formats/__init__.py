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

from chrootcheck.model import Report


class Format(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    GITHUB = "github"
    GITLAB = "gitlab"
    JUNIT = "junit"


_MODULES: dict[Format, str] = {f: f"chrootcheck.formats.{f.value}_format" for f in Format}


@dataclass(frozen=True)
class RenderOptions:
    color: bool = False  # only the text format uses colour, and only on a terminal
    width: int | None = None
    sarif_anchor: str | None = None  # a regular file that SARIF locations may point at
    step_summary: str | None = None  # $GITHUB_STEP_SUMMARY for --format github


Renderer = Callable[[Report, TextIO, RenderOptions], None]


def renderer(fmt: Format) -> Renderer:
    module = importlib.import_module(_MODULES[fmt])
    render: Renderer = module.render
    return render
