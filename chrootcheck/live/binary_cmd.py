"""``chrootcheck info --binary PATH``: kept here so that commands/info.py only dispatches."""

from __future__ import annotations

import json

import click

from chrootcheck.report.errors import ToolError
from chrootcheck.report.exitcodes import ExitCode


def show_binary(binary: str, libcrypto: str | None, fmt: str) -> int:
    from chrootcheck.live.elfdeps import ElfError, resolve_binary

    if libcrypto is not None:
        raise ToolError("--binary and --libcrypto exclude each other")
    try:
        result = resolve_binary(binary)
    except ElfError as e:
        raise ToolError(str(e)) from None
    if fmt == "json":
        from chrootcheck.formats.common import to_data

        data = to_data(result)
        data["summary"] = result.summary
        click.echo(json.dumps(data, indent=2))
        return ExitCode.OK
    from rich.console import Console

    from chrootcheck.formats.live_text import binary_renderables

    console = Console(markup=False, highlight=False, emoji=False, soft_wrap=False)
    for renderable in binary_renderables(result):
        console.print(renderable)
    return ExitCode.OK
