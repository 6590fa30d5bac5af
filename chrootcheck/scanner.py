"""The scan pipeline, one call for every command that scans (scan, fix's re-scan, demo)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

from chrootcheck import __version__
from chrootcheck.inspector import ScanOptions, inspect_jail
from chrootcheck.model import JailReport, Report, Severity

ProgressFactory = Callable[[str], AbstractContextManager[Callable[[int], None] | None]]


@dataclass(frozen=True)
class ScanRequest:
    inspect: ScanOptions = ScanOptions()
    fail_on: Severity = Severity.ERROR


def scan(jails: Sequence[str], request: ScanRequest, progress: ProgressFactory | None = None) -> Report:
    reports: list[JailReport] = []
    for jail in jails:
        path = os.path.abspath(jail)
        ctx = progress(f"scanning {path}") if progress else nullcontext(None)
        with ctx as callback:
            reports.append(inspect_jail(path, replace(request.inspect, progress=callback)))
    return Report(jails=reports, fail_on=request.fail_on, tool_version=__version__)
