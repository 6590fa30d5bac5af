"""What a hostile or huge jail makes the reports print: escaped names (C0/C1 and bidi controls),
long listings summarised in text (complete in JSON), the depth limit said and placed."""

from __future__ import annotations

import io
import json
import os
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import MAX_LISTED, capped, printable
from chrootcheck.formats.text_format import render
from chrootcheck.jail import fs as jailfs
from chrootcheck.jail import walker
from chrootcheck.report.model import (
    Finding,
    JailReport,
    Notice,
    NoticeKind,
    Report,
    Severity,
    Stage,
)
from tests.conftest import Result

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
BIDI_CLASSES = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}


def unsafe(ch: str) -> bool:
    """A character no report may print raw: a control, a bidi control, a line separator."""
    return (
        unicodedata.category(ch) in ("Cc", "Zl", "Zp")
        or unicodedata.bidirectional(ch) in BIDI_CLASSES
        or ch in BIDI
    )


# -- bidi and control characters -------------------------------------------------------------


def test_printable_escapes_every_bidi_control() -> None:
    assert printable("a\u202eb") == "a\\u202eb"
    for ch in BIDI + "\u2028\u2029":
        out = printable(f"x{ch}y")
        assert ch not in out and out == f"x\\u{ord(ch):04x}y", repr(ch)
    assert printable("caf\u00e9 \u200d") == "caf\u00e9 \u200d"  # letters, ZWJ: left alone


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=40).map(os.fsdecode), st.text(max_size=40)))
def test_no_unsafe_character_survives_printable(name: str) -> None:
    out = printable(name)
    assert not [c for c in out if unsafe(c)], (name, out)


@settings(max_examples=60, deadline=None)
@given(
    st.text(
        alphabet=st.one_of(st.sampled_from(BIDI + "\x1b\n\r\x85\u2028\x00"), st.characters()),
        min_size=1,
        max_size=30,
    )
)
def test_no_unsafe_character_survives_the_text_report(name: str) -> None:
    path = "/var/" + name.replace("/", "_")
    report = Report(
        [
            JailReport(
                jail="/srv/" + name,
                findings=[Finding("CC162", Severity.INFO, path, f"{path}: a FIFO.", "none")],
                notices=[
                    Notice(NoticeKind.NOTE, Stage.INSPECT, f"{path} is a mount point", part="walk")
                ],
            )
        ]
    )
    out = io.StringIO()
    render(report, out, RenderOptions(width=100))
    text = out.getvalue()
    # The layout's own newlines are the only control characters in the output.
    assert not [c for c in text if c != "\n" and unsafe(c)], repr(text)


def _hostile_jail(tmp_path: Path) -> Path:
    jail = tmp_path / "jail\u202egpj.exe"
    (jail / "var").mkdir(parents=True)
    os.mkfifo(jail / "var" / f"fifo{BIDI}end")
    os.mkfifo(jail / "var" / "esc\x1b[31mred")
    return jail


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github", "gitlab", "junit"])
def test_bidi_names_are_escaped_in_every_format(
    tmp_path: Path, cli: Callable[..., Result], fmt: str
) -> None:
    jail = _hostile_jail(tmp_path)
    r = cli("scan", "--no-probe", "--no-late-loads", "--format", fmt, str(jail))
    assert r.code == 1, str(r)
    out = r.stdout
    assert not [c for c in out if c not in "\n\r" and unsafe(c)], repr(out[:2000])
    if fmt == "text":
        assert "jail\\u202egpj.exe" in out  # the jail's own name
        assert "/var/fifo\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066" in out
        assert "/var/esc\\x1b[31mred" in out
    if fmt == "json":
        paths = [f["path"] for f in json.loads(out)["jails"][0]["findings"]]
        assert "/var/fifo" + "".join(f"\\u{ord(c):04x}" for c in BIDI) + "end" in paths


# -- long listings ---------------------------------------------------------------------------


def test_capped_keeps_order_and_counts_the_rest() -> None:
    items = [("a", i) for i in range(5)] + [("b", 0)] + [("a", i) for i in range(5, 8)]
    out = capped(items, lambda x: x[0], most=3)
    more = out[3]
    assert out[:3] == items[:3] and out[4:] == [("b", 0)]
    assert not isinstance(more, tuple)
    assert (more.last_shown, more.shown, more.total, more.left_out) == (("a", 2), 3, 8, 5)
    assert capped(items[:3], lambda x: x[0], most=3) == items[:3]  # exactly the cap: no More


FIFOS = 2_000  # far past MAX_LISTED; listed in full, the text would be over 100 kB


@pytest.fixture
def fifo_jail(jail: Path) -> Path:
    (jail / "spool").mkdir()
    for i in range(FIFOS):
        os.mkfifo(jail / "spool" / f"p{i:05d}")
    return jail


def test_many_fifos_are_summarised_in_text_and_complete_in_json(
    fifo_jail: Path, cli: Callable[..., Result]
) -> None:
    r = cli("scan", "--no-probe", "--no-late-loads", str(fifo_jail), timeout=120)
    assert r.code == 1, str(r)
    rows = [line for line in r.stdout.splitlines() if " CC162 " in line]
    assert len(rows) == MAX_LISTED + 1
    assert [row.split()[2] for row in rows[:3]] == [
        "/spool/p00000",
        "/spool/p00001",
        "/spool/p00002",
    ]
    left = FIFOS - MAX_LISTED
    assert f"{left} more CC162 finding(s) not shown here ({MAX_LISTED} of {FIFOS})" in r.stdout
    assert "--format json lists them all" in r.stdout
    assert f"{FIFOS} info" in r.stdout  # the summary line still counts them all
    assert len(r.stdout) < 20_000  # not 2,000 rows
    j = cli(
        "scan", "--no-probe", "--no-late-loads", "--format", "json", str(fifo_jail), timeout=120
    )
    findings = json.loads(j.stdout)["jails"][0]["findings"]
    assert sum(1 for f in findings if f["check"] == "CC162") == FIFOS


