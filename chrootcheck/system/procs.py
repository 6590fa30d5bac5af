"""Processes that die with chrootcheck, and signals that clean up the way Ctrl-C does.

chrootcheck runs as root and forks workers (the probe's children, chrooted into a jail a
less-trusted user controls; the walker's helper). None of them may outlive it, whatever ends it:

- ``fork_child`` forks a worker that gets ``PR_SET_PDEATHSIG(SIGKILL)`` at once, then checks
  ``getppid()`` against the parent it was forked from, which closes the race of a parent that
  died before the prctl. The kernel clears the setting when the child's credentials change
  (``setuid``/``setgid`` to the service's user): a child calls ``die_with_parent`` again after
  each change. PDEATHSIG fires when the *thread* that forked exits, so a worker must be forked
  by the thread that waits for it (both callers fork and reap in the same call).
- ``interrupt_on_signals`` turns SIGINT, SIGTERM and SIGHUP into ``Interrupted``, a
  ``KeyboardInterrupt``: every clean-up that Ctrl-C runs (``finally`` blocks, the probe's kill
  and reap, the fixer's undo, the demo's unmount) runs for the other two as well. Only the first
  signal interrupts; the ones that follow are ignored so that they cannot cut a clean-up short
  (SIGKILL still ends everything). The exit status is ``128 + signo`` (``exitcodes.for_signal``).
- ``signals_deferred`` blocks those signals over a few system calls that must not be separated
  (make a placeholder and note it; mount and note it): the signal is handled right after.

Importing this module does not load cffi (``chrootcheck --version`` stays fast).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from chrootcheck.system import libc

CLEANUP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# A worker whose parent is already gone exits with this status; nobody is left to read it.
EXIT_ORPHANED = 125

_parent: int | None = None  # in a worker: the pid it was forked from


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def fork_child() -> int:
    """``os.fork()`` for a worker that must not outlive this process (see the module doc).

    Returns the child's pid in the parent and 0 in the child, like ``os.fork``. The child is
    already set to die with its parent when this returns, with SIGINT, SIGTERM and SIGHUP at
    their defaults. A caller that must record the pid before any interruption wraps the call
    and the record in ``signals_deferred``."""
    libc.load()  # cffi only when a worker is forked; before the fork: the child opens nothing
    parent = os.getpid()
    # Blocked across the fork: until its own handlers are reset, a signal in the child would
    # raise our Interrupted there and run the parent's clean-up code in the wrong process.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, CLEANUP_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    if pid == 0:
        global _parent
        _parent = parent
        _state.installed = False
        for s in CLEANUP_SIGNALS:  # a worker just dies of them; its parent cleans up
            signal.signal(s, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set(old) - set(CLEANUP_SIGNALS))
        die_with_parent()
        return 0
    signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return pid


def die_with_parent() -> None:
    """In a worker made by ``fork_child``: (re)arm SIGKILL on the parent's death, and exit at
    once if the parent is already gone. Call it again after every credential change. Safe
    after a chroot (libc is already loaded). Does nothing in a process not made that way."""
    if _parent is None:
        return
    try:
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        os._exit(EXIT_ORPHANED)  # cannot be tied to the parent: do not run at all
    if os.getppid() != _parent:
        os._exit(EXIT_ORPHANED)  # the parent died before the prctl: it would never fire


class _State:
    installed = False
    fired: int | None = None


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.fired is not None:
        return  # a clean-up is running: a second signal must not cut it short
    _state.fired = signum
    raise Interrupted(signum)


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise ``Interrupted`` inside the block (the first one only);
    the previous handlers are restored after it. Nested uses share the outer one; outside the
    main thread (where Python cannot set handlers) it does nothing."""
    if _state.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _handler) for s in CLEANUP_SIGNALS}
    _state.installed, _state.fired = True, None
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _state.installed, _state.fired = False, None


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back inside the block (for this thread): a signal that
    arrives meanwhile is handled as soon as the block ends, so the steps inside it are never
    separated. Keep the block short and free of anything that can block."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, CLEANUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
