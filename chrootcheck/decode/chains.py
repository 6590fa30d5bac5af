"""Find, decode and explain the OpenSSL errors in log text (``chrootcheck decode``).

Recognised forms (docs/decode.md):

* ``ERR_print_errors`` 1.0.2/1.1.x: ``140135125062464:error:2406C06E:random number generator:
  RAND_DRBG_instantiate:error retrieving entropy:crypto/rand/drbg_lib.c:221:`` (decimal tid);
* ``ERR_print_errors`` 3.x: ``7F0A1B2C3D40:error:1C8000BD:Provider routines:
  ossl_prov_drbg_instantiate:error retrieving entropy:../drbg.c:586:`` (hex tid, C function);
* ``ERR_error_string`` anywhere in a line: ``error:1C8000BD:Provider routines::error ...``;
* bare packed codes: ``2406C06E``, ``0x1C8000BD``.

A code whose OpenSSL version is unknown is decoded under both packings; the reading the
printed library/reason agrees with wins, else the one that names a known library and reason,
else both are shown. Bare codes are accepted only as exactly 8 hex digits that decode to a
known library *and* reason (and, under 1.x, function) - and an all-decimal token (a date, a
pid) needs an OpenSSL word on the same line - because random hex in logs is common.

Consecutive error lines from the same thread (or, without a thread id, adjacent lines) form
one chain: one failing operation. Input is read in chunks and split into lines here, so a huge
log streams; invalid UTF-8 and binary garbage are decoded with replacement and never raise.
``chains`` scans every line (the reference); decode.blocks feeds ``group`` only the lines a
block-wise search keeps, with the same result.
"""

from __future__ import annotations

import errno
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from chrootcheck.decode import knowledge
from chrootcheck.decode.knowledge import Entry, Role
from chrootcheck.openssl.errcodes import (
    ERR_LIB_MASK,
    ERR_LIB_OFFSET,
    ERR_LIB_SYS,
    ERR_LIB_USER,
    ERR_SYSTEM_FLAG,
    LIBRARY_NAMES,
    PACKINGS,
    ErrorRecord,
    Packing,
    decode,
)

# A line is scanned whole up to MAX_LINE + OVERLAP bytes. A longer line is scanned in windows
# (still one line, one line number): each window owns MAX_LINE bytes and also sees the
# CONTEXT bytes before them and the OVERLAP bytes after them, so an error that starts in a
# window's own bytes is seen with at least OVERLAP bytes of its text, and one that straddles a
# window boundary is found exactly once. Memory stays bounded whatever the line's length.
MAX_LINE = 1024 * 1024
OVERLAP = 64 * 1024
CONTEXT = 64  # > the longest thread id + ':' and bare token: look-behinds see real text
READ_SIZE = MAX_LINE  # one read; never more than MAX_LINE, so a read holds only short lines
EXCERPT = 1024  # an error on an overlong line keeps this much text on each side as its text
GAP_SAME_THREAD = 5  # unrelated lines allowed inside a chain when the thread id matches

_NEXT = r"\s(?:[0-9A-Fa-f]{1,20}:)?error:[0-9A-Fa-f]{8}:"  # the next error on the same line
_FIELD = rf"(?:(?!{_NEXT})[^:\n])*"
_ERROR = re.compile(
    r"(?:(?<![0-9A-Za-z])(?P<tid>[0-9A-Fa-f]{1,20}):)?"
    r"error:(?P<code>[0-9A-Fa-f]{8}):"
    rf"(?P<lib>{_FIELD}):(?P<func>{_FIELD}):(?P<reason>{_FIELD})"
    rf"(?::(?P<file>[^:\s]*):(?P<line>\d+):(?P<data>[^\n]*?)(?={_NEXT}|$))?"
)
_BARE = re.compile(
    r"(?<![0-9A-Za-z_:.-])(?P<prefix>0[xX])?(?P<code>[0-9A-Fa-f]{8})(?![0-9A-Za-z_.-])"
)
# The words that make a line about OpenSSL (issue 11: "error" alone is in every log line, and
# a request id such as req_id=0200d031 is 8 hex digits too). "ssl" also matches SSL_read.
CONTEXT_WORDS = (
    "openssl", "libssl", "libcrypto", "ssl", "sslv3", "tls", "tlsv1", "crypto", "rand", "prng",
    "entropy", "drbg", "x509", "evp", "handshake",
)  # fmt: skip
_CONTEXT = re.compile(
    rf"(?<![a-z])(?:{'|'.join(CONTEXT_WORDS)})(?![a-z])|error:",
    re.IGNORECASE,
)
_FALLBACK = re.compile(r"^(?:lib|func|reason)\((\d+)\)$")


