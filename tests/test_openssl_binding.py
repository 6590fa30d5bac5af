"""The cffi binding against real libraries: the system's OpenSSL 3.0 and the wheel's 1.1.1r."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chrootcheck.openssl import errcodes, library, rand
from chrootcheck.openssl.cdefs import ffi
from chrootcheck.openssl.errors import drain
from chrootcheck.report.errors import ToolError
from tests import openssl_codes
from tests.openssl_builds import Build
from tests.openssl_codes import queue_is_empty

pytestmark = pytest.mark.usefixtures("error_queue_guard")


def _raise(
    lc: library.Libcrypto,
    lib_no: int,
    func: int,
    reason: int,
    file: bytes,
    line: int,
    funcname: bytes = b"",
) -> None:
    """Put one error on the queue the way the library itself does."""
    if lc.capabilities.has_err_raise:  # 3.x: ERR_raise expands to these three calls
        lc.lib.ERR_new()
        lc.lib.ERR_set_debug(file, line, funcname or ffi.NULL)
        lc.lib.ERR_set_error(lib_no, reason, ffi.NULL)
    else:
        lc.lib.ERR_put_error(lib_no, func, reason, file, line)


def _library_printout(lc: library.Libcrypto) -> list[str]:
    """What ERR_print_errors prints, without the thread id; it empties the queue."""
    lines: list[str] = []

    def collect(s: Any, n: int, _u: Any) -> int:
        lines.append(bytes(ffi.buffer(s, n)).decode().rstrip("\n"))
        return 1

    cb = ffi.callback("int(*)(const char *, size_t, void *)", collect)

    lc.lib.ERR_print_errors_cb(cb, ffi.NULL)
    return [line.split(":", 1)[1] for line in lines]  # drop "<tid>:"


def test_loads_each_build_with_its_capabilities(libcrypto_build: Build) -> None:
    lc = library.load(libcrypto_build.path)
    caps = lc.capabilities
    assert lc.series == libcrypto_build.series
    assert lc.path == os.path.realpath(libcrypto_build.path)
    if lc.series == "3.x":
        assert lc.version_text.startswith("OpenSSL 3.0")
        assert caps.has_evp_rand and caps.has_err_get_error_all and caps.has_openssl_info
        assert not caps.has_drbg_1_1_1 and not caps.has_err_put_error
        assert lc.packing == "3.x"
    else:
        assert lc.version_text.startswith("OpenSSL 1.1.1r")
        assert caps.has_drbg_1_1_1 and caps.has_err_put_error
        assert not caps.has_evp_rand and not caps.has_err_get_error_all
        assert not caps.has_openssl_info
        assert lc.packing == "1.x"
    assert caps.has_keep_devices_open
    assert library.load(libcrypto_build.path) is lc  # loaded once, then cached


def test_default_is_the_ssl_module_libcrypto(libcrypto_30: Build) -> None:
    assert library.load(None).path == os.path.realpath(libcrypto_30.path)


def test_both_builds_coexist_in_one_process(libcrypto_30: Build, libcrypto_111: Build) -> None:
    a, b = library.load(libcrypto_30.path), library.load(libcrypto_111.path)
    assert a.version_number >= 0x30000000 > b.version_number >= 0x10101000


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda p: str(p / "missing.so"), "no such file"),
        (lambda p: str(p), "is a directory"),
        (lambda p: _text_file(p), "invalid ELF header"),
    ],
)
def test_bad_paths_give_one_line_errors(tmp_path: Path, make: Any, expect: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ToolError) as e:
        library.load(path)
    assert expect in e.value.message
    assert path in e.value.message
    assert "\n" not in e.value.message


def _text_file(p: Path) -> str:
    f = p / "libcrypto.so.3"
    f.write_text("not a library, but long enough to have an ELF header's size\n" * 4)
    return str(f)


_LOAD_SCRIPT = """
import sys
from chrootcheck.report.errors import ToolError
from chrootcheck.openssl import library
try:
    print(library._dlopen_with_siblings(sys.argv[1])[1])
