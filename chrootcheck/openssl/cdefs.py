"""The one cffi ``ffi`` for every libcrypto (and its libssl siblings), in ABI mode: nothing is
compiled, each ``dlopen``'ed library resolves only the symbols it has. libc and libseccomp
have their own (``chrootcheck.system.libc``).

The package's build (``build_cffi.py``, run by setuptools through cffi's ``cffi_modules``, for
a wheel and for ``pip install -e``) writes ``_libcrypto_cffi.py`` from ``declarations.py``:
an out-of-line ABI module whose import needs no C parser (about 1 ms instead of the tens of
milliseconds pycparser takes), and whose type strings (``"OSSL_PARAM[2]"``) cffi's C backend
parses. A source tree that was never built falls back to parsing the same declarations here.

One difference between the two: a symbol the library lacks raises ``ffi.error`` out of line
and ``AttributeError`` in line (``MISSING_SYMBOL`` is both). And a library object dlcloses
its library when it is freed, so every handle that must stay loaded stays referenced.
"""

from __future__ import annotations

from typing import Any


def _load() -> Any:
    from chrootcheck.openssl.declarations import DECLARATIONS, DECLARATIONS_VERSION

    try:
        from chrootcheck.openssl._libcrypto_cffi import ffi as built  # type: ignore[import-not-found, unused-ignore]

        # a module built from older declarations (not rebuilt since) is not used
        if getattr(built.dlopen(None), "CHROOTCHECK_LIBCRYPTO_DECLARATIONS", 0) == (
            DECLARATIONS_VERSION
        ):
            return built
    except ImportError:  # a source tree never built: parse the declarations now
        pass
    from cffi import FFI  # type: ignore[import-untyped, unused-ignore]

    parsed = FFI()
    parsed.cdef(DECLARATIONS)
    return parsed


ffi: Any = _load()
# What looking up a symbol the library lacks raises: ffi.error out of line (the in-line FFI
# has no such attribute), AttributeError in line.
MISSING_SYMBOL: tuple[type[Exception], ...] = (
    AttributeError,
    *([ffi.error] if hasattr(ffi, "error") else []),
)