@dataclass(frozen=True)
class Decoded:
    """One OpenSSL error found in the log."""

    line_no: int
    form: str  # "print-1.x", "print-3.x", "error-string", "bare"
    code: int
    thread: str | None
    readings: tuple[ErrorRecord, ...]  # one when the packing is settled, two when not
    printed_library: str = ""
    printed_function: str = ""
    printed_reason: str = ""
    file: str = ""
    line: int = 0
    data: str = ""
    text: str = ""  # the log line (as read, replacement characters for bad bytes)

    @property
    def packing(self) -> Packing | None:
        return self.readings[0].packing if len(self.readings) == 1 else None

    @property
    def dynamic(self) -> bool:
        """A library registered at run time (libp11's "PKCS#11 module"): its number is the one
        ERR_get_next_error_library gave in that process, so it is known by its printed name
        and its reason, not by our tables."""
        return len(self.readings) == 1 and _dynamic(self.record, self.printed_library)

    @property
    def record(self) -> ErrorRecord:
        return self.readings[0]

    @property
    def function(self) -> str:
        if self.printed_function and not _FALLBACK.match(self.printed_function):
            return self.printed_function
        return self.record.function or self.printed_function

    @property
    def reason(self) -> str:
        """The reason text: from the tables, else as the log printed it."""
        if self.record.reason or _FALLBACK.match(self.printed_reason):
            return self.record.reason
        return self.printed_reason

    @property
    def entry(self) -> Entry | None:
        for reading in self.readings:
            found = knowledge.lookup(reading, self.text, self.printed_library)
            if found:
                return found
        return None


@dataclass
class Chain:
    """Errors that belong to one failing operation."""

    errors: list[Decoded] = field(default_factory=list)

    @property
    def thread(self) -> str | None:
        return self.errors[0].thread if self.errors else None

    @property
    def first_line(self) -> int:
        return self.errors[0].line_no

    @property
    def last_line(self) -> int:
        return self.errors[-1].line_no

    @property
    def entropy_problem(self) -> bool:
        return any(e.entry is not None and e.entry.is_entropy_problem for e in self.errors)

    @property
    def token_problem(self) -> bool:
        """A PKCS#11 module that cannot reach its token (the HSM case in a jail)."""
        return any(e.entry is not None and e.entry.role is Role.TOKEN for e in self.errors)

    def consequence(self, error: Decoded) -> bool:
        """A catch-all report (SSL_new: malloc failure) after an entropy error in this chain."""
        entry = error.entry
        if entry is None or entry.role is not Role.WRAPPER:
            return False
        index = self.errors.index(error)
        return any(e.entry is not None and e.entry.is_entropy_problem for e in self.errors[:index])

    def consequence_text(self, error: Decoded) -> str | None:
        """What a catch-all report means here: after an entropy error, after a PKCS#11 token
        error (0A080006 EVP lib after 42000082), or nothing."""
        if self.consequence(error):
            return knowledge.CONSEQUENCE
        entry = error.entry
        if entry is None or entry.role is not Role.WRAPPER:
            return None
        # Either order: stunnel prints its queue newest first, so the cause may come after.
        if any(e.entry is not None and e.entry.role is Role.TOKEN for e in self.errors):
            return knowledge.TOKEN_CONSEQUENCE
        return None

    def verdict(self) -> str:
        if not self.entropy_problem and self.token_problem:
            return (
                "the PKCS#11 module cannot reach its token: in a jail, the token store is "
                "missing or unreadable for the service user (check with chrootcheck scan "
                "JAIL --daemon-config DAEMON.conf)."
            )
        if not self.entropy_problem:
            return "no entropy or DRBG error in this chain"
        roots = [e for e in self.errors if e.entry and e.entry.role is Role.ENTROPY]
        wrapper = any(self.consequence(e) for e in self.errors)
        text = (
            "OpenSSL could not get entropy: the seed source gave nothing"
            if roots
            else "a DRBG failed (an earlier entropy failure left it unusable)"
        )
        if wrapper:
            text += ", and the TLS layer reported it as 'malloc failure', which it is not"
        return text + (
            ". If the process runs in a chroot jail, /dev/urandom is likely missing or "
            "unusable inside it (check with chrootcheck scan JAIL)."
        )


