"""Drain OpenSSL's error queue into frozen ErrorRecords, leaving it empty.

Called at the boundary of every binding call, so no error lingers to be blamed on a later
call. Strings come from the library (``ERR_lib_error_string`` ...) and fall back to the Python
tables of ``errcodes`` when the library has none.
"""

from __future__ import annotations

from typing import Any

from chrootcheck.openssl.cdefs import ffi
from chrootcheck.openssl.declarations import ERR_TXT_STRING
from chrootcheck.openssl.errcodes import ErrorRecord, decode
from chrootcheck.openssl.library import Libcrypto, string

# OpenSSL's queue is a ring of 16 entries; the bound only guards against a broken library.
_MAX_ENTRIES = 64
_strings_loaded: set[str] = set()


def drain(lc: Libcrypto) -> tuple[ErrorRecord, ...]:
    """Every queued error of this thread, oldest first; the queue is empty afterwards."""
    lib = lc.lib
    _ensure_strings(lc)
    file = ffi.new("const char **")
    line = ffi.new("int *")
    func = ffi.new("const char **")
    data = ffi.new("const char **")
    flags = ffi.new("int *")
    records: list[ErrorRecord] = []
    for _ in range(_MAX_ENTRIES):
        func[0] = ffi.NULL
        if lc.capabilities.has_err_get_error_all:
            code = int(lib.ERR_get_error_all(file, line, func, data, flags))
        else:
            code = int(lib.ERR_get_error_line_data(file, line, data, flags))
        if code == 0:
            return tuple(records)
        records.append(_record(lc, code, file[0], line[0], func[0], data[0], flags[0]))
    lib.ERR_clear_error()
    return tuple(records)


def _record(
    lc: Libcrypto, code: int, file: Any, line: int, func: Any, data: Any, flags: int
) -> ErrorRecord:
    lib = lc.lib
    base = decode(code, lc.packing)
    library = string(lib.ERR_lib_error_string(code)) or base.library
    # 3.x returns NULL for system errors here (it prints strerror): keep the table's text.
    reason = string(lib.ERR_reason_error_string(code)) or base.reason
    if lc.packing == "3.x":
        function = string(func)  # the C function ERR_raise recorded; no codes in 3.x
    else:
        function = string(lib.ERR_func_error_string(code)) or base.function
    return ErrorRecord(
        code=code,
        library=library,
        function=function,
        reason=reason,
        file=string(file),
        line=int(line),
        data=string(data) if flags & ERR_TXT_STRING else "",
        lib=base.lib,
        func=base.func,
        reason_code=base.reason_code,
        rflags=base.rflags,
        system=base.system,
        packing=base.packing,
    )


def _ensure_strings(lc: Libcrypto) -> None:
    # 1.0.2 prints lib(36):func(100):reason(100) unless strings are loaded explicitly;
    # 1.1.0+ load them when a thread's error state is created.
    if lc.path in _strings_loaded:
        return
    if lc.capabilities.has_err_load_crypto_strings:
        lc.lib.ERR_load_crypto_strings()
    _strings_loaded.add(lc.path)
