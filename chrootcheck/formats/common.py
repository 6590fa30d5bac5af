"""Helpers every format shares: safe text for file names, and the report as plain data."""

from __future__ import annotations

import dataclasses
import enum
import errno
import functools
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from chrootcheck.report import catalogue as checks
from chrootcheck.report.model import (
    SCAN_SCHEMA_VERSION,
    Finding,
    JailReport,
    Notice,
    Report,
    Stage,
    sort_findings,
)

if TYPE_CHECKING:
    from rich.console import Console

# C0 and C1 controls; the Unicode bidirectional controls (embeddings and overrides U+202A-E,
# isolates U+2066-9, the marks U+200E/F and U+061C), which reorder what a terminal or a web page
# shows ("Trojan Source"); and the line and paragraph separators U+2028/9, which some viewers
# break lines at.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(s: str) -> str:
    """A file name as text that is safe anywhere: undecodable bytes (kept by the OS layer as
    surrogates) become ``\\xNN``, control characters (newlines, ESC ...) and the bidirectional
    controls become escapes too (``\\n``, ``\\x1b``, ``\\u202e``), so a hostile name can
    neither crash an encoder nor drive the terminal nor reorder what is shown around it.
    Every format prints names through this one function."""
    if type(s) is str and s.isascii() and _CONTROL.search(s) is None:
        return s  # nothing to escape (most names): the same text
    s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), s)


def error_line(message: str, hint: str | None = None) -> str:
    """The one ``chrootcheck: error: ...`` line, whoever prints it: one line, safe text."""
    return f"chrootcheck: error: {printable(message)}" + (f" ({printable(hint)})" if hint else "")


def check_stage(check_id: str) -> Stage | None:
    """The stage whose run a check needs (``None``: not a catalogue check, never skipped)."""
    check = checks.CHECKS.get(check_id)
    return check.stage if check is not None else None


def skipped_stages(jail: JailReport) -> dict[Stage, Notice]:
    """The stages that did not run for this jail, each with the notice that says why."""
    out: dict[Stage, Notice] = {}
    for n in jail.notices:
        if n.skips_stage:
            out.setdefault(n.topic, n)
    return out


def skipped_checks(jail: JailReport, ids: Iterable[str]) -> dict[str, Notice]:
    """Of ``ids``, the checks whose stage did not run and that found nothing, with the why."""
    stages = skipped_stages(jail)
    found = {f.check for f in jail.findings}
    out: dict[str, Notice] = {}
    for check_id in ids:
        stage = check_stage(check_id)
        if stage in stages and check_id not in found:
            out[check_id] = stages[stage]
    return out


T = TypeVar("T")

# A text listing (the text report, GitHub's job summary) shows at most this many findings of
# one check, and notices of one topic; JSON and the other machine formats keep them all.
MAX_LISTED = 20


@dataclasses.dataclass(frozen=True)
class More(Generic[T]):
    """Stands, in a text listing, for the items of one group that are not shown."""

    last_shown: T  # the group's last item shown (its check, severity, topic ...)
    shown: int
    total: int

    @property
    def left_out(self) -> int:
        return self.total - self.shown


def capped(
    items: Iterable[T], key: Callable[[T], Hashable], most: int = MAX_LISTED
) -> list[T | More[T]]:
    """``items`` in their order, at most ``most`` per ``key``; right after the last one shown
    of a group, a ``More`` that says how many of it were left out. 100,000 FIFOs make 100,000
    findings: a terminal or a CI log gets the first few and the count, JSON gets them all."""
    items = list(items)
    totals = Counter(key(i) for i in items)
    seen: Counter[Hashable] = Counter()
    out: list[T | More[T]] = []
    for item in items:
        k = key(item)
        seen[k] += 1
        if seen[k] <= most:
            out.append(item)
            if seen[k] == most and totals[k] > most:
                out.append(More(item, most, totals[k]))
    return out


# Each dataclass's field names (None: not a dataclass), looked up once per class: a scan of
# many jails converts hundreds of thousands of values.
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def to_data(obj: Any) -> Any:
    """Dataclasses, enums, mappings and sequences as JSON-ready data; every string made safe."""
    cls = type(obj)
    if cls is str:
        return printable(obj)
    if obj is None or cls is int or cls is bool or cls is float:
        return obj
    try:
        names = _FIELD_NAMES[cls]
    except KeyError:
        names = _FIELD_NAMES[cls] = (
            tuple(f.name for f in dataclasses.fields(obj))
            if dataclasses.is_dataclass(obj) and not isinstance(obj, type)
            else None
        )
    if names is not None:
        return {name: to_data(getattr(obj, name)) for name in names}
    if isinstance(obj, enum.Enum):
        return to_data(obj.value)
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, Mapping):
        return {printable(str(k)): to_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_data(v) for v in obj]
    if isinstance(obj, bytes):
        return printable(obj.decode("utf-8", "surrogateescape"))
    return obj


def finding_data(f: Finding) -> dict[str, Any]:
    check = checks.CHECKS.get(f.check)
    return {
        "check": f.check,
        "name": check.name if check else None,
        "severity": f.severity.value,
        "path": printable(f.path),
        "message": printable(f.message),
        "remediation": printable(f.remediation),
        "details": to_data(f.details),
    }


def notice_data(n: Notice) -> dict[str, Any]:
    return {"kind": n.kind.value, "topic": printable(n.label), "message": printable(n.message)}


def jail_data(j: JailReport, report: Report) -> dict[str, Any]:
    return {
        "jail": printable(j.jail),
        "status": jail_status(j, report),
        "findings": [finding_data(f) for f in sort_findings(j.findings)],
        "notices": [notice_data(n) for n in j.notices],
        "libcrypto": to_data(j.libcrypto),
        "walk": to_data(j.walk),
        "probe": to_data(j.probe) if j.probe is not None else None,
        "process": to_data(j.process) if j.process is not None else None,
    }


def jail_status(j: JailReport, report: Report) -> str:
    """ "error" (the tool could not check it), "fail" or "pass" against --fail-on."""
    if j.tool_error:
        return "error"
    return "fail" if j.at_or_above(report.fail_on) else "pass"


def report_data(report: Report) -> dict[str, Any]:
    return {
        "schema_version": SCAN_SCHEMA_VERSION,
        "tool": {"name": "chrootcheck", "version": report.tool_version},
        "jails": [jail_data(j, report) for j in report.jails],
        "summary": report.summary(),
    }


def rich_console(**kwargs: Any) -> Console:
    """A rich Console for names and data: markup, highlighting and emoji off (a path like
    ``/jail/[x]/dev`` keeps its ``[x]``), and a closed stdout raised as BrokenPipeError, which
    the CLI turns into exit 2: rich's own handler exits 1, which would read as "findings"."""
    options: dict[str, Any] = {"markup": False, "highlight": False, "emoji": False}
    console: Console = _console_class()(**{**options, **kwargs})
    return console


@functools.cache
def _console_class() -> type[Console]:
    from rich.console import Console  # rich is heavy: only when text is printed

    class PipeAwareConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "stdout was closed")

    return PipeAwareConsole
