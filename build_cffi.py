"""Build-time only: cffi writes two out-of-line ABI-mode modules (``set_source(name, None)``: no
C compiler, nothing compiled), so that no C declaration is parsed at run time:
chrootcheck/openssl/_libcrypto_cffi.py from chrootcheck/openssl/declarations.py, and
chrootcheck/system/_libc_cffi.py from chrootcheck/system/libc.py's declarations. setup.py
names both in ``cffi_modules``; never imported at run time (openssl.cdefs and system.libc
import the modules this writes, and parse the declarations themselves when they are absent)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cffi import FFI  # type: ignore[import-untyped, unused-ignore]

_HERE = Path(__file__).resolve().parent


def _declarations(relative: str) -> str:
    """DECLARATIONS of a module of ours, read by path (neither imports anything of ours)."""
    spec = importlib.util.spec_from_file_location("_declarations", _HERE / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.DECLARATIONS
    return text


def _builder(relative: str, module: str) -> FFI:
    builder = FFI()
    builder.cdef(_declarations(relative))
    builder.set_source(module, None)
    return builder


ffibuilder = _builder("chrootcheck/openssl/declarations.py", "chrootcheck.openssl._libcrypto_cffi")
libc_builder = _builder("chrootcheck/system/libc.py", "chrootcheck.system._libc_cffi")
BUILDERS = (ffibuilder, libc_builder)

if __name__ == "__main__":  # by hand, in a source tree: python3 build_cffi.py
    for builder in BUILDERS:
        builder.compile(tmpdir=str(_HERE))
