"""The progress line: on a terminal only, and only once a walk has taken a while."""

from __future__ import annotations

import io
import os
import pty
import sys
import time

import pytest

from chrootcheck.commands import progress


def read_all(fd: int) -> str:
    out = b""
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")


def test_progress_shows_on_a_terminal_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    tty = os.fdopen(slave, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setenv("TERM", "xterm")
    try:
        with progress.walk_progress("scanning /jail") as update:
            assert update is not None
            update(4096)  # too early: nothing shown yet
            assert "entries" not in read_all(master)
            time.sleep(progress.SHOW_AFTER + 0.1)
            update(8192)
            time.sleep(0.3)  # rich's live display refreshes on its own thread
        shown = read_all(master)
    finally:
        tty.close()
        os.close(master)
    assert "scanning /jail: 8192 entries" in shown


def test_no_progress_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress.walk_progress("scanning /jail") as update:
        assert update is None
    assert sys.stderr.getvalue() == ""
