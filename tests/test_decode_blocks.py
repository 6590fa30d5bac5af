"""decode's block-wise scan (decode/blocks.py) finds exactly what the line by line path
(``chains(tee(lines, found))``) finds: the same chains, messages, line count and the same
interleaving of messages and chains, on random mixed input read in random pieces."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chrootcheck.decode import blocks, knowledge
from chrootcheck.decode.blocks import FOLDS, decode_stream, phrase_leads, select
from chrootcheck.decode.chains import Chain, LineReader, chains
from chrootcheck.decode.messages import Message, tee

# Pieces of real log lines: the printed forms, bare codes near and far from OpenSSL words,
# the messages of knowledge.PHRASES, haproxy's hex fields, and characters that stress the
# case-insensitive and whitespace rules (U+017F matches "s", U+212A "k", NBSP is a blank).
PIECES = [
    "140135125062464:error:2406C06E:random number generator:RAND_DRBG_instantiate:"
    "error retrieving entropy:crypto/rand/drbg_lib.c:221:",
    "140135125062464:error:140BA041:SSL routines:SSL_new:malloc failure:ssl/ssl_lib.c:839:",
    "7F3A9C1E2740:error:1C8000BD:Provider routines:ossl_prov_drbg_instantiate:"
    "error retrieving entropy:../providers/implementations/rands/drbg.c:586:",
    "(error:1C8000BD:Provider routines::error retrieving entropy)",
    "error:0A000086:SSL routines::certificate verify failed",
    "2406C06E",
    "0x1C8000BD",
    "0X2406c06e",
    "1C8000BD",
    "{0200D031|8f3a2b1c}",
    "20261201",
    "openssl",
    "OpenSSL",
    "tls",
    "TLSv1",
    "\u017fsl",
    "\u017fSL",
    "crypto",
    "Rand",
    "X509",
    "eVp",
    "handshake",
    "ERROR:",
    "PRNG not seeded",
    "prng is NOT seeded",
    "PRNG was not seeded with enough random bytes",
    "(35) Insufficient randomness",
    "randombytes_buf() failed",
    "randombytes: abort",
    "get_seed_from_urandom(): failed to open /dev/urandom",
    "Cannot get \u017fystem entropy",
    "disabling TLS support",
    "RAND_write_file Not a regular file",
    "postfix/smtpd[77]: warning: TLS library problem: "
    "error:0A0000EA:SSL routines::callback failed:",
    "haproxy[1234]: 10.0.0.1:40312 [01/Dec/2026:10:00:00.123] fe be/srv1 0/0/1/2/3 200 512",
    "\u00a0",
    "\x1c",
    "\t",
    " ",
    ":",
    "\u212a",
    "\u0130",
    "\u0131",
    "\u20ac",
    "\ufffd",
]
LINE = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=12)), max_size=6).flatmap(
    lambda parts: st.sampled_from([" ", "", ":", "\t"]).map(lambda sep: sep.join(parts))
)
LINES = st.lists(
    st.tuples(LINE, st.sampled_from([b"\n", b"\r\n", b"\n\n"]), st.binary(max_size=3)),
    max_size=40,
)


class Pieces(io.RawIOBase):
    """A stream that hands out at most ``size`` bytes per read, as a pipe does."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.at, self.size = data, 0, size

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        piece = self.data[self.at : self.at + min(n, self.size)]
        self.at += len(piece)
        return piece

    read = read1


def both(data: bytes, size: int) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """What each path finds: chains, messages, line count and, for each chain, how many
    messages had been found when it was yielded (what the text output interleaves)."""

    def run(found_by: str) -> tuple[object, ...]:
        reader = LineReader(Pieces(data, size))
        messages: list[Message] = []
        if found_by == "lines":
            stream = chains(tee(reader, messages))
        else:
            stream = decode_stream(reader, messages)
        found: list[tuple[Chain, int]] = [(c, len(messages)) for c in stream]
        return found, messages, reader.lines

    return run("lines"), run("blocks")


def encode(lines: list[tuple[str, bytes, bytes]]) -> bytes:
    return b"".join(text.encode() + garbage + end for text, end, garbage in lines)


@settings(max_examples=200, deadline=None)
@given(LINES, st.sampled_from([1 << 20, 7, 64, 300]))
@example([("x", b"\n", b""), ("\u017fsl 2406C06E", b"\n", b""), ("y", b"\n", b"")], 1 << 20)
@example([("x", b"\n", b""), ("\u00a02406C06E\x1c", b"\n", b""), ("y", b"", b"")], 1 << 20)
def test_blocks_find_exactly_what_lines_find(
    lines: list[tuple[str, bytes, bytes]], size: int
) -> None:
    by_lines, by_blocks = both(encode(lines), size)
    assert by_blocks == by_lines


@settings(max_examples=100, deadline=None)
@given(LINES)
def test_every_line_mode_finds_the_same(lines: list[tuple[str, bytes, bytes]]) -> None:
    """A message pattern without a literal start makes every line a candidate."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(blocks, "EVERY_LINE", True)
        by_lines, by_blocks = both(encode(lines), 1 << 20)
    assert by_blocks == by_lines


def test_the_block_scan_keeps_only_the_lines_that_can_matter() -> None:
    text = "\n".join(
        [
            "GET /a {0200D031|8f3a2b1c} 200",  # random hex, no OpenSSL word: dropped
            "app: openssl returned 0x2406C06E",
            "plain line",
            " 2406C06E ",
            "PRNG not seeded",
            "other text",
        ]
    )
    kept = {text.rfind("\n", 0, at) + 1 for at in select(text)}
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    assert sorted(kept) == [starts[1], starts[3], starts[4]]


def test_folds_are_every_character_that_matches_an_ascii_letter_ignoring_case() -> None:
    letters = re.compile("[a-z]|" + "|".join("abcdefghijklmnopqrstuvwxyz"), re.IGNORECASE)
    found = "".join(chr(c) for c in range(0x80, 0x110000) if letters.match(chr(c)))
    assert found == FOLDS


@pytest.mark.parametrize(
    ("pattern", "leads"),
    [
        ("PRNG (?:is )?not seeded", ["prng "]),
        (r"\(35\) x", ["(35) x"]),
        ("ab?c", ["a"]),
        ("a?bc", None),
        ("ab+c", ["a"]),  # a repeat ends the lead
        ("(?:x|y)z", None),
        ("foo|Bar", ["foo", "bar"]),
        ("foo|.bar", None),
        ("randombytes(?:_[a-z]+)?:? failed|randombytes.{0,40}abort", ["randombytes"]),
        ("\u017fsl", None),
        ("(?x) a b", ["ab"]),  # the inline flag is read as Python reads it
        ("[", None),  # not a pattern at all: every line is scanned
    ],
)
def test_phrase_leads(pattern: str, leads: list[str] | None) -> None:
    assert phrase_leads(pattern) == leads


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_every_message_match_holds_one_of_its_leads(data: st.DataObject) -> None:
    for pattern, _ in knowledge.PHRASES:
        leads = phrase_leads(pattern)
        assert leads, pattern
        text = data.draw(st.from_regex(re.compile(pattern, re.IGNORECASE)))
        m = re.search(pattern, text, re.IGNORECASE)
        assert m is not None
        low = m.group().encode("ascii", "replace").lower().decode()
        assert any(low.startswith(lead) for lead in leads) or any(c in FOLDS for c in m.group())
