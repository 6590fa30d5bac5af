"""A progress line on stderr for long walks, only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SHOW_AFTER = 0.5  # seconds: short walks stay silent


@contextmanager
def walk_progress(label: str) -> Iterator[Callable[[int], None] | None]:
    if not sys.stderr.isatty():
        yield None
        return
    from chrootcheck.formats.common import printable

    label = printable(label)  # the jail's path, on a terminal
    started = time.monotonic()
    status: Any = None

    def update(entries: int) -> None:
        nonlocal status
        if status is None:
            if time.monotonic() - started < SHOW_AFTER:
                return
            from rich.console import Console

            status = Console(stderr=True, markup=False, highlight=False).status("")
            status.start()
        from rich.text import Text

        # A Text, not a str: rich's spinner parses a str as markup whatever the console says.
        status.update(Text(f"{label}: {entries} entries"))

    try:
        yield update
    finally:
        if status is not None:
            status.stop()
