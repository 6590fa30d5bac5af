"""Find and dlopen a libcrypto (cffi ABI mode), detect its version and what it can do.

Default: the libcrypto this Python's ``ssl`` module runs on (read from /proc/self/maps after
importing ``_ssl``). ``--libcrypto PATH`` names another build, typically the application's
own: it is checked first (openssl.trust) and loaded through the descriptor that was checked
(``/proc/self/fd/N``), so the file checked is the file loaded. Every candidate that fails is
reported in the one-line error.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from chrootcheck.openssl.cdefs import MISSING_SYMBOL, ffi
from chrootcheck.openssl.errcodes import Packing, version_packing
from chrootcheck.openssl.trust import (
    CONSENT_HINT,
    CheckedLibrary,
    CheckError,
    JailRoot,
    check_library,
    jail_roots,
    refuse_untrusted,
)
from chrootcheck.report.errors import ToolError

if TYPE_CHECKING:
    from chrootcheck.openssl.results import LibcryptoSummary

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


# Loaded libraries: by (st_dev, st_ino) for files, by name for a soname the linker chose.
_CACHE: dict[object, Libcrypto] = {}
# dlopen() names a checked library /proc/self/fd/N. glibc matches a new dlopen against the names
# already loaded, so a name is never used twice: each load gets an fd above every one used.
_FD_NAMES: list[int] = [63]
# Siblings loaded RTLD_GLOBAL for a library that needs them: kept loaded as long as we run.
_SIBLINGS: list[Any] = []


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
    except (OSError, TypeError):
        return None
    except MISSING_SYMBOL:
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


def load(
    path: str | None = None,
    *,
    jails: Sequence[str] = (),
    consent: bool = False,
    refusal_hint: str = CONSENT_HINT,
) -> Libcrypto:
    """Load a libcrypto (cached). ``path``: a file the user named; it is checked first
    (openssl.trust: not inside one of ``jails``, not writable by another user) and refused
    unless trusted or ``consent``; as root an untrusted one is refused even then. Default:
    the ssl module's libcrypto. Raises ToolError listing every failure, in one line."""
    if path is not None:
        checked = _check(path, jails)
        try:
            refuse_untrusted(checked, consent, refusal_hint)
            return load_checked(checked)
        finally:
            os.close(checked.fd)
    failures: list[str] = []
    for candidate in candidates(None):
        key: object = candidate
        if os.sep in candidate:
            try:
                st = os.stat(candidate)
                key = (st.st_dev, st.st_ino)
            except OSError as e:
                failures.append(f"{candidate}: {e.strerror}")
                continue
        if key in _CACHE:
            return _CACHE[key]
        try:
            loaded = _open(candidate, candidate, None)
        except _LoadError as e:
            failures.append(f"{candidate}: {e}")
            continue
        _CACHE[key] = loaded
        return loaded
    raise ToolError("cannot load libcrypto: " + "; ".join(failures))


def load_checked(checked: CheckedLibrary) -> Libcrypto:
    """Load the very file ``checked`` holds open (cached by its identity)."""
    key = (checked.dev, checked.ino)
    if key in _CACHE:
        return _CACHE[key]
    try:
        loaded = _open(checked.real, _proc_name(checked), checked)
    except _LoadError as e:
        raise ToolError(f"cannot load libcrypto: {checked.path}: {e}") from None
    _CACHE[key] = loaded
    return loaded


def describe_loaded(lc: Libcrypto) -> LibcryptoSummary:
    """What the report says about a library (also sent back by an unprivileged child)."""
    from chrootcheck.openssl.results import LibcryptoSummary

    caps = lc.capabilities
    return LibcryptoSummary(
        path=lc.path,
        version=lc.version_text,
        version_number=lc.version_number,
        series=lc.series,
        rand_api=caps.rand_api,
        has_drbg_1_1_1=caps.has_drbg_1_1_1,
        has_evp_rand=caps.has_evp_rand,
        has_keep_devices_open=caps.has_keep_devices_open,
        has_err_get_error_all=caps.has_err_get_error_all,
        has_openssl_info=caps.has_openssl_info,
    )


# The type strings openssl.rand and openssl.errors give ffi.new/cast/sizeof. cffi parses each
# on first use (pycparser) and caches it: parsed once in the parent, every forked child finds
# them cached instead of parsing them again.
_TYPES = (
    "unsigned char[]",
    "char[]",
    "unsigned int",
    "unsigned int *",
    "int64_t",
    "int64_t *",
    "int *",
    "size_t",
    "uintptr_t",
    "const char **",
    "OSSL_PARAM[2]",
    "OSSL_PARAM[3]",
)
_OTHER_FUNCTIONS = ("RAND_get0_private", "SSLeay", "SSLeay_version", "ERR_peek_error")


def prefill(lc: Libcrypto | None) -> None:
    """Fill cffi's caches before forking children: the type strings, and the library's
    functions (their cffi wrappers; nothing in the library is called, nothing seeded)."""
    for name in _TYPES:
        ffi.typeof(name)
    if lc is None:
        return
    caps = lc.capabilities.as_dict()
    wanted = {s for cap, syms in _OPTIONAL.items() if caps[cap] for s in syms}
    for name in sorted(wanted.union(_REQUIRED, _OTHER_FUNCTIONS)):
        _has(lc.lib, name)


