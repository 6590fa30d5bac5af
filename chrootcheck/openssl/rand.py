"""One small interface over OpenSSL's random generators, whatever the version.

* 3.x: the EVP_RAND DRBGs of the default library context (primary, public, private).
* 1.1.1: the RAND_DRBG API ("master" is 1.1.1's word for primary).
* 1.1.0 / 1.0.2: no DRBG at all. md_rand seeds once with RAND_poll and never reseeds; the
  backend runs what applies (RAND_poll, RAND_status) and says "not applicable" for the rest.

Every method returns a Step carrying the decoded error chain, and leaves the queue empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chrootcheck.openssl import declarations as decl
from chrootcheck.openssl.cdefs import ffi
from chrootcheck.openssl.errors import drain
from chrootcheck.openssl.library import Libcrypto
from chrootcheck.openssl.results import ReseedSettings, Step

# Documented defaults (crypto/rand/rand_local.h in 1.1.1 and 3.x), for libraries with no getter.
PRIMARY_RESEED_REQUESTS = 1 << 8
PRIMARY_RESEED_SECONDS = 60 * 60
SECONDARY_RESEED_REQUESTS = 1 << 16
SECONDARY_RESEED_SECONDS = 7 * 60


class Rand:
    """The interface; ``for_library`` picks the implementation."""

    api = ""
    has_drbg = False

    def __init__(self, lc: Libcrypto) -> None:
        self.lc = lc
        self.lib: Any = lc.lib

    def primary_reseed(self) -> Step:
        raise NotImplementedError

    def public_reseed(self) -> Step:
        raise NotImplementedError

    def set_reseed_interval(self, requests: int) -> Step:
        raise NotImplementedError

    def draw(self, n: int = 32) -> Step:
        buf = ffi.new("unsigned char[]", n)
        return self._call(f"RAND_bytes({n})", lambda: int(self.lib.RAND_bytes(buf, n)) == 1)

    def draw_until_failure(self, count: int, n: int = 32) -> tuple[int, Step | None]:
        """Up to ``count`` draws of ``n`` bytes in a tight loop: (1-based index, its Step) of
        the first that failed, or (0, None)."""
        drain(self.lc)
        buf = ffi.new("unsigned char[]", n)
        rand_bytes = self.lib.RAND_bytes
        for i in range(1, count + 1):
            if int(rand_bytes(buf, n)) != 1:
                return i, Step(f"RAND_bytes({n})", False, drain(self.lc))
        drain(self.lc)
        return 0, None

    def draw_private(self, n: int = 32) -> Step:
        """RAND_priv_bytes (1.1.1+: the per-thread private DRBG, as key generation uses)."""
        if not self.has_drbg:
            return Step(f"RAND_priv_bytes({n})", None, (), "no private DRBG in this library")
        buf = ffi.new("unsigned char[]", n)
        return self._call(
            f"RAND_priv_bytes({n})", lambda: int(self.lib.RAND_priv_bytes(buf, n)) == 1
        )

    def seed(self, data: bytes) -> Step:
        """RAND_seed(data): what Postfix's smtpd and tlsmgr call inside their jail. It returns
        nothing: the errors it leaves say whether it worked."""
        buf = ffi.new("unsigned char[]", data)

        def call() -> bool:
            self.lib.RAND_seed(buf, len(data))
            return int(self.lib.ERR_peek_error()) == 0

        return self._call(f"RAND_seed({len(data)} bytes)", call)

    def state(self) -> str:
        """The primary DRBG's state: ready / error / uninitialised / absent."""
        raise NotImplementedError

    def reseed_settings(self) -> ReseedSettings:
        raise NotImplementedError

    def keep_devices_open(self, keep: bool) -> bool:
        """RAND_keep_random_devices_open(keep); False if the library has no such switch."""
        if not self.lc.capabilities.has_keep_devices_open:
            return False
        self.lib.RAND_keep_random_devices_open(1 if keep else 0)
        drain(self.lc)
        return True

    def _call(self, action: str, fn: Callable[[], bool], detail: str = "") -> Step:
        stale = drain(self.lc)  # never blame this call for an earlier one's errors
        ok = fn()
        errors = stale + drain(self.lc)
        return Step(action, ok, errors, detail)


