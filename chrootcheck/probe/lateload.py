"""The late-load probe: the daemon's engine key, loaded before the chroot, used inside the jail.

Measured, like the entropy probe: one child (``system.worker``) does what the daemon does
before its chroot (its OpenSSL config, the engine, its control commands such as
``MODULE_PATH`` and ``PIN``, ``ENGINE_init``, ``ENGINE_load_private_key``) and signs once
there as a control; then it chroots through the scan's descriptor on the jail, drops to the
service user (nobody without ``--user``) and signs again, twice, as the first two handshakes
do. The verdict is what happened, with the decoded error chain of each step.

Everything loaded before the chroot is loaded **as root from the host**, so each file is
checked first with ``openssl.trust.check_library`` (never inside a jail, never writable by
another user): the engine's ``.so``, the PKCS#11 module and the config. One that fails is
never loaded (a finding says why), and the scan's consented jail libcrypto is never used
here. A PIN is sent to the engine and never shown: every step names it ``(hidden)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chrootcheck.jail.users import NOBODY, ServiceUser
from chrootcheck.openssl.hsm import EngineKey
from chrootcheck.openssl.results import Step
from chrootcheck.report import catalogue
from chrootcheck.report.model import Finding, Notice, NoticeKind, Stage
from chrootcheck.system import procs, worker


@dataclass(frozen=True)
class Prepared:
    """What the daemon has done before its chroot: each step's outcome."""

    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Entered:
    uid: int
    gid: int


@dataclass(frozen=True)
class Signed:
    step: Step


PROTOCOL = worker.Protocol(Prepared, Entered, Signed, max_messages=16)
SIGNATURES_INSIDE = 2  # the first two handshakes after the chroot


@dataclass(frozen=True)
class LateLoadVerdict:
    findings: tuple[Finding, ...]
    notices: tuple[Notice, ...]
    steps: tuple[Step, ...]  # every step, in order (no secret in any)


def engine_file(key: EngineKey, enginesdir: str | None) -> str | None:
    """The engine's shared object ENGINE_by_id loads (None: built in or unknown)."""
    if key.engine_so:
        return key.engine_so
    if enginesdir and key.engine not in ("dynamic", "rdrand", "padlock", "afalg", "devcrypto"):
        path = os.path.join(enginesdir, key.engine + ".so")
        return path if os.path.exists(path) else None
    return None


# Control commands that make an engine search folders for code: never sent by the probe.
_SEARCHING_CTRLS = frozenset({"DIR_ADD", "DIR_LOAD", "LIST_ADD"})


def untrusted(
    files: list[str], jail: str, key: EngineKey | None = None, missing: list[str] | None = None
) -> list[str]:
    """The files among ``files`` that root must not load, each with why (openssl.trust); and
    the engine settings that would make OpenSSL search for code (an engine id with a '/',
    which ENGINE_by_id loads as a path; the dynamic engine's DIR_ADD). A file that is not
    there goes to ``missing`` instead (nothing to load: a broken config, not a trust issue)."""
    from chrootcheck.openssl.trust import CheckError, check_library, jail_roots

    out = []
    if key is not None:
        if "/" in key.engine or not key.engine:
            out.append(f"{key.engine}: an engine id that is a path")
        out += [f"{n}: searches folders for code" for n, _ in key.ctrls if n in _SEARCHING_CTRLS]
    roots = jail_roots([jail])
    for path in files:
        try:
            checked = check_library(path, roots)
        except CheckError as e:
            if missing is not None and not os.path.lexists(path):
                missing.append(path)  # never loaded either way: the probe stops here
            else:
                out.append(f"{path}: {e}")
            continue
        os.close(checked.fd)
        if checked.concern is not None:
            out.append(f"{path}: {checked.concern}")
    return out


def run(
    jail: str,
    root_fd: int,
    key: EngineKey,
    env: Mapping[str, str],
    user: ServiceUser | None,
    *,
    libcrypto: object | None = None,
    enginesdir: str | None = None,
    timeout: float = 10.0,
) -> LateLoadVerdict:
    """Probe the key in the jail. ``libcrypto``: a trusted, loaded ``Libcrypto`` (default: the
    one Python's ssl module uses). Never raises for what the child meets."""
    from chrootcheck.openssl.library import Libcrypto, load, prefill

    lc = libcrypto if isinstance(libcrypto, Libcrypto) else load(None)
    config = key.config or env.get("OPENSSL_CONF")
    files = [f for f in (engine_file(key, enginesdir), key.module_path, config) if f]
    missing: list[str] = []
    refused = untrusted(files, jail, key, missing)
    if missing and not refused:
        f = catalogue.ENGINE_KEY_FAILS_ON_HOST.finding(
            missing[0],
            f"{key.describe()}: not probed: it names {', '.join(missing)}, which the host does "
            "not have; the daemon cannot load its key anywhere.",
            missing=missing,
            key=key.describe(),
        )
        return LateLoadVerdict((f,), (), ())
    if refused:
        f = catalogue.ENGINE_CODE_UNTRUSTED.finding(
            refused[0].split(":", 1)[0],
            f"not probed: the daemon would load these as root before its chroot: "
            f"{'; '.join(refused)}.",
            refused=refused,
            key=key.describe(),
        )
        return LateLoadVerdict((f,), (), ())
    uid, gid, groups = (user.uid, user.gid, user.groups) if user else (NOBODY, NOBODY, ())
    prefill(lc)

    def child(out: worker.Channel) -> None:
        _child(lc, key, config, env, root_fd, uid, gid, groups, out)

    outcome = worker.run(child, PROTOCOL, timeout)
    return _verdict(jail, key, user, outcome)