def _agrees(record: ErrorRecord, lib: str, reason: str) -> bool:
    """Does a reading match what the log printed? Library and reason decide; function names
    differ between releases (1.0.2 SSLEAY_RAND_BYTES and 1.1.x RAND_bytes share code 100).
    Fallbacks such as ``lib(36)`` compare by number."""

    def same(printed: str, known: str, number: int) -> bool:
        m = _FALLBACK.match(printed.strip())
        if m:
            return int(m.group(1)) == number
        return bool(known) and printed.strip().lower() == known.lower()

    return same(lib, record.library, record.lib) and same(reason, record.reason, record.reason_code)


def _dynamic(record: ErrorRecord, printed_library: str) -> bool:
    """A reading whose library is one registered at run time under a name we know (libp11's).
    Such numbers start at ERR_LIB_USER, so only one packing can give one (1.x: the top byte;
    3.x: bits 23-30 without the system flag)."""
    return (
        record.lib >= ERR_LIB_USER
        and not record.system
        and printed_library.strip().lower() in knowledge.PKCS11_LIBRARY_NAMES
    )


def _readings(code: int, lib: str = "", reason: str = "") -> tuple[ErrorRecord, ...]:
    both = tuple(decode(code, p) for p in PACKINGS)
    dynamic = [r for r in both if _dynamic(r, lib)]
    if len(dynamic) == 1:
        return (dynamic[0],)
    if lib or reason:
        agree = [r for r in both if _agrees(r, lib, reason)]
        if len(agree) == 1:
            return (agree[0],)
        # Reasons outside the tables (x509, ...): the printed library alone still decides.
        agree = [r for r in both if _agrees(r, lib, r.reason or f"reason({r.reason_code})")]
        if len(agree) == 1:
            return (agree[0],)
    likely = _likely(code)
    if likely is not None:
        return (decode(code, likely),)
    return both


def _recognised(record: ErrorRecord) -> bool:
    """A reading that names a known library and reason (and, under 1.x, function). A system
    error counts only with a real errno: strerror invents "Unknown error N" for anything."""
    if not (record.library and record.reason):
        return False
    if (record.system or record.lib == ERR_LIB_SYS) and record.reason_code not in errno.errorcode:
        return False
    return record.packing == "3.x" or bool(record.function)


@functools.lru_cache(maxsize=4096)
def _likely(code: int) -> Packing | None:
    if not _plausible(code):
        return None
    known = [p for p in PACKINGS if _recognised(decode(code, p))]
    return known[0] if len(known) == 1 else None


def _plausible(code: int) -> bool:
    """A cheap first test (logs hold many hex tokens): a known library under some packing."""
    if code & ERR_SYSTEM_FLAG:
        return True
    return (code >> 24) in LIBRARY_NAMES or (code >> ERR_LIB_OFFSET & ERR_LIB_MASK) in LIBRARY_NAMES


def _bare_ok(code: int, prefixed: bool, line: str) -> bool:
    """A bare code counts written 0x..., alone on its line, or on a line that carries an
    OpenSSL word: random hex (request ids, hashes) is everywhere in logs."""
    if _likely(code) is None:
        return False
    return prefixed or len(line.strip()) == 8 or bool(_CONTEXT.search(line))


_HEX = frozenset("0123456789abcdefABCDEF")


