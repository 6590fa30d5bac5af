"""The monitoring-plugin convention for ``chrootcheck scan --format nagios``.

Nagios, Icinga and NRPE read a plugin's exit code as its state: 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN. chrootcheck's own codes (0, 1, 2 = tool error) would turn every tool error into a
CRITICAL alert, so when the scan is asked for the nagios format, every way it can fail (a bad
option that click refuses while parsing, a tool error, an internal error, an interruption)
prints ``CHROOTCHECK UNKNOWN - <why>`` on stdout, the usual ``chrootcheck: error: ...`` line
on stderr, and exits 3. The scan's own result is mapped by ``exitcodes.for_plugin``.

Whether the plugin convention applies is read from the command's raw arguments before click
parses them (a usage error stops the parse half-way): ``--format nagios``, ``--format=nagios``,
``-f nagios``, ``-fnagios``, with or without ``=FILE``. Errors of the ``chrootcheck`` group
itself (an unknown command) come before the scan command and keep exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import click

from chrootcheck.report.errors import ToolError
from chrootcheck.report.exitcodes import PluginState

_META_KEY = "chrootcheck.plugin"


def wants_plugin(args: Sequence[str]) -> bool:
    it = iter(args)
    for arg in it:
        if arg == "--":
            break
        if arg in ("--format", "-f"):
            value = next(it, "")
        elif arg.startswith("--format="):
            value = arg.removeprefix("--format=")
        elif arg.startswith("-f") and not arg.startswith("--"):
            value = arg[2:]
        else:
            continue
        if value.partition("=")[0].strip().lower() == "nagios":
            return True
    return False


def _unknown(message: str, hint: str | None) -> click.exceptions.Exit:
    from chrootcheck.formats.common import error_line
    from chrootcheck.formats.nagios_format import status_line, text

    message = " ".join(message.split("\n"))
    click.echo(status_line(PluginState.UNKNOWN, text(message)))
    click.echo(error_line(message, hint), err=True)
    return click.exceptions.Exit(int(PluginState.UNKNOWN))


class PluginAwareCommand(click.Command):
    """A click command that follows the plugin convention when asked for ``--format nagios``."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        plugin = wants_plugin(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            if not plugin:
                raise
            command = e.ctx.command_path if e.ctx is not None else "chrootcheck scan"
            raise _unknown(e.format_message(), f"see '{command} --help'") from None
        ctx.meta[_META_KEY] = plugin
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        if not ctx.meta.get(_META_KEY):
            return super().invoke(ctx)
        try:
            return super().invoke(ctx)
        except ToolError as e:
            raise _unknown(e.message, e.hint) from None
        except click.exceptions.Exit:
            raise
        except click.ClickException as e:
            raise _unknown(e.format_message(), None) from None
        except KeyboardInterrupt:
            raise _unknown("interrupted", None) from None
        except Exception as e:
            if os.environ.get("CHROOTCHECK_DEBUG"):
                raise
            raise _unknown(
                f"internal error: {type(e).__name__}: {e}",
                "set CHROOTCHECK_DEBUG=1 for a traceback",
            ) from None