class EvpRand(Rand):
    api = "EVP_RAND (3.x)"
    has_drbg = True

    def _primary(self) -> Any:
        return self.lib.RAND_get0_primary(ffi.NULL)

    def _public(self) -> Any:
        return self.lib.RAND_get0_public(ffi.NULL)

    def _with(
        self, action: str, getter: Callable[[], Any], fn: Callable[[Any], bool], what: str
    ) -> Step:
        stale = drain(self.lc)
        ctx = getter()
        if ctx == ffi.NULL:
            # No entropy at creation: OpenSSL frees the DRBG and returns NULL (retried later).
            return Step(
                action, False, stale + drain(self.lc), f"the {what} DRBG could not be created"
            )
        ok = fn(ctx)
        return Step(action, ok, stale + drain(self.lc))

    def primary_reseed(self) -> Step:
        return self._with(
            "EVP_RAND_reseed(primary)",
            self._primary,
            lambda c: int(self.lib.EVP_RAND_reseed(c, 0, ffi.NULL, 0, ffi.NULL, 0)) == 1,
            "primary",
        )

    def public_reseed(self) -> Step:
        # Prediction resistance passes through to the primary, which then pulls fresh OS
        # entropy (SEED-SRC ignores the flag): the public reseed reaches the seed source.
        return self._with(
            "EVP_RAND_reseed(public, prediction_resistance=1)",
            self._public,
            lambda c: int(self.lib.EVP_RAND_reseed(c, 1, ffi.NULL, 0, ffi.NULL, 0)) == 1,
            "public",
        )

    def set_reseed_interval(self, requests: int) -> Step:
        def both(_: Any) -> bool:
            ok = True
            for ctx in (self._primary(), self._public()):
                if ctx == ffi.NULL:
                    return False
                ok = _set_uint(self.lib, ctx, "reseed_requests", requests) and ok
            return ok

        return self._with(f"set reseed_requests={requests}", self._primary, both, "primary")

    def state(self) -> str:
        ctx = self._primary()
        if ctx == ffi.NULL:
            drain(self.lc)
            return "absent"
        st = int(self.lib.EVP_RAND_get_state(ctx))
        drain(self.lc)
        return {
            decl.EVP_RAND_STATE_UNINITIALISED: "uninitialised",
            decl.EVP_RAND_STATE_READY: "ready",
            decl.EVP_RAND_STATE_ERROR: "error",
        }.get(st, f"unknown ({st})")

    def reseed_settings(self) -> ReseedSettings:
        values: dict[str, int | None] = {}
        getters = (
            ("primary", self._primary),
            ("public", self._public),
            ("private", lambda: self.lib.RAND_get0_private(ffi.NULL)),
        )
        for name, getter in getters:
            ctx = getter()
            requests = seconds = None
            if ctx != ffi.NULL:
                requests, seconds = _get_reseed_params(self.lib, ctx)
            values[f"{name}_requests"] = requests
            values[f"{name}_seconds"] = seconds
        drain(self.lc)
        return ReseedSettings(source="library", **values)


