"""The PKCS#11 modules' own state, resolved inside the jail with the service user's rights.

A daemon that loads its key through a PKCS#11 module before its chroot keeps the module
loaded, but the module keeps reading its own files: SoftHSM2 reopens
``<tokendir>/<token>/generation`` and the key's ``.object`` on every signature, so after the
chroot it needs the token store **inside the jail**, readable by the user the daemon runs as
(measured with stunnel 5.68 and libp11: every handshake fails with
``PKCS#11 module::Object handle invalid``). The module's config is read at ``C_Initialize``,
before the chroot: it comes from the host (``SOFTHSM2_CONF`` from the service's environment,
else ``/etc/softhsm/softhsm2.conf``).

OpenSC and p11-kit's ``remote:`` modules are recognised and explained (info), not measured.
Nothing is opened in the jail: ``jail.fs.resolve`` and the folders' modes only.
"""

from __future__ import annotations

import errno
import os
import shlex
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chrootcheck.jail import fs as jailfs
from chrootcheck.jail.users import ServiceUser, may
from chrootcheck.lateload.opensslcnf import read_host_file
from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import Finding

SOFTHSM2_DEFAULT_CONF = "/etc/softhsm/softhsm2.conf"
OPENSC_DEFAULT_CONF = "/etc/opensc/opensc.conf"
PCSCD_SOCKET = "/run/pcscd/pcscd.comm"


@dataclass(frozen=True)
class Module:
    path: str  # the module's host path
    origin: str  # where it is named


def kind(path: str) -> str | None:
    base = os.path.basename(path).lower()
    if "softhsm" in base:
        return "softhsm2"
    if "opensc" in base:
        return "opensc"
    return None


def check_modules(
    root_fd: int,
    jail: str,
    modules: Iterable[Module],
    env: Mapping[str, str],
    user: ServiceUser | None,
    p11kit_configs: Iterable[str] = (),
) -> list[Finding]:
    """Findings for the state of every recognised module (each kind once)."""
    out: list[Finding] = []
    seen: set[str] = set()
    for m in modules:
        k = kind(m.path)
        if k is None or k in seen:
            continue
        seen.add(k)
        if k == "softhsm2":
            out.extend(_softhsm2(root_fd, jail, m, env, user))
        else:
            out.append(_opensc(root_fd, m))
    for conf in p11kit_configs:
        remote = _p11kit_remote(conf)
        if remote is not None:
            out.append(
                checks.PKCS11_REMOTE_MODULE.finding(
                    conf,
                    f"{conf} sets remote: {remote}: p11-kit reaches that module through a "
                    "command or a socket; after the chroot a new connection runs or opens it "
                    "inside the jail (not measured).",
                    remote=remote,
                )
            )
    return out


# -- SoftHSM2 -------------------------------------------------------------------------------


def softhsm2_config(env: Mapping[str, str]) -> tuple[str, dict[str, str]] | tuple[str, None]:
    """The config file SoftHSM2 reads and its settings (None: it cannot be read)."""
    path = env.get("SOFTHSM2_CONF") or SOFTHSM2_DEFAULT_CONF
    try:
        text = read_host_file(path).decode("utf-8", "surrogateescape")
    except OSError:
        return path, None
    settings: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            settings[key.strip().lower()] = value.strip()
    return path, settings


