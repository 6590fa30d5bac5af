"""``chrootcheck info [--libcrypto PATH] [--format text|json]``"""

from __future__ import annotations

import click

from chrootcheck.commands.options import nonempty, text_or_json_option
from chrootcheck.report.errors import ToolError
from chrootcheck.report.exitcodes import for_listing

# info loads the library in this process: there is no unprivileged child to leave it to.
REFUSAL_HINT = (
    "info runs the library in this process; copy it to a folder only root can write, or run "
    "chrootcheck info as an unprivileged user"
)


@click.command("info")
@click.option(
    "--libcrypto",
    "libcrypto",
    metavar="PATH",
    callback=nonempty,
    help="The libcrypto to describe (default: the one Python's ssl module uses).",
)
@click.option(
    "--binary",
    "binary",
    metavar="PATH",
    help="Instead: which libcrypto this program would load, by the dynamic loader's rules "
    "(read from its ELF headers; it is neither run nor loaded).",
)
@text_or_json_option()
def command(libcrypto: str | None, binary: str | None, fmt: str) -> int:
    """Show what a libcrypto does for entropy, and what this host offers it.

    Version, seed source, OPENSSLDIR/ENGINESDIR/MODULESDIR, the DRBGs' reseed settings,
    keep-devices-open, whether getrandom(2) works here, the kernel and SysV shm key 0x72.
    """
    if binary is not None:
        return _show_binary(binary, libcrypto, fmt)
    from chrootcheck.openssl.info import gather_info
    from chrootcheck.openssl.library import load

    # A named library is checked first (chrootcheck.openssl.trust): one writable by another user is
    # refused before anything loads it.
    info = gather_info(load(libcrypto, refusal_hint=REFUSAL_HINT))
    if fmt == "json":
        import json

        from chrootcheck.formats.common import to_data

        click.echo(json.dumps(to_data(info), indent=2))
    else:
        from chrootcheck.formats.common import rich_console
        from chrootcheck.formats.info_text import info_renderables

        console = rich_console(soft_wrap=False)
        for renderable in info_renderables(info):
            console.print(renderable)
    return for_listing()


def _show_binary(binary: str, libcrypto: str | None, fmt: str) -> int:
    """``info --binary PATH``: which libcrypto a program would load (read, never run)."""
    from chrootcheck.live.elfdeps import ElfError, resolve_binary

    if libcrypto is not None:
        raise ToolError("--binary and --libcrypto exclude each other")
    try:
        result = resolve_binary(binary)
    except ElfError as e:
        raise ToolError(str(e)) from None
    if fmt == "json":
        import json

        from chrootcheck.formats.common import to_data

        data = to_data(result)
        data["summary"] = result.summary
        click.echo(json.dumps(data, indent=2))
        return for_listing()
    from chrootcheck.formats.common import rich_console
    from chrootcheck.formats.live_text import binary_renderables

    console = rich_console(soft_wrap=False)
    for renderable in binary_renderables(result):
        console.print(renderable)
    return for_listing()