def test_many_notices_of_one_topic_are_summarised_in_text() -> None:
    notes = [
        Notice(NoticeKind.NOTE, Stage.INSPECT, f"/m{i} is a mount point", part="walk")
        for i in range(50)
    ]
    report = Report(
        [JailReport(jail="/j", notices=[*notes, Notice(NoticeKind.SKIPPED, "probe", "x")])]
    )
    out = io.StringIO()
    render(report, out, RenderOptions(width=120))
    text = out.getvalue()
    assert text.count("is a mount point") == MAX_LISTED
    assert f"note: 30 more walk notice(s) not shown here ({MAX_LISTED} of 50)" in text
    assert "skipped: probe: x" in text


# -- the depth limit -------------------------------------------------------------------------


def _chain(top: Path, name: str, levels: int) -> None:
    # os.makedirs with one long path would pass PATH_MAX; go down with chdir-free mkdirat.
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def test_the_report_says_where_the_walk_stopped(jail: Path, cli: Callable[..., Result]) -> None:
    _chain(jail, "d", 300)
    stop = "/d" * (walker.MAX_DEPTH - 1)
    for fmt in ("text", "json"):
        r = cli("scan", "--no-probe", "--no-late-loads", "--format", fmt, str(jail))
        assert r.code == 1, str(r)
        flat = r.stdout.replace("\n", "") if fmt == "text" else r.stdout
        said = f"the walk stopped at {walker.MAX_DEPTH} levels in {stop}: its sub-folder(s) d "
        assert said in flat, flat[-3000:]
    notices = json.loads(r.stdout)["jails"][0]["notices"]
    assert [n["topic"] for n in notices if "walk stopped" in n["message"]] == ["walk"]


def _ten_down_three_chains(jail: Path) -> None:
    """/x1/.../x10 holding three 300-level chains."""
    top = jail
    for i in range(1, 11):
        top = top / f"x{i}"
        top.mkdir()
    for name in ("a", "b", "c"):
        _chain(top, name, 300)


def test_a_split_walk_stops_at_the_same_depth(jail: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A split hands a frame ten levels down to the child walker: its depth must come from the
    # path, not from its own (short) stack.
    _ten_down_three_chains(jail)
    forks: list[int] = []
    real = os.fork

    def counting() -> int:
        pid = real()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting)
    fd = jailfs.open_jail(str(jail))
    try:
        for split_after in (None, 14):
            result = walker.walk(fd, mounts={}, split_after=split_after)
            deep = [m for m in result.met if m.kind == "too-deep"]
            assert len(deep) == 3, split_after
            assert {m.path.count("/") for m in deep} == {walker.MAX_DEPTH - 1}, split_after
            assert result.stats.directories == 1 + 10 + 3 * (walker.MAX_DEPTH - 11)
    finally:
        os.close(fd)
    assert len(forks) == 1, "split_after=14 did not split the walk"


# -- the progress line ----------------------------------------------------------------------


def test_progress_label_is_escaped_and_not_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    import pty
    import time

    from chrootcheck.commands import progress

    master, slave = pty.openpty()
    tty = os.fdopen(slave, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setenv("TERM", "xterm")
    shown = b""
    try:
        with progress.walk_progress("scanning /j\u202e[bold]x\x1b]0;title\x07") as update:
            assert update is not None
            time.sleep(progress.SHOW_AFTER + 0.1)
            update(8192)
            time.sleep(0.3)
        os.set_blocking(master, False)
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        tty.close()
        os.close(master)
    text = shown.decode(errors="replace")
    assert "scanning /j\\u202e[bold]x\\x1b]0;title\\x07: 8192 entries" in text
    assert "\u202e" not in text and "\x1b]0;" not in text


def _slow_printable(s: str) -> str:
    """printable without its fast path for clean ASCII: the reference."""
    import re

    from chrootcheck.formats import common

    s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    control: re.Pattern[str] = common._CONTROL
    return control.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), s)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=40).map(os.fsdecode), st.text(max_size=40)))
def test_printable_fast_path_gives_the_same_text(name: str) -> None:
    assert printable(name) == _slow_printable(name)
    assert type(printable(name)) is str


def test_to_data_with_its_per_class_field_cache_is_the_same_data() -> None:
    import dataclasses
    import enum

    from chrootcheck.formats.common import to_data

    class Kind(enum.StrEnum):
        A = "a\x1b"

    class Name(str):
        pass

    @dataclasses.dataclass
    class Inner:
        name: str
        kind: Kind

    @dataclasses.dataclass
    class Outer:
        inner: Inner
        items: tuple[object, ...]
        table: dict[str, object]
        klass: type = Inner

    value = Outer(
        Inner("x\u202e", Kind.A), (1, 2.5, True, None, Name("n\n"), b"\xff"), {"k\t": Kind.A}
    )
    expected = {
        "inner": {"name": "x\\u202e", "kind": "a\\x1b"},
        "items": [1, 2.5, True, None, "n\\n", "\\xff"],
        "table": {"k\\t": "a\\x1b"},
        "klass": Inner,  # a class is not converted
    }
    assert to_data(value) == expected
    assert to_data(value) == expected  # the cached field names give the same again
