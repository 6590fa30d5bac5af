"""``chrootcheck decode [FILE|-]``: find and explain the OpenSSL errors in log lines.

Exit codes (docs/decode.md; report.exitcodes.for_decode), the same policy as scan's: 0 no
entropy or DRBG error found (other OpenSSL errors may be listed), 1 entropy or DRBG errors
found, 2 the tool could not do its job (unreadable file, bad option). So ``chrootcheck decode
haproxy.log`` can gate a job.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import click

from chrootcheck.commands.options import text_or_json_option
from chrootcheck.report.errors import ToolError
from chrootcheck.report.exitcodes import for_decode


@click.command("decode")
@click.argument("source", default="-", metavar="[FILE|-]")
@text_or_json_option("text for people, json for machines.")
def command(source: str, fmt: str) -> int:
    """Find the OpenSSL errors in log lines (FILE, or stdin with - or nothing), decode
    them in every printed form and by both packings, group each failing operation's chain,
    and explain the entropy and DRBG errors a chroot jail causes.

    Exit 0: no entropy/DRBG error; 1: entropy/DRBG errors found; 2: chrootcheck failed.
    """
    from chrootcheck import __version__
    from chrootcheck.decode.blocks import decode_stream
    from chrootcheck.decode.chains import Chain, LineReader
    from chrootcheck.decode.messages import Message
    from chrootcheck.formats.common import printable
    from chrootcheck.formats.decode_render import (
        render_chain_text,
        render_json,
        render_message_text,
    )

    stream = _open(source)
    reader = LineReader(stream)  # counts the lines: a line is one line, whatever its length
    found: list[Chain] = []
    messages: list[Message] = []  # filled as the lines go by
    shown = 0
    n_chains = n_errors = n_entropy = n_token = 0
    try:
        for chain in decode_stream(reader, messages):
            n_chains += 1
            n_errors += len(chain.errors)
            n_entropy += chain.entropy_problem
            n_token += chain.token_problem and not chain.entropy_problem
            if fmt == "json":
                found.append(chain)
            else:  # streamed: a huge log prints as it is read
                for m in messages[shown:]:
                    render_message_text(m, sys.stdout)
                shown = len(messages)
                render_chain_text(chain, n_chains, sys.stdout)
        if fmt != "json":
            for m in messages[shown:]:
                render_message_text(m, sys.stdout)
    except OSError as e:
        raise ToolError(f"cannot read {printable(source)}: {e.strerror or e}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    n_said = sum(1 for m in messages if m.entry.is_entropy_problem)
    stats = {
        "lines": reader.lines,
        "errors": n_errors,
        "chains": n_chains,
        "entropy_chains": n_entropy,
        "token_chains": n_token,
        "messages": len(messages),
        "entropy_messages": n_said,
    }
    code = for_decode(n_entropy + n_said + n_token)
    if fmt == "json":
        render_json(found, stats, __version__, sys.stdout, messages)
    said = f", {len(messages)} known message(s) ({n_said} about entropy)" if messages else ""
    click.echo(
        f"chrootcheck decode: {reader.lines} line(s), {n_errors} OpenSSL error(s) in "
        f"{n_chains} chain(s), {n_entropy} with entropy/DRBG errors"
        + (f", {n_token} with a PKCS#11 token error" if n_token else "")
        + f"{said} (exit {int(code)}).",
        err=True,
    )
    return code


def _open(source: str) -> BinaryIO:
    if source == "-":
        if sys.stdin.isatty():  # a person typed `chrootcheck decode`: say what it waits for
            click.echo("chrootcheck decode: reading log lines from stdin (Ctrl-D to end)", err=True)
        return sys.stdin.buffer
    try:
        stream: BinaryIO = open(source, "rb")  # closed by the caller
    except OSError as e:
        from chrootcheck.formats.common import printable

        raise ToolError(f"cannot read {printable(source)}: {e.strerror or e}") from None
    return stream
