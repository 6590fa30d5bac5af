"""``chrootcheck scan JAIL...``"""

from __future__ import annotations

import os

import click

from chrootcheck import __version__
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
              help="text (default) or json; repeat for several outputs, FORMAT=FILE writes a file.")
@click.option("-o", "--output", metavar="FILE", help="Write the report to FILE instead of stdout.")
@severity_option
@click.option("--user", "user_spec", metavar="NAME|UID[:GID]",
              help="Check that this user (the service's) can open the devices.")
@click.option("--cross-mounts", is_flag=True,
              help="Walk into file systems mounted inside the jail too.")
def command(
    jails: tuple[str, ...],
    formats: tuple[str, ...],
    output: str | None,
    fail_on: str,
    user_spec: str | None,
    cross_mounts: bool,
) -> int:
    """Inspect each JAIL as a process chrooted into it would see it.

    Reports a missing or fake /dev/urandom and /dev/random, nodev mounts, permissions,
    EGD sockets, and the other nodes and libcrypto copies in the jail.
    """
    from chrootcheck.inspector import ScanOptions, inspect_jail
    from chrootcheck.progress import walk_progress

    outputs = parse_outputs(formats, output)
    user = parse_user_option(user_spec)
    reports = []
    for jail in jails:
        path = os.path.abspath(jail)
        with walk_progress(f"scanning {path}") as progress:
            reports.append(inspect_jail(path, ScanOptions(user=user, cross_mounts=cross_mounts,
                                                          progress=progress)))
    report = Report(jails=reports, fail_on=Severity(fail_on.lower()), tool_version=__version__)
    write_outputs(report, outputs, RenderOptions())
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
