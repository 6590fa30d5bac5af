"""Block-wise scanning for ``chrootcheck decode``: the same chains and messages as the line by
line path (``chains(tee(lines, found))``), found without per-line Python for the lines that
carry nothing.

A read of whole lines (up to ``chains.READ_SIZE``) is one block. A few fast searches over the
block, in C (``bytes.find`` for fixed words, one regex each for the two hex forms), give the
offsets of everything a line needs before the line by line code can find anything in it:

* ``error:`` (every printed error; also an OpenSSL word),
* the OpenSSL words that let a bare code count (``chains.CONTEXT_WORDS``),
* a ``0x``-prefixed 8-digit hex code, a line that is one 8-digit hex token and blanks,
* the literal start of every known message (``knowledge.PHRASES``; a message whose pattern
  does not start with a literal makes every line a candidate),

searched case-insensitively in the block lowered (ASCII only; every other character counts
as ``?``, and the four that Python's case-insensitive matching equates with ASCII letters mark
their line). Only the lines holding such an offset are split out and scanned by the line by
line code itself, so what is found is exactly what it finds: the searches only drop lines in
which it cannot find anything (tests/test_decode_blocks.py checks this on random input).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from typing import Any

from chrootcheck.decode import knowledge
from chrootcheck.decode.chains import CONTEXT_WORDS, Chain, LineReader, group
from chrootcheck.decode.messages import Message, tee_numbered

_PREFIXED = re.compile(rb"0x[0-9a-f]{8}")
_HEX_LINE = re.compile(rb"\n[^\n\w]*[0-9a-f]{8}[^\n\w]*(?=\n)")
# The characters other than ASCII that a case-insensitive Python regex matches to an ASCII
# letter (U+0130, U+0131, U+017F, U+212A; the test recomputes them).
FOLDS = "\u0130\u0131\u017f\u212a"
_FOLDS = re.compile(f"[{FOLDS}]")


def phrase_leads(pattern: str) -> list[str] | None:
    """The literal texts one of which every match of ``pattern`` starts with (one per top-level
    alternative), lowercased; None when some alternative starts with anything else. From
    Python's own parse of the pattern: a leading character that a quantifier makes optional
    is not part of a lead."""
    try:
        parser: Any = importlib.import_module("re._parser")
        return _leads(list(parser.parse(pattern, re.IGNORECASE)))
    except Exception:  # another Python's parser: no lead, every line is scanned
        return None


def _leads(items: list[Any]) -> list[str] | None:
    out = ""
    for op, av in items:
        if str(op) == "LITERAL" and av < 128:
            out += chr(av)
            continue
        if str(op) == "BRANCH" and not out:
            leads: list[str] = []
            for sub in av[1]:
                found = _leads(list(sub))
                if not found:
                    return None
                leads += found
            return leads
        break
    return [out.lower()] if out else None


def _needles() -> tuple[tuple[bytes, ...], bool]:
    """The fixed words to search for (none a part of another) and whether every line must be
    scanned (a message pattern without a literal start)."""
    words = {w.lower() for w in CONTEXT_WORDS} | {"error:"}
    every_line = False
    for pattern, _ in knowledge.PHRASES:
        leads = phrase_leads(pattern)
        if leads is None:
            every_line = True
        else:
            words.update(leads)
    minimal = {w for w in words if not any(o != w and o in w for o in words)}
    return tuple(sorted(w.encode("ascii") for w in minimal)), every_line


NEEDLES, EVERY_LINE = _needles()


def select(text: str) -> list[int]:
    """Offsets in ``text`` (whole lines joined by ``\\n``) of everything that can make a line
    hold an OpenSSL error or a known message; a line without one holds neither."""
    if EVERY_LINE:
        return [0, *(m.end() for m in re.finditer("\n", text))]
    low = text.encode("ascii", "replace").lower()  # one byte per character: same offsets
    hits: list[int] = []
    find = low.find
    for needle in NEEDLES:
        at = find(needle)
        while at >= 0:
            hits.append(at)
            end = find(b"\n", at)  # the rest of this line is kept anyway
            if end < 0:
                break
            at = find(needle, end + 1)
    hits.extend(m.start() for m in _PREFIXED.finditer(low))
    # On "\n" + block + "\n", a match's start is the start of its line in the block.
    hits.extend(m.start() for m in _HEX_LINE.finditer(b"\n" + low + b"\n"))
    if not text.isascii():
        hits.extend(m.start() for m in _FOLDS.finditer(text))
    return hits


def decode_stream(reader: LineReader, found: list[Message]) -> Iterator[Chain]:
    """``chains(tee(reader, found))``, block-wise: the chains in order, each once complete,
    and the known messages into ``found`` as the lines go by."""
    return group(tee_numbered(reader.candidates(select), found))
