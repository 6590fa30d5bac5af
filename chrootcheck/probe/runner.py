"""Fork one child per scenario, collect their JSON lines, kill the ones that hang.

The children run in parallel: the whole probe takes as long as the slowest scenario. None
outlives the probe: an exception (Ctrl-C, SIGTERM, SIGHUP: ``procs.interrupt_on_signals``)
kills and reaps them, and each dies with this process if it is killed outright
(``procs.fork_child``: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from chrootcheck.openssl.library import Libcrypto
from chrootcheck.probe.child import ChildSpec, run_child
from chrootcheck.system import procs


@dataclass
class ChildOutcome:
    """What the parent learned about one child: its events and how it ended."""

    spec: ChildSpec
    events: list[dict[str, Any]] = field(default_factory=list)
    exit_status: int | None = None
    signal: str | None = None
    timed_out: bool = False
    garbage: bool = False  # a line that was not JSON
    seconds: float = 0.0


@dataclass
class _Running:
    pid: int
    fd: int
    outcome: ChildOutcome
    started: float
    buffer: bytes = b""
    eof: bool = False


def run_children(
    lc: Libcrypto | None, specs: list[ChildSpec], timeout: float
) -> list[ChildOutcome]:
    running: list[_Running] = []
    # Forked, collected and reaped in this one call and thread (PDEATHSIG follows the thread).
    with procs.interrupt_on_signals():
        try:
            for spec in specs:
                with procs.signals_deferred():  # a child forked is a child recorded
                    running.append(_start(lc, spec))
            _collect(running, timeout)
        finally:
            # Whatever happened above (even an interruption), no child outlives the probe.
            for r in running:
                if not r.eof:  # interrupted before it finished: do not wait for it
                    _kill(r.pid)
                _reap(r)
    return [r.outcome for r in running]


def _start(lc: Libcrypto | None, spec: ChildSpec) -> _Running:
    rfd, wfd = os.pipe()
    pid = procs.fork_child()
    if pid == 0:  # the child
        os.close(rfd)
        run_child(lc, spec, wfd)
    os.close(wfd)
    os.set_blocking(rfd, False)
    return _Running(pid, rfd, ChildOutcome(spec), time.monotonic())


def _collect(running: list[_Running], timeout: float) -> None:
    with selectors.DefaultSelector() as sel:
        for r in running:
            sel.register(r.fd, selectors.EVENT_READ, r)
        while any(not r.eof for r in running):
            now = time.monotonic()
            for r in running:
                if not r.eof and now - r.started > timeout:
                    r.outcome.timed_out = True
                    _kill(r.pid)
            wait = min((r.started + timeout - now for r in running if not r.eof), default=0.0)
            for key, _ in sel.select(timeout=max(0.01, wait)):
                r = key.data
                try:
                    chunk = os.read(r.fd, 65536)
                except BlockingIOError:
                    continue
                if chunk:
                    r.buffer += chunk
                    _parse_lines(r)
                else:
                    r.eof = True
                    sel.unregister(r.fd)
                    _parse_lines(r, final=True)


def _parse_lines(r: _Running, final: bool = False) -> None:
    *lines, r.buffer = r.buffer.split(b"\n")
    if final and r.buffer:
        lines.append(r.buffer)
        r.buffer = b""
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            r.outcome.garbage = True
            continue
        if isinstance(event, dict):
            r.outcome.events.append(event)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap(r: _Running) -> None:
    # After EOF the child is exiting; on cleanup paths it may not be: give it a moment, then
    # SIGKILL. Either way it is waited for, so no zombie and no stray process remain.
    deadline = time.monotonic() + 1.0
    while True:
        pid, status = os.waitpid(r.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            _kill(r.pid)
            _, status = os.waitpid(r.pid, 0)
            break
        time.sleep(0.001)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            r.outcome.signal = signal.Signals(sig).name
        except ValueError:
            r.outcome.signal = f"signal {sig}"
    elif os.WIFEXITED(status):
        r.outcome.exit_status = os.WEXITSTATUS(status)
    r.outcome.seconds = time.monotonic() - r.started
    try:
        os.close(r.fd)
    except OSError:
        pass
