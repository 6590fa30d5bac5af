"""``chrootcheck scan JAIL...``"""

from __future__ import annotations

import os

import click

from chrootcheck.commands.options import (
    parse_outputs,
    parse_user_option,
    severity_option,
    write_outputs,
)
from chrootcheck.exitcodes import ExitCode, for_report
from chrootcheck.formats import RenderOptions
from chrootcheck.model import Report, Severity


@click.command("scan")
@click.argument("jails", nargs=-1, required=True, metavar="JAIL...")
@click.option("--format", "-f", "formats", multiple=True, metavar="FORMAT[=FILE]",
              help="text (default), json, sarif, github, gitlab or junit; repeat for several "
                   "outputs, FORMAT=FILE writes a file.")
@click.option("-o", "--output", metavar="FILE", help="Write the report to FILE instead of stdout.")
@severity_option
@click.option("--user", "user_spec", metavar="NAME|UID[:GID]",
              help="Check that this user (the service's) can open the devices.")
@click.option("--cross-mounts", is_flag=True,
              help="Walk into file systems mounted inside the jail too.")
@click.option("--sarif-anchor", metavar="FILE",
              help="A regular file that SARIF results point at (devices never are).")
def command(
    jails: tuple[str, ...],
    formats: tuple[str, ...],
    output: str | None,
    fail_on: str,
    user_spec: str | None,
    cross_mounts: bool,
    sarif_anchor: str | None,
) -> int:
    """Inspect each JAIL as a process chrooted into it would see it.

    Reports a missing or fake /dev/urandom and /dev/random, nodev mounts, permissions,
    EGD sockets, and the other nodes and libcrypto copies in the jail.
    """
    from chrootcheck.inspector import ScanOptions
    from chrootcheck.progress import walk_progress
    from chrootcheck.scanner import ScanRequest, scan

    outputs = parse_outputs(formats, output)
    user = parse_user_option(user_spec)
    request = ScanRequest(inspect=ScanOptions(user=user, cross_mounts=cross_mounts),
                          fail_on=Severity(fail_on.lower()))
    report = scan(jails, request, progress=walk_progress)
    write_outputs(report, outputs, RenderOptions(
        sarif_anchor=sarif_anchor, step_summary=os.environ.get("GITHUB_STEP_SUMMARY") or None))
    _echo_errors(report)
    return for_report(report)


def _echo_errors(report: Report) -> None:
    # Tool errors also go to stderr as one line each, whatever the format on stdout.
    from chrootcheck.formats.common import printable
    from chrootcheck.model import NoticeKind

    for jail in report.jails:
        for n in jail.notices:
            if n.kind is NoticeKind.ERROR:
                click.echo(f"chrootcheck: error: {printable(n.message)}", err=True)


_ = ExitCode  # re-exported for readers: scan returns one of these
