"""``chrootcheck ps`` (and ``info --binary``) as text: lines of rich Text, never markup."""

from __future__ import annotations

import time

from rich.console import RenderableType
from rich.text import Text

from chrootcheck.formats.common import printable
from chrootcheck.live.elfdeps import BinaryCrypto
from chrootcheck.live.libversion import short
from chrootcheck.live.model import LiveJail, LiveProcess, MappedLibrary, PsReport

_STYLE = {"ok": "green", "missing": "red", "wrong": "red", "unknown": "yellow"}


def ps_renderables(report: PsReport) -> list[RenderableType]:
    out: list[RenderableType] = []
    if not report.jails:
        out.append(Text("no process runs in a jail (every root is the same as chrootcheck's)"))
    for jail in report.jails:
        out.extend(_jail(jail))
    summary = f"{sum(len(j.processes) for j in report.jails)} process(es) in {len(report.jails)}"
    summary += f" jail(s), of {report.processes_seen} seen ({report.elapsed:.2f} s)"
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
    if skipped:
        summary += f"; not shown: {skipped}"
    out.append(Text(summary, style="dim"))
    for note in report.notes:
        out.append(Text(f"note: {printable(note)}", style="dim"))
    return out


def _jail(jail: LiveJail) -> list[RenderableType]:
    head = Text("Jail ", style="bold")
    head.append(printable(jail.root), style="bold")
    head.append(f"  {jail.confinement}", style="cyan")
    ns = f"mount namespace {jail.mnt_ns}" if jail.mnt_ns is not None else "namespace unknown"
    head.append(f"  (root {jail.device} inode {jail.inode}, {ns})", style="dim")
    lines: list[RenderableType] = [head]
    if jail.devices:
        devs = Text("  in the jail: ")
        for i, d in enumerate(jail.devices):
            if i:
                devs.append(", ")
            devs.append(f"{d.path} ", style="")
            devs.append(d.status, style=_STYLE.get(d.status, ""))
            devs.append(f" ({printable(d.detail)})", style="dim")
        lines.append(devs)
    depth: dict[int, int] = {}
    for proc in jail.processes:
        level = depth.get(proc.ppid, -1) + 1 if proc.pid not in jail.leaders else 0
        depth[proc.pid] = level
        lines.extend(_process(proc, level))
    lines.append(Text(""))
    return lines


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {s:02d}s"


def _process(proc: LiveProcess, level: int) -> list[RenderableType]:
    pad = "  " + "    " * level
    role = "" if level == 0 else "└ "
    head = Text(f"{pad}{role}")
    head.append(f"pid {proc.pid}", style="bold")
    who = proc.user or "?"
    started = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(proc.start_time))
        if proc.start_time is not None
        else "?"
    )
    head.append(
        f"  ppid {proc.ppid}  {printable(who)} (uid {proc.uid})  started {started}"
        f" (up {_duration(proc.uptime)})  "
    )
    head.append(printable(proc.cmdline or f"[{proc.command}]"), style="bold")
    lines: list[RenderableType] = [head]
    inner = pad + ("  " if level else "") + "  "
    kids = [str(c) for c in proc.children if c not in proc.zombies]
    kids += [f"{z} (zombie)" for z in proc.zombies]
    if kids:
        lines.append(Text(f"{inner}children: {', '.join(kids)}", style="dim"))
    for lib in proc.libraries:
        lines.append(_library(lib, inner))
    if proc.random_devices:
        held = ", ".join(f"fd {d.fd} {d.which} ({d.device})" for d in proc.random_devices)
        lines.append(Text(f"{inner}holds open: {held}"))
    else:
        lines.append(Text(f"{inner}holds open: no random device"))
    sc = proc.seccomp
    seccomp = f"{inner}seccomp: {sc.mode}"
    if sc.filters is not None and sc.mode == "filter":
        seccomp += f", {sc.filters} filter(s)"
    if sc.no_new_privs:
        seccomp += ", no_new_privs"
    lines.append(Text(seccomp))
    if proc.seccomp_dump is not None:
        lines.extend(_dump(proc, inner))
    if proc.verdict:
        bad = proc.verdict.startswith("at risk")
        lines.append(Text(f"{inner}old kernel: {proc.verdict}", style="red" if bad else "green"))
    for note in proc.notes:
        lines.append(Text(f"{inner}note: {printable(note)}", style="yellow"))
    return lines


def _library(lib: MappedLibrary, inner: str) -> Text:
    line = Text(f"{inner}{lib.kind}  ")
    line.append(printable(lib.path))
    version = short(lib.version) if lib.version else "version unknown"
    line.append(f"  {version}", style="bold")
    line.append(f"  ({lib.device} inode {lib.inode}", style="dim")
    line.append(", deleted)" if lib.deleted else ")", style="red" if lib.deleted else "dim")
    if lib.kind != "static":
        style = "green" if lib.on_disk == "same" else "red"
        line.append(f"  on disk: {lib.on_disk}", style=style)
    if lib.note:
        line.append(f": {printable(lib.note)}", style="yellow")
    return line


def _dump(proc: LiveProcess, inner: str) -> list[RenderableType]:
    dump = proc.seccomp_dump
    assert dump is not None
    if dump.error:
        return [Text(f"{inner}  filters: cannot read them: {printable(dump.error)}", style="red")]
    if not dump.filters:
        return [Text(f"{inner}  {dump.verdict}", style="dim")]
    sizes = ", ".join(str(n) for n in dump.filters)
    lines: list[RenderableType] = [
        Text(
            f"{inner}  read {len(dump.filters)} filter(s) ({sizes} instructions, oldest first);"
            f" the process was stopped {dump.stopped_ms} ms",
            style="dim",
        )
    ]
    for o in dump.outcomes:
        style = "green" if o.result == "allowed" else "red"
        lines.append(Text(f"{inner}  {o.call}: {o.detail}", style=style))
    lines.append(Text(f"{inner}  => {dump.verdict}", style="bold"))
    return lines


def binary_renderables(result: BinaryCrypto) -> list[RenderableType]:
    lines: list[RenderableType] = []

    def row(what: str, value: str) -> None:
        line = Text(f"{what:<16}", style="bold")
        line.append(printable(value))
        lines.append(line)

    row("binary", result.binary)
    row("interpreter", result.interpreter or "none (static)")
    row("OpenSSL", result.summary)
    for lo in result.chain:
        row(lo.name, f"{lo.path or 'not found'}  (via {lo.via}; needed by {lo.needed_by})")
    if result.missing:
        row("missing", ", ".join(result.missing))
    for note in result.notes:
        row("note", note)
    if result.libcrypto:
        row("describe it", f"chrootcheck info --libcrypto {result.libcrypto} (this loads it)")
    return lines
