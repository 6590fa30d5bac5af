"""The one exception that turns into a one-line message and exit code 2."""

from __future__ import annotations


class ToolError(Exception):
    """chrootcheck could not do its job (missing jail, bad option, unwritable output ...).

    The CLI prints ``chrootcheck: error: <message>`` on stderr and exits 2; never a traceback.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