def _child(
    lc: object,
    key: EngineKey,
    config: str | None,
    env: Mapping[str, str],
    root_fd: int,
    uid: int,
    gid: int,
    groups: tuple[int, ...],
    out: worker.Channel,
) -> None:
    from chrootcheck.openssl import engine
    from chrootcheck.openssl.library import Libcrypto
    from chrootcheck.openssl.rand import load_config

    assert isinstance(lc, Libcrypto)
    # The module reads its own config when it is initialised (SoftHSM2: SOFTHSM2_CONF).
    for name in ("SOFTHSM2_CONF", "OPENSC_CONF", "P11_KIT_CONFIG", "OPENSSL_ENGINES"):
        if env.get(name):
            os.environ[name] = env[name]
    steps: list[Step] = []
    if config:
        steps.append(load_config(lc, config))  # as OPENSSL_CONF at the daemon's start
    loaded_steps, loaded = engine.load_key(lc, key)
    steps.extend(loaded_steps)
    if loaded is not None:
        steps.append(engine.sign(lc, loaded, "sign before the chroot (control)"))
    out.send(Prepared(tuple(steps)))
    if loaded is None or not steps[-1].ok:
        return
    os.fchdir(root_fd)  # the very folder the scan judged
    os.chroot(".")
    os.chdir("/")
    os.setgroups(list(groups))
    os.setgid(gid)
    os.setuid(uid)
    procs.die_with_parent()  # setuid cleared it
    out.send(Entered(os.getuid(), os.getgid()))
    for n in range(1, SIGNATURES_INSIDE + 1):
        out.send(Signed(engine.sign(lc, loaded, f"sign inside the jail (handshake {n})")))


def _why(failed: Step | None, otherwise: str) -> str:
    """What went wrong: the failed step and its decoded chain, else ``otherwise``."""
    return f"{failed.action} failed: {_chain(failed)}" if failed is not None else otherwise


def _chain(step: Step) -> str:
    return "; ".join(e.error_string() + (f" [{e.data}]" if e.data else "") for e in step.errors)


def _verdict(
    jail: str, key: EngineKey, user: ServiceUser | None, outcome: worker.Outcome
) -> LateLoadVerdict:
    who = user.label if user is not None else f"nobody ({NOBODY})"
    prepared = outcome.first(Prepared)
    before = prepared.steps if prepared else ()
    signed = tuple(s.step for s in outcome.all(Signed))
    steps = (*before, *signed)
    common: dict[str, Any] = {
        "key": key.describe(),
        "user": who,
        "steps": [_step_data(s, key) for s in steps],
    }
    failed_before = next((s for s in before if s.ok is False), None)
    if prepared is None or failed_before is not None:
        why = key.scrub(_why(failed_before, outcome.failure() or "the child told nothing"))
        f = catalogue.ENGINE_KEY_FAILS_ON_HOST.finding(
            jail,
            f"{key.describe()}: before the chroot, {why}. The daemon cannot use this key "
            "anywhere; nothing was measured inside the jail.",
            **common,
        )
        return LateLoadVerdict((f,), (), steps)
    bad = next((s for s in signed if not s.ok), None)
    if bad is not None or outcome.first(Entered) is None or len(signed) < SIGNATURES_INSIDE:
        why = key.scrub(_why(bad, outcome.failure() or "the child stopped"))
        f = catalogue.ENGINE_KEY_FAILS_IN_JAIL.finding(
            jail,
            f"{key.describe()}: loaded and used before the chroot, but inside the jail as "
            f"{who}, {why}: every handshake fails while the daemon stays up.",
            **common,
        )
        return LateLoadVerdict((f,), (), steps)
    note = Notice(
        NoticeKind.NOTE,
        Stage.LATE_LOAD_PROBE,
        f"{key.describe()}: signed inside the jail as {who} ({len(signed)} signatures after "
        "the chroot, as the first handshakes).",
    )
    return LateLoadVerdict((), (note,), steps)


def _step_data(step: Step, key: EngineKey) -> dict[str, object]:
    return {
        "action": key.scrub(step.action),
        "ok": step.ok,
        "detail": key.scrub(step.detail),
        "errors": [
            key.scrub(e.error_string() + (f" [{e.data}]" if e.data else "")) for e in step.errors
        ],
    }