def error_matches(line: str) -> Iterator[re.Match[str]]:
    """The matches of ``_ERROR.finditer(line)``, found faster: every match holds ``error:``,
    so the regex is tried only where ``str.find`` sees one (a long line with one error is not
    walked character by character by the regex engine).

    A match starts either at ``error:`` or at the thread id just before it: the start of the
    run of hex digits ending in ``:`` there (the regex itself checks the run's length and
    its look-behind) - the only places its leftmost match can start."""
    floor = 0
    at = line.find("error:")
    while at >= 0:
        m = None
        if at >= 2 and line[at - 1] == ":":
            start = at - 1
            while start > floor and at - start <= 21 and line[start - 1] in _HEX:
                start -= 1
            if start < at - 1:
                m = _ERROR.match(line, start)
        if m is None:
            m = _ERROR.match(line, at)
        if m is None:
            at = line.find("error:", at + 1)
            continue
        yield m
        floor = m.end()
        at = line.find("error:", floor)


def scan_line(line: str, line_no: int) -> list[Decoded]:
    """Every OpenSSL error in one line of text, in order."""
    return _scan(line, line_no, 0, len(line), False)


def scan_window(window: Window, line_no: int) -> list[Decoded]:
    """The OpenSSL errors that start in a window's own part of an overlong line."""
    return _scan(window.text, line_no, window.lo, window.hi, True)


def _scan(line: str, line_no: int, lo: int, hi: int, excerpt: bool) -> list[Decoded]:
    """Errors that start in ``line[lo:hi]``; the text around it is context only (a match that
    starts there belongs to the neighbouring window, but still covers bare tokens)."""
    found: list[tuple[int, Decoded]] = []
    covered: list[tuple[int, int]] = []
    for m in error_matches(line):
        covered.append(m.span())
        if not lo <= m.start() < hi:
            continue
        code = int(m.group("code"), 16)
        lib, func, reason = m.group("lib"), m.group("func"), m.group("reason")
        tid = m.group("tid")
        if m.group("file") is None:
            # ERR_error_string ends at the reason: what follows is the log's own text
            # ("certificate verify failed) while SSL handshaking, client: ...").
            reason = _trim_reason(reason, _readings(code, lib, _trim_reason(reason, ())))
        readings = _readings(code, lib, reason)
        if m.group("file") is not None and tid is not None:
            # ERR_print_errors: 1.x prints a decimal tid, 3.x a hex one and a C function name.
            form = (
                "print-1.x"
                if readings[0].packing == "1.x" and len(readings) == 1
                else ("print-3.x" if len(readings) == 1 else "print")
            )
        else:
            form = "error-string"
        found.append(
            (
                m.start("code"),
                Decoded(
                    line_no=line_no,
                    form=form,
                    code=code,
                    thread=tid,
                    readings=readings,
                    printed_library=lib.strip(),
                    printed_function=func.strip(),
                    printed_reason=reason.strip(),
                    file=m.group("file") or "",
                    line=int(m.group("line") or 0),
                    data=(m.group("data") or "").strip(),
                    text=_excerpt(line, *m.span()) if excerpt else line,
                ),
            )
        )
    for m in _BARE.finditer(line):
        start, end = m.span()
        if not lo <= start < hi or any(a <= start < b or a < end <= b for a, b in covered):
            continue
        code = int(m.group("code"), 16)
        if not _bare_ok(code, m.group("prefix") is not None, line):
            continue
        found.append(
            (
                start,
                Decoded(
                    line_no=line_no,
                    form="bare",
                    code=code,
                    thread=None,
                    readings=_readings(code),
                    text=_excerpt(line, start, end) if excerpt else line,
                ),
            )
        )
    found.sort(key=lambda pair: pair[0])
    return [d for _, d in found]


def _trim_reason(reason: str, readings: tuple[ErrorRecord, ...]) -> str:
    """The reason of an ERR_error_string without the text the log put after it: the known
    reason text where the printed one starts with it, else up to an unbalanced closing
    bracket or quote (nginx wraps the string in parentheses)."""
    for r in readings:
        known = r.reason
        if known and len(reason) > len(known) and reason.lower().startswith(known.lower()):
            if not reason[len(known)].isalnum():
                return reason[: len(known)]
    depth = 0
    for i, c in enumerate(reason):
        if c in "([":
            depth += 1
        elif c in ")]":
            if depth == 0:
                return reason[:i]
            depth -= 1
        elif c in "\"'" and depth == 0 and i:
            return reason[:i]
    return reason