except library._LoadError as e:
    print("error:", e)
try:
    print("loaded", library.load(sys.argv[1]).path)
except ToolError as e:
    print("error:", e.message)
"""


def _load_in_fresh_process(path: Path) -> list[str]:
    # A fresh process: in this one the wheel's libcrypto is loaded already, and the dynamic
    # linker would satisfy libssl's DT_NEEDED with it by soname.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return out.stdout.splitlines()


def test_bundled_sibling_is_loaded_first_and_libssl_is_not_a_libcrypto(
    libcrypto_111: Build, tmp_path: Path
) -> None:
    # The wheel's libssl needs libcrypto-2ade47cd.so.1.1 beside it and carries no run path.
    src = Path(libcrypto_111.path).parent
    ssl_lib = Path(glob.glob(str(src / "libssl-*.so.1.1"))[0])
    crypto = Path(libcrypto_111.path)
    shutil.copy(ssl_lib, tmp_path / ssl_lib.name)
    shutil.copy(crypto, tmp_path / crypto.name)
    lines = _load_in_fresh_process(tmp_path / ssl_lib.name)
    assert lines[0] == repr((str(tmp_path / crypto.name),))
    assert lines[1].startswith("error: cannot load libcrypto: ")
    assert lines[1].endswith(
        f"not a libcrypto: its OpenSSL functions come from {tmp_path / crypto.name}"
    )


def test_missing_sibling_is_reported(libcrypto_111: Build, tmp_path: Path) -> None:
    ssl_lib = Path(glob.glob(str(Path(libcrypto_111.path).parent / "libssl-*.so.1.1"))[0])
    shutil.copy(ssl_lib, tmp_path / ssl_lib.name)
    lines = _load_in_fresh_process(tmp_path / ssl_lib.name)
    missing = r"libcrypto-[0-9a-f]+\.so\.1\.1: cannot open shared object file: No such file"
    assert re.fullmatch(f"error: {missing}.*", lines[0]), lines
    assert re.fullmatch(
        f"error: cannot load libcrypto: {re.escape(str(tmp_path))}.*: {missing}.*", lines[1]
    ), lines


def test_drain_matches_the_library_printer(libcrypto_build: Build) -> None:
    lc = library.load(libcrypto_build.path)
    if lc.series == "3.x":
        args = (errcodes.ERR_LIB_PROV, 0, 189, b"../providers/implementations/rands/drbg.c", 586)
        expected = 0x1C8000BD
    else:
        args = (errcodes.ERR_LIB_RAND, 108, 110, b"crypto/rand/drbg_lib.c", 335)
        expected = 0x2406C06E
    for _ in range(2):
        _raise(lc, *args, funcname=b"ossl_prov_drbg_instantiate")
    printed = _library_printout(lc)
    assert queue_is_empty(lc)
    _raise(lc, *args, funcname=b"ossl_prov_drbg_instantiate")
    _raise(lc, errcodes.ERR_LIB_RAND, 107, 114, b"x.c", 7)
    records = drain(lc)
    assert queue_is_empty(lc)
    assert len(records) == 2 and records[0].code == expected
    assert records[0].openssl_line() == printed[0]
    assert records[1].reason == "in error state"
    if lc.series == "1.1.1":  # the origin story's line, byte for byte
        assert printed[0] == (
            "error:2406C06E:random number generator:RAND_DRBG_instantiate:"
            "error retrieving entropy:crypto/rand/drbg_lib.c:335:"
        )
        assert records[1].function == "RAND_DRBG_generate"
    else:
        assert records[0].function == "ossl_prov_drbg_instantiate"
        assert records[0].library == "Provider routines"


def test_drain_of_an_empty_queue(libcrypto_build: Build) -> None:
    assert drain(library.load(libcrypto_build.path)) == ()


def test_python_tables_agree_with_the_library(libcrypto_build: Build) -> None:
    lc = library.load(libcrypto_build.path)
    pack = (
        openssl_codes.pack_3x
        if lc.packing == "3.x"
        else (lambda lib, r: openssl_codes.pack_1x(lib, 0, r))
    )
    for lib_no, name in errcodes.LIBRARY_NAMES.items():
        if lc.packing == "1.x" and lib_no in errcodes.LIBRARIES_3X_ONLY:
            continue
        assert library.string(lc.lib.ERR_lib_error_string(pack(lib_no, 0))) == name
    for reason, text in errcodes.RAND_REASONS.items():
        if lc.packing == "1.x" and reason > 136:
            continue
        got = library.string(lc.lib.ERR_reason_error_string(pack(errcodes.ERR_LIB_RAND, reason)))
        assert got == text, reason
    if lc.packing == "3.x":
        for reason, text in errcodes.PROV_REASONS.items():
            if reason == 229:  # added after 3.0
                continue
            code = pack(errcodes.ERR_LIB_PROV, reason)
            assert library.string(lc.lib.ERR_reason_error_string(code)) == text, reason
    else:
        for func, name in errcodes.RAND_FUNCTIONS_1X.items():
            code = openssl_codes.pack_1x(errcodes.ERR_LIB_RAND, func, 0)
            assert library.string(lc.lib.ERR_func_error_string(code)) == name
    drain(lc)


def test_rand_backend_draws_and_reports(libcrypto_build: Build) -> None:
    lc = library.load(libcrypto_build.path)
    r = rand.for_library(lc)
    assert rand.init_crypto(lc).ok
    step = r.draw(16)
    assert step.ok and step.errors == ()
    assert r.state() == "ready"
    assert r.keep_devices_open(True) is True
    settings = r.reseed_settings()
    assert (settings.primary_requests, settings.primary_seconds) == (256, 3600)
    assert (settings.public_requests, settings.public_seconds) == (65536, 420)
    if lc.series == "3.x":
        assert r.api == "EVP_RAND (3.x)" and settings.source == "library"
    else:
        assert r.api == "RAND_DRBG (1.1.1)" and settings.source == "documented defaults"


def test_rand_backend_reseeds_in_a_child(libcrypto_build: Build) -> None:
    # set_reseed_interval changes the DRBGs for good: do it in a child, report via exit code.
    lc = library.load(libcrypto_build.path)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            r = rand.for_library(lc)
            steps = [r.primary_reseed(), r.public_reseed(), r.set_reseed_interval(1), r.draw(8)]
            if all(s.ok and not s.errors for s in steps):
                after = r.reseed_settings()
                ok = lc.series != "3.x" or after.primary_requests == 1
                code = 0 if ok and r.state() == "ready" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_legacy_backend_is_chosen_without_drbg_symbols(libcrypto_build: Build) -> None:
    lc = library.load(libcrypto_build.path)
    legacy = library.Libcrypto(
        lc.path, lc.lib, 0x1000214F, "OpenSSL 1.0.2t", library.Capabilities()
    )
    r = rand.for_library(legacy)
    assert isinstance(r, rand.LegacyRand)
    assert r.public_reseed().ok is None
    assert r.reseed_settings().source == "none"
    assert r.keep_devices_open(False) is False


def test_openssl_102_has_no_drbg_and_loads_its_bundled_libz(libcrypto_102: Build) -> None:
    lc = library.load(libcrypto_102.path)
    caps = lc.capabilities
    assert lc.series == "1.0.2" and lc.version_text.startswith("OpenSSL 1.0.2q")
    assert caps.rand_api.startswith("none: no DRBG")
    assert caps.has_err_load_crypto_strings and caps.has_err_put_error
    assert not (caps.has_version_num or caps.has_init_crypto or caps.has_keep_devices_open)
    assert [Path(s).name[:5] for s in lc.siblings] == ["libz-"]  # loaded RTLD_GLOBAL first
    r = rand.for_library(lc)
    assert isinstance(r, rand.LegacyRand)
    assert rand.init_crypto(lc).ok
    assert r.draw(8).ok and r.state() == "ready"
    assert r.primary_reseed().ok  # RAND_poll: succeeds even when it reads nothing
    for _ in range(2):
        _raise(lc, errcodes.ERR_LIB_RAND, 100, 100, b"md_rand.c", 549)
    printed = _library_printout(lc)
    _raise(lc, errcodes.ERR_LIB_RAND, 100, 100, b"md_rand.c", 549)
    (record,) = drain(lc)
    assert record.code == 0x24064064
    # 1.0.2 names function 100 after md_rand's SSLEAY_RAND_BYTES: the library's string wins.
    assert (
        record.openssl_line()
        == printed[0]
        == (
            "error:24064064:random number generator:SSLEAY_RAND_BYTES:PRNG not seeded:"
            "md_rand.c:549:"
        )
    )


# --- the out-of-line binding (build_cffi.py) against the in-line one (openssl.cdefs) ----------

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "chrootcheck" / "openssl" / "_libcrypto_cffi.py"

_DESCRIBE = """
import json, sys
if sys.argv[2] == "in-line":
    sys.modules["chrootcheck.openssl._libcrypto_cffi"] = None  # as a source tree never built
