"""OpenSSL error codes in pure Python: decode and print them the way OpenSSL does.

No cffi here: ``chrootcheck decode`` reads codes out of log lines with no libcrypto at hand.

Two packings exist (docs/probe.md, reference openssl-rand.md section 5):

* 1.x (1.0.2, 1.1.0, 1.1.1): ``lib << 24 | func << 12 | reason``, 8 + 12 + 12 bits.
* 3.x: ``lib << 23 | reason``; bit 31 (``ERR_SYSTEM_FLAG``) marks a system error whose low 31
  bits are errno; bits 18-22 of the reason are flags (``ERR_RFLAG_FATAL``, ``ERR_RFLAG_COMMON``).
  There is no function code: the function *name* comes with the queue entry instead.

The string tables below were read from the libraries themselves (OpenSSL 3.0.19 and 1.1.1r,
via ``ERR_lib_error_string``/``ERR_reason_error_string``/``ERR_func_error_string``); the
binding tests compare them with the live libraries again. They cover what the probe meets
(RAND, PROV, the SSL_new catch-all), not every code OpenSSL has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

Packing = Literal["1.x", "3.x"]
PACKINGS: tuple[Packing, Packing] = ("1.x", "3.x")

ERR_LIB_NONE = 1
ERR_LIB_SYS = 2
ERR_LIB_CRYPTO = 15
ERR_LIB_SSL = 20
ERR_LIB_RAND = 36
ERR_LIB_PROV = 57
ERR_LIB_USER = 128  # the first number ERR_get_next_error_library gives (libp11 ...)

# 3.x layout (include/openssl/err.h.in)
ERR_SYSTEM_FLAG = 0x80000000
ERR_LIB_OFFSET = 23
ERR_LIB_MASK = 0xFF
ERR_RFLAGS_OFFSET = 18
ERR_RFLAGS_MASK = 0x1F
ERR_REASON_MASK = 0x7FFFFF
ERR_RFLAG_FATAL = 0x1 << ERR_RFLAGS_OFFSET
ERR_RFLAG_COMMON = 0x2 << ERR_RFLAGS_OFFSET

# Library names as ERR_lib_error_string prints them. 55 (property) has no string in 3.0.
LIBRARY_NAMES: dict[int, str] = {
    1: "unknown library",
    2: "system library",
    3: "bignum routines",
    4: "rsa routines",
    5: "Diffie-Hellman routines",
    6: "digital envelope routines",
    7: "memory buffer routines",
    8: "object identifier routines",
    9: "PEM routines",
    10: "dsa routines",
    11: "x509 certificate routines",
    13: "asn1 encoding routines",
    14: "configuration file routines",
    15: "common libcrypto routines",
    16: "elliptic curve routines",
    20: "SSL routines",
    32: "BIO routines",
    33: "PKCS7 routines",
    34: "X509 V3 routines",
    35: "PKCS12 routines",
    36: "random number generator",
    37: "DSO support routines",
    38: "engine routines",
    39: "OCSP routines",
    40: "UI routines",
    42: "ECDSA routines",
    43: "ECDH routines",
    44: "STORE routines",
    45: "FIPS routines",
    46: "CMS routines",
    47: "time stamp routines",
    48: "HMAC routines",
    50: "CT routines",
    51: "ASYNC routines",
    52: "KDF routines",
    53: "SM2 routines",
    # 3.x only from here
    54: "ESS routines",
    56: "CRMF routines",
    57: "Provider routines",
    58: "CMP routines",
    59: "ENCODER routines",
    60: "DECODER routines",
    61: "HTTP routines",
}
LIBRARIES_3X_ONLY = frozenset({54, 56, 57, 58, 59, 60, 61})

# RAND_R_* (include/openssl/randerr.h); 138-144 are 3.x only.
RAND_REASONS: dict[int, str] = {
    100: "PRNG not seeded",
    101: "Function not implemented",
    102: "additional input too long",
    103: "already instantiated",
    104: "drbg not initialised",
    105: "argument out of range",
    106: "entropy input too long",
    107: "error initialising drbg",
    108: "error instantiating drbg",
    109: "error retrieving additional input",
    110: "error retrieving entropy",
    111: "error retrieving nonce",
    112: "generate error",
    113: "internal error",
    114: "in error state",
    115: "not instantiated",
    116: "personalisation string too long",
    117: "request too large for drbg",
    118: "reseed error",
    119: "selftest failure",
    120: "unsupported drbg type",
    121: "Cannot open file",
    122: "Not a regular file",
    123: "Error writing file",
    124: "entropy out of range",
    125: "random pool overflow",
    126: "failed to create lock",
    127: "error entropy pool was ignored",
    128: "no drbg implementation selected",
    129: "drbg already initialized",
    130: "parent locking not enabled",
    131: "parent strength too weak",
    132: "unsupported drbg flags",
    133: "prediction resistance not supported",
    134: "random pool underflow",
    135: "too little nonce requested",
    136: "too much nonce requested",
    138: "unable to get parent strength",
    139: "insufficient drbg strength",
    140: "unable to lock parent",
    141: "unable to get parent reseed prop counter",
    143: "unable to create drbg",
    144: "unable to fetch drbg",
}

# PROV_R_* of the DRBG and seed-source code (include/openssl/proverr.h, 3.x only).
PROV_REASONS: dict[int, str] = {
    180: "failed to create lock",
    181: "insufficient drbg strength",
    182: "parent locking not enabled",
    184: "additional input too long",
    185: "already instantiated",
    186: "entropy source strength too weak",
    187: "parent cannot supply entropy seed",
    188: "error instantiating drbg",
    189: "error retrieving entropy",
    190: "error retrieving nonce",
    191: "generate error",
    192: "in error state",
    193: "not instantiated",
    194: "parent strength too weak",
    195: "personalisation string too long",
    196: "request too large for drbg",
    197: "reseed error",
    199: "unable to get parent strength",
    201: "unable to lock parent",
    204: "unable to reseed",
    205: "derivation function init failed",
    229: "seed sources must not have a parent",
}

# ERR_R_* shared by every library. 1.x: plain numbers; 3.x: the same numbers with
# ERR_RFLAG_COMMON (and ERR_RFLAG_FATAL for fatal ones), e.g. malloc failure 0xC0100.
COMMON_REASONS_1X: dict[int, str] = {
    2: "system lib",
    3: "BN lib",
    4: "RSA lib",
    5: "DH lib",
    6: "EVP lib",
    7: "passed invalid argument",
    64: "fatal",
    65: "malloc failure",
    66: "called a function you should not call",
    67: "passed a null parameter",
    68: "internal error",
    70: "init fail",
    72: "operation fail",
}
COMMON_REASONS_3X: dict[int, str] = {
    ERR_RFLAG_COMMON | 15: "common libcrypto routines",
    ERR_RFLAG_COMMON | 36: "RAND lib",
    ERR_RFLAG_COMMON | 57: "Provider lib",
    ERR_RFLAG_COMMON | ERR_RFLAG_FATAL | 256: "malloc failure",
    ERR_RFLAG_COMMON | 258: "passed a null parameter",
    ERR_RFLAG_COMMON | ERR_RFLAG_FATAL | 259: "internal error",
    ERR_RFLAG_COMMON | 262: "passed invalid argument",
    ERR_RFLAG_COMMON | 263: "unsupported",
}

# 1.1.1 RAND_F_* (crypto/rand/rand_err.c); 1.0.2/1.1.0 use 100 for RAND_bytes too.
RAND_FUNCTIONS_1X: dict[int, str] = {
    100: "RAND_bytes",
    101: "drbg_bytes",
    102: "rand_drbg_restart",
    103: "rand_pool_add",
    104: "RAND_DRBG_set",
    105: "drbg_get_entropy",
    106: "get_entropy",
    107: "RAND_DRBG_generate",
    108: "RAND_DRBG_instantiate",
    109: "RAND_DRBG_new",
    110: "RAND_DRBG_reseed",
    111: "RAND_load_file",
    112: "RAND_write_file",
    113: "rand_pool_add_begin",
    114: "rand_pool_add_end",
    115: "rand_pool_bytes_needed",
    116: "rand_pool_new",
    117: "drbg_setup",
    118: "RAND_DRBG_uninstantiate",
    119: "rand_drbg_enable_locking",
    120: "rand_drbg_get_entropy",
    121: "RAND_DRBG_set_defaults",
    122: "rand_pool_acquire_entropy",
    123: "rand_drbg_get_nonce",
    124: "rand_pool_attach",
    125: "rand_pool_grow",
    126: "RAND_pseudo_bytes",
    127: "data_collect_method",
}
SSL_FUNCTIONS_1X: dict[int, str] = {169: "SSL_CTX_new", 186: "SSL_new"}
SYS_FUNCTIONS_1X: dict[int, str] = {
    1: "fopen",
    2: "connect",
    3: "getservbyname",
    4: "socket",
    5: "ioctlsocket",
    6: "bind",
    7: "listen",
    8: "accept",
    10: "opendir",
    11: "fread",
    12: "getaddrinfo",
    13: "getnameinfo",
    14: "setsockopt",
    15: "getsockopt",
    16: "getsockname",
    17: "gethostbyname",
    18: "fflush",
    19: "open",
    20: "close",
    21: "ioctl",
    22: "stat",
    23: "fcntl",
    24: "fstat",
}
_FUNCTIONS_1X: dict[int, dict[int, str]] = {
    ERR_LIB_RAND: RAND_FUNCTIONS_1X,
    ERR_LIB_SSL: SSL_FUNCTIONS_1X,
    ERR_LIB_SYS: SYS_FUNCTIONS_1X,
}


@dataclass(frozen=True)
class ErrorRecord:
    """One entry of OpenSSL's error queue, or one decoded code.

    ``library``/``function``/``reason`` are the strings OpenSSL prints ("" when unknown: the
    printers then fall back to ``lib(N)``/``func(N)``/``reason(N)`` like OpenSSL does).
    ``lib``/``func``/``reason_code`` are the numbers; ``reason_code`` is ERR_GET_REASON's
    value, which on 3.x keeps the flag bits (``rflags`` has them alone).
    """

    code: int
    library: str
    function: str
    reason: str
    file: str = ""
    line: int = 0
    data: str = ""
    lib: int = 0
    func: int = 0
    reason_code: int = 0
    rflags: int = 0
    system: bool = False
    packing: Packing = "3.x"

    def error_string(self) -> str:
        """``ERR_error_string_n``'s text: ``error:CODE:lib:func:reason`` (func empty on 3.x)."""
        func = self._function_text() if self.packing == "1.x" else ""
        return f"error:{self.code:08X}:{self._library_text()}:{func}:{self._reason_text()}"

    def openssl_line(self) -> str:
        """The line ``ERR_print_errors`` prints, without its leading thread id.

        1.x: ``error:2406C06E:random number generator:RAND_DRBG_instantiate:error retrieving
        entropy:crypto/rand/drbg_lib.c:335:``; 3.x has the C function name in the func field
        when the queue recorded one, else it stays empty (``Provider routines::error ...``).
        """
        return (
            f"error:{self.code:08X}:{self._library_text()}:{self._function_text()}:"
            f"{self._reason_text()}:{self.file}:{self.line}:{self.data}"
        )

    def _library_text(self) -> str:
        return self.library or f"lib({self.lib})"

    def _function_text(self) -> str:
        if self.function or self.packing == "3.x":
            return self.function
        return f"func({self.func})"

    def _reason_text(self) -> str:
        return self.reason or f"reason({self.reason_code})"