def _excerpt(text: str, start: int, end: int) -> str:
    return text[max(0, start - EXCERPT) : end + EXCERPT]


@dataclass(frozen=True, slots=True)
class Window:
    """A part of a line longer than MAX_LINE + OVERLAP bytes. ``text[lo:hi]`` is the part this
    window owns; the text around it is context shared with the neighbouring windows. ``more``:
    another window of the same line follows (the line number does not change)."""

    text: str
    lo: int
    hi: int
    more: bool


def _char_start(data: bytearray, at: int) -> int:
    """``at`` moved back to the start of a UTF-8 sequence (at most 3 bytes), so a window never
    cuts a character in two."""
    for _ in range(3):
        if at <= 0 or at >= len(data) or data[at] & 0xC0 != 0x80:
            break
        at -= 1
    return at


def _text(data: bytes | bytearray) -> str:
    return data.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class _Lines:
    """Whole lines read together (joined by ``\\n``, without the last one's), the first of
    them line ``first``."""

    text: str
    first: int

    def lines(self) -> list[str]:
        lines = self.text.split("\n")
        if "\r" in self.text:
            lines = [line.rstrip("\r") for line in lines]
        return lines


def _spans(text: str, offsets: Iterable[int]) -> Iterator[tuple[int, int]]:
    """The (start, end) of each line of ``text`` that holds one of the offsets, in order,
    each once."""
    end = -1
    for at in sorted(offsets):
        if at <= end:
            continue  # in the line already handed out
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        if end < 0:
            end = len(text)
        yield start, end