def _softhsm2(
    root_fd: int, jail: str, m: Module, env: Mapping[str, str], user: ServiceUser | None
) -> list[Finding]:
    conf, settings = softhsm2_config(env)
    if settings is None:
        return [
            checks.PKCS11_MODULE_STATE.finding(
                conf,
                f"SoftHSM2 ({m.path}, {m.origin}): its config {conf} cannot be read on the "
                "host, so its token store is unknown; the module fails to initialise with it.",
                module=m.path,
                config=conf,
            )
        ]
    tokendir = settings.get("directories.tokendir", "").rstrip("/") or "/var/lib/softhsm/tokens"
    common: dict[str, Any] = {"module": m.path, "config": conf, "tokendir": tokendir}
    tokens = _host_tokens(tokendir)
    q = shlex.quote
    target = os.path.join(jail, tokendir.lstrip("/"))
    bind = (
        f"mkdir -p {q(target)} && mount --bind {q(tokendir)} {q(target)} (read-write: SoftHSM "
        "writes its lock and generation files; add it to fstab or the unit's BindPaths=), or "
        f"move the token store into the jail (mv {q(tokendir)} {q(target)} && ln -s "
        f"{q(target)} {q(tokendir)}): the module opens it by the same path before and after "
        "the chroot. chrootcheck fix does not do this; run chrootcheck scan again after."
    )
    with jailfs.resolve(root_fd, tokendir) as res:
        if not res.found or res.stat is None or not stat.S_ISDIR(res.stat.st_mode):
            why = (
                f"{os.strerror(res.error or errno.ENOTDIR)} at {res.failed_at or res.path}"
                if not res.found
                else f"a {jailfs.kind_of(res.stat.st_mode if res.stat else 0)} at {res.path}"
            )
            return [
                checks.TOKEN_STORE_MISSING_IN_JAIL.finding(
                    tokendir,
                    f"SoftHSM2's token store {tokendir} ({conf}: directories.tokendir) is not "
                    f"in the jail ({why}): the module ({m.path}) reopens its token files at "
                    "every signature, so after the chroot every use of the key fails "
                    "('PKCS#11 module::Object handle invalid').",
                    remediation=bind,
                    **common,
                )
            ]
        folders = [("/", os.fstat(root_fd)), *res.dirs, (res.path, res.stat)]
        out: list[Finding] = []
        missing: list[str] = []
        blocked: list[str] = []
        for token, files in tokens:
            with jailfs.resolve(root_fd, f"{tokendir}/{token}") as tres:
                if not tres.found or tres.stat is None:
                    missing.append(token)
                    continue
                tfolders = [(tres.path, tres.stat)]
                for name in files:
                    with jailfs.resolve(root_fd, f"{tokendir}/{token}/{name}") as fres:
                        if not fres.found or fres.stat is None:
                            missing.append(f"{token}/{name}")
                        elif not _may(user, fres.stat, 4):
                            blocked.append(f"{tokendir}/{token}/{name} (read)")
                blocked[:0] = [f"{p} (search)" for p, st in tfolders if not _may(user, st, 1)]
        blocked[:0] = [f"{p} (search)" for p, st in folders if not _may(user, st, 1)]
    if missing:
        out.append(
            checks.TOKEN_STORE_MISSING_IN_JAIL.finding(
                tokendir,
                f"SoftHSM2's token store {tokendir} is in the jail but lacks what the host's "
                f"has: {', '.join(missing[:10])}: the key's token is not there after the chroot, "
                "and every use of the key fails.",
                remediation=bind,
                missing=missing,
                **common,
            )
        )
    if blocked:
        who = user.label if user is not None else "a user other than its owner"
        out.append(
            checks.TOKEN_STORE_UNREADABLE.finding(
                tokendir,
                f"SoftHSM2's token store {tokendir} is in the jail but {who} cannot reach it: "
                f"{', '.join(dict.fromkeys(blocked[:10]))}. The daemon loads the key as root "
                "before the chroot and drops to its user; then every signature fails "
                "('PKCS#11 module::Object handle invalid').",
                remediation=(
                    "Give the service user the rights SoftHSM needs (search on every folder "
                    "on the way, read on the token's files): for Debian's "
                    "/var/lib/softhsm/tokens (root:softhsm 2770), usermod -aG softhsm USER; "
                    f"or chown -R USER {q(target)}. Then: " + bind
                ),
                user=who,
                blocked=list(dict.fromkeys(blocked)),
                **common,
            )
        )
    return out


def _may(user: ServiceUser | None, st: os.stat_result, want: int) -> bool:
    if user is None:
        return True  # no --user: the daemon's user is unknown (said in the doc)
    return may(user, st, want) if user.uid != 0 else True


def _host_tokens(tokendir: str) -> list[tuple[str, list[str]]]:
    """The host's tokens (folders in the token store) and the files SoftHSM reopens: the
    generation file and the objects. Empty when the host's store cannot be listed."""
    out = []
    try:
        names = sorted(os.listdir(tokendir))
    except OSError:
        return []
    for name in names[:64]:
        folder = os.path.join(tokendir, name)
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        try:
            files = sorted(
                f for f in os.listdir(folder) if f == "generation" or f.endswith((".object", ".db"))
            )
        except OSError:
            files = []
        out.append((name, files[:256]))
    return out


# -- OpenSC, p11-kit remote -----------------------------------------------------------------


def _opensc(root_fd: int, m: Module) -> Finding:
    with jailfs.resolve(root_fd, PCSCD_SOCKET) as res:
        socket_there = res.found and res.stat is not None and stat.S_ISSOCK(res.stat.st_mode)
    state = "is" if socket_there else "is not"
    return checks.PKCS11_MODULE_STATE.finding(
        m.path,
        f"OpenSC ({m.path}, {m.origin}) reads {OPENSC_DEFAULT_CONF} when it is initialised "
        "(before the chroot if the daemon loads its key there) and reaches the card through "
        f"pcscd's socket {PCSCD_SOCKET}, which {state} in the jail; its file cache "
        "(file_cache_dir, ~/.cache/opensc) is written later. Not measured: check with a "
        "handshake.",
        module=m.path,
        pcscd_socket_in_jail=socket_there,
    )


def _p11kit_remote(conf: str) -> str | None:
    try:
        text = read_host_file(conf).decode("utf-8", "surrogateescape")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "remote" and value.strip():
            return value.strip()
    return None