class Drbg111(Rand):
    api = "RAND_DRBG (1.1.1)"
    has_drbg = True

    def primary_reseed(self) -> Step:
        stale = drain(self.lc)
        master = self.lib.RAND_DRBG_get0_master()
        if master == ffi.NULL:
            return Step("RAND_DRBG_reseed(master)", False, stale + drain(self.lc), "no master DRBG")
        if int(self.lib.RAND_status()) != 1:
            # RAND_DRBG_reseed on an errored DRBG only says "in error state"; RAND_poll
            # uninstantiates and re-instantiates it, which retries the seed source.
            ok = int(self.lib.RAND_poll()) == 1
            return Step("RAND_poll() (master was in error state)", ok, stale + drain(self.lc))
        # prediction_resistance=0: 1.1.1 refuses 1 on the master whatever the seed source.
        ok = int(self.lib.RAND_DRBG_reseed(master, ffi.NULL, 0, 0)) == 1
        return Step("RAND_DRBG_reseed(master)", ok, stale + drain(self.lc))

    def public_reseed(self) -> Step:
        stale = drain(self.lc)
        public = self.lib.RAND_DRBG_get0_public()
        if public == ffi.NULL:
            return Step("RAND_DRBG_reseed(public)", False, stale + drain(self.lc), "no public DRBG")
        ok = int(self.lib.RAND_DRBG_reseed(public, ffi.NULL, 0, 0)) == 1
        return Step("RAND_DRBG_reseed(public)", ok, stale + drain(self.lc))

    def set_reseed_interval(self, requests: int) -> Step:
        def both() -> bool:
            ok = True
            for drbg in (self.lib.RAND_DRBG_get0_master(), self.lib.RAND_DRBG_get0_public()):
                if drbg == ffi.NULL:
                    return False
                ok = int(self.lib.RAND_DRBG_set_reseed_interval(drbg, requests)) == 1 and ok
            return ok

        return self._call(f"RAND_DRBG_set_reseed_interval({requests})", both)

    def state(self) -> str:
        # No getter for the DRBG struct; RAND_status() is the master's state == READY.
        ok = int(self.lib.RAND_status()) == 1
        drain(self.lc)
        return "ready" if ok else "error"

    def reseed_settings(self) -> ReseedSettings:
        return ReseedSettings(
            source="documented defaults",
            primary_requests=PRIMARY_RESEED_REQUESTS,
            primary_seconds=PRIMARY_RESEED_SECONDS,
            public_requests=SECONDARY_RESEED_REQUESTS,
            public_seconds=SECONDARY_RESEED_SECONDS,
            private_requests=SECONDARY_RESEED_REQUESTS,
            private_seconds=SECONDARY_RESEED_SECONDS,
        )


class LegacyRand(Rand):
    """1.1.0 and 1.0.2: md_rand, seeded once, no DRBG and no reseed to force."""

    api = "none: no DRBG (md_rand, 1.1.0 or older)"
    has_drbg = False

    def primary_reseed(self) -> Step:
        # RAND_poll returns 1 even when it read no device (pid, uid and time go in regardless),
        # so only RAND_status says something, and only before the first seeding.
        def poll() -> bool:
            return int(self.lib.RAND_poll()) == 1 and int(self.lib.RAND_status()) == 1

        return self._call(
            "RAND_poll()", poll, "1.1.0 and older: RAND_poll succeeds even when it read nothing"
        )

    def public_reseed(self) -> Step:
        return Step("public reseed", None, (), "no DRBG in this library")

    def set_reseed_interval(self, requests: int) -> Step:
        return Step(f"reseed interval {requests}", None, (), "no DRBG in this library")

    def state(self) -> str:
        ok = int(self.lib.RAND_status()) == 1
        drain(self.lc)
        return "ready" if ok else "error"

    def reseed_settings(self) -> ReseedSettings:
        return ReseedSettings(source="none")


def for_library(lc: Libcrypto) -> Rand:
    caps = lc.capabilities
    if caps.has_evp_rand:
        return EvpRand(lc)
    if caps.has_drbg_1_1_1:
        return Drbg111(lc)
    return LegacyRand(lc)


def warm_up(lc: Libcrypto) -> None:
    """Before forking probe children: load libcrypto's error strings here, once, so that each
    child's ``init_crypto`` finds them loaded and only reads the config (0.55 ms instead of
    1.3 ms per child, measured on 3.0). Nothing more: no config is read (every child reads it
    itself, under its scenario's sandbox, and reports what it found), no DRBG is created and
    nothing is seeded (a child must start unseeded, as a daemon does), and a success leaves no
    error in the queue the children inherit."""
    if lc.capabilities.has_init_crypto:
        lc.lib.OPENSSL_init_crypto(decl.OPENSSL_INIT_LOAD_CRYPTO_STRINGS, ffi.NULL)
    elif lc.capabilities.has_err_load_crypto_strings:
        lc.lib.ERR_load_crypto_strings()


