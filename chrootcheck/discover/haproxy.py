"""haproxy: ``chroot`` and ``user``/``uid`` in the ``global`` section of haproxy.cfg, and the
engines and providers it loads there (``ssl-engine NAME [ALGOS]``, ``ssl-provider NAME``,
``ssl-provider-path DIR``, ``ssl-propquery Q``): the late loads follow them."""

from __future__ import annotations

import shlex
from dataclasses import replace

from chrootcheck.discover._common import DiscoveredJail, Notes, Tree, strip_hash_comment
from chrootcheck.openssl.hsm import DaemonLoads

CONFIGS = ("/etc/haproxy/haproxy.cfg",)
UNITS = (
    "/etc/systemd/system/haproxy.service",
    "/lib/systemd/system/haproxy.service",
    "/usr/lib/systemd/system/haproxy.service",
)
SECTIONS = frozenset(
    {
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "resolvers",
        "peers",
        "userlist",
        "program",
        "mailers",
        "cache",
        "ring",
        "http-errors",
        "crt-store",
        "traces",
        "log-forward",
    }
)


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(strip_hash_comment(line))
    except ValueError:
        return strip_hash_comment(line).split()


def find(root: Tree, notes: Notes) -> list[DiscoveredJail]:
    out = []
    for cfg in CONFIGS:
        found = read_config(root, cfg, notes)
        if found is not None:
            out.append(found)
    return out


def read_config(root: Tree, cfg: str, notes: Notes) -> DiscoveredJail | None:
    """One haproxy.cfg: its jail, user, mode, engines and providers (None: no chroot)."""
    text = root.read_text(cfg, notes)
    if text is None:
        return None
    engines: list[str] = []
    providers: list[str] = []
    provider_path: str | None = None
    propquery: str | None = None
    first: int | None = None
    section = ""
    chroot: tuple[str, int] | None = None
    user: str | None = None
    master_worker = False
    for n, line in enumerate(text.splitlines(), 1):
        t = _tokens(line)
        if not t:
            continue
        if t[0] in SECTIONS:
            section = t[0]
            continue
        if section != "global":
            continue
        if t[0] == "chroot" and len(t) > 1:
            chroot = (t[1], n)
        elif t[0] == "user" and len(t) > 1:
            user = t[1]
        elif t[0] == "uid" and len(t) > 1 and user is None:
            user = t[1]
        elif t[0] == "master-worker":
            master_worker = True
        elif t[0] in ("ssl-engine", "ssl-provider", "ssl-provider-path", "ssl-propquery"):
            if len(t) < 2:
                continue
            first = first or n
            if t[0] == "ssl-engine":
                engines.append(t[1])
            elif t[0] == "ssl-provider":
                providers.append(t[1])
            elif t[0] == "ssl-provider-path":
                provider_path = t[1]
            else:
                propquery = t[1]
    if chroot is None:
        return None
    master_worker = master_worker or _unit_uses_master_worker(root, notes)
    note = (
        "master-worker mode: workers reseed inside the jail from their first connection"
        if master_worker
        else None
    )
    mode = "master-worker" if master_worker else "single process"
    found = DiscoveredJail(
        chroot[0], "haproxy", cfg, chroot[1], user, note, profile=f"haproxy:{mode}"
    )
    if first is not None:
        loads = DaemonLoads(
            tuple(engines), tuple(providers), provider_path, propquery, f"{cfg}:{first}"
        )
        found = replace(found, loads=loads)
    return found


def _unit_uses_master_worker(root: Tree, notes: Notes) -> bool:
    # Debian's unit starts haproxy with -Ws (master-worker): the fork happens after the chroot.
    for unit in UNITS:
        text = root.read_text(unit, notes)
        if text is None:
            continue
        for line in text.splitlines():
            if line.strip().startswith("ExecStart=") and any(
                a in ("-W", "-Ws") for a in line.split()
            ):
                return True
        return False
    return False
