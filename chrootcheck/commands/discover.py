"""``chrootcheck discover``: list the chroot jails this host's daemons are configured to use."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from chrootcheck.commands.options import text_or_json_option
from chrootcheck.report.errors import ToolError
from chrootcheck.report.exitcodes import for_discover

if TYPE_CHECKING:
    from chrootcheck.discover import DiscoveredJail

# Bumped like the scan report's: MAJOR on a breaking change, MINOR when fields are added.
# 1.1: jails[].resolved; 1.2: jails[].unit; 1.3: jails[].profile; 1.4: jails[].engine_key (one
# line, its PIN hidden)
DISCOVER_SCHEMA_VERSION = "1.4"


@click.command("discover")
@click.option(
    "--root",
    default="/",
    show_default=True,
    metavar="DIR",
    help="Read the daemons' configuration under DIR instead of /.",
)
@text_or_json_option()
def command(root: str, fmt: str) -> int:
    """List the chroot jails configured on this host, from each daemon's own configuration.

    Reads haproxy, unbound, BIND, Postfix, OpenSSH, stunnel and systemd units. Scan them all with
    chrootcheck scan --discover.
    """
    from chrootcheck.discover import discover_with_notes
    from chrootcheck.formats.common import notice_data, printable, to_data

    if not os.path.isdir(root):
        raise ToolError(f"--root {root!r} is not a folder")
    jails, notices = discover_with_notes(root)
    if fmt == "json":
        data = {
            "schema_version": DISCOVER_SCHEMA_VERSION,
            "root": root,
            "jails": [
                {**to_data(replace(j, engine_key=None)), "engine_key": _key_line(j)} for j in jails
            ],
            "notices": [notice_data(n) for n in notices],
        }
        json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        _table(jails)
    # Notes (unreadable files ...) go to stderr: stdout carries only the data.
    for n in notices:
        click.echo(f"chrootcheck: {n.kind.value}: {printable(n.message)}", err=True)
    return for_discover(sum(1 for n in notices if n.kind.value == "error"))


def _key_line(j: DiscoveredJail) -> str | None:
    # Never the EngineKey itself: its control commands may hold a PIN.
    return j.engine_key.describe() if j.engine_key is not None else None


def _table(jails: list[DiscoveredJail]) -> None:
    from rich.table import Table

    from chrootcheck.formats.common import printable, rich_console

    console = rich_console(soft_wrap=False)
    if not jails:
        console.print("No chroot jail found in the daemons' configuration.")
        return
    table = Table(title="Configured chroot jails")
    for name in ("jail", "daemon", "profile", "user", "source", "note"):
        # Paths are never cut: a truncated path cannot be copied into a command.
        table.add_column(name, overflow="fold")
    for j in jails:
        state = "" if j.exists else " (missing)"
        table.add_row(
            printable(j.path) + state,
            printable(j.daemon),
            printable(j.profile or "-"),
            printable(j.user or "-"),
            printable(f"{j.source_file}:{j.line}"),
            printable(j.note or ""),
        )
    console.print(table)
