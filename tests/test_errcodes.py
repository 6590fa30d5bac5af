"""errcodes: pure-Python decoding of OpenSSL error codes (no libcrypto needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chrootcheck.openssl import errcodes
from chrootcheck.openssl.errcodes import ErrorRecord, decode
from tests import openssl_codes
from tests.openssl_codes import (
    decode_both,
    likely_packing,
    pack_1x,
    pack_3x,
    pack_system_3x,
    with_location,
)

# The worked values of the reference table (openssl-rand.md section 5) and the origin story.
WORKED_1X = [
    (0x24078085, 36, 120, 133, "rand_drbg_get_entropy", "prediction resistance not supported"),
    (0x2406E06E, 36, 110, 110, "RAND_DRBG_reseed", "error retrieving entropy"),
    (0x2406C06E, 36, 108, 110, "RAND_DRBG_instantiate", "error retrieving entropy"),
    (0x2406B076, 36, 107, 118, "RAND_DRBG_generate", "reseed error"),
    (0x2406B072, 36, 107, 114, "RAND_DRBG_generate", "in error state"),
    (0x24064064, 36, 100, 100, "RAND_bytes", "PRNG not seeded"),
    (0x140BA041, 20, 186, 65, "SSL_new", "malloc failure"),
]
WORKED_3X = [
    (0x1C8000BD, 57, 189, "Provider routines", "error retrieving entropy"),
    (0x1C8000C0, 57, 192, "Provider routines", "in error state"),
    (0x1C8000C5, 57, 197, "Provider routines", "reseed error"),
    (0x1C8000BF, 57, 191, "Provider routines", "generate error"),
    (0x1C8000BA, 57, 186, "Provider routines", "entropy source strength too weak"),
    (0x1200006C, 36, 108, "random number generator", "error instantiating drbg"),
]


@pytest.mark.parametrize(("code", "lib", "func", "reason", "fname", "rtext"), WORKED_1X)
def test_decode_1x_worked_values(
    code: int, lib: int, func: int, reason: int, fname: str, rtext: str
) -> None:
    rec = decode(code, "1.x")
    assert (rec.lib, rec.func, rec.reason_code) == (lib, func, reason)
    assert (rec.function, rec.reason) == (fname, rtext)
    assert pack_1x(lib, func, reason) == code
    assert likely_packing(code) == "1.x"


@pytest.mark.parametrize(("code", "lib", "reason", "ltext", "rtext"), WORKED_3X)
def test_decode_3x_worked_values(code: int, lib: int, reason: int, ltext: str, rtext: str) -> None:
    rec = decode(code, "3.x")
    assert (rec.lib, rec.reason_code, rec.func) == (lib, reason, 0)
    assert (rec.library, rec.reason, rec.function) == (ltext, rtext, "")
    assert not rec.system
    assert pack_3x(lib, reason) == code
    assert likely_packing(code) == "3.x"


def test_origin_story_line_prints_like_openssl_1x() -> None:
    rec = with_location(decode(0x2406C06E, "1.x"), "crypto/rand/drbg_lib.c", 335)
    assert rec.openssl_line() == (
        "error:2406C06E:random number generator:RAND_DRBG_instantiate:"
        "error retrieving entropy:crypto/rand/drbg_lib.c:335:"
    )
    assert rec.error_string() == (
        "error:2406C06E:random number generator:RAND_DRBG_instantiate:error retrieving entropy"
    )


def test_3x_line_prints_like_openssl() -> None:
    file = "../providers/implementations/rands/drbg.c"
    rec = with_location(decode(0x1C8000BD, "3.x"), file, 586)
    assert rec.openssl_line() == (
        f"error:1C8000BD:Provider routines::error retrieving entropy:{file}:586:"
    )
    named = with_location(rec, file, 586, function="ossl_prov_drbg_instantiate", data="x=1")
    assert named.openssl_line() == (
        "error:1C8000BD:Provider routines:ossl_prov_drbg_instantiate:error retrieving entropy:"
        f"{file}:586:x=1"
    )
    # ERR_error_string never has the function on 3.x
    assert named.error_string() == "error:1C8000BD:Provider routines::error retrieving entropy"


def test_3x_malloc_failure_has_common_and_fatal_flags() -> None:
    code = 0x0A0C0100  # SSL_new's catch-all on 3.0 / 3.1
    rec = decode(code, "3.x")
    assert rec.lib == errcodes.ERR_LIB_SSL
    assert rec.reason == "malloc failure"
    assert rec.rflags == 0x3  # FATAL | COMMON
    assert rec.openssl_line() == "error:0A0C0100:SSL routines::malloc failure::0:"


def test_3x_system_error() -> None:
    code = pack_system_3x(2)
    rec = decode(code, "3.x")
    assert rec.system and rec.lib == errcodes.ERR_LIB_SYS and rec.reason_code == 2
    assert rec.library == "system library"
    assert rec.reason == "No such file or directory"
    assert code == 0x80000002


def test_1x_system_error_has_function_name() -> None:
    rec = decode(pack_1x(2, 19, 2), "1.x")
    assert rec.system and rec.function == "open"
    assert rec.reason == "No such file or directory"


def test_unknown_parts_fall_back_like_openssl() -> None:
    rec = decode(pack_1x(99, 7, 4000), "1.x")
    assert rec.error_string() == f"error:{rec.code:08X}:lib(99):func(7):reason(4000)"
    rec3 = decode(pack_3x(99, 4000), "3.x")
    assert rec3.error_string() == f"error:{rec3.code:08X}:lib(99)::reason(4000)"


def test_decode_both_and_ambiguity() -> None:
    one, three = decode_both(0x2406C06E)
    assert (one.packing, three.packing) == ("1.x", "3.x")
    assert one.reason == "error retrieving entropy"
    assert three.reason == ""
    assert likely_packing(0) is None


def test_rejects_out_of_range_codes() -> None:
    with pytest.raises(ValueError):
        decode(1 << 32, "1.x")
    with pytest.raises(ValueError):
        decode(-1, "3.x")


def test_codes_in_log_line() -> None:
    line = (
        "140135125062464:error:2406C06E:random number generator:RAND_DRBG_instantiate:"
        "error retrieving entropy:crypto/rand/drbg_lib.c:221:"
    )
    assert openssl_codes.codes_in(line) == [0x2406C06E]


def test_errcodes_is_pure_python() -> None:
    # The log decoder imports this module where no libcrypto (and maybe no cffi) exists.
    code = "import sys, chrootcheck.openssl.errcodes; print('cffi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_records_are_frozen() -> None:
    rec = decode(0x1C8000BD, "3.x")
    with pytest.raises(AttributeError):
        rec.code = 1  # type: ignore[misc]
    assert isinstance(rec, ErrorRecord)


@given(
    lib=st.integers(0, 0xFF),
    func=st.integers(0, 0xFFF),
    reason=st.integers(0, 0xFFF),
)
def test_pack_decode_round_trip_1x(lib: int, func: int, reason: int) -> None:
    rec = decode(pack_1x(lib, func, reason), "1.x")
    assert (rec.lib, rec.func, rec.reason_code) == (lib, func, reason)
    assert rec.system == (lib == errcodes.ERR_LIB_SYS)


@given(lib=st.integers(0, 0xFF), reason=st.integers(0, errcodes.ERR_REASON_MASK))
def test_pack_decode_round_trip_3x(lib: int, reason: int) -> None:
    code = pack_3x(lib, reason)
    rec = decode(code, "3.x")
    assert not rec.system  # 8 library bits end at bit 30: the flag bit stays clear
    assert (rec.lib, rec.reason_code) == (lib, reason)
    assert rec.rflags == reason >> 18
    assert pack_3x(rec.lib, rec.reason_code) == code


@given(errno=st.integers(0, 0x7FFFFFFF))
def test_pack_decode_round_trip_3x_system(errno: int) -> None:
    rec = decode(pack_system_3x(errno), "3.x")
    assert rec.system and rec.lib == errcodes.ERR_LIB_SYS and rec.reason_code == errno