class LineReader:
    """The lines of a log, read from bytes in chunks and split on ``\\n`` here: a line is a
    line whatever its length. A line up to MAX_LINE + OVERLAP bytes comes as one ``str``; a
    longer one as consecutive ``Window``s, in bounded memory. ``\\r`` before the newline is
    dropped, a last line without a newline counts, invalid UTF-8 becomes U+FFFD (a chunk is
    decoded only up to a newline, a window only at a character boundary). ``lines`` counts the
    lines read so far."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.lines = 0
        self._buf = bytearray()  # the current line's bytes not yet handed out
        self._ctx = 0  # in an overlong line: _buf[:_ctx] is context already owned
        self._long = False  # the current line has been handed out in windows already

    def __iter__(self) -> Iterator[str | Window]:
        for part in self._parts():
            if type(part) is _Lines:
                yield from part.lines()
            else:
                assert not isinstance(part, _Lines)
                yield part

    def candidates(
        self, select: Callable[[str], Iterable[int]]
    ) -> Iterator[tuple[int, str | Window | None]]:
        """The numbered lines (as ``chains.numbered`` gives them) that may hold something,
        for ``group``. Whole lines read together are one block: ``select(block)`` gives the
        offsets in it of what can matter (any offset in a line keeps that line) and only
        those lines are split out; the rest are counted, never looked at one by one. The
        partial lines at a read's edges and the windows of an overlong line always come.
        ``(n, None)`` before a kept line n says that the lines up to n - 1 were read, and
        after each read that the lines up to n were: ``group`` closes its chains as it would
        line by line."""
        last = 0  # the number of the last line handed out or announced
        for part in self._parts():
            if type(part) is _Lines:
                text, line_no, at = part.text, part.first, 0
                for line_start, line_end in _spans(text, select(text)):
                    line_no += text.count("\n", at, line_start)
                    at = line_start
                    if line_no - 1 > last:
                        yield line_no - 1, None
                    last = line_no
                    yield line_no, text[line_start:line_end].rstrip("\r")
                if self.lines > last:
                    last = self.lines
                    yield last, None
            else:
                assert not isinstance(part, _Lines)
                line_no = self.lines + 1  # the line's number once it is counted
                if line_no - 1 > last:
                    yield line_no - 1, None
                last = line_no
                yield line_no, part

    def _parts(self) -> Iterator[str | Window | _Lines]:
        # read1: whatever the pipe holds now (a streamed log prints as it is read); a plain
        # read(n) would wait for n bytes or the end of the input.
        read = getattr(self.stream, "read1", self.stream.read)
        buf = self._buf
        while True:
            chunk: bytes = read(READ_SIZE)
            if not chunk:
                break
            first = chunk.find(b"\n")
            if first < 0:
                buf += chunk
                yield from self._windows()
                continue
            buf += chunk[:first]
            yield from self._end_line()
            last = chunk.rfind(b"\n")
            if last > first:
                # Whole lines, shorter than a read: decoded at once. A newline never sits
                # inside a UTF-8 sequence, so this decodes each line as it would alone.
                text = _text(chunk[first + 1 : last])
                block = _Lines(text, self.lines + 1)
                self.lines += text.count("\n") + 1
                yield block
            buf += chunk[last + 1 :]
            yield from self._windows()
        if buf or self._long:
            yield from self._end_line()

    def _windows(self) -> Iterator[Window]:
        """Hand out the full windows of an overlong line buffered so far."""
        buf = self._buf
        while len(buf) - self._ctx >= MAX_LINE + OVERLAP:
            self._long = True
            own = _char_start(buf, self._ctx + MAX_LINE)
            end = _char_start(buf, own + OVERLAP)
            before, mine = _text(buf[: self._ctx]), _text(buf[self._ctx : own])
            yield Window(
                before + mine + _text(buf[own:end]), len(before), len(before) + len(mine), True
            )
            keep = _char_start(buf, own - CONTEXT)
            del buf[:keep]
            self._ctx = own - keep

    def _end_line(self) -> Iterator[str | Window]:
        buf = self._buf
        if buf.endswith(b"\r"):
            del buf[len(buf.rstrip(b"\r")) :]
        yield from self._windows()
        if self._long:
            before = _text(buf[: self._ctx])
            text = before + _text(buf[self._ctx :])
            yield Window(text, len(before), len(text), False)
        else:
            yield _text(buf)
        self.lines += 1
        buf.clear()
        self._ctx, self._long = 0, False


def lines_of(stream: BinaryIO) -> LineReader:
    """The lines of a log (see LineReader), never raising on bad encodings."""
    return LineReader(stream)


def chains(lines: Iterable[str | Window]) -> Iterator[Chain]:
    """Group the errors of the log into chains, yielding each chain once it is complete.

    Each ``str`` is one line; consecutive ``Window``s are parts of one overlong line."""
    return group(numbered(lines))


def numbered(lines: Iterable[str | Window]) -> Iterator[tuple[int, str | Window]]:
    """Each line (or window) with its line number: a window's ``more`` keeps the number."""
    line_no = 0
    more = False
    for item in lines:
        if not more:
            line_no += 1
        more = isinstance(item, Window) and item.more
        yield line_no, item


def group(items: Iterable[tuple[int, str | Window | None]]) -> Iterator[Chain]:
    """The chains of numbered lines, in order; lines without errors may be left out (the block
    scan passes only the lines that can hold one). ``(n, None)`` says that the lines up to n
    were read: a chain that no later line can continue is yielded then, as it would be after
    line n itself (a streamed log prints each chain once it is complete)."""
    current: Chain | None = None
    for line_no, item in items:
        if item is None:
            errors: list[Decoded] = []
        elif type(item) is str:
            errors = scan_line(item, line_no)
        else:
            assert isinstance(item, Window)
            errors = scan_window(item, line_no)
        for error in errors:
            if current is not None and _continues(current, error):
                current.errors.append(error)
                continue
            if current is not None:
                yield current
            current = Chain([error])
        if current is not None and line_no - current.last_line > GAP_SAME_THREAD:
            yield current
            current = None
    if current is not None:
        yield current


def _continues(chain: Chain, error: Decoded) -> bool:
    last = chain.errors[-1]
    gap = error.line_no - last.line_no
    if last.thread is not None and error.thread is not None:
        return last.thread == error.thread and gap <= GAP_SAME_THREAD
    if last.thread is not None or error.thread is not None:
        return gap == 0  # a tid-less error on the same line as a printed one
    return gap <= 1
