"""Files OpenSSL loads late: the config, its includes, engines, providers, PKCS#11 modules.

A process that loads one of these after ``chroot(JAIL)`` looks it up at the same path inside
the jail. ``check_late_loads`` lists every such file (read from the host's configuration, as
the application reads it before its chroot), resolves each one inside the jail with
``jailfs.resolve`` (never following a link out of the jail, never opening the file) and
reports the missing ones with the commands that put them there.

It also reads the ``[random]`` section into an ``EntropyPolicy``: ``seed = JITTER`` and
friends change whether the jail needs ``/dev/urandom`` at all.
"""

from __future__ import annotations

import enum
import errno
import glob
import os
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from chrootcheck.jail import fs as jailfs
from chrootcheck.jail.users import ServiceUser, may
from chrootcheck.lateload.modules import Module, check_modules
from chrootcheck.lateload.opensslcnf import (
    BUILTIN_ENGINES,
    BUILTIN_PROVIDERS,
    Config,
    Location,
    Modules,
    config_path,
    load_modules,
    parse_file,
    read_host_file,
)
from chrootcheck.openssl.hsm import DaemonLoads, EngineKey
from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import Finding, Notice, NoticeKind, Severity, Stage


@dataclass(frozen=True)
class OpenSSLPaths:
    """Where a libcrypto looks: OPENSSLDIR, ENGINESDIR, MODULESDIR (None when unknown)."""

    openssldir: str
    enginesdir: str | None = None
    modulesdir: str | None = None
    # 1.1.0+ loads openssl.cnf by itself (OPENSSL_init_crypto), and so does the probe before
    # its chroot; 1.0.2's libcrypto alone never does: only an application that asks for it.
    loads_config: bool = True


def default_paths(libcrypto: str | None = None, jails: Sequence[str] = ()) -> OpenSSLPaths:
    """The directories of the libcrypto the scan is about, from chrootcheck.openssl.info.

    ``libcrypto``: a path (as ``scan --libcrypto``), checked first against ``jails`` and its
    owners (chrootcheck.openssl.trust), never loaded if it fails; default: the one Python's ssl
    module uses. Raises ToolError when no libcrypto can be loaded. Imported lazily: cffi is heavy.
    """
    from chrootcheck.openssl.info import library_dirs
    from chrootcheck.openssl.library import load

    # Only the folders: gather_info would seed a DRBG in this (parent) process, and every
    # probe child forked afterwards would inherit it.
    lc = load(libcrypto, jails=jails)
    openssldir, enginesdir, modulesdir = library_dirs(lc)
    return OpenSSLPaths(openssldir, enginesdir or None, modulesdir, lc.series != "1.0.2")


class LoadTime(enum.StrEnum):
    # Loaded when the config is loaded: late only if the application loads it after chroot.
    WITH_CONFIG = "with-config"
    # Loaded when first used: after the chroot even when the config was read before it.
    FIRST_USE = "first-use"