from chrootcheck.openssl import library, rand
from chrootcheck.openssl.cdefs import ffi
lc = library.load(sys.argv[1])
library.prefill(lc)
print(json.dumps({
    "kind": type(ffi).__module__,
    "pycparser": "pycparser" in sys.modules,
    "version": lc.version_text,
    "capabilities": lc.capabilities.as_dict(),
    "siblings": [s.rsplit("/", 1)[-1] for s in lc.siblings],
    "draw": rand.for_library(lc).draw(16).ok,
}))
"""


def _built_or_fail() -> None:
    if not BUILT.exists():
        message = f"{BUILT} is missing: run `pip install -e .` or `python3 build_cffi.py`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.parametrize(
    ("module", "declarations"),
    [
        ("chrootcheck.openssl._libcrypto_cffi", "chrootcheck.openssl.declarations"),
        ("chrootcheck.system._libc_cffi", "chrootcheck.system.libc"),
    ],
)
def test_the_built_bindings_are_up_to_date(module: str, declarations: str, tmp_path: Path) -> None:
    """The build writes each out-of-line module from its declarations: the file in the tree
    must be what the declarations make now (a stale one would miss a symbol, silently)."""
    _built_or_fail()
    import importlib

    from cffi import FFI, recompiler

    built = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    fresh = FFI()
    fresh.cdef(importlib.import_module(declarations).DECLARATIONS)
    target = tmp_path / built.name
    recompiler.make_py_source(fresh, module, str(target))
    assert built.read_text() == target.read_text()


@pytest.mark.parametrize("fixture", ["libcrypto_30", "libcrypto_111", "libcrypto_102"])
def test_out_of_line_and_in_line_load_the_same(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    """Same capability table (a missing symbol is ffi.error out of line, AttributeError in
    line), same siblings (1.0.2 needs its wheel's libz, loaded first and kept loaded), and
    the library works; out of line, no C parser is imported."""
    _built_or_fail()
    build: Build = request.getfixturevalue(fixture)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    seen = {}
    for mode in ("out-of-line", "in-line"):
        out = subprocess.run(
            [sys.executable, "-c", _DESCRIBE, build.path, mode],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        seen[mode] = json.loads(out.stdout)
    ool, inl = seen["out-of-line"], seen["in-line"]
    assert ool.pop("kind") == "_cffi_backend" and inl.pop("kind") == "cffi.api"
    assert ool.pop("pycparser") is False and inl.pop("pycparser") is True
    assert ool == inl
    assert ool["draw"] is True
    if fixture == "libcrypto_102":
        assert ool["siblings"] and not ool["capabilities"]["has_drbg_1_1_1"]
