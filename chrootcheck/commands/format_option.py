"""``--format/-f text|json``: click alone, so that a data command (``ps``) starts without the
report model, the renderers and the user parser that ``commands.options`` brings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def text_or_json_option(help: str = "Output format.") -> Callable[[Callable[..., Any]], Any]:
    """``--format/-f text|json`` (into ``fmt``), for the commands that print data, not a report."""
    return click.option(
        "--format",
        "-f",
        "fmt",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help=help,
    )