def _check(path: str, jails: Sequence[str] | tuple[JailRoot, ...]) -> CheckedLibrary:
    roots = tuple(j for j in jails if isinstance(j, JailRoot))
    roots += jail_roots(j for j in jails if isinstance(j, str))
    try:
        return check_library(path, roots)
    except CheckError as e:
        raise ToolError(f"cannot load libcrypto: {path}: {e}") from None


def _proc_name(checked: CheckedLibrary) -> str:
    """A fresh /proc/self/fd/N name for ``checked``, after the one invariant: a library that
    failed the trust check is never loaded by root, consent or not."""
    if checked.concern is not None and os.geteuid() == 0:
        raise ToolError(
            f"refusing to load {checked.path} as root: {checked.concern}",
            "only the probe's unprivileged children may load it",
        )
    fd = fcntl.fcntl(checked.fd, fcntl.F_DUPFD_CLOEXEC, max(_FD_NAMES) + 1)
    _FD_NAMES.append(fd)
    return f"/proc/self/fd/{fd}"


class _LoadError(Exception):
    pass


_MISSING = re.compile(r"([^\s:/'\"]+\.so[^\s:'\"]*): cannot open shared object file")


def _dlopen_with_siblings(
    target: str | CheckedLibrary, name: str | None = None
) -> tuple[Any, tuple[str, ...]]:
    """dlopen; if a DT_NEEDED library is missing but lies beside the file (a wheel's bundled
    libz, an application's private libs), load it RTLD_GLOBAL first and retry. A sibling is
    checked like the library; a trusted library never pulls in an untrusted one.

    ``target``: a checked library (``name`` is its /proc/self/fd name), or a path to check."""
    if isinstance(target, str):
        checked = _check(target, ())
        refuse_untrusted(checked, consent=False)
        try:
            return _dlopen_with_siblings(checked, _proc_name(checked))
        finally:
            os.close(checked.fd)
    assert name is not None
    siblings: list[str] = []
    try:
        for _ in range(8):
            try:
                return ffi.dlopen(name), tuple(siblings)
            except OSError as e:
                message = " ".join(str(e).split())
                m = _MISSING.search(message)
                if m is None:
                    raise _LoadError(_short(message, name)) from None
                sibling = os.path.join(os.path.dirname(target.real), m.group(1))
                if sibling in siblings or not os.path.exists(sibling):
                    raise _LoadError(_short(message, name)) from None
                _load_sibling(target, sibling, m.group(1))
                siblings.append(sibling)
        raise _LoadError("too many missing dependencies")
    finally:
        os.close(int(name.rsplit("/", 1)[1]))


def _load_sibling(lib: CheckedLibrary, sibling: str, needed: str) -> None:
    try:
        checked = check_library(sibling, lib.jails)
    except CheckError as e:
        raise _LoadError(f"needs {needed}: {e}") from None
    try:
        if checked.concern is not None and lib.concern is None:
            raise _LoadError(f"needs {needed}, which is refused: {checked.concern}")
        name = _proc_name(checked)
        try:
            # Referenced for good: a freed library object dlcloses its library (out of line).
            _SIBLINGS.append(ffi.dlopen(name, ffi.RTLD_NOW | ffi.RTLD_GLOBAL))
        except OSError as e2:
            raise _LoadError(f"needs {needed}: {_short(str(e2), name)}") from None
        finally:
            os.close(int(name.rsplit("/", 1)[1]))
    finally:
        os.close(checked.fd)


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
    except MISSING_SYMBOL:
        return False
    return True


def _open(display: str, name: str, checked: CheckedLibrary | None) -> Libcrypto:
    """``name``: what dlopen gets; ``display``: the path the report shows."""
    if checked is not None:
        lib, siblings = _dlopen_with_siblings(checked, name)
    else:  # the default: the ssl module's (already in this process), or the linker's choice
        try:
            lib, siblings = ffi.dlopen(name), ()
        except OSError as e:
            raise _LoadError(_short(" ".join(str(e).split()), name)) from None
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
    if owner and not _same_file(owner, display, checked):
        raise _LoadError(f"not a libcrypto: its OpenSSL functions come from {owner}")
    missing = [s for s in _REQUIRED if not _has(lib, s)]
    if missing:
        raise _LoadError(f"{text or 'this library'} lacks {', '.join(missing)}")
    if number < 0x10002000:
        raise _LoadError(f"{text}: OpenSSL older than 1.0.2 is not supported")
    if checked is not None:
        resolved = checked.real
    elif os.sep in display:
        resolved = os.path.realpath(display)
    else:  # a bare soname: report the file the dynamic linker chose
        resolved = os.path.realpath(owner) if owner else display
    return Libcrypto(resolved, lib, number, text, caps, siblings)


def _same_file(owner: str, display: str, checked: CheckedLibrary | None) -> bool:
    if checked is not None:
        try:
            st = os.stat(owner)
        except OSError:
            return os.path.realpath(owner) == checked.real
        return (st.st_dev, st.st_ino) == (checked.dev, checked.ino)
    return os.sep not in display or os.path.realpath(owner) == os.path.realpath(display)


def _string(ptr: Any) -> str:
    if ptr == ffi.NULL:
        return ""
    return bytes(ffi.string(ptr)).decode("utf-8", "replace")


def string(ptr: Any) -> str:
    """A C string from the library as text ("" for NULL)."""
    return _string(ptr)
