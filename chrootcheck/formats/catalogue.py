"""The whole check catalogue, for the formats that list every check (SARIF rules, JUnit cases)
and for docs/checks.md.

``chrootcheck.report.catalogue`` holds the static checks; other modules add theirs with
``checks.register()`` when imported (the probe's CC2xx). A scan that did not run the probe
never imports it, yet SARIF must still declare CC200 so that code scanning can close its
alerts: so these modules are imported here, when they exist.
"""

from __future__ import annotations

import importlib

from chrootcheck.report import catalogue as checks

# Modules that register checks when imported.
REGISTRARS = ("chrootcheck.probe.analysis", "chrootcheck.lateload.check")


def all_checks() -> dict[str, checks.Check]:
    for name in REGISTRARS:
        importlib.import_module(name)
    return dict(checks.CHECKS)
