"""``chrootcheck decode``: every printed form, both packings, chains, knowledge, robustness."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chrootcheck.decode import chains as chains_module
from chrootcheck.decode import knowledge
from chrootcheck.decode.chains import (
    _ERROR,
    CONTEXT,
    MAX_LINE,
    OVERLAP,
    READ_SIZE,
    Chain,
    LineReader,
    Window,
    chains,
    error_matches,
    lines_of,
    scan_line,
)
from tests.conftest import ROOT

ORIGIN = Path("/work/shared/reference/origin-story.txt")
# The chain from the origin story (haproxy on OpenSSL 1.1.1-dev, openssl#5330), verbatim.
ORIGIN_CHAIN = """\
140135125062464:error:2406C06E:random number generator:RAND_DRBG_instantiate:error retrieving entropy:crypto/rand/drbg_lib.c:221:
140135125062464:error:2406B072:random number generator:RAND_DRBG_generate:in error state:crypto/rand/drbg_lib.c:479:
140135125062464:error:2406C06E:random number generator:RAND_DRBG_instantiate:error retrieving entropy:crypto/rand/drbg_lib.c:221:
140135125062464:error:2406B072:random number generator:RAND_DRBG_generate:in error state:crypto/rand/drbg_lib.c:479:
140135125062464:error:2406C06E:random number generator:RAND_DRBG_instantiate:error retrieving entropy:crypto/rand/drbg_lib.c:221:
140135125062464:error:140BA041:SSL routines:SSL_new:malloc failure:ssl/ssl_lib.c:839:
"""  # noqa: E501
# 3.x, ERR_print_errors with function names (failure-modes.md 1, openssl#20841).
CHAIN_3X = """\
Nov 30 03:00:01 host app[812]: 7F3A9C1E2740:error:1C8000BD:Provider routines:ossl_prov_drbg_instantiate:error retrieving entropy:../providers/implementations/rands/drbg.c:586:
Nov 30 03:00:01 host app[812]: 7F3A9C1E2740:error:1200006C:random number generator:rand_new_drbg:error instantiating drbg:../crypto/rand/rand_lib.c:577:
Nov 30 03:00:01 host app[812]: 7F3A9C1E2740:error:0A0C0100:SSL routines:SSL_CTX_new_ex:malloc failure:../ssl/ssl_lib.c:3330:
"""  # noqa: E501
# What haproxy 2.6 on OpenSSL 3.0.19 logged in the ground-truth runs (failure-modes.md).
HAPROXY_3X = (
    "haproxy[1234]: 127.0.0.1:40312 [30/Nov/2026:03:00:01.123] fe/1: SSL handshake "
    "failure (error:1C8000BD:Provider routines::error retrieving entropy)"
)


def all_chains(text: str) -> list[Chain]:
    return list(chains(text.splitlines()))


def test_origin_story_is_one_chain_and_the_malloc_failure_is_explained() -> None:
    [chain] = all_chains(ORIGIN_CHAIN)
    assert chain.thread == "140135125062464"
    assert [f"{e.code:08X}" for e in chain.errors] == [
        "2406C06E",
        "2406B072",
        "2406C06E",
        "2406B072",
        "2406C06E",
        "140BA041",
    ]
    assert all(e.form == "print-1.x" and e.packing == "1.x" for e in chain.errors)
    first, last = chain.errors[0], chain.errors[-1]
    assert (first.function, first.reason) == ("RAND_DRBG_instantiate", "error retrieving entropy")
    assert (first.file, first.line) == ("crypto/rand/drbg_lib.c", 221)
    assert first.entry is knowledge.ENTROPY
    assert chain.errors[1].entry is knowledge.IN_ERROR_STATE
    assert (last.function, last.reason) == ("SSL_new", "malloc failure")
    assert last.entry is knowledge.SSL_WRAPPER
    assert chain.consequence(last) and not chain.consequence(first)
    assert chain.entropy_problem
    assert "not 'malloc failure'" not in chain.verdict()
    assert "'malloc failure', which it is not" in chain.verdict()


def test_the_origin_story_file_itself(cli) -> None:
    if not ORIGIN.is_file():
        pytest.skip("reference text not present")
    r = cli("decode", str(ORIGIN))
    assert r.code == 1, r
    assert r.stdout.count("Chain ") == 1
    assert "This is not an out-of-memory error" in r.stdout
    assert "6 OpenSSL error(s) in 1 chain(s)" in r.stderr


def test_malloc_failure_alone_is_not_called_a_consequence() -> None:
    [chain] = all_chains("1:error:140BA041:SSL routines:SSL_new:malloc failure:ssl/ssl_lib.c:839:")
    [e] = chain.errors
    assert e.entry is knowledge.SSL_WRAPPER
    assert not chain.consequence(e) and not chain.entropy_problem


def test_3x_print_chain() -> None:
    [chain] = all_chains(CHAIN_3X)
    assert chain.thread == "7F3A9C1E2740"
    assert [e.packing for e in chain.errors] == ["3.x"] * 3
    assert [e.form for e in chain.errors] == ["print-3.x"] * 3
    assert [e.function for e in chain.errors] == [
        "ossl_prov_drbg_instantiate",
        "rand_new_drbg",
        "SSL_CTX_new_ex",
    ]
    assert [e.entry for e in chain.errors] == [
        knowledge.ENTROPY,
        knowledge.INSTANTIATING,
        knowledge.SSL_WRAPPER,
    ]
    assert chain.errors[0].file == "../providers/implementations/rands/drbg.c"
    assert chain.consequence(chain.errors[2])


def test_3x_error_string_inside_a_log_line() -> None:
    [chain] = all_chains(HAPROXY_3X)
    [e] = chain.errors
    assert (e.form, e.packing, e.code) == ("error-string", "3.x", 0x1C8000BD)
    assert e.record.library == "Provider routines" and e.function == ""
    assert e.entry is knowledge.ENTROPY and chain.thread is None


def test_s_client_line_is_not_an_entropy_problem() -> None:
    line = (
        "40F7E1B8E37F0000:error:0A000126:SSL routines:ssl3_read_n:unexpected eof while "
        "reading:../ssl/record/rec_layer_s3.c:308:"
    )
    [chain] = all_chains(line)
    [e] = chain.errors
    assert (e.form, e.packing, e.thread) == ("print-3.x", "3.x", "40F7E1B8E37F0000")
    assert e.reason == "unexpected eof while reading" and e.function == "ssl3_read_n"
    assert e.entry is None and not chain.entropy_problem


def test_issue_example_3x_with_file_and_line() -> None:
    line = (
        "error:1C8000BD:Provider routines::error retrieving entropy:"
        "../providers/implementations/rands/drbg.c:586:"
    )
    [e] = scan_line(line, 1)
    assert (e.packing, e.file, e.line) == ("3.x", "../providers/implementations/rands/drbg.c", 586)


def test_several_errors_on_one_line_keep_their_order() -> None:
    line = (
        "nginx: SSL_do_handshake() failed (SSL: error:1C8000BD:Provider routines::error "
        "retrieving entropy error:1C8000C0:Provider routines::in error state)"
    )
    found = scan_line(line, 7)
    assert [f"{e.code:08X}" for e in found] == ["1C8000BD", "1C8000C0"]
    assert found[1].entry is knowledge.IN_ERROR_STATE
    [chain] = all_chains(line)
    assert len(chain.errors) == 2


@pytest.mark.parametrize(
    ("code", "packing", "key"),
    [
        ("24078085", "1.x", None),  # rand_drbg_get_entropy: prediction resistance not supported
        ("2406E06E", "1.x", "error-retrieving-entropy"),
        ("2406C06E", "1.x", "error-retrieving-entropy"),
        ("2406B076", "1.x", "reseed-error"),
        ("2406B072", "1.x", "in-error-state"),
        ("24064064", "1.x", "prng-not-seeded"),
        ("1C8000BD", "3.x", "error-retrieving-entropy"),
        ("1C8000C0", "3.x", "in-error-state"),
        ("1C8000C5", "3.x", "reseed-error"),
        ("1C8000BF", "3.x", "generate-error"),
        ("1C8000BA", "3.x", "entropy-source-strength-too-weak"),
        ("1200006C", "3.x", "error-instantiating-drbg"),
    ],
)
def test_bare_codes_by_both_packings(code: str, packing: str, key: str | None) -> None:
    # The reference's worked values: each reads as a known error under exactly one packing.
    # All-decimal codes (24064064) need an OpenSSL word on the line unless written 0x...
    for text in (f"openssl: {code}", f"rv=0x{code}", f"0x{code.lower()}"):
        [e] = scan_line(text, 1)
        assert (e.form, e.packing, e.code) == ("bare", packing, int(code, 16)), text
        assert (e.entry.key if e.entry else None) == key


@pytest.mark.parametrize(
    "line",
    [
        "deadbeef cafebabe 0123abcd",  # hex that decodes to nothing known
        "build 20231130 pid 12000065 ok",  # decimal tokens need an OpenSSL word nearby
        "commit 2406c06e5f1a in the tree",  # part of a longer token
        "sha=x2406C06E",
        "uuid 2406c06e-0000-4000-8000-000000000000",
        "the value 1C8000BDA is too long",
        "libssl.so.3 1C8000BD.so",  # part of a file name
        "errno 0x8000DEAD",  # the 3.x system flag: only real errnos count
    ],
)
def test_no_false_positives_on_bare_hex(line: str) -> None:
    assert scan_line(line, 1) == []


def test_decimal_token_with_context_is_decoded() -> None:
    [e] = scan_line("openssl returned 12000065", 1)
    assert e.packing == "3.x" and e.record.reason == "Function not implemented"


def test_printed_text_decides_the_packing() -> None:
    # The x509 reason is not in the tables; the printed library settles it (3.x).
    [e] = scan_line("error:05800066:x509 certificate routines::certificate verify failed", 1)
    assert e.packing == "3.x" and e.reason == "certificate verify failed"
    # 1.0.2 without loaded strings prints numbers: they agree with the 1.x reading.
    [e] = scan_line("error:24064064:lib(36):func(100):reason(100)", 1)
    assert e.packing == "1.x" and e.entry is knowledge.NOT_SEEDED
    # 1.0.2 names function 100 SSLEAY_RAND_BYTES, 1.1.x RAND_bytes: still 1.x.
    [e] = scan_line(
        "4:error:24064064:random number generator:SSLEAY_RAND_BYTES:PRNG not seeded:md_rand.c:549:",
        1,
    )
    assert (e.packing, e.function, e.form) == ("1.x", "SSLEAY_RAND_BYTES", "print-1.x")


def test_unknown_code_shows_both_readings(cli) -> None:
    [e] = scan_line("x error:7F000001:foo:bar:baz", 1)
    assert e.packing is None and [r.packing for r in e.readings] == ["1.x", "3.x"]
    r = cli("decode", "-", input="x error:7F000001:foo:bar:baz\n")
    assert r.code == 0, r
    assert "both readings" in r.stdout and "[1.x]" in r.stdout and "[3.x]" in r.stdout


# libp11 registers its library at run time (ERR_get_next_error_library): the number varies
# from process to process, and only one packing gives a number from ERR_LIB_USER (128) on.
@pytest.mark.parametrize(
    ("line", "packing", "lib", "reason", "key"),
    [
        # stunnel 5.68 on 3.0 (measured, tests/test_hsm_real.py) and the probe's own process
        (
            "SSL_accept: p11_rsa.c:120: error:42000082:PKCS#11 module::Object handle invalid",
            "3.x",
            132,
            "0x82",
            "pkcs11-token-unreachable",
        ),
        ("error:41800082:PKCS#11 module::Object handle invalid", "3.x", 131, "0x82", None),
        ("error:420000A0:PKCS#11 module::PIN incorrect", "3.x", 132, "0xa0", "pkcs11-pin"),
        ("error:40800064:pkcs11 engine::invalid id", "3.x", 129, "0x64", "pkcs11-engine-error"),
        # 1.1.1's packing: the library in the top byte, so the 3.x reading is a system error
        (
            "error:80064082:PKCS#11 module:pkcs11_sign:Object handle invalid",
            "1.x",
            128,
            "0x82",
            None,
        ),
    ],
)
def test_libp11_codes_are_a_run_time_library_not_both_readings(
    cli, line: str, packing: str, lib: int, reason: str, key: str | None
) -> None:
    [e] = scan_line(line, 1)
    assert e.dynamic and e.packing == packing and e.record.lib == lib
    assert e.entry is not None
    if key is not None:
        assert e.entry.key == key
    r = cli("decode", "-", input=line + "\n")
    assert "both readings" not in r.stdout, r.stdout
    assert f"[{packing}] {e.printed_library}: " in r.stdout
    assert (
        f"(a library registered at run time, libp11's: number {lib} in that process; "
        f"matched by its name and reason {reason})"
    ) in r.stdout
    r = cli("decode", "-", "--format", "json", input=line + "\n")
    [error] = json.loads(r.stdout)["chains"][0]["errors"]
    assert error["dynamic_library"] is True and error["packing"] == packing
    assert [x["lib"] for x in error["readings"]] == [lib]


def test_an_unnamed_run_time_library_keeps_both_readings(cli) -> None:
    # Without libp11's name nothing says which library it is: no guess.
    [e] = scan_line("x error:42000082:lib(132)::reason(130)", 1)
    assert not e.dynamic and e.entry is None
    [e] = scan_line("x error:42000082:foo::Object handle invalid", 1)
    assert not e.dynamic and e.packing is None
    r = cli("decode", "-", "--format", "json", input="x error:42000082:foo::bar\n")
    assert json.loads(r.stdout)["chains"][0]["errors"][0]["dynamic_library"] is False


def test_chains_split_by_thread_and_gaps() -> None:
    text = "\n".join(
        [
            "11:error:2406C06E:random number generator:RAND_DRBG_instantiate:error retrieving "
            "entropy:crypto/rand/drbg_lib.c:221:",
            "22:error:2406C06E:random number generator:RAND_DRBG_instantiate:error retrieving "
            "entropy:crypto/rand/drbg_lib.c:221:",
            "11:error:140BA041:SSL routines:SSL_new:malloc failure:ssl/ssl_lib.c:839:",
            "plain log line",
            HAPROXY_3X,
            "another",
            "",
            HAPROXY_3X,
        ]
    )
    got = [(c.thread, c.first_line, c.last_line) for c in all_chains(text)]
    assert got == [("11", 1, 1), ("22", 2, 2), ("11", 3, 3), (None, 5, 5), (None, 8, 8)]


def test_lines_without_errors_are_passed_over(cli) -> None:
    r = cli("decode", "-", input="GET / 200\nerror: disk full\nssl ok 0x00000000\n")
    assert r.code == 0, r
    assert r.stdout == ""
    assert "3 line(s), 0 OpenSSL error(s)" in r.stderr


def test_non_entropy_errors_exit_0_entropy_errors_exit_1(cli) -> None:
    r = cli("decode", "-", input="error:0A000126:SSL routines::unexpected eof while reading\n")
    assert r.code == 0, r
    assert "Chain 1" in r.stdout and "ENTROPY" not in r.stdout
    r = cli("decode", "-", input=HAPROXY_3X + "\n")
    assert r.code == 1, r


def test_json(cli, tmp_path: Path) -> None:
    log = tmp_path / "haproxy.log"
    log.write_text("start\n" + ORIGIN_CHAIN + "\n" + CHAIN_3X)
    r = cli("decode", str(log), "--format", "json")
    assert r.code == 1, r
    data = json.loads(r.stdout)
    assert data["schema_version"] == "1.0"
    assert data["summary"] == {
        "lines": 11,
        "errors": 9,
        "chains": 2,
        "entropy_chains": 2,
        "messages": 0,
        "entropy_messages": 0,
        "token_chains": 0,
    }
    first = data["chains"][0]
    assert (first["first_line"], first["last_line"], first["thread"]) == (2, 7, "140135125062464")
    malloc = first["errors"][-1]
    assert malloc["code"] == "140BA041" and malloc["packing"] == "1.x"
    assert malloc["knowledge"] == "ssl-catch-all" and malloc["consequence"]
    assert malloc["function"] == "SSL_new" and malloc["line"] == 839
    assert set(data["knowledge"]) >= {"error-retrieving-entropy", "ssl-catch-all"}
    assert data["chains"][1]["errors"][0]["readings"][0]["library"] == "Provider routines"


@pytest.mark.parametrize("args", [("/nonexistent/log",), (".",), ("-", "--format", "xml")])
def test_tool_errors_exit_2_with_one_line(cli, args: tuple[str, ...]) -> None:
    r = cli("decode", *args, input="")
    assert r.code == 2, r
    assert "Traceback" not in r.stderr, r
    # One line of ours; click's usage errors add its usual "Usage:"/"Try" lines before it.
    assert r.stderr.strip().splitlines()[-1].startswith(("chrootcheck: error:", "Error:")), r


def test_invalid_utf8_and_binary_through_the_cli(cli) -> None:
    garbage = bytes(range(256)) * 4 + b"\xff\xfe\n" + ORIGIN_CHAIN.encode() + b"\x00\x9b[31m\n"
    proc = subprocess.run(
        [sys.executable, "-m", "chrootcheck", "decode"],
        input=garbage,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert proc.returncode == 1, proc
    assert b"140BA041" in proc.stdout and b"Traceback" not in proc.stderr
    assert b"\x1b" not in proc.stdout  # escape sequences from the log are not replayed


def test_output_streams_before_the_input_ends() -> None:
    # A chain is printed as soon as it is complete, while stdin is still open.
    proc = subprocess.Popen(
        [sys.executable, "-m", "chrootcheck", "decode"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write((HAPROXY_3X + "\n" + "filler\n" * 10).encode())
        proc.stdin.flush()
        first = proc.stdout.readline()  # would block forever if output waited for EOF
        assert first.startswith(b"Chain 1")
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_knowledge_entries_are_complete() -> None:
    for entry in knowledge.ENTRIES:
        assert all([entry.key, entry.title, entry.meaning, entry.jail_cause, entry.fix])
        assert entry.confirm.startswith("chrootcheck "), entry.key


def test_docs_describe_every_knowledge_entry() -> None:
    docs = (ROOT / "docs" / "decode.md").read_text()
    for entry in knowledge.ENTRIES:
        assert f"`{entry.key}`" in docs, entry.key


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_fuzz_garbage_never_crashes(data: bytes) -> None:
    from chrootcheck.formats.decode_render import chain_data, render_chain_text

    out = io.StringIO()
    for i, chain in enumerate(chains(lines_of(io.BytesIO(data))), start=1):
        render_chain_text(chain, i, out)
        json.dumps(chain_data(chain))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500).map(lambda b: b.replace(b"\n", b"")), st.binary(max_size=500))
def test_fuzz_a_real_chain_is_found_among_garbage(before: bytes, after: bytes) -> None:
    data = before + b"\n" + ORIGIN_CHAIN.encode() + after
    codes = [e.code for c in chains(lines_of(io.BytesIO(data))) for e in c.errors]
    assert 0x140BA041 in codes and codes.count(0x2406C06E) >= 3


# -- line handling: a line is a line, whatever its length (issue 9, class 5) ------------------

CODE_FORMS = {
    "error-string": HAPROXY_3X.encode(),
    "print-3.x": CHAIN_3X.splitlines()[0].encode(),
    "bare": b"openssl said 0x1C8000BD here",
}


def decoded_lines(data: bytes) -> tuple[list[tuple[int, int]], int]:
    """(line number, code) of every error decode finds in ``data``, and its line count."""
    reader = LineReader(io.BytesIO(data))
    found = [(e.line_no, e.code) for c in chains(reader) for e in c.errors]
    return found, reader.lines


def decode_cli(data: bytes | None, *args: str, stdin: object = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "chrootcheck", "decode", "--format", "json", *args],
        input=data,
        stdin=stdin,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert b"Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def test_line_reader_edge_cases() -> None:
    def read(data: bytes) -> tuple[list[str | Window], int]:
        reader = LineReader(io.BytesIO(data))
        return list(reader), reader.lines

    assert read(b"") == ([], 0)
    assert read(b"\n") == ([""], 1)
    assert read(b"a\r\nb\n\nc") == (["a", "b", "", "c"], 4)  # CRLF, a last line without \n
    assert read(b"a\r\r\n\r\n") == (["a", ""], 2)
    assert read(b"n\x00ul\n\xff\xfe\n") == (["n\x00ul", "\ufffd\ufffd"], 2)


def test_a_character_cut_by_a_read_is_decoded_whole() -> None:
    # The euro sign straddles the end of the first read (READ_SIZE bytes).
    head = b"x" * (READ_SIZE - 2 - 3) + b"\n"
    data = head + b"ab\xe2\x82\xac\n" + b"\xe2\x82\xac" * 3 + b"\n"
    assert len(head) + 2 < READ_SIZE < len(head) + 5
    lines = list(lines_of(io.BytesIO(data)))
    assert lines[1:] == ["ab\u20ac", "\u20ac" * 3]


def test_a_10mb_line_does_not_shift_the_line_numbers() -> None:
    data = b"x" * (10 * 1024 * 1024) + b"\n" + ORIGIN_CHAIN.encode() + HAPROXY_3X.encode()
    found, lines = decoded_lines(data)
    assert [n for n, _ in found] == [2, 3, 4, 5, 6, 7, 8]
    assert lines == 8


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_a_10mb_line_through_the_cli(tmp_path: Path, via: str) -> None:
    log = tmp_path / "big.log"
    # Binary garbage, NULs and CRLF in the long line; a last line without a newline.
    big = (b"\xff\x00 \xe2\x82\xac " * (10 * 1024 * 1024 // 9))[: 10 * 1024 * 1024]
    log.write_bytes(big + b"\r\nplain\r\n" + HAPROXY_3X.encode() + b"\r\n" + HAPROXY_3X.encode())
    if via == "file":
        data = decode_cli(None, str(log))
    else:
        with log.open("rb") as f:
            data = decode_cli(None, "-", stdin=f)
    assert [e["line_no"] for c in data["chains"] for e in c["errors"]] == [3, 4]
    assert data["summary"]["lines"] == 4


def straddling(form: str, boundary: int, filler: bytes) -> list[bytes]:
    """Lines with a code placed across byte ``boundary`` at several offsets, long enough
    that the boundary is inside the line (and past the window threshold when it is a
    window's). The window sizes are read when called: ``small_windows`` may have shrunk them."""
    max_line, overlap = chains_module.MAX_LINE, chains_module.OVERLAP
    token = CODE_FORMS[form]
    code_at = token.index(b"1C8000BD")
    length = max(boundary + overlap + len(token) + 100, max_line + overlap + 1)
    out = []
    error_at = token.index(b"error:") if b"error:" in token else code_at
    starts = {
        boundary - len(token) + 1,  # only the last byte after the boundary
        boundary - error_at + 3,  # inside the thread id, if any
        boundary - code_at - 4,
        boundary - code_at,  # the code starts on the boundary
        boundary - code_at + 1,
        boundary - 1,
        boundary,
    }
    for start in sorted(starts):
        pad = filler * (start // len(filler)) + b"x" * (start % len(filler))  # whole chars
        line = pad + token + b" "
        out.append(line + (filler * ((length - len(line)) // len(filler) + 1)))
    return out


# Where a window or a read ends, as offsets from (window, overlap, context).
BOUNDARIES = {
    "overlap": lambda w, o, c: o,
    "window": lambda w, o, c: w,
    "window+overlap": lambda w, o, c: w + o,
    "window-context": lambda w, o, c: w - c,
    "2 windows": lambda w, o, c: 2 * w,
    "2 windows+overlap": lambda w, o, c: 2 * w + o,
}


SMALL_WINDOW, SMALL_OVERLAP = 8192, 1024


@contextlib.contextmanager
def windows_shrunk() -> Iterator[None]:
    """The window code at a small scale (8 KiB windows and reads, 1 KiB overlap): the same
    paths as at 1 MiB, for cases that would otherwise scan hundreds of megabytes. The real
    sizes are kept by test_a_code_straddling_a_real_boundary_is_found_once and the tests
    that follow it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chains_module, "MAX_LINE", SMALL_WINDOW)
        mp.setattr(chains_module, "OVERLAP", SMALL_OVERLAP)
        mp.setattr(chains_module, "READ_SIZE", SMALL_WINDOW)
        yield


@pytest.fixture
def small_windows() -> Iterator[None]:
    with windows_shrunk():
        yield


def check_straddling(form: str, boundary: str, filler: bytes) -> None:
    at = BOUNDARIES[boundary](chains_module.MAX_LINE, chains_module.OVERLAP, CONTEXT)
    for n, line in enumerate(straddling(form, at, filler)):
        reader = LineReader(io.BytesIO(line + b"\n" + HAPROXY_3X.encode() + b"\n"))
        errors = [e for c in chains(reader) for e in c.errors]
        assert [(e.line_no, e.code) for e in errors] == [(1, 0x1C8000BD), (2, 0x1C8000BD)], n
        assert reader.lines == 2
        if filler == "\u20ac".encode():  # windows are cut between characters, never inside
            assert "\ufffd" not in errors[0].text and "\u20ac" in errors[0].text


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("form", sorted(CODE_FORMS))
@pytest.mark.parametrize(
    "filler", [b"x", b"\xe2\x82\xac", b"\xff\x00: "], ids=["ascii", "utf8", "bad"]
)
def test_a_code_straddling_a_boundary_is_found_once(
    form: str, boundary: str, filler: bytes, small_windows: None
) -> None:
    assert chains_module.MAX_LINE == SMALL_WINDOW  # the small scale is in force
    check_straddling(form, boundary, filler)


@pytest.mark.parametrize("boundary", ["window", "2 windows+overlap"])
def test_a_code_straddling_a_real_boundary_is_found_once(boundary: str) -> None:
    assert chains_module.MAX_LINE == MAX_LINE == 1024 * 1024
    check_straddling("error-string", boundary, b"\xe2\x82\xac")


@pytest.mark.parametrize("filler", ["x", "\u00e9", "\u20ac", "\U0001f512", "a\u00e9\u20ac"])
def test_windows_partition_an_overlong_line(filler: str) -> None:
    line = filler * ((2 * MAX_LINE + OVERLAP + 12345) // len(filler.encode()))
    reader = LineReader(io.BytesIO(line.encode() + b"\r\nnext"))
    items = list(reader)
    windows = [w for w in items if isinstance(w, Window)]
    assert items[len(windows) :] == ["next"] and reader.lines == 2
    assert [w.more for w in windows] == [True] * (len(windows) - 1) + [False]
    assert len(windows) == 3
    # The owned parts are the line, once, in order, never a character cut in two.
    assert "".join(w.text[w.lo : w.hi] for w in windows) == line
    pos = 0
    for w in windows:
        assert line[pos - w.lo : pos] == w.text[: w.lo]  # the context before: real text
        assert line[pos : pos + len(w.text) - w.lo] == w.text[w.lo :]  # and after
        # Cuts move back to a character's start: at most 3 bytes.
        assert pos == 0 or CONTEXT <= len(w.text[: w.lo].encode()) <= CONTEXT + 3
        if w.more:
            assert OVERLAP - 3 <= len(w.text[w.hi :].encode()) <= OVERLAP
        else:
            assert w.hi == len(w.text)
        pos += w.hi - w.lo


def test_lines_at_the_window_threshold() -> None:
    for length in (MAX_LINE + OVERLAP - 1, MAX_LINE + OVERLAP, MAX_LINE + OVERLAP + 1):
        line = b"y" * (length - len(HAPROXY_3X)) + HAPROXY_3X.encode()
        assert len(line) == length
        found, lines = decoded_lines(line + b"\n" + line + b"\n")
        assert found == [(1, 0x1C8000BD), (2, 0x1C8000BD)] and lines == 2


MEMORY_PROBE = """
import json, resource, sys
import chrootcheck.cli, chrootcheck.commands.decode, chrootcheck.decode
import chrootcheck.formats.decode_render
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    chrootcheck.cli.main(["decode", "--format", "json", *sys.argv[1:]])
except SystemExit as e:
    code = e.code
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "grew_kib": after - before}), file=sys.stderr)
"""


@pytest.mark.parametrize("via", ["file", "stdin"])
def test_a_16mb_line_is_decoded_in_bounded_memory(tmp_path: Path, via: str) -> None:
    log = tmp_path / "huge.log"
    with log.open("wb") as f:
        for _ in range(16):
            f.write(b"GET /" + b"a" * (1024 * 1024 - 5))
        f.write(b" " + HAPROXY_3X.encode() + b"\n" + HAPROXY_3X.encode() + b"\n")
    args = [str(log)] if via == "file" else ["-"]
    with log.open("rb") as stdin:
        proc = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, *args],
            stdin=stdin,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=120,
        )
    stats = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    assert stats["code"] == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert [e["line_no"] for c in data["chains"] for e in c["errors"]] == [1, 2]
    assert data["summary"]["lines"] == 2
    # A 16 MB line held whole grows the peak by 27-57 MB (measured with MAX_LINE and
    # READ_SIZE at 64 MiB); the windows need a few.
    assert stats["grew_kib"] < 12 * 1024, stats


FILLERS = st.sampled_from([b"x", b" ", b"\xe2\x82\xac", b"\x00", b"\xff", b"\r", b"ab cd "])
# Around the window sizes, which the fuzz test shrinks (windows_shrunk).
LENGTHS = st.one_of(
    st.integers(0, 300),
    st.sampled_from(
        [
            SMALL_WINDOW - 7,
            SMALL_WINDOW + SMALL_OVERLAP,
            SMALL_WINDOW + SMALL_OVERLAP + 1,
            2 * SMALL_WINDOW + 5,
        ]
    ),
)


@st.composite
def log_lines(draw: st.DrawFn) -> tuple[list[bytes], list[int]]:
    """Random lines, a few of them long, some with codes at random places."""
    lines, with_codes = [], []
    n_long = 0
    for n in range(1, draw(st.integers(1, 12)) + 1):
        length = draw(LENGTHS)
        if length > 1000:
            n_long += 1
            if n_long > 2:
                length = 10
        filler = draw(FILLERS)
        line = (filler * (length // len(filler) + 1))[:length]
        codes = draw(st.lists(st.sampled_from(sorted(CODE_FORMS)), max_size=2))
        for form in codes:
            at = draw(st.integers(0, len(line)))
            line = line[:at] + b" " + CODE_FORMS[form] + b" " + line[at:]
        if codes:
            with_codes.append(n)
        lines.append(line.replace(b"\n", b""))
    return lines, with_codes


@settings(max_examples=40, deadline=None)
@given(log_lines(), st.sampled_from([b"\n", b"\r\n"]), st.booleans())
def test_fuzz_line_numbers_are_the_true_line_numbers(
    log: tuple[list[bytes], list[int]], eol: bytes, final_eol: bool
) -> None:
    lines, with_codes = log
    data = eol.join(lines) + (eol if final_eol else b"")
    with windows_shrunk():
        found, count = decoded_lines(data)
    assert sorted({n for n, _ in found}) == with_codes
    # An empty last line without a line end is no line at all.
    assert count == len(lines) - (not final_eol and lines[-1] == b"")


ERROR_TOKENS = st.sampled_from(
    [
        "error:1C8000BD:",
        "error:",
        ":",
        "::",
        " ",
        "x",
        "F",
        "F" * 19,
        "7F3A9C1E2740",
        "1C8000BD",
        "Provider routines",
        "f.c:12:",
        "\n",
        "\u20ac",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(ERROR_TOKENS, max_size=20).map("".join))
@example("7F3A9C1E2740:error:1C8000BD:a:b:c")
@example("x" + "F" * 20 + ":error:1C8000BD:::" + "F" * 21 + ":error:1C8000BD:::")
@example("error:1C8000BD:::F:error:1C8000BD:::")
def test_fast_error_matcher_is_the_regex(text: str) -> None:
    # error_matches() skips the regex between "error:" tokens; it must find what it finds.
    assert [m.span() for m in error_matches(text)] == [m.span() for m in _ERROR.finditer(text)]
