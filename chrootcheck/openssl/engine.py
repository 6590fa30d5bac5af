"""An engine key, as a daemon uses one: the one small interface the late-load probe calls.

``load_key`` does what stunnel and haproxy do before their chroot: the config file, the engine
(``ENGINE_by_id``), its control commands (``MODULE_PATH``, ``PIN`` ...), ``ENGINE_init`` and
``ENGINE_load_private_key``; ``sign`` does what every handshake does with the key afterwards
(``EVP_DigestSign`` over SHA-256). Each call returns a ``Step`` with its decoded error chain
and leaves OpenSSL's error queue empty. A secret control command's value (a PIN) never goes
into a step: ``EngineKey.shown`` and ``shown_value`` hide it.

The caller decides whether the engine and module may be loaded at all (openssl.trust, and the
late-load probe's own rules); nothing here checks a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chrootcheck.openssl.cdefs import MISSING_SYMBOL, ffi
from chrootcheck.openssl.errors import drain
from chrootcheck.openssl.hsm import EngineKey, shown_value
from chrootcheck.openssl.library import Libcrypto
from chrootcheck.openssl.results import Step

_DATA = b"chrootcheck: a handshake's signature"


@dataclass
class LoadedKey:
    """The engine and key handles (kept referenced: they live as long as the process)."""

    engine: Any
    pkey: Any


def load_key(lc: Libcrypto, spec: EngineKey) -> tuple[list[Step], LoadedKey | None]:
    """The engine, its control commands and the key, as before a daemon's chroot."""
    lib = lc.lib
    steps: list[Step] = []
    drain(lc)
    try:
        lib.ENGINE_load_builtin_engines()
        engine = lib.ENGINE_by_id(spec.engine.encode())
    except MISSING_SYMBOL:
        return [
            Step(f"ENGINE_by_id({spec.engine})", None, (), "no ENGINE API in this library")
        ], None
    steps.append(Step(f"ENGINE_by_id({spec.engine})", engine != ffi.NULL, drain(lc)))
    if engine == ffi.NULL:
        return steps, None
    for name, value in spec.ctrls:
        # A command without a value (LOAD) takes NULL, as stunnel's "engineCtrl = LOAD" does.
        arg = value.encode() if value else ffi.NULL
        ok = int(lib.ENGINE_ctrl_cmd_string(engine, name.encode(), arg, 0)) == 1
        steps.append(
            Step(f"ENGINE_ctrl_cmd_string({name}, {shown_value(name, value)})", ok, drain(lc))
        )
        if not ok:
            return steps, None
    ok = int(lib.ENGINE_init(engine)) == 1
    steps.append(Step("ENGINE_init", ok, drain(lc)))
    if not ok:
        return steps, None
    if spec.default:
        ok = int(lib.ENGINE_set_default_string(engine, spec.default.encode())) == 1
        steps.append(Step(f"ENGINE_set_default_string({spec.default})", ok, drain(lc)))
    pkey = lib.ENGINE_load_private_key(engine, spec.key.encode(), ffi.NULL, ffi.NULL)
    steps.append(Step(f"ENGINE_load_private_key({spec.shown_key})", pkey != ffi.NULL, drain(lc)))
    if pkey == ffi.NULL:
        return steps, None
    return steps, LoadedKey(engine, pkey)


def sign(lc: Libcrypto, key: LoadedKey, action: str) -> Step:
    """One signature with the key (SHA-256), as a TLS handshake makes one."""
    lib = lc.lib
    drain(lc)
    ctx = lib.EVP_MD_CTX_new()
    if ctx == ffi.NULL:
        return Step(action, False, drain(lc), "EVP_MD_CTX_new failed")
    try:
        ok = int(lib.EVP_DigestSignInit(ctx, ffi.NULL, lib.EVP_sha256(), ffi.NULL, key.pkey)) == 1
        ok = ok and int(lib.EVP_DigestUpdate(ctx, _DATA, len(_DATA))) == 1
        size = ffi.new("size_t *", 0)
        ok = ok and int(lib.EVP_DigestSignFinal(ctx, ffi.NULL, size)) == 1
        detail = ""
        if ok:
            sig = ffi.new("unsigned char[]", max(1, int(size[0])))
            ok = int(lib.EVP_DigestSignFinal(ctx, sig, size)) == 1
            detail = f"{int(size[0])}-byte signature" if ok else ""
        return Step(action, ok, drain(lc), detail)
    finally:
        lib.EVP_MD_CTX_free(ctx)
