"""A library that failed the trust check, loaded only where it can do the least harm.

With consent (``--allow-jail-libcrypto``) a library a less-trusted user controls is never
loaded by a root process: a forked child first drops to an unprivileged user (the service's,
never uid or gid 0; without --user nobody), sets no_new_privs, and only then loads it. The
probe's children do this before their user namespace and chroot (``probe.child``); ``describe``
does it to learn what the library is (version, capabilities, folders) for the report and the
late-load checks, and sends that back as one JSON line on a pipe.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import json
import os
import resource
import select
import signal
import time
from typing import Any, NoReturn

from chrootcheck.jail.users import NOBODY
from chrootcheck.openssl import cdefs
from chrootcheck.openssl.info import library_dirs
from chrootcheck.openssl.library import describe_loaded, load_checked
from chrootcheck.openssl.results import LibcryptoSummary
from chrootcheck.openssl.trust import CheckedLibrary
from chrootcheck.probe import sandbox
from chrootcheck.report.errors import ToolError
from chrootcheck.system import procs

DESCRIBE_TIMEOUT = 10.0  # loading and asking a library takes milliseconds


def unprivileged(
    uid: int | None, gid: int | None, groups: tuple[int, ...]
) -> tuple[int, int, tuple[int, ...]]:
    """The ids a consented library runs as: the service's, with root's replaced by nobody."""
    if not uid:
        uid = NOBODY
    if not gid:
        gid = NOBODY
    return uid, gid, tuple(g for g in groups if g != 0)


def drop_privileges(uid: int, gid: int, groups: tuple[int, ...]) -> None:
    """As root: become uid/gid for good (real, effective and saved ids), no_new_privs. Without
    root there is nothing to drop. Raises OSError if root remains."""
    if os.geteuid() == 0 or os.getuid() == 0:
        os.setgroups(list(groups))
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if 0 in os.getresuid() or 0 in os.getresgid():
            raise PermissionError("could not leave root")
    # Keep /proc/self ours after the uid change (the user namespace's uid_map needs it).
    if int(sandbox.libc().prctl(sandbox.PR_SET_DUMPABLE, 1, 0, 0, 0)) < 0:
        raise OSError("prctl(PR_SET_DUMPABLE) failed")
    if int(sandbox.libc().prctl(cdefs.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) < 0:
        raise OSError("prctl(PR_SET_NO_NEW_PRIVS) failed")


def describe(
    checked: CheckedLibrary, timeout: float = DESCRIBE_TIMEOUT
) -> tuple[LibcryptoSummary, tuple[str, str | None, str | None]]:
    """Load ``checked`` in an unprivileged child and return its summary and folders
    (OPENSSLDIR, ENGINESDIR, MODULESDIR). Raises ToolError when it cannot be used."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    with procs.signals_deferred():  # the pid is recorded before any clean-up can run
        pid = procs.fork_child()
    if pid == 0:
        os.close(rfd)
        _child(checked, wfd)
    os.close(wfd)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([rfd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise ToolError(
                    f"cannot load libcrypto: {checked.path}: it did not answer within "
                    f"{timeout:g} s (loaded as an unprivileged user)"
                )
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(rfd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
    try:
        answer = json.loads(data)
    except ValueError:
        died = (
            f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.waitstatus_to_exitcode(status)}"
        )
        raise ToolError(
            f"cannot load libcrypto: {checked.path}: the unprivileged child loading it "
            f"died ({died})"
        ) from None
    if "error" in answer:
        raise ToolError(str(answer["error"]))
    dirs = answer["dirs"]
    return LibcryptoSummary(**answer["summary"]), (dirs[0], dirs[1], dirs[2])


def _child(checked: CheckedLibrary, wfd: int) -> NoReturn:
    answer: dict[str, Any]
    code = 3
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        faulthandler.disable()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
        drop_privileges(*unprivileged(None, None, ()))
        procs.die_with_parent()  # the credential change cleared it; the library runs next
        lc = load_checked(checked)
        answer = {
            "summary": dataclasses.asdict(describe_loaded(lc)),
            "dirs": list(library_dirs(lc)),
        }
        code = 0
    except ToolError as e:
        answer = {"error": e.message}
    except BaseException as e:
        answer = {"error": f"cannot load libcrypto: {checked.path}: {type(e).__name__}: {e}"}
    try:
        data = json.dumps(answer).encode()
        while data:
            data = data[os.write(wfd, data) :]
    finally:
        os._exit(code)
