"""Start tests/live_helper.py (a stand-in jailed daemon) and always end it."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HELPER = Path(__file__).resolve().parent / "live_helper.py"


@contextmanager
def running(cfg: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """The helper's JSON line (pid, workers, zombie, version, libcrypto, held_fd), while it
    waits; on exit its stdin is closed, and it is killed if it does not end at once."""
    cfg = {"lifetime": 60, **cfg}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [*prefix, sys.executable, str(HELPER), json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    info: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else b""
        if not line:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"the helper did not start: {err.decode(errors='replace')}")
        info.update(json.loads(line))
        info["popen"] = proc
        yield info
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        for pid in info.get("workers", []):
            try:
                os.kill(pid, 9)  # workers of our own helper, should they outlive it
            except ProcessLookupError:
                pass


def jail_of(report: dict[str, Any], pid: int) -> dict[str, Any]:
    """The jail in `ps --format json` that holds this pid."""
    for jail in report["jails"]:
        if any(p["pid"] == pid for p in jail["processes"]):
            return jail
    raise AssertionError(f"pid {pid} is not listed: {json.dumps(report)[:2000]}")


def process_of(report: dict[str, Any], pid: int) -> dict[str, Any]:
    jail = jail_of(report, pid)
    return next(p for p in jail["processes"] if p["pid"] == pid)