def init_crypto(lc: Libcrypto) -> Step:
    """Initialise like a daemon does at start: error strings and the config file (so that
    openssl.cnf, engines and providers are read now, from the host, not after the chroot)."""
    lib = lc.lib
    if lc.capabilities.has_init_crypto:
        opts = decl.OPENSSL_INIT_LOAD_CRYPTO_STRINGS | decl.OPENSSL_INIT_LOAD_CONFIG
        stale = drain(lc)
        ok = int(lib.OPENSSL_init_crypto(opts, ffi.NULL)) == 1
        return Step("OPENSSL_init_crypto(LOAD_CONFIG)", ok, stale + drain(lc))
    if lc.capabilities.has_err_load_crypto_strings:
        lib.ERR_load_crypto_strings()
    return Step(
        "ERR_load_crypto_strings()",
        True,
        drain(lc),
        "1.0.2: config is not loaded by libcrypto alone",
    )


def load_config(lc: Libcrypto, path: str) -> Step:
    """A service's own config file (its unit's OPENSSL_CONF), loaded as OPENSSL_init_crypto
    loads one: the default section's modules (providers, engines, [random]), a missing file
    ignored. The caller has judged it and everything it loads (app.sandbox)."""
    flags = decl.CONF_MFLAGS_DEFAULT_SECTION | decl.CONF_MFLAGS_IGNORE_MISSING_FILE
    stale = drain(lc)
    if int(lc.lib.CONF_modules_load_file(path.encode(), ffi.NULL, flags)) > 0:
        return Step(f"CONF_modules_load_file({path})", True, stale + drain(lc))
    # As at a daemon's start: a module that fails to load is ignored unless the config sets
    # config_diagnostics = 1 (then OpenSSL's own initialisation fails, measured by init).
    return Step(
        f"CONF_modules_load_file({path})",
        None,
        stale + drain(lc),
        "not every module of the config loaded (OpenSSL ignores that at start unless "
        "config_diagnostics = 1)",
    )


def _set_uint(lib: Any, ctx: Any, key: str, value: int) -> bool:
    name = ffi.new("char[]", key.encode())
    data = ffi.new("unsigned int *", value)
    params = ffi.new("OSSL_PARAM[2]")
    params[0].key = name
    params[0].data_type = decl.OSSL_PARAM_UNSIGNED_INTEGER
    params[0].data = data
    params[0].data_size = ffi.sizeof("unsigned int")
    return int(lib.EVP_RAND_CTX_set_params(ctx, params)) == 1


def _get_reseed_params(lib: Any, ctx: Any) -> tuple[int | None, int | None]:
    keys = (ffi.new("char[]", b"reseed_requests"), ffi.new("char[]", b"reseed_time_interval"))
    requests = ffi.new("unsigned int *")
    seconds = ffi.new("int64_t *")  # time_t; OSSL_PARAM_set_time_t fills any integer size
    params = ffi.new("OSSL_PARAM[3]")
    for i, (key, data, kind, size) in enumerate(
        (
            (keys[0], requests, decl.OSSL_PARAM_UNSIGNED_INTEGER, ffi.sizeof("unsigned int")),
            (keys[1], seconds, decl.OSSL_PARAM_INTEGER, ffi.sizeof("int64_t")),
        )
    ):
        params[i].key = key
        params[i].data_type = kind
        params[i].data = data
        params[i].data_size = size
        params[i].return_size = ffi.cast("size_t", -1)  # OSSL_PARAM_UNMODIFIED
    if int(lib.EVP_RAND_CTX_get_params(ctx, params)) != 1:
        return None, None
    unmodified = int(ffi.cast("size_t", -1))
    got_requests = int(requests[0]) if int(params[0].return_size) != unmodified else None
    got_seconds = int(seconds[0]) if int(params[1].return_size) != unmodified else None
    return got_requests, got_seconds
