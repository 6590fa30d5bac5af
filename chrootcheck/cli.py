"""The command-line entry point: a thin click layer.

Commands live in ``chrootcheck.commands.<name>`` and are imported only when called, so that
``chrootcheck --version`` and ``--help`` stay fast (no rich, no cffi at start-up).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any, NoReturn

import click

from chrootcheck import __version__
from chrootcheck.report.errors import ToolError
from chrootcheck.report.exitcodes import ExitCode, for_signal
from chrootcheck.system.procs import interrupt_on_signals

# name -> (module, one-line help shown by `chrootcheck --help` without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "scan": (
        "chrootcheck.commands.scan",
        "Inspect jails as a chrooted process sees them, then probe them.",
    ),
    "info": (
        "chrootcheck.commands.info",
        "Show what a libcrypto does for entropy, and what this host offers.",
    ),
    "fix": ("chrootcheck.commands.fix", "Create the missing entropy devices in a jail, safely."),
    "demo": (
        "chrootcheck.commands.demo",
        "Build a throw-away jail, scan it, fix it, scan it again.",
    ),
    "decode": ("chrootcheck.commands.decode", "Find and explain the OpenSSL errors in log lines."),
    "discover": (
        "chrootcheck.commands.discover",
        "List the chroot jails that this host's daemons use.",
    ),
    "ps": (
        "chrootcheck.commands.ps",
        "List the processes running in jails: libraries, random devices, seccomp.",
    ),
}


class OutputClosed(Exception):
    """stdout was closed under us (``| head``). Not an OSError: click turns EPIPE into exit 1,
    which would read as "findings found"."""


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as e:
            raise OutputClosed() from e

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][1]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


EPILOG = """\b
Exit codes: 0 no finding at or above --fail-on, 1 findings at or above it,
2 chrootcheck could not do its job (see README.md, "Exit codes").
"""


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, "-V", "--version", prog_name="chrootcheck")
def cli() -> None:
    """Find, explain and fix the entropy failures OpenSSL suffers inside chroot jails."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and map every way out to a documented exit code."""
    debug = bool(os.environ.get("CHROOTCHECK_DEBUG"))
    try:
        # SIGTERM and SIGHUP clean up exactly as Ctrl-C does, for every command.
        with interrupt_on_signals():
            rv: Any = cli.main(args=argv, prog_name="chrootcheck", standalone_mode=False)
    except ToolError as e:
        _error(e.message, e.hint)
        sys.exit(ExitCode.TOOL_ERROR)
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__, KeyboardInterrupt):  # click wraps Ctrl-C and our signals
            _interrupted(e.__cause__)
        click.echo("chrootcheck: aborted", err=True)
        sys.exit(ExitCode.TOOL_ERROR)
    except click.UsageError as e:
        # One line, like every other tool error; exit 2, never 1 (click's own default for
        # ClickException would look exactly like "findings found").
        command = e.ctx.command_path if e.ctx is not None else "chrootcheck"
        _error(e.format_message(), f"see '{command} --help'")
        sys.exit(ExitCode.TOOL_ERROR)
    except click.ClickException as e:
        _error(e.format_message(), None)
        sys.exit(ExitCode.TOOL_ERROR)
    except (BrokenPipeError, OutputClosed):
        # `chrootcheck scan ... | head`: not our failure, but the output is incomplete.
        _silence_stdout()
        sys.exit(ExitCode.TOOL_ERROR)
    except KeyboardInterrupt as e:
        _interrupted(e)
    except Exception as e:  # the last line of defence: one line, exit 2
        if debug:
            raise
        _error(
            f"internal error: {type(e).__name__}: {e}", "set CHROOTCHECK_DEBUG=1 for a traceback"
        )
        sys.exit(ExitCode.TOOL_ERROR)
    # standalone_mode=False returns the command's return value; commands return an exit code.
    code = rv if isinstance(rv, int) else ExitCode.OK
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(ExitCode.TOOL_ERROR)
    sys.exit(int(code))


def _interrupted(e: KeyboardInterrupt) -> NoReturn:
    # The clean-up already ran (finally blocks); exit as a shell expects: 128 + the signal.
    signum = getattr(e, "signum", signal.SIGINT)
    try:
        click.echo(f"chrootcheck: interrupted ({signal.Signals(signum).name})", err=True)
    except OSError:
        pass  # SIGHUP: the terminal may be gone; the exit status still tells
    sys.exit(for_signal(signum))


def _error(message: str, hint: str | None) -> None:
    # The one ``chrootcheck: error:`` line (formats.common.error_line: safe text, one line);
    # commands that go on after an error (fix, scan's tool errors, nagios) print the same.
    from chrootcheck.formats.common import error_line

    click.echo(error_line(" ".join(message.split("\n")), hint), err=True)


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
