"""A lock shared by every test process of a run (pytest-xdist's workers are processes).

Used where two workers would otherwise fetch or install the same thing at once: apt-get takes
dpkg's lock and fails instead of waiting, and two pip downloads of one wheel race in the cache.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def held(name: str) -> Iterator[None]:
    """Hold the run-wide lock ``name`` (a flock on a file in the temporary folder)."""
    path = os.path.join(tempfile.gettempdir(), f"chrootcheck-tests-{name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock
