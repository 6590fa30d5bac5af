"""Small helpers the probe's tests share."""

from __future__ import annotations

from chrootcheck.probe import ProbeReport, Verdict


def verdicts(report: ProbeReport) -> dict[str, Verdict]:
    """Each scenario's verdict, by name."""
    return {s.name: s.verdict for s in report.scenarios}
