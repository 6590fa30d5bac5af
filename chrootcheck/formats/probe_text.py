"""The probe's part of the text report: the scenario matrix, the error chains as OpenSSL
prints them with their meaning in plain words, the prediction, or the reason it was skipped.

Everything is built from rich Text objects (never markup), so a jail named ``/srv/[x]`` or an
error text with brackets prints as it is.
"""

from __future__ import annotations

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from chrootcheck.formats.common import printable
from chrootcheck.openssl.errcodes import ErrorRecord
from chrootcheck.probe.model import ProbeReport, ScenarioResult, Verdict

VERDICT_STYLE = {
    Verdict.PASS: "green",
    Verdict.FAIL: "bold red",
    Verdict.RISK: "yellow",
    Verdict.CRASHED: "bold magenta",
    Verdict.TIMEOUT: "bold magenta",
    Verdict.SKIPPED: "dim",
}

# What the reasons of a chain mean, in plain words.
_MEANING = {
    "error retrieving entropy": "no seed source answered: no getrandom, and no usable "
    "/dev/urandom (or /dev/random) where OpenSSL looked",
    "entropy source strength too weak": "the seed source gave fewer bytes than required",
    "error instantiating drbg": "the DRBG could not be created: it had no entropy to start from",
    "in error state": "a DRBG that failed before refuses to work until a reseed succeeds",
    "reseed error": "a reseed was due and failed",
    "generate error": "a child DRBG could not get its seed from its parent",
    "unable to reseed": "the DRBG could not be reseeded",
    "PRNG not seeded": "1.0.2/1.1.0: the generator was never seeded",
    "prediction resistance not supported": "1.1.1 refuses prediction resistance on the master",
    "malloc failure": "on SSL_new/SSL_CTX_new usually not memory at all: a catch-all hiding an "
    "entropy failure underneath",
}


def probe_renderables(probe: ProbeReport) -> list[RenderableType]:
    out: list[RenderableType] = []
    lib = probe.libcrypto
    head = Text("  probe:", style="bold")
    if lib is not None:
        head.append(" " + printable(f"{lib.version} ({lib.path}), {lib.rand_api}"))
    if probe.skipped_reason:
        head.append(" skipped: ", style="yellow")
        head.append(printable(probe.skipped_reason))
        out.append(head)
        return out
    who = f"uid {probe.uid}" if probe.uid is not None else "your own user"
    head.append(
        f"; {probe.cycles} reseed cycles inside the jail as {who}, "
        f"{probe.mode}, {probe.seconds:.2f} s",
        style="dim",
    )
    out.append(head)
    out.append(_matrix(probe.scenarios))
    for sc in probe.scenarios:
        if sc.verdict in (Verdict.FAIL, Verdict.RISK, Verdict.CRASHED, Verdict.TIMEOUT):
            out.extend(_chain(sc))
        elif sc.triggers:  # 1.0.2: measured where RAND_poll would read nothing
            row = Text(f"  {printable(sc.name)}: triggers (measured): ", style="bold")
            row.append(printable(triggers_compact(sc)))
            out.append(row)
    if probe.prediction:
        text = Text("  prediction: ", style="bold")
        text.append(printable(probe.prediction))
        out.append(text)
    for note in probe.notes:
        out.append(Text(f"  note: {printable(note)}", style="dim"))
    return out


def _matrix(scenarios: tuple[ScenarioResult, ...]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    table.add_column("scenario", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("cycles", no_wrap=True)
    table.add_column("caused by", no_wrap=True)
    table.add_column("what happened", overflow="fold", ratio=1)
    for sc in scenarios:
        inside = [c for c in sc.cycles if c.inside_jail]
        ok = sum(1 for c in inside if c.ok)
        table.add_row(
            Text(sc.name),
            Text(sc.verdict.value, VERDICT_STYLE[sc.verdict]),
            Text(f"{ok}/{len(inside)}" if inside else "-"),
            Text(", ".join(sc.caused_by) or "-"),
            Text(printable(sc.explanation)),
        )
    return table


def _chain(sc: ScenarioResult) -> list[RenderableType]:
    out: list[RenderableType] = []
    title = Text(f"  {sc.name}: ", style="bold")
    title.append(sc.verdict.value, VERDICT_STYLE[sc.verdict])
    if sc.signal:
        title.append(f" ({sc.signal})")
    out.append(title)
    lines = unique_lines(sc.chain)
    for line in lines:
        out.append(Text(f"    {printable(line)}", style="dim"))
    meanings = []
    for rec in sc.chain:
        meaning = _MEANING.get(rec.reason)
        if meaning and meaning not in meanings:
            meanings.append(meaning)
    for meaning in meanings:
        out.append(Text(f"    means: {meaning}"))
    if sc.triggers:
        row = Text("    triggers (measured): ", style="bold")
        row.append(printable(triggers_compact(sc)))
        out.append(row)
    return out


def triggers_compact(sc: ScenarioResult) -> str:
    """One line: "time 3600 s, threads 64, RAND_seed 1st, fork 1st, draws held"."""
    parts = []
    for t in sc.triggers:
        label = "RAND_seed" if t.trigger == "rand-seed" else t.trigger
        if t.breaks is None:
            parts.append(f"{label} ?")
        elif not t.breaks:
            parts.append(f"{label} held" + (f" ({t.tried})" if t.tried > 1 else ""))
        elif t.trigger == "time":
            parts.append(f"{label} {t.at} s")
        elif t.at == 1:
            parts.append(f"{label} 1st")
        else:
            parts.append(f"{label} at {t.at}")
    return ", ".join(parts)


def unique_lines(chain: tuple[ErrorRecord, ...]) -> list[str]:
    """The chain as OpenSSL prints it, with repeats of the same line collapsed (xN)."""
    lines: list[str] = []
    counts: list[int] = []
    for rec in chain:
        line = rec.openssl_line()
        if lines and lines[-1] == line:
            counts[-1] += 1
        elif line in lines:
            counts[lines.index(line)] += 1
        else:
            lines.append(line)
            counts.append(1)
    return [f"{line}  (x{n})" if n > 1 else line for line, n in zip(lines, counts, strict=True)]
