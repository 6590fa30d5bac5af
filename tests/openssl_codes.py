"""Test helpers for OpenSSL error codes: packing codes (the inverse of ``errcodes.decode``),
both readings of a code, and reading the error queue. Only the tests need them."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from chrootcheck.openssl.errcodes import (
    ERR_LIB_MASK,
    ERR_LIB_OFFSET,
    ERR_REASON_MASK,
    ERR_SYSTEM_FLAG,
    PACKINGS,
    ErrorRecord,
    Packing,
    decode,
)


def pack_1x(lib: int, func: int, reason: int) -> int:
    """``ERR_PACK`` of 1.0.2-1.1.1."""
    return (lib & 0xFF) << 24 | (func & 0xFFF) << 12 | (reason & 0xFFF)


def pack_3x(lib: int, reason: int) -> int:
    """``ERR_PACK`` of 3.x (the function argument is ignored there)."""
    return (lib & ERR_LIB_MASK) << ERR_LIB_OFFSET | (reason & ERR_REASON_MASK)


def pack_system_3x(errno: int) -> int:
    """A 3.x system error: the flag bit and errno."""
    return ERR_SYSTEM_FLAG | (errno & 0x7FFFFFFF)


def decode_both(code: int) -> tuple[ErrorRecord, ErrorRecord]:
    """Both readings of a code whose OpenSSL version is unknown: (1.x, 3.x)."""
    return decode(code, "1.x"), decode(code, "3.x")


def likely_packing(code: int) -> Packing | None:
    """The packing under which the code names a known library and reason, if exactly one does.

    2406C06E reads as RAND/RAND_DRBG_instantiate/error retrieving entropy under 1.x and as
    nothing known under 3.x; 1C8000BD only makes sense under 3.x.
    """
    known = [p for p in PACKINGS if _known(decode(code, p))]
    return known[0] if len(known) == 1 else None


def _known(record: ErrorRecord) -> bool:
    # 1.x codes carry a function code too: requiring its name tells 1.x codes from 3.x ones.
    if not (record.library and record.reason):
        return False
    return record.packing == "3.x" or bool(record.function)


def with_location(
    record: ErrorRecord, file: str = "", line: int = 0, data: str = "", function: str | None = None
) -> ErrorRecord:
    """The same code seen in a queue entry: add where it was raised."""
    return replace(
        record,
        file=file,
        line=line,
        data=data,
        function=record.function if function is None else function,
    )


_LINE = re.compile(r"error:([0-9A-Fa-f]{8}):")


def codes_in(text: str) -> list[int]:
    """Every ``error:XXXXXXXX:`` code in a log line, in order."""
    return [int(m.group(1), 16) for m in _LINE.finditer(text)]


def queue_is_empty(lc: Any) -> bool:
    """Nothing left on the calling thread's error queue of a loaded libcrypto."""
    return int(lc.lib.ERR_peek_error()) == 0
