"""Messages users paste that carry no OpenSSL error code: "PRNG not seeded", curl's "(35)
Insufficient randomness", libsodium's "randombytes failed", Postfix's "disabling TLS
support" ... (knowledge.PHRASES). Found line by line beside the error chains."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from chrootcheck.decode import knowledge
from chrootcheck.decode.chains import Window, numbered
from chrootcheck.decode.knowledge import Entry

_PHRASES = [(re.compile(p, re.IGNORECASE), e) for p, e in knowledge.PHRASES]
# OpenSSL's own reason strings: on a line with a printed OpenSSL error, the chain has them.
_REASONS = (knowledge.NOT_SEEDED, knowledge.RAND_WRITE_FILE)
_PRINTED = re.compile(r"error:[0-9A-Fa-f]{8}:")
EXCERPT = 300


@dataclass(frozen=True)
class Message:
    line_no: int
    entry: Entry
    text: str  # the phrase with some of the line around it


def find(line: str, line_no: int) -> list[Message]:
    """The known messages in one line (each entry once: the first phrase that matches)."""
    out: list[Message] = []
    printed = _PRINTED.search(line) is not None
    for pattern, entry in _PHRASES:
        if printed and entry in _REASONS:
            continue
        m = pattern.search(line)
        if m is not None and all(x.entry is not entry for x in out):
            if entry is knowledge.NOT_SEEDED and any(
                x.entry is knowledge.STUNNEL_PRNG for x in out
            ):
                continue  # stunnel's sentence holds "PRNG ... not seeded" as well
            start = max(0, m.start() - EXCERPT)
            out.append(Message(line_no, entry, line[start : m.end() + EXCERPT]))
    return out


def tee(lines: Iterable[str | Window], found: list[Message]) -> Iterator[str | Window]:
    """The lines unchanged (for ``chains``), each searched for known messages into ``found``
    on its way, with the same line numbers ``chains`` gives."""
    for _, item in tee_numbered(numbered(lines), found):
        assert item is not None
        yield item


def tee_numbered(
    items: Iterable[tuple[int, str | Window | None]], found: list[Message]
) -> Iterator[tuple[int, str | Window | None]]:
    """Numbered lines unchanged (for ``chains.group``), each searched for known messages into
    ``found`` on its way."""
    for line_no, item in items:
        if type(item) is str:
            found.extend(find(item, line_no))
        elif isinstance(item, Window):
            found.extend(find(item.text[item.lo : item.hi], line_no))
        yield line_no, item