def reason_string(lib: int, reason: int, packing: Packing) -> str:
    """The reason text for a library's reason number, "" if not in the tables."""
    if lib == ERR_LIB_SYS:
        return _strerror(reason & 0x7FFFFFFF)
    if lib == ERR_LIB_RAND and reason in RAND_REASONS:
        return RAND_REASONS[reason]
    if lib == ERR_LIB_PROV and packing == "3.x" and reason in PROV_REASONS:
        return PROV_REASONS[reason]
    common = COMMON_REASONS_3X if packing == "3.x" else COMMON_REASONS_1X
    return common.get(reason, "")


def library_string(lib: int, packing: Packing) -> str:
    if packing == "1.x" and lib in LIBRARIES_3X_ONLY:
        return ""
    return LIBRARY_NAMES.get(lib, "")


def function_string(lib: int, func: int) -> str:
    """The 1.x function code's name ("" if not in the tables; 3.x has no function codes)."""
    return _FUNCTIONS_1X.get(lib, {}).get(func, "")


def decode(code: int, packing: Packing) -> ErrorRecord:
    """Split a packed code into its numbers and strings under one packing."""
    if not 0 <= code <= 0xFFFFFFFF:
        raise ValueError(f"not a 32-bit OpenSSL error code: {code:#x}")
    if packing == "1.x":
        lib, func, reason = code >> 24 & 0xFF, code >> 12 & 0xFFF, code & 0xFFF
        return ErrorRecord(
            code=code,
            library=library_string(lib, packing),
            function=function_string(lib, func),
            reason=reason_string(lib, reason, packing),
            lib=lib,
            func=func,
            reason_code=reason,
            system=lib == ERR_LIB_SYS,
            packing=packing,
        )
    if packing != "3.x":
        raise ValueError(f"unknown packing {packing!r}")
    if code & ERR_SYSTEM_FLAG:
        errno = code & 0x7FFFFFFF
        return ErrorRecord(
            code=code,
            library=LIBRARY_NAMES[ERR_LIB_SYS],
            function="",
            reason=_strerror(errno),
            lib=ERR_LIB_SYS,
            reason_code=errno,
            system=True,
            packing=packing,
        )
    lib = code >> ERR_LIB_OFFSET & ERR_LIB_MASK
    reason = code & ERR_REASON_MASK
    return ErrorRecord(
        code=code,
        library=library_string(lib, packing),
        function="",
        reason=reason_string(lib, reason, packing),
        lib=lib,
        reason_code=reason,
        rflags=reason >> ERR_RFLAGS_OFFSET & ERR_RFLAGS_MASK,
        system=False,
        packing=packing,
    )


def version_packing(version_number: int) -> Packing:
    """The packing a library uses, from ``OpenSSL_version_num()`` (``SSLeay()`` on 1.0.2)."""
    return "3.x" if version_number >= 0x30000000 else "1.x"


def _strerror(errno: int) -> str:
    try:
        return os.strerror(errno)
    except ValueError:
        return ""
