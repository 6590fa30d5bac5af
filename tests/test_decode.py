"""``chrootcheck decode``: every printed form, both packings, chains, knowledge, robustness."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chrootcheck import knowledge
from chrootcheck.decode import MAX_LINE, Chain, chains, lines_of, scan_line
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
    assert data["summary"] == {"lines": 11, "errors": 9, "chains": 2, "entropy_chains": 2}
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


def test_long_lines_are_read_in_pieces() -> None:
    data = b"x" * (MAX_LINE * 5) + b"\n" + HAPROXY_3X.encode() + b"\n"
    lines = list(lines_of(io.BytesIO(data)))
    assert max(len(line) for line in lines) <= MAX_LINE
    [chain] = chains(lines)
    assert chain.errors[0].code == 0x1C8000BD


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
