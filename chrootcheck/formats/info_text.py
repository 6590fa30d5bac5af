"""``chrootcheck info`` as text: one table of facts (file names as Text, never markup)."""

from __future__ import annotations

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from chrootcheck.formats.common import printable
from chrootcheck.openssl.info import LibInfo
from chrootcheck.openssl.results import ReseedSettings


def info_renderables(info: LibInfo) -> list[RenderableType]:
    table = Table(box=box.SIMPLE_HEAD, show_header=False, show_edge=False, pad_edge=False)
    table.add_column("what", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")

    def row(what: str, value: str, note: str = "") -> None:
        text = Text(printable(value))
        if note:
            text.append(f"  ({note})", style="dim")
        table.add_row(Text(what), text)

    row("libcrypto", info.path)
    row("version", f"{info.version} (0x{info.version_number:08x}, {info.series})")
    row("random API", info.rand_api)
    row("seed source", info.seed_source, info.seed_source_origin)
    row("OPENSSLDIR", info.openssldir)
    row("ENGINESDIR", info.enginesdir)
    if info.modulesdir is not None:
        row("MODULESDIR", info.modulesdir)
    row("reseed, primary", _reseed(info.reseed, "primary"), info.reseed_note)
    row("reseed, public", _reseed(info.reseed, "public"))
    row("reseed, private", _reseed(info.reseed, "private"))
    row("keep devices open", info.keep_devices_open)
    row("RAND method", info.rand_method)
    row("getrandom(2)", info.getrandom_detail)
    row(
        "kernel",
        info.kernel,
        "older than 4.8: OpenSSL waits on /dev/random"
        if info.kernel_below_4_8
        else "4.8 or newer: without getrandom, OpenSSL 1.1.1d+ refuses /dev/urandom "
        "unless shm key 0x72 exists",
    )
    row("SysV shm key 0x72", info.shm_detail)
    caps = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in info.capabilities.as_dict().items())
    row("capabilities", caps)
    return [table]


def _reseed(settings: ReseedSettings, which: str) -> str:
    requests = getattr(settings, f"{which}_requests")
    seconds = getattr(settings, f"{which}_seconds")
    if requests is None and seconds is None:
        return "no DRBG" if settings.source == "none" else "not readable"
    return f"every {requests} requests or {seconds} s"
