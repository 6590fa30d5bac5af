"""What a libcrypto does for entropy, and what this host offers it (``chrootcheck info``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from chrootcheck.openssl import declarations as decl
from chrootcheck.openssl.errors import drain
from chrootcheck.openssl.library import Capabilities, Libcrypto, string
from chrootcheck.openssl.rand import for_library
from chrootcheck.openssl.results import ReseedSettings

SHM_KEY = 0x72  # OPENSSL_RAND_SEED_DEVRANDOM_SHM_ID (114): "/dev/random was ready once"


@dataclass(frozen=True)
class LibInfo:
    path: str
    version: str
    version_number: int
    series: str  # 3.x, 1.1.1, 1.1.0, 1.0.2
    rand_api: str
    capabilities: Capabilities
    seed_source: str
    seed_source_origin: str  # where seed_source comes from, said honestly
    openssldir: str
    enginesdir: str
    modulesdir: str | None  # 3.x only
    reseed: ReseedSettings
    reseed_note: str
    keep_devices_open: str
    rand_method: str  # the default DRBG, or replaced by an engine / custom method
    getrandom_works: bool
    getrandom_detail: str
    kernel: str
    kernel_below_4_8: bool  # OpenSSL then waits on /dev/random and uses shm key 0x72
    shm_0x72: bool
    shm_detail: str


def library_dirs(lc: Libcrypto) -> tuple[str, str, str | None]:
    """OPENSSLDIR, ENGINESDIR and MODULESDIR (3.x only), without touching RAND: the scan asks
    for them in the parent process, which must stay unseeded for the probe's children."""
    return (
        _dir(lc, decl.OPENSSL_INFO_CONFIG_DIR, decl.OPENSSL_DIR),
        _dir(lc, decl.OPENSSL_INFO_ENGINES_DIR, decl.OPENSSL_ENGINES_DIR),
        _dir(lc, decl.OPENSSL_INFO_MODULES_DIR, decl.OPENSSL_MODULES_DIR)
        if lc.series == "3.x"
        else None,
    )


def gather_info(lc: Libcrypto) -> LibInfo:
    caps = lc.capabilities
    getrandom_ok, getrandom_detail = getrandom_status()
    kernel = os.uname().release
    shm, shm_detail = shm_key_status(SHM_KEY)
    seed, origin = _seed_source(lc)
    reseed, note = _reseed(lc)
    openssldir, enginesdir, modulesdir = library_dirs(lc)
    info = LibInfo(
        path=lc.path,
        version=lc.version_text,
        version_number=lc.version_number,
        series=lc.series,
        rand_api=caps.rand_api,
        capabilities=caps,
        seed_source=seed,
        seed_source_origin=origin,
        openssldir=openssldir,
        enginesdir=enginesdir,
        modulesdir=modulesdir,
        reseed=reseed,
        reseed_note=note,
        keep_devices_open=(
            "keep (the default since 1.1.1; the library has no getter for it)"
            if caps.has_keep_devices_open
            else "not available: this library closes the devices after every read"
        ),
        rand_method=_rand_method(lc),
        getrandom_works=getrandom_ok,
        getrandom_detail=getrandom_detail,
        kernel=kernel,
        kernel_below_4_8=kernel_below(kernel, (4, 8)),
        shm_0x72=shm,
        shm_detail=shm_detail,
    )
    drain(lc)
    return info


def _seed_source(lc: Libcrypto) -> tuple[str, str]:
    if lc.capabilities.has_openssl_info:
        text = string(lc.lib.OPENSSL_info(decl.OPENSSL_INFO_SEED_SOURCE))
        return text or "unknown", "OPENSSL_info(OPENSSL_INFO_SEED_SOURCE)"
    if lc.series == "1.1.1":
        return (
            "not exposed",
            "1.1.1 has no runtime API for it; a default build uses "
            "os-specific (getrandom, then /dev/urandom)",
        )
    return (
        "/dev/urandom, /dev/random, /dev/srandom, then pid, uid and time",
        "fixed in 1.1.0 and older (RAND_poll in md_rand; EGD only if built in)",
    )


def _dir(lc: Libcrypto, info_type: int, version_type: int) -> str:
    if lc.capabilities.has_openssl_info:
        return string(lc.lib.OPENSSL_info(info_type))
    if lc.capabilities.has_version_num:
        text = string(lc.lib.OpenSSL_version(version_type))
    elif version_type == decl.OPENSSL_DIR:
        text = string(lc.lib.SSLeay_version(decl.SSLEAY_DIR))  # 1.0.2 numbers it 5
    else:
        return "not exposed by 1.0.2 (compiled in)"
    # OpenSSL_version(OPENSSL_DIR) says: OPENSSLDIR: "/usr/lib/ssl"
    m = re.search(r'"(.*)"', text)
    return m.group(1) if m else text


def _reseed(lc: Libcrypto) -> tuple[ReseedSettings, str]:
    rand = for_library(lc)
    settings = rand.reseed_settings()
    if settings.source == "library":
        if settings.primary_requests is None:
            return settings, "could not be read: the primary DRBG could not be created here"
        return settings, "read from the library (EVP_RAND_CTX_get_params)"
    if settings.source == "documented defaults":
        return settings, (
            "1.1.1 has no getter: the documented defaults (rand_local.h), "
            "unless the application changed them"
        )
    return settings, "no DRBG: seeded once at first use, never reseeded"


def _rand_method(lc: Libcrypto) -> str:
    if not lc.capabilities.has_rand_method:
        return "unknown"
    default = lc.lib.RAND_OpenSSL if lc.series != "1.0.2" else lc.lib.RAND_SSLeay
    same = lc.lib.RAND_get_rand_method() == default()
    drain(lc)
    if not same:
        return "replaced (a RAND engine or custom method): the DRBG facts may not apply"
    if lc.capabilities.has_evp_rand or lc.capabilities.has_drbg_1_1_1:
        return "the library's own DRBG (RAND_OpenSSL)"
    name = "RAND_SSLeay" if lc.series == "1.0.2" else "RAND_OpenSSL"
    return f"the library's own md_rand ({name}): no DRBG, seeded once, never reseeded"


def getrandom_status() -> tuple[bool, str]:
    try:
        os.getrandom(1, os.GRND_NONBLOCK)
    except BlockingIOError:
        return True, "works (the pool is not initialised yet: it would block)"
    except OSError as e:
        return False, f"fails here: {os.strerror(e.errno or 0)}"
    return True, "works"


def shm_key_status(key: int) -> tuple[bool, str]:
    """Whether a SysV shm segment with this key exists in our IPC namespace."""
    try:
        with open("/proc/sysvipc/shm", encoding="ascii") as f:
            next(f, None)  # header
            for line in f:
                fields = line.split()
                if fields and int(fields[0]) == key:
                    return True, (
                        f"exists (id {fields[1]}): OpenSSL on an old kernel then "
                        "trusts /dev/urandom at once"
                    )
    except (OSError, ValueError) as e:
        return False, f"unknown ({e})"
    return False, "absent"


def kernel_below(release: str, version: tuple[int, int]) -> bool:
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        return False
    return (int(m.group(1)), int(m.group(2))) < version
