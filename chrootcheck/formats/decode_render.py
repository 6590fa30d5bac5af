"""Output of ``chrootcheck decode``: text for people (streamed chain by chain) and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from chrootcheck.decode.chains import Chain, Decoded
from chrootcheck.decode.knowledge import Entry
from chrootcheck.decode.messages import Message
from chrootcheck.formats.common import printable
from chrootcheck.openssl.errcodes import ErrorRecord
from chrootcheck.report.model import SCHEMA_VERSION


def _reading_text(r: ErrorRecord, function: str = "", reason: str = "") -> str:
    func = function or r.function
    parts = [r.library or f"lib({r.lib})"]
    if func:
        parts.append(func)
    parts.append(reason or r.reason or f"reason({r.reason_code})")
    return f"[{r.packing}] " + ": ".join(parts)


def error_line(chain: Chain, e: Decoded) -> list[str]:
    where = f"  ({printable(e.file)}:{e.line})" if e.file else ""
    data = f" [{printable(e.data)}]" if e.data else ""
    head = f"  line {e.line_no:<6} {e.code:08X}  "
    out = []
    if e.dynamic:
        r = e.record
        reason = e.reason or f"reason({r.reason_code})"
        number = r.reason_code & (0xFFF if r.packing == "1.x" else 0x7FFFFF)
        out.append(head + printable(f"[{r.packing}] {e.printed_library}: {reason}") + where + data)
        pad = " " * len(head)
        out.append(
            f"{pad}(a library registered at run time, libp11's: number {r.lib} in that "
            f"process; matched by its name and reason {number:#x})"
        )
    elif len(e.readings) == 1:
        out.append(head + printable(_reading_text(e.record, e.function, e.reason)) + where + data)
    else:
        out.append(head + "packing unknown, both readings:")
        out.extend(" " * len(head) + printable(_reading_text(r)) for r in e.readings)
    consequence = chain.consequence_text(e)
    if consequence:
        out.append(" " * len(head) + "-> " + consequence)
    return out


def render_chain_text(chain: Chain, number: int, stream: TextIO) -> None:
    span = (
        f"line {chain.first_line}"
        if chain.first_line == chain.last_line
        else f"lines {chain.first_line}-{chain.last_line}"
    )
    thread = f", thread {printable(chain.thread)}" if chain.thread else ""
    mark = "ENTROPY" if chain.entropy_problem else "PKCS#11" if chain.token_problem else "other"
    stream.write(f"Chain {number} ({span}{thread}): {mark}\n")
    if chain.entropy_problem or chain.token_problem:
        stream.write(f"  {chain.verdict()}\n")
    for e in chain.errors:
        stream.write("\n".join(error_line(chain, e)) + "\n")
    for entry in _entries(chain.errors):
        stream.write(f"  * {entry.title} [{entry.key}]\n")
        stream.write(f"    means:   {entry.meaning}\n")
        stream.write(f"    in a jail: {entry.jail_cause}\n")
        stream.write(f"    fix:     {entry.fix}\n")
        stream.write(f"    confirm: {entry.confirm}\n")
    stream.write("\n")
    stream.flush()  # a chain is printed as soon as it is complete, even into a pipe


def render_message_text(message: Message, stream: TextIO) -> None:
    entry = message.entry
    mark = "ENTROPY" if entry.is_entropy_problem else "other"
    stream.write(f"Message (line {message.line_no}): {mark}\n")
    stream.write(f"  {printable(message.text.strip())}\n")
    stream.write(f"  * {entry.title} [{entry.key}]\n")
    stream.write(f"    means:   {entry.meaning}\n")
    stream.write(f"    in a jail: {entry.jail_cause}\n")
    stream.write(f"    fix:     {entry.fix}\n")
    stream.write(f"    confirm: {entry.confirm}\n\n")
    stream.flush()


def _entries(errors: Iterable[Decoded]) -> list[Entry]:
    return list(dict.fromkeys(e.entry for e in errors if e.entry is not None))


def _record_data(r: ErrorRecord) -> dict[str, Any]:
    return {
        "packing": r.packing,
        "library": r.library or None,
        "lib": r.lib,
        "function": r.function or None,
        "reason": r.reason or None,
        "reason_code": r.reason_code,
    }


def _entry_data(entry: Entry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "role": entry.role.value,
        "title": entry.title,
        "meaning": entry.meaning,
        "jail_cause": entry.jail_cause,
        "fix": entry.fix,
        "confirm": entry.confirm,
    }


def chain_data(chain: Chain) -> dict[str, Any]:
    errors = []
    for e in chain.errors:
        entry = e.entry
        errors.append(
            {
                "line_no": e.line_no,
                "form": e.form,
                "code": f"{e.code:08X}",
                "thread": printable(e.thread) if e.thread else None,
                "packing": e.packing,
                "dynamic_library": e.dynamic,
                "readings": [_record_data(r) for r in e.readings],
                "printed": {
                    "library": printable(e.printed_library) or None,
                    "function": printable(e.printed_function) or None,
                    "reason": printable(e.printed_reason) or None,
                },
                "file": printable(e.file) or None,
                "line": e.line or None,
                "data": printable(e.data) or None,
                "function": printable(e.function) or None,
                "reason": printable(e.reason) or None,
                "knowledge": entry.key if entry else None,
                "consequence": chain.consequence_text(e),
                "text": printable(e.text),
            }
        )
    return {
        "first_line": chain.first_line,
        "last_line": chain.last_line,
        "thread": printable(chain.thread) if chain.thread else None,
        "entropy_problem": chain.entropy_problem,
        "token_problem": chain.token_problem,
        "verdict": chain.verdict(),
        "errors": errors,
    }


def render_json(
    chains: list[Chain],
    stats: dict[str, Any],
    tool_version: str,
    stream: TextIO,
    messages: Iterable[Message] = (),
) -> None:
    messages = list(messages)
    entries = list(
        dict.fromkeys(
            [*_entries(e for c in chains for e in c.errors), *(m.entry for m in messages)]
        )
    )
    # One write: json.dump would write each of the encoder's many small pieces.
    text = json.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "chrootcheck", "version": tool_version},
            "chains": [chain_data(c) for c in chains],
            "messages": [
                {
                    "line_no": m.line_no,
                    "knowledge": m.entry.key,
                    "entropy_problem": m.entry.is_entropy_problem,
                    "text": printable(m.text.strip()),
                }
                for m in messages
            ],
            "knowledge": {entry.key: _entry_data(entry) for entry in entries},
            "summary": stats,
        },
        indent=2,
        ensure_ascii=False,
    )
    stream.write(text + "\n")
