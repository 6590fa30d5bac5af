"""One jail's context: what every stage of a scan reads, decided once.

The jail's root is opened once (``jail.fs.open_jail``: an ``O_PATH`` descriptor; nothing inside
the jail is followed to reach it), the service user is resolved once (``--user``, or the
daemon's user from ``--discover``), and the libcrypto the late-load checks follow and the probe
runs is chosen once for the whole scan (``probe.isolated.prepare_library`` for ``--libcrypto``).
The descriptor is closed when the ``with`` block ends, also on Ctrl-C, SIGTERM and SIGHUP (the
CLI turns them into KeyboardInterrupt, so ``finally`` runs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chrootcheck.jail import fs as jailfs
from chrootcheck.jail.users import ServiceUser

if TYPE_CHECKING:
    from chrootcheck.lateload.check import OpenSSLPaths
    from chrootcheck.openssl.hsm import DaemonLoads, EngineKey
    from chrootcheck.probe.isolated import PreparedLibrary
    from chrootcheck.probe.scenarios import Running
    from chrootcheck.sandbox.model import Sandbox


@dataclass(frozen=True)
class JailContext:
    path: str  # the jail's host path, absolute
    root_fd: int  # O_PATH descriptor on the jail's root, open for the whole scan of the jail
    user: ServiceUser | None  # the service's user; None: not known (the probe uses nobody)
    library: PreparedLibrary | None  # the --libcrypto of the scan, checked and loaded once
    openssl_paths: Callable[[], OpenSSLPaths]  # its OPENSSLDIR ...: asked once per scan
    env: Mapping[str, str]  # the application's environment (OPENSSL_CONF ...)
    provides_devices: bool = False  # systemd PrivateDevices=yes: the unit brings its own /dev
    sandbox: Sandbox | None = None  # the service's unit or seccomp profile, when known
    daemon: str | None = None  # its daemon profile, "NAME:MODE" (discover), for the prediction
    # The key the daemon loads through an engine before its chroot (its config, or --key).
    engine_key: EngineKey | None = None
    loads: DaemonLoads | None = None  # the engines and providers its config loads (haproxy)
    running: Running | None = None  # scan --pid/--running: the as-running scenario's process


@contextmanager
def open_context(
    path: str,
    user: ServiceUser | None,
    library: PreparedLibrary | None,
    openssl_paths: Callable[[], OpenSSLPaths],
    env: Mapping[str, str],
    provides_devices: bool = False,
    sandbox: Sandbox | None = None,
    daemon: str | None = None,
    engine_key: EngineKey | None = None,
    loads: DaemonLoads | None = None,
    running: Running | None = None,
    opened: int | None = None,
) -> Iterator[JailContext]:
    """Raises ``jail.fs.JailOpenError`` when the jail cannot be opened. ``opened``: the root
    opened already (scan --pid opens /proc/PID/root right after listing): a duplicate of it."""
    path = os.path.abspath(path)
    root_fd = jailfs.open_jail(path) if opened is None else os.dup(opened)
    try:
        yield JailContext(
            path,
            root_fd,
            user,
            library,
            openssl_paths,
            env,
            provides_devices,
            sandbox,
            daemon,
            engine_key,
            loads,
            running,
        )
    finally:
        os.close(root_fd)
