"""Find and dlopen a libcrypto (cffi ABI mode), detect its version and what it can do.

Default: the libcrypto this Python's ``ssl`` module runs on (read from /proc/self/maps after
importing ``_ssl``). ``--libcrypto PATH`` names another build, typically the application's
own. Every candidate that fails is reported in the one-line error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from typing import Any

from chrootcheck.errors import ToolError
from chrootcheck.openssl.cdefs import ffi
from chrootcheck.openssl.errcodes import Packing, version_packing

# Optional symbols probed once at load: capability name -> symbols that must all exist.
_OPTIONAL: dict[str, tuple[str, ...]] = {
    "has_version_num": ("OpenSSL_version_num", "OpenSSL_version"),  # 1.1.0+
    "has_init_crypto": ("OPENSSL_init_crypto",),  # 1.1.0+
    "has_drbg_1_1_1": (
        "RAND_DRBG_get0_master",
        "RAND_DRBG_get0_public",
        "RAND_DRBG_reseed",
        "RAND_DRBG_set_reseed_interval",
    ),
    "has_evp_rand": (
        "RAND_get0_primary",
        "RAND_get0_public",
        "EVP_RAND_reseed",
        "EVP_RAND_get_state",
        "EVP_RAND_CTX_get_params",
        "EVP_RAND_CTX_set_params",
    ),
    "has_keep_devices_open": ("RAND_keep_random_devices_open",),  # 1.1.1+
    "has_err_get_error_all": ("ERR_get_error_all",),  # 3.0+
    "has_openssl_info": ("OPENSSL_info",),  # 3.0+
    "has_err_load_crypto_strings": ("ERR_load_crypto_strings",),  # a function only in 1.0.2
    "has_err_put_error": ("ERR_put_error",),  # 1.x
    "has_err_raise": ("ERR_new", "ERR_set_debug", "ERR_set_error"),  # 3.x
    "has_rand_method": ("RAND_get_rand_method",),
}
# Without these nothing works: checked at load, so a wrong file fails there with one line.
_REQUIRED = (
    "ERR_get_error",
    "ERR_get_error_line_data",
    "ERR_lib_error_string",
    "ERR_reason_error_string",
    "ERR_func_error_string",
    "ERR_clear_error",
    "RAND_bytes",
    "RAND_status",
    "RAND_poll",
)


@dataclass(frozen=True)
class Capabilities:
    """What this libcrypto exports, probed once; the rest of the code asks here, not dlsym."""

    has_version_num: bool = False
    has_init_crypto: bool = False
    has_drbg_1_1_1: bool = False
    has_evp_rand: bool = False
    has_keep_devices_open: bool = False
    has_err_get_error_all: bool = False
    has_openssl_info: bool = False
    has_err_load_crypto_strings: bool = False
    has_err_put_error: bool = False
    has_err_raise: bool = False
    has_rand_method: bool = False

    @property
    def rand_api(self) -> str:
        if self.has_evp_rand:
            return "EVP_RAND (3.x)"
        if self.has_drbg_1_1_1:
            return "RAND_DRBG (1.1.1)"
        return "none: no DRBG (1.1.0 or older: RAND_poll/RAND_status only)"

    def as_dict(self) -> dict[str, bool]:
        return {f.name: bool(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Libcrypto:
    """A loaded libcrypto. ``lib`` is the cffi library object (typed Any: cffi has no stubs)."""

    path: str
    lib: Any
    version_number: int
    version_text: str
    capabilities: Capabilities
    siblings: tuple[str, ...] = ()  # libraries loaded RTLD_GLOBAL first so this one loads

    @property
    def packing(self) -> Packing:
        return version_packing(self.version_number)

    @property
    def series(self) -> str:
        """ "3.x", "1.1.1", "1.1.0" or "1.0.2" (what decides the code paths)."""
        n = self.version_number
        if n >= 0x30000000:
            return "3.x"
        if n >= 0x10101000:
            return "1.1.1"
        if n >= 0x10100000:
            return "1.1.0"
        return "1.0.2"


_CACHE: dict[str, Libcrypto] = {}


def ssl_module_libcrypto() -> str | None:
    """The libcrypto that Python's ``_ssl`` module is linked against, if any.

    Not simply the first libcrypto in /proc/self/maps: another one may be loaded already
    (a --libcrypto, a wheel's copy). dlsym on _ssl's own handle searches its dependency tree,
    so the address of OpenSSL_version_num there tells which mapped file _ssl uses.
    """
    try:
        import _ssl
    except ImportError:
        return None
    module_file = getattr(_ssl, "__file__", None)
    try:
        handle = ffi.dlopen(module_file, ffi.RTLD_NOW | ffi.RTLD_NOLOAD)
        address = int(ffi.cast("uintptr_t", handle.OpenSSL_version_num))
    except (OSError, AttributeError, TypeError):
        return None
    owner = _defining_file(address)
    if owner is None or owner == module_file:
        return None  # statically linked into Python: no separate libcrypto to load
    return owner


def candidates(path: str | None) -> list[str]:
    if path is not None:
        return [path]
    found = ssl_module_libcrypto()
    if found:
        return [found]
    # No ssl module (or not on Linux /proc): let the dynamic linker search.
    return ["libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so.1.0.0", "libcrypto.so"]


def load(path: str | None = None) -> Libcrypto:
    """Load a libcrypto (cached per resolved path). Raises ToolError listing every failure."""
    failures: list[str] = []
    for candidate in candidates(path):
        key = os.path.realpath(candidate) if os.sep in candidate else candidate
        if key in _CACHE:
            return _CACHE[key]
        if os.sep in candidate and not os.path.exists(candidate):
            failures.append(f"{candidate}: no such file")
            continue
        if os.sep in candidate and os.path.isdir(candidate):
            failures.append(f"{candidate}: is a directory")
            continue
        try:
            loaded = _open(candidate)
        except _LoadError as e:
            failures.append(f"{candidate}: {e}")
            continue
        _CACHE[key] = loaded
        return loaded
    raise ToolError("cannot load libcrypto: " + "; ".join(failures))


class _LoadError(Exception):
    pass


_MISSING = re.compile(r"([^\s:/'\"]+\.so[^\s:'\"]*): cannot open shared object file")


def _dlopen_with_siblings(path: str) -> tuple[Any, tuple[str, ...]]:
    """dlopen; if a DT_NEEDED library is missing but lies beside ``path`` (a wheel's bundled
    libz, an application's private libs), load it RTLD_GLOBAL first and retry."""
    siblings: list[str] = []
    for _ in range(8):
        try:
            return ffi.dlopen(path), tuple(siblings)
        except OSError as e:
            message = " ".join(str(e).split())
            m = _MISSING.search(message)
            if m is None or os.sep not in path:
                raise _LoadError(_short(message, path)) from None
            sibling = os.path.join(os.path.dirname(path), m.group(1))
            if sibling in siblings or not os.path.exists(sibling):
                raise _LoadError(_short(message, path)) from None
            try:
                ffi.dlopen(sibling, ffi.RTLD_NOW | ffi.RTLD_GLOBAL)
            except OSError as e2:
                raise _LoadError(f"needs {m.group(1)}: {_short(str(e2), sibling)}") from None
            siblings.append(sibling)
    raise _LoadError("too many missing dependencies")


def _short(message: str, path: str) -> str:
    # cffi says "cannot load library 'PATH': PATH: reason. Additionally, ctypes.util...";
    # keep the reason (which may name a missing dependency).
    message = message.split(". Additionally,", 1)[0]
    prefix = f"cannot load library '{path}': "
    if message.startswith(prefix):
        message = message[len(prefix) :]
    if message.startswith(f"{path}: "):
        message = message[len(path) + 2 :]
    return message


def _defining_file(address: int) -> str | None:
    """The mapped file that holds this address (/proc/self/maps), if any."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(None, 5)
                lo, _, hi = parts[0].partition("-")
                if int(lo, 16) <= address < int(hi, 16):
                    return parts[5].strip() if len(parts) == 6 else None
    except (OSError, ValueError):
        return None
    return None


def _has(lib: Any, name: str) -> bool:
    try:
        getattr(lib, name)
    except AttributeError:
        return False
    return True


def _open(path: str) -> Libcrypto:
    lib, siblings = _dlopen_with_siblings(path)
    caps = Capabilities(**{cap: all(_has(lib, s) for s in syms) for cap, syms in _OPTIONAL.items()})
    if caps.has_version_num:
        number = int(lib.OpenSSL_version_num())
        text = _string(lib.OpenSSL_version(0))
    elif _has(lib, "SSLeay"):
        number = int(lib.SSLeay())
        text = _string(lib.SSLeay_version(0))
    else:
        raise _LoadError("not a libcrypto (no OpenSSL_version_num and no SSLeay)")
    # dlsym also finds symbols in the library's dependencies: libssl, or a program linked
    # against libcrypto, would pass for one. Check which file defines RAND_bytes.
    owner = _defining_file(int(ffi.cast("uintptr_t", lib.RAND_bytes)))
    if os.sep in path and owner and os.path.realpath(owner) != os.path.realpath(path):
        raise _LoadError(f"not a libcrypto: its OpenSSL functions come from {owner}")
    missing = [s for s in _REQUIRED if not _has(lib, s)]
    if missing:
        raise _LoadError(f"{text or 'this library'} lacks {', '.join(missing)}")
    if number < 0x10002000:
        raise _LoadError(f"{text}: OpenSSL older than 1.0.2 is not supported")
    if os.sep in path:
        resolved = os.path.realpath(path)
    else:  # a bare soname: report the file the dynamic linker chose
        resolved = os.path.realpath(owner) if owner else path
    return Libcrypto(resolved, lib, number, text, caps, siblings)


def _string(ptr: Any) -> str:
    if ptr == ffi.NULL:
        return ""
    return bytes(ffi.string(ptr)).decode("utf-8", "replace")


def string(ptr: Any) -> str:
    """A C string from the library as text ("" for NULL)."""
    return _string(ptr)
