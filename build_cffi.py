"""Build-time only: cffi writes chrootcheck/openssl/_libcrypto_cffi.py, an out-of-line ABI-mode
module (``set_source(name, None)``: no C compiler, nothing compiled), from the declarations in
chrootcheck/openssl/declarations.py. setup.py names it in ``cffi_modules``; never imported at
run time (chrootcheck.openssl.cdefs imports the module this writes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cffi import FFI  # type: ignore[import-untyped, unused-ignore]

_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "_chrootcheck_declarations", _HERE / "chrootcheck" / "openssl" / "declarations.py"
)
assert _spec is not None and _spec.loader is not None
_declarations = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_declarations)

ffibuilder = FFI()
ffibuilder.cdef(_declarations.DECLARATIONS)
ffibuilder.set_source("chrootcheck.openssl._libcrypto_cffi", None)

if __name__ == "__main__":  # by hand, in a source tree: python3 build_cffi.py
    ffibuilder.compile(tmpdir=str(_HERE))
