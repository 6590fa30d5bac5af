"""A library that failed the trust check, loaded only where it can do the least harm.

With consent (``--allow-jail-libcrypto``) a library a less-trusted user controls is never
loaded by a root process: a forked child first drops to an unprivileged user (the service's,
never uid or gid 0; without --user nobody), sets no_new_privs, and only then loads it. The
probe's children do this before their user namespace and chroot (``probe.child``); ``describe``
does it to learn what the library is (version, capabilities, folders) for the report and the
late-load checks, and sends that back as one ``Described`` message (``system.worker``: the
parent checks every field's type and caps the size; nothing the child sends is unpickled).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chrootcheck.jail.users import NOBODY
from chrootcheck.openssl.info import library_dirs
from chrootcheck.openssl.library import describe_loaded, load_checked
from chrootcheck.openssl.results import LibcryptoSummary
from chrootcheck.openssl.trust import (
    CheckedLibrary,
    CheckError,
    check_library,
    jail_roots,
    refuse_untrusted,
)
from chrootcheck.report.errors import ToolError
from chrootcheck.system import libc, procs, worker

DESCRIBE_TIMEOUT = 10.0  # loading and asking a library takes milliseconds


@dataclass(frozen=True)
class Described:
    """What the describing child learnt: the summary and OPENSSLDIR, ENGINESDIR, MODULESDIR."""

    summary: LibcryptoSummary
    dirs: tuple[str, str | None, str | None]


# One answer (or a Failed), a few KiB: the child runs jail code, so the parent caps it.
DESCRIBE = worker.Protocol(Described, max_line=64 << 10, max_bytes=64 << 10, max_messages=1)


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
    libc.prctl(libc.PR_SET_DUMPABLE, 1, what="prctl(PR_SET_DUMPABLE)")
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1, what="prctl(PR_SET_NO_NEW_PRIVS)")


def describe(
    checked: CheckedLibrary, timeout: float = DESCRIBE_TIMEOUT
) -> tuple[LibcryptoSummary, tuple[str, str | None, str | None]]:
    """Load ``checked`` in an unprivileged child and return its summary and folders
    (OPENSSLDIR, ENGINESDIR, MODULESDIR). Raises ToolError when it cannot be used."""
    out = worker.run(lambda channel: _child(checked, channel), DESCRIBE, timeout)
    answer = out.first(Described)
    if answer is not None and out.ok:
        return answer.summary, answer.dirs
    failed = out.first(worker.Failed)
    if failed is not None:
        raise ToolError(failed.message)
    if out.timed_out:
        raise ToolError(
            f"cannot load libcrypto: {checked.path}: it did not answer within "
            f"{timeout:g} s (loaded as an unprivileged user)"
        )
    if out.error is not None:
        died = f"unreadable answer: {out.error}"
    elif out.signal is not None:
        died = f"killed by {out.signal}"
    else:
        died = f"exit status {out.exit_status}"
    raise ToolError(
        f"cannot load libcrypto: {checked.path}: the unprivileged child loading it died ({died})"
    )


def _child(checked: CheckedLibrary, out: worker.Channel) -> int:
    try:
        drop_privileges(*unprivileged(None, None, ()))
        procs.die_with_parent()  # the credential change cleared it; the library runs next
        lc = load_checked(checked)
        answer = Described(describe_loaded(lc), library_dirs(lc))
    except ToolError as e:
        out.send(worker.Failed(e.message))
        return worker.EXIT_FAILED
    except Exception as e:
        message = f"cannot load libcrypto: {checked.path}: {type(e).__name__}: {e}"
        out.send(worker.Failed(message))
        return worker.EXIT_FAILED
    out.send(answer)
    return 0


@dataclass(frozen=True)
class PreparedLibrary:
    """A --libcrypto, checked and described once, before any stage uses it.

    Trusted: ``loaded`` is the Libcrypto loaded in this process. Consented (it failed the
    check): ``loaded`` is None; ``summary`` and ``dirs`` came from an unprivileged child."""

    checked: CheckedLibrary
    summary: LibcryptoSummary
    dirs: tuple[str, str | None, str | None]  # OPENSSLDIR, ENGINESDIR, MODULESDIR
    loaded: Any = None  # chrootcheck.openssl.library.Libcrypto (cffi is imported lazily)

    @property
    def isolated(self) -> bool:
        return self.loaded is None

    def close(self) -> None:
        if self.isolated:
            try:
                os.close(self.checked.fd)
            except OSError:
                pass


def prepare_library(path: str, jails: Iterable[str], consent: bool) -> PreparedLibrary:
    """Check ``path`` against the jails, refuse it without consent, then learn what it is: in
    this process when trusted, else in a child that has dropped privileges (the descriptor
    stays open for the probe's children: ``close()`` when done). Raises ToolError (one line)
    for every way it cannot be used."""
    try:
        checked = check_library(path, jail_roots(jails))
    except CheckError as e:
        raise ToolError(f"cannot load libcrypto: {path}: {e}") from None
    return prepare_checked(checked, consent)


def prepare_checked(checked: CheckedLibrary, consent: bool) -> PreparedLibrary:
    """``prepare_library`` after the check: refused without consent when it failed the check,
    described by an unprivileged child then, else loaded here. Closes ``checked.fd`` on every
    way out except a consented library's (the probe's children load it from there)."""
    try:
        refuse_untrusted(checked, consent)
        if checked.concern is not None:
            summary, dirs = describe(checked)
            return PreparedLibrary(checked, summary, dirs)
        lc = load_checked(checked)
    except BaseException:
        os.close(checked.fd)
        raise
    os.close(checked.fd)  # loaded: the descriptor is not needed any more
    return PreparedLibrary(checked, describe_loaded(lc), library_dirs(lc), lc)