class Presence(enum.StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    WRONG_TYPE = "wrong-type"  # a folder where a file is needed, or the other way round
    UNREACHABLE = "unreachable"  # a dangling link, a loop, EACCES on the way


@dataclass(frozen=True)
class LateFile:
    path: str  # the host path, which is also the path the process looks up inside the jail
    role: str  # config, include, include-dir, engine, provider, pkcs11-module, p11-kit-module,
    #            p11-kit-config, enginesdir, modulesdir, config-module
    when: LoadTime
    origin: str  # where the config names it: "FILE:LINE [section] key"
    required: bool  # the config loads it for sure (an activated provider, an engine ...)
    on_host: bool
    in_jail: Presence
    jail_detail: str = ""  # what is there instead, or why it cannot be reached
    is_dir: bool = False


@dataclass(frozen=True)
class EntropyPolicy:
    """What the config does to OpenSSL's need for /dev/urandom.

    ``urandom_needed``: True = OpenSSL's default seeding (getrandom(2), /dev/urandom when it is
    unavailable): the device checks apply as they are. False = the config makes OpenSSL seed
    without the OS (seed = JITTER), under ``condition``. None = it depends on a provider or
    engine chrootcheck cannot see into.
    """

    urandom_needed: bool | None = True
    reason: str = "no [random] section: OpenSSL's default seed source (getrandom, /dev/urandom)"
    seed: str | None = None
    random_provider: str | None = None
    drbg: str | None = None
    condition: str | None = None
    where: str | None = None


@dataclass
class LateLoadResult:
    config: str  # the config file the library reads
    findings: list[Finding] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    files: list[LateFile] = field(default_factory=list)
    policy: EntropyPolicy = field(default_factory=EntropyPolicy)


# libp11's default module when MODULE_PATH is not given (DEFAULT_PKCS11_MODULE).
P11_KIT_PROXY_GLOBS = (
    "/usr/lib/*/p11-kit-proxy.so",
    "/usr/lib64/p11-kit-proxy.so",
    "/usr/lib/p11-kit-proxy.so",
)
P11_KIT_CONFIG_DIRS = ("/etc/pkcs11/modules", "/usr/share/p11-kit/modules")


def check_late_loads(
    root_fd: int,
    jail_path: str,
    paths: OpenSSLPaths | None = None,
    env: Mapping[str, str] | None = None,
    *,
    appname: str | None = None,
    memo: dict[object, tuple[Config, Modules]] | None = None,
    user: ServiceUser | None = None,
    engine_key: EngineKey | None = None,
    daemon_loads: DaemonLoads | None = None,
    before_chroot: frozenset[str] = frozenset(),
    daemon: str = "",
    measured: frozenset[str] = frozenset(),
) -> LateLoadResult:
    """Everything OpenSSL may load late, checked against the jail whose root is ``root_fd``.

    ``engine_key``: the daemon's engine key (its config's engine settings, or ``--key``): its
    engine and PKCS#11 module are listed too, and so are ``daemon_loads``' engines and
    providers (haproxy's ssl-engine, ssl-provider, ssl-provider-path). ``user``: the service's
    user, for the PKCS#11 modules' own state (lateload.modules). ``before_chroot``: the roles
    (engine, pkcs11-module ...) the
    daemon's profile loads before its chroot: info, not findings, for ``daemon``; ``measured``:
    those of them measured with the real daemon (the others follow from its design).

    ``env`` is the application's environment (OPENSSL_CONF, OPENSSL_ENGINES, OPENSSL_MODULES,
    OPENSSL_CONF_INCLUDE); default: this process's. ``jail_path`` (the host path) only goes
    into the remediation commands. ``memo``: one scan's parsed configs (the host's config is
    the same for every jail of a scan: read once).
    """
    env = dict(os.environ if env is None else env)
    paths = paths or default_paths()
    cnf = config_path(env, paths.openssldir)
    key = (cnf, tuple(sorted(env.items())), appname)
    if memo is not None and key in memo:
        cfg, mods = memo[key]
    else:
        cfg = parse_file(cnf, env)
        mods = load_modules(cfg, appname)
        if memo is not None:
            memo[key] = cfg, mods
    out = LateLoadResult(config=cnf)
    items = _collect(cfg, mods, paths, env, out)
    known = {(i.path, i.role) for i in items}
    if engine_key is not None:
        items.extend(_key_items(engine_key, paths, env, known))
    if daemon_loads is not None:
        items.extend(_daemon_items(daemon_loads, paths, env, known))
    for item in items:
        out.files.append(_locate(root_fd, item, user))
    for f in out.files:
        finding = _finding(f, jail_path, mods)
        if finding is not None:
            if f.role in before_chroot and finding.check in _ROLE_CHECKS:
                finding = _loaded_before(finding, daemon or "the daemon", f.role in measured)
            out.findings.append(finding)
    modules = [
        Module(f.path, f.origin)
        for f in out.files
        if f.role in ("pkcs11-module", "p11-kit-module") and f.on_host
    ]
    p11kit = [f.path for f in out.files if f.role == "p11-kit-config" and f.on_host]
    out.findings.extend(check_modules(root_fd, jail_path, modules, env, user, p11kit))
    for p in cfg.problems:
        out.findings.append(
            checks.CONFIG_INVALID.finding(
                p.where.file,
                f"{p}: OpenSSL rejects the whole file, so nothing in it takes effect",
                line=p.where.line,
            )
        )
    for p in mods.problems:
        out.findings.append(
            checks.CONFIG_INVALID.finding(
                p.where.file,
                f"{p}: that module fails to load (silently by default)",
                line=p.where.line,
            )
        )
    out.policy = entropy_policy(mods)
    if mods.random is not None or out.policy.urandom_needed is not True:
        out.findings.append(
            checks.RANDOM_SETTINGS.finding(
                cnf,
                _policy_text(out.policy),
                where=out.policy.where or "",
                urandom_needed=out.policy.urandom_needed,
            )
        )
    out.notices.extend(_timing_notices(out.files, cnf, paths.loads_config))
    return out


def config_loads(env: Mapping[str, str], paths: OpenSSLPaths) -> list[tuple[str, str, bool]]:
    """What the config ``env`` names (OPENSSL_CONF ...) makes a process read or load before
    the chroot, on the host: (path, role, is a folder) for the config files and include
    folders, engines, providers and PKCS#11 modules. For a caller that must judge them before
    root loads the config (the probe's as-configured scenario)."""
    env = dict(env)
    cfg = parse_file(config_path(env, paths.openssldir), env)
    items = _collect(cfg, load_modules(cfg), paths, env, LateLoadResult(config=""))
    return [(i.path, i.role, i.is_dir) for i in items]


def check_jail(
    jail_path: str,
    paths: OpenSSLPaths | None = None,
    env: Mapping[str, str] | None = None,
    *,
    libcrypto: str | None = None,
    appname: str | None = None,
) -> LateLoadResult:
    """``check_late_loads`` for a jail given by its host path (opens and closes the root fd).

    Raises ``jailfs.JailOpenError`` for a missing jail, ``ToolError`` when ``paths`` is None
    and no libcrypto can be loaded to ask for its directories.
    """
    fd = jailfs.open_jail(jail_path)
    try:
        return check_late_loads(
            fd, jail_path, paths or default_paths(libcrypto, (jail_path,)), env, appname=appname
        )
    finally:
        os.close(fd)


def _loaded_before(finding: Finding, daemon: str, measured: bool) -> Finding:
    how = "measured" if measured else "from its design, not measured"
    return replace(
        finding,
        severity=Severity.INFO,
        message=f"{finding.message} Not needed in the jail: {daemon} loads it before its "
        f"chroot (its daemon profile, {how}).",
        details={
            **finding.details,
            "severity_lowered_from": finding.severity.value,
            "before_chroot": "measured" if measured else "design",
        },
    )


def _key_items(
    key: EngineKey, paths: OpenSSLPaths, env: Mapping[str, str], known: set[tuple[str, str]]
) -> list[_Item]:
    """The daemon's engine and PKCS#11 module, from its own config (stunnel's engine and
    engineCtrl, haproxy's ssl-engine, --key)."""
    items = []
    enginesdir = env.get("OPENSSL_ENGINES") or paths.enginesdir
    engine = key.so_path
    if engine is None and key.engine not in BUILTIN_ENGINES and enginesdir:
        engine = os.path.join(enginesdir, key.engine + ".so")
    if engine is not None:
        items.append(_Item(engine, "engine", LoadTime.WITH_CONFIG, key.origin, True))
    if key.module_path:
        items.append(_Item(key.module_path, "pkcs11-module", LoadTime.FIRST_USE, key.origin, True))
    return [i for i in items if (i.path, i.role) not in known]


def _daemon_items(
    loads: DaemonLoads, paths: OpenSSLPaths, env: Mapping[str, str], known: set[tuple[str, str]]
) -> list[_Item]:
    """haproxy's ssl-engine (ENGINESDIR/<name>.so) and ssl-provider (ssl-provider-path or
    MODULESDIR/<name>.so): loaded when its config is read, at start."""
    items = []
    enginesdir = env.get("OPENSSL_ENGINES") or paths.enginesdir
    for name in loads.engines:
        if name not in BUILTIN_ENGINES and enginesdir and "/" not in name:
            path = os.path.join(enginesdir, name + ".so")
            items.append(_Item(path, "engine", LoadTime.WITH_CONFIG, loads.origin, True))
    folder = loads.provider_path or env.get("OPENSSL_MODULES") or paths.modulesdir
    for name in loads.providers:
        if name not in BUILTIN_PROVIDERS and folder:
            path = os.path.join(folder, name if name.endswith(".so") else name + ".so")
            items.append(_Item(path, "provider", LoadTime.WITH_CONFIG, loads.origin, True))
    return [i for i in items if (i.path, i.role) not in known]


# -- what the config names ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    path: str
    role: str
    when: LoadTime
    origin: str
    required: bool
    is_dir: bool = False


def _origin(where: Location, section: str, key: str) -> str:
    return f"{where} [{section}] {key}"


def _pkcs11_module(items: list[_Item], module: str, origin: str) -> bool:
    """A PKCS#11 module an engine or provider names; True when it is p11-kit's proxy."""
    items.append(_Item(module, "pkcs11-module", LoadTime.FIRST_USE, origin, True))
    return "p11-kit-proxy" in os.path.basename(module)


def _collect(
    cfg: Config, mods: Modules, paths: OpenSSLPaths, env: Mapping[str, str], out: LateLoadResult
) -> list[_Item]:
    items: list[_Item] = []
    for src in cfg.sources:
        origin = (
            str(src.included_from)
            if src.included_from
            else "OPENSSL_CONF"
            if env.get("OPENSSL_CONF")
            else "OPENSSLDIR/openssl.cnf"
        )
        items.append(
            _Item(
                src.path,
                src.kind,
                LoadTime.WITH_CONFIG,
                origin,
                required=src.kind == "config",
                is_dir=src.kind == "include-dir",
            )
        )
        if src.error:
            out.notices.append(
                Notice(NoticeKind.NOTE, Stage.LATE_LOADS, f"cannot read {src.path}: {src.error}")
            )
    enginesdir = env.get("OPENSSL_ENGINES") or paths.enginesdir
    modulesdir = env.get("OPENSSL_MODULES") or paths.modulesdir
    uses_p11kit = False
    for e in mods.engines:
        origin = _origin(e.where, e.section, "dynamic_path" if e.dynamic_path else "engine_id")
        if e.dynamic_path:
            items.append(_Item(e.dynamic_path, "engine", LoadTime.WITH_CONFIG, origin, True))
        elif e.engine_id not in BUILTIN_ENGINES:
            if enginesdir:
                items.append(
                    _Item(
                        os.path.join(enginesdir, e.engine_id + ".so"),
                        "engine",
                        LoadTime.WITH_CONFIG,
                        origin,
                        True,
                    )
                )
            else:
                out.notices.append(
                    Notice(
                        NoticeKind.SKIPPED,
                        Stage.LATE_LOADS,
                        f"engine {e.engine_id!r}: ENGINESDIR unknown, its file was not checked",
                        part="engine",
                    )
                )
        module = e.module_path
        if module:
            uses_p11kit |= _pkcs11_module(items, module, _origin(e.where, e.section, "MODULE_PATH"))
        elif "pkcs11" in e.engine_id.lower():
            uses_p11kit = True  # libp11 defaults to p11-kit-proxy.so
    for p in mods.providers:
        origin = _origin(p.where, p.section, "module" if p.module else "activate")
        path: str | None = None
        if p.module and p.module.startswith("/"):
            path = p.module
        elif p.module or p.identity not in BUILTIN_PROVIDERS:
            # A relative module, or none, is looked up in MODULESDIR as <name>.so.
            name = p.module or p.identity + ".so"
            if modulesdir:
                path = os.path.join(modulesdir, name)
            else:
                out.notices.append(
                    Notice(
                        NoticeKind.SKIPPED,
                        Stage.LATE_LOADS,
                        f"provider {p.identity!r}: MODULESDIR unknown, its module was not checked",
                        part="provider",
                    )
                )
        if path:
            items.append(
                _Item(
                    path,
                    "provider",
                    LoadTime.WITH_CONFIG if p.activate else LoadTime.FIRST_USE,
                    origin,
                    p.activate,
                )
            )
        module = p.pkcs11_module_path
        if module:
            origin = _origin(p.where, p.section, "pkcs11-module-path")
            uses_p11kit |= _pkcs11_module(items, module, origin)
        elif "pkcs11" in p.identity.lower():
            uses_p11kit = True
    for o in mods.others:
        if o.path:
            items.append(
                _Item(
                    o.path,
                    "config-module",
                    LoadTime.WITH_CONFIG,
                    _origin(o.where, o.section, "path"),
                    True,
                )
            )
    if uses_p11kit:
        items.extend(_p11kit_items())
    if enginesdir:
        items.append(
            _Item(
                enginesdir,
                "enginesdir",
                LoadTime.FIRST_USE,
                "OPENSSL_ENGINES" if env.get("OPENSSL_ENGINES") else "ENGINESDIR",
                False,
                is_dir=True,
            )
        )
    if modulesdir:
        items.append(
            _Item(
                modulesdir,
                "modulesdir",
                LoadTime.FIRST_USE,
                "OPENSSL_MODULES" if env.get("OPENSSL_MODULES") else "MODULESDIR",
                False,
                is_dir=True,
            )
        )
    seen: set[tuple[str, str]] = set()
    unique = []
    for it in items:
        if (it.path, it.role) not in seen:
            seen.add((it.path, it.role))
            unique.append(it)
    return unique


def _p11kit_items(prefix: str = "/") -> list[_Item]:
    """p11-kit-proxy, its module configs and the modules they name (``module:`` lines)."""
    items: list[_Item] = []
    proxies = sorted({p for g in P11_KIT_PROXY_GLOBS for p in glob.glob(prefix.rstrip("/") + g)})
    moddir = os.path.join(os.path.dirname(proxies[0]), "pkcs11") if proxies else None
    for proxy in proxies[:1]:
        items.append(
            _Item(proxy, "pkcs11-module", LoadTime.FIRST_USE, "libp11's default module", True)
        )
    for d in P11_KIT_CONFIG_DIRS:
        for conf in sorted(glob.glob(os.path.join(prefix.rstrip("/") + d, "*.module"))):
            items.append(_Item(conf, "p11-kit-config", LoadTime.FIRST_USE, "p11-kit", True))
            for lineno, module in _p11kit_module_lines(conf):
                if not module.startswith("/"):
                    if moddir is None:
                        continue
                    module = os.path.join(moddir, module)
                items.append(
                    _Item(
                        module,
                        "p11-kit-module",
                        LoadTime.FIRST_USE,
                        f"{conf}:{lineno} module",
                        True,
                    )
                )
    return items


def _p11kit_module_lines(path: str) -> list[tuple[int, str]]:
    try:
        # The same careful reader as the config: a FIFO named *.module must not block us.
        text = read_host_file(path).decode("utf-8", "surrogateescape")
    except OSError:
        return []
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        key, sep, val = line.partition(":")
        if sep and key.strip() == "module" and val.strip():
            out.append((n, val.strip()))
    return out


# -- inside the jail ---------------------------------------------------------------------------


def _locate(root_fd: int, item: _Item, user: ServiceUser | None = None) -> LateFile:
    on_host = os.path.isdir(item.path) if item.is_dir else os.path.isfile(item.path)

    def seen(presence: Presence, detail: str) -> LateFile:
        return LateFile(
            item.path,
            item.role,
            item.when,
            item.origin,
            item.required,
            on_host,
            presence,
            detail,
            item.is_dir,
        )

    if not item.path.startswith("/"):
        return seen(
            Presence.UNREACHABLE, "relative path: looked up from the process's working folder"
        )
    with jailfs.resolve(root_fd, item.path) as res:
        if not res.found:
            presence = Presence.MISSING if res.error == errno.ENOENT else Presence.UNREACHABLE
            detail = f"{os.strerror(res.error or 0)} at {res.failed_at}"
            if res.error == errno.EAGAIN:
                detail = f"it kept changing during the scan at {res.failed_at}"
            if res.links:
                detail += " (via symlink " + ", ".join(f"{a} -> {b}" for a, b in res.links) + ")"
            return seen(presence, detail)
        assert res.stat is not None
        mode = res.stat.st_mode
        if not (stat.S_ISDIR(mode) if item.is_dir else stat.S_ISREG(mode)):
            return seen(Presence.WRONG_TYPE, f"a {jailfs.kind_of(mode)} at {res.path}")
        if user is not None and user.uid != 0:
            # After the chroot the daemon runs as its user: it must search every folder on the
            # way and read the file (a folder: list it too).
            folders = [("/", os.fstat(root_fd)), *res.dirs]
            blocked = [p for p, st in folders if not may(user, st, 1)]
            want = 5 if item.is_dir else 4
            if blocked or not may(user, res.stat, want):
                why = (
                    f"cannot search {', '.join(blocked)}"
                    if blocked
                    else f"cannot read it (mode {stat.S_IMODE(mode):04o}, owner "
                    f"{res.stat.st_uid}:{res.stat.st_gid})"
                )
                return seen(Presence.UNREACHABLE, f"{user.label} {why}")
        return seen(Presence.PRESENT, "")


_ROLE_CHECK = {
    "config": checks.CONFIG_MISSING_IN_JAIL,
    "include": checks.INCLUDE_MISSING_IN_JAIL,
    "include-dir": checks.INCLUDE_MISSING_IN_JAIL,
    "engine": checks.ENGINE_MISSING_IN_JAIL,
    "provider": checks.PROVIDER_MISSING_IN_JAIL,
    "pkcs11-module": checks.PKCS11_MODULE_MISSING_IN_JAIL,
    "p11-kit-module": checks.P11KIT_MODULE_MISSING_IN_JAIL,
    "p11-kit-config": checks.P11KIT_MODULE_MISSING_IN_JAIL,
    "enginesdir": checks.ENGINESDIR_MISSING_IN_JAIL,
    "modulesdir": checks.MODULESDIR_MISSING_IN_JAIL,
    "config-module": checks.CONFIG_MODULE_MISSING_IN_JAIL,
}
_ROLE_CHECKS = frozenset(c.id for c in _ROLE_CHECK.values())
_ROLE_WORD = {
    "config": "the OpenSSL config",
    "include": "included config file",
    "include-dir": "included config folder",
    "engine": "engine",
    "provider": "provider module",
    "pkcs11-module": "PKCS#11 module",
    "p11-kit-module": "p11-kit module",
    "p11-kit-config": "p11-kit module config",
    "enginesdir": "ENGINESDIR",
    "modulesdir": "MODULESDIR",
    "config-module": "config module library",
}


def _finding(f: LateFile, jail: str, mods: Modules) -> Finding | None:
    if f.in_jail is Presence.PRESENT:
        return None
    what = _ROLE_WORD[f.role]
    if not f.on_host:
        if f.role in (
            "config",
            "include",
            "include-dir",
            "p11-kit-config",
            "enginesdir",
            "modulesdir",
        ):
            return None  # absent everywhere: nothing is lost by the chroot
        return checks.NAMED_FILE_MISSING_ON_HOST.finding(
            f.path,
            f"{what} {f.path} (named at {f.origin}) does not exist on the host",
            role=f.role,
            origin=f.origin,
        )
    check = _ROLE_CHECK[f.role]
    severity = check.severity
    if f.role == "config" and not mods.effective:
        severity = Severity.INFO  # no engine, provider or [random]: little is lost
    if f.role == "provider" and not f.required:
        severity = Severity.INFO  # not activated: only an explicit OSSL_PROVIDER_load needs it
    state = {
        Presence.MISSING: "is missing in the jail",
        Presence.WRONG_TYPE: f"is not usable in the jail: {f.jail_detail}",
        Presence.UNREACHABLE: f"cannot be reached in the jail: {f.jail_detail}",
    }[f.in_jail]
    if f.role in ("enginesdir", "modulesdir") or not f.required:
        timing = (
            "searched when the application loads an engine or provider by name: after "
            "the chroot if it does so there"
        )
    elif f.when is LoadTime.WITH_CONFIG:
        timing = (
            "loaded when the config is loaded: after the chroot if the application "
            "first uses OpenSSL there (OpenSSL 3 loads the config lazily)"
        )
    else:
        timing = "loaded at first use: after the chroot even when the config was read before it"
    message = f"{what} {f.path} ({f.origin}) {state}; {timing}."
    return check.finding(
        f.path,
        message,
        severity=severity,
        remediation=remedy(f, jail),
        role=f.role,
        origin=f.origin,
        when=f.when.value,
        in_jail=f.in_jail.value,
    )


def remedy(f: LateFile, jail: str) -> str:
    """The exact commands: copy (files) or a read-only bind mount (folders)."""
    q = shlex.quote
    target = os.path.join(jail, f.path.lstrip("/"))
    if f.is_dir:
        return (
            f"mkdir -p {q(target)} && mount --bind {q(f.path)} {q(target)} && "
            f"mount -o remount,bind,ro {q(target)}  (or: cp -a {q(f.path)}/. {q(target)}/)"
        )
    cmd = (
        f"mkdir -p {q(os.path.dirname(target))} && cp -pL {q(f.path)} {q(target)}  "
        f"(or bind it: touch {q(target)} && mount --bind -o ro {q(f.path)} {q(target)})"
    )
    if f.role in ("engine", "provider", "pkcs11-module", "p11-kit-module", "config-module"):
        cmd += f"; it also needs the libraries it links (ldd {q(f.path)}) inside the jail"
    return cmd


# -- [random] ----------------------------------------------------------------------------------


def entropy_policy(mods: Modules) -> EntropyPolicy:
    rand_engines = [e for e in mods.engines if e.replaces_rand]
    r = mods.random
    if r is None and not rand_engines:
        return EntropyPolicy()
    settings = r.settings if r else {}
    seed = settings.get("seed") or None
    provider = settings.get("random_provider") or None
    drbg = settings.get("random") or None
    where = str(r.where) if r else str(rand_engines[0].where)
    base = {"seed": seed, "random_provider": provider, "drbg": drbg, "where": where}
    if provider and provider.lower() not in ("fips", "default"):
        return EntropyPolicy(
            None,
            f"random_provider = {provider}: RAND_bytes goes to that provider when it is "
            "loaded (OpenSSL 3.5+); whether it reads /dev/urandom depends on it",
            condition="OpenSSL 3.5+ and the provider loaded",
            **base,
        )
    if rand_engines:
        e = rand_engines[0]
        return EntropyPolicy(
            None,
            f"engine {e.engine_id} supplies RAND (default_algorithms = "
            f"{e.default_algorithms}): on OpenSSL 1.1.1 it replaces the DRBG; its own needs "
            "decide",
            condition="OpenSSL 1.x/3.x with engines",
            **base,
        )
    if seed and seed.upper() == "JITTER":
        return EntropyPolicy(
            False,
            "seed = JITTER: the DRBG is seeded from CPU timing jitter, no /dev/urandom "
            "and no getrandom(2)",
            condition="OpenSSL 3.4+ built with enable-jitter, and the config loaded (early, "
            "or present in the jail); otherwise OpenSSL silently falls back to the OS source",
            **base,
        )
    if seed and seed.upper() not in ("SEED-SRC",):
        return EntropyPolicy(
            None,
            f"seed = {seed}: a seed source from a provider; whether it reads "
            "/dev/urandom depends on it",
            condition="the provider loaded",
            **base,
        )
    reason = "the seed source stays the OS (SEED-SRC: getrandom, /dev/urandom)"
    if drbg:
        reason = f"random = {drbg} only chooses the DRBG type; " + reason
    return EntropyPolicy(True, reason, **base)


def _policy_text(p: EntropyPolicy) -> str:
    need = {
        True: "/dev/urandom still needed",
        False: "/dev/urandom not needed",
        None: "/dev/urandom may be needed",
    }[p.urandom_needed]
    text = f"{need}: {p.reason}"
    if p.condition:
        text += f" (if: {p.condition})"
    return text + (f" [{p.where}]" if p.where else "")


def _timing_notices(files: list[LateFile], cnf: str, loads_config: bool = True) -> list[Notice]:
    with_config = [f.path for f in files if f.when is LoadTime.WITH_CONFIG]
    first_use = [f.path for f in files if f.when is LoadTime.FIRST_USE and f.required]
    if loads_config:
        when = (
            f"the probe loads {cnf} before its chroot on purpose; an application that "
            "first uses OpenSSL after its chroot reads these inside the jail: "
        )
    else:
        when = (
            f"1.0.2's libcrypto alone never loads {cnf} (nor does the probe with it); an "
            "application that loads it itself (OPENSSL_config, CONF_modules_load_file) after "
            "its chroot reads these inside the jail: "
        )
    out = (
        [Notice(NoticeKind.NOTE, Stage.LATE_LOADS, when + ", ".join(with_config))]
        if with_config
        else []
    )
    if first_use:
        out.append(
            Notice(
                NoticeKind.NOTE,
                Stage.LATE_LOADS,
                "loaded at first use, after the chroot even when the config is read "
                "before it: " + ", ".join(first_use),
            )
        )
    return out
