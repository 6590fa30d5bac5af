"""``chrootcheck ps [--pid PID]... [--read-seccomp] [--format text|json]``"""

from __future__ import annotations

import click

from chrootcheck.commands.format_option import text_or_json_option
from chrootcheck.report.exitcodes import for_listing


@click.command("ps")
@click.option(
    "--pid",
    "pids",
    type=click.IntRange(min=1),
    multiple=True,
    metavar="PID",
    help="Only this process (repeatable), jailed or not; one that cannot be read exits 2.",
)
@click.option(
    "--read-seccomp",
    is_flag=True,
    help="Root: read each filtered process's seccomp filters with ptrace (it is stopped for "
    "well under a millisecond) and replay them in a child to see what getrandom, shmget, "
    "open(/dev/urandom) ... return under them.",
)
@text_or_json_option()
def command(pids: tuple[int, ...], read_seccomp: bool, fmt: str) -> int:
    """List the processes running in chroot jails and containers, grouped by jail.

    For each: parent and children, user, start time, the mount namespace, the libcrypto and
    libssl it has mapped (version read from the file, never loaded; replaced or deleted since
    it started), the random devices it holds open, and its seccomp state. Read from /proc only:
    nothing is written to, signalled or traced, unless --read-seccomp says so.
    """
    from chrootcheck.live.ps import gather

    report = gather(pids or None, read_seccomp=read_seccomp)
    if fmt == "json":
        import json

        from chrootcheck.formats.live_json import ps_data

        # Compact, as scan's JSON: indent= would fall back to json's pure-Python encoder, which
        # took half of the run over 1,000 processes. Pipe to `jq .` to read it.
        click.echo(json.dumps(ps_data(report)))
    else:
        import os
        import sys

        from chrootcheck.formats.common import rich_console as make_console
        from chrootcheck.formats.live_text import ps_renderables

        # Off a terminal rich wraps at 80 columns; like scan, 120 unless COLUMNS says otherwise.
        wide = "COLUMNS" not in os.environ and not sys.stdout.isatty()
        console = make_console(soft_wrap=False, width=120 if wide else None)
        for renderable in ps_renderables(report):
            console.print(renderable)
    return for_listing()
