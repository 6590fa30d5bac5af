"""Run ``chrootcheck ARGS`` inside the test process, with the semantics of a real run.

``chrootcheck.cli.main`` is what the ``chrootcheck`` executable calls: the exit code comes from
its ``SystemExit`` (2 for usage errors, 128+N for signals), and its one error line goes to
stderr. Around it this module gives the run what a process of its own would have, and takes it
back afterwards:

- stdin, stdout and stderr: fresh streams that are not ttys, UTF-8 like the real ones (stdout
  with ``surrogateescape``, stderr with ``backslashreplace``), decoded with ``surrogateescape``
  as ``subprocess.run`` did;
- the environment: the overrides applied (``None`` removes a variable), then restored;
- a time limit: ``timeout`` seconds, after which the run is interrupted (its ``finally`` blocks
  run, so the probe's children are killed) and the test fails.

A run must leave nothing behind, and this checks it: the same signal handlers, umask, working
directory and open file descriptors as before, and no new thread or child process. The probe
forks its children from this process, which must have no other thread then (``fork`` in a
threaded process; and PR_SET_PDEATHSIG fires on the parent *thread*'s exit).
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

# The handlers a run may install (procs.interrupt_on_signals, atomic outputs) or that a
# leftover would break: all must be as they were afterwards.
WATCHED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGALRM,
    signal.SIGPIPE,
    signal.SIGCHLD,
    signal.SIGQUIT,
)


class CliTimedOut(BaseException):
    """Raised in the run when its time is up: not an ``Exception``, so that the CLI's last line
    of defence does not turn it into an exit code."""


class LeftBehind(AssertionError):
    """A run changed the test process: it would have leaked in real use too."""


def run_in_process(
    argv: list[str],
    *,
    input: str | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 60,
    beside_threads: bool = False,
) -> tuple[int, str, str]:
    """``chrootcheck ARGV`` in this process: (exit code, stdout, stderr).

    ``beside_threads``: the test runs threads of its own meanwhile (racers that change the jail
    under the scan). Then the run must fork nothing the test did not ask for: no probe."""
    from chrootcheck.cli import main

    if beside_threads:
        assert "--no-probe" in argv, "a run beside threads must not fork the probe's children"
    elif threading.active_count() != 1:
        raise LeftBehind(f"threads before the run: {threading.enumerate()}")
    before = _snapshot()
    stdin = io.TextIOWrapper(io.BytesIO((input or "").encode("utf-8", "surrogateescape")))
    out, err = io.BytesIO(), io.BytesIO()
    stdout_text, stderr_text = _text(out, "surrogateescape"), _text(err, "backslashreplace")
    code: int
    with (
        _environment(env or {}),
        _streams(stdin, stdout_text, stderr_text),
        _time_limit(timeout, argv),
    ):
        try:
            main(argv)
        except SystemExit as e:
            code = _exit_status(e.code)
        else:  # main always exits; returning would be a bug of its own
            raise AssertionError("chrootcheck.cli.main returned instead of exiting")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    stdout = out.getvalue().decode("utf-8", "surrogateescape")
    stderr = err.getvalue().decode("utf-8", "surrogateescape")
    for stream in (stdin, stdout_text, stderr_text):
        stream.detach()  # or collecting the wrapper would close the buffer under a reader
    after = _snapshot()
    if beside_threads:  # the racers open and close files of their own meanwhile
        del before["open fds"], after["open fds"]
    if after != before:
        changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        raise LeftBehind(f"chrootcheck {' '.join(argv)} left this behind: {changed}\n{stderr}")
    return code, stdout, stderr


def _exit_status(code: object) -> int:
    # As the interpreter maps sys.exit's argument to the process's status.
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1


def _text(buffer: io.BytesIO, errors: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(buffer, encoding="utf-8", errors=errors, write_through=True)


@contextmanager
def _streams(
    stdin: io.TextIOWrapper, stdout: io.TextIOWrapper, stderr: io.TextIOWrapper
) -> Iterator[None]:
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


@contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    saved = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _time_limit(seconds: float, argv: list[str]) -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise CliTimedOut(f"chrootcheck {' '.join(argv)} still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _snapshot() -> dict[str, object]:
    umask = os.umask(0)
    os.umask(umask)
    return {
        "signal handlers": {s.name: signal.getsignal(s) for s in WATCHED_SIGNALS},
        "blocked signals": signal.pthread_sigmask(signal.SIG_BLOCK, []),
        "umask": umask,
        "cwd": os.getcwd(),
        "open fds": sorted(_fds().items()),
        "threads": threading.active_count(),
        "children": sorted(_children()),
    }


def _fds() -> dict[int, str]:
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return found


def _children() -> set[int]:
    me = os.getpid()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me:
            found.add(int(name))
    return found


def run_forked_together(
    argvs: list[list[str]],
    workdir: str,
    *,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 60,
) -> list[tuple[int, str, str]]:
    """Run several ``chrootcheck ARGV`` at once, each in a real process forked from this one
    (chrootcheck already imported: no interpreter start-up), all released at the same moment.
    For the races between runs: (exit status, stdout, stderr) of each, in order."""
    import time

    from chrootcheck.cli import main

    _import_everything()  # once here, not in every child
    if threading.active_count() != 1:
        raise LeftBehind(f"threads before the fork: {threading.enumerate()}")
    gate_r, gate_w = os.pipe()
    runs: list[tuple[int, str, str]] = []
    for i, argv in enumerate(argvs):
        out, err = os.path.join(workdir, f"run{i}.out"), os.path.join(workdir, f"run{i}.err")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns into pytest
            status = 70
            try:
                os.close(gate_w)
                os.read(gate_r, 1)  # EOF when the parent closes its end: all start at once
                for key, value in (env or {}).items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                for fd, path in ((1, out), (2, err)):
                    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(target, fd)
                    os.close(target)
                sys.stdin = open(os.devnull, encoding="utf-8")
                sys.stdout = open(1, "w", encoding="utf-8", errors="surrogateescape", closefd=False)
                sys.stderr = open(
                    2, "w", encoding="utf-8", errors="backslashreplace", closefd=False
                )
                try:
                    main(argv)
                except SystemExit as e:
                    status = _exit_status(e.code)
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status)
        runs.append((pid, out, err))
    os.close(gate_r)
    os.close(gate_w)  # go
    deadline = time.monotonic() + timeout
    statuses: dict[int, int] = {}
    while len(statuses) < len(runs):
        for pid, _, _ in runs:
            if pid not in statuses:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses[pid] = os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            for pid, _, _ in runs:
                if pid not in statuses:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            raise CliTimedOut(f"concurrent runs still going after {timeout} s: {argvs}")
        time.sleep(0.005)

    def read(path: str) -> str:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()

    return [(statuses[pid], read(out), read(err)) for pid, out, err in runs]


def _import_everything() -> None:
    import importlib
    import pkgutil

    import chrootcheck

    for module in pkgutil.walk_packages(chrootcheck.__path__, "chrootcheck."):
        if module.name != "chrootcheck.__main__":
            importlib.import_module(module.name)
