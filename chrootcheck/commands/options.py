"""Options and output plumbing shared by the commands."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import click

from chrootcheck.commands.format_option import text_or_json_option as text_or_json_option
from chrootcheck.formats import Format, RenderOptions, renderer
from chrootcheck.jail.users import ServiceUser, UserSpecError, parse_user
from chrootcheck.report.errors import ToolError
from chrootcheck.report.model import Report, Severity


@dataclass(frozen=True)
class OutputSpec:
    fmt: Format
    path: str | None  # None: stdout


def parse_outputs(specs: Iterable[str], default_output: str | None) -> list[OutputSpec]:
    """``--format text``, ``--format sarif=out.sarif``: several outputs in one run.
    A bare format goes to -o/--output, else stdout; only one output may take stdout."""
    known = {f.value: f for f in Format}
    outputs: list[OutputSpec] = []
    for spec in specs or ("text",):
        name, sep, path = spec.partition("=")
        fmt = known.get(name.strip().lower())
        if fmt is None:
            raise click.BadParameter(
                f"unknown format {name!r}; choose from {', '.join(known)}", param_hint="--format"
            )
        if sep and not path:
            raise click.BadParameter(f"{spec!r}: give a file after '='", param_hint="--format")
        outputs.append(OutputSpec(fmt, path if sep else default_output))
    targets = [o.path if o.path not in (None, "-") else "-" for o in outputs]
    if len(set(targets)) != len(targets):
        raise click.BadParameter(
            "two formats would write to the same place; give each its own file (FORMAT=FILE)",
            param_hint="--format",
        )
    return outputs


def check_outputs(outputs: list[OutputSpec]) -> None:
    """Refuse an output file that cannot be written before the scan runs, not after it."""
    from chrootcheck.formats.common import printable
    from chrootcheck.system.atomicfile import check_folder

    for out in outputs:
        if out.path not in (None, "-"):
            assert out.path is not None
            why = check_folder(out.path)
            if why is not None:
                raise ToolError(f"cannot write {printable(out.path)}: {printable(why)}")


def check_anchor(anchor: str) -> str:
    """``--sarif-anchor``, checked before the scan: it must be a regular file (code scanning
    reads it to the end). Returned relative to the current directory, or absolute when it
    lies outside it: the value the renderers take (``RenderOptions.sarif_anchor``)."""
    import stat

    from chrootcheck.commands.locations import relative_to_cwd
    from chrootcheck.formats.common import printable

    try:
        st = os.stat(anchor)
    except OSError as e:
        raise ToolError(f"--sarif-anchor {printable(anchor)}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ToolError(
            f"--sarif-anchor {printable(anchor)} is not a regular file "
            "(code scanning reads it to the end)"
        )
    return relative_to_cwd(os.path.abspath(anchor)) or os.path.abspath(anchor)


# The formats that point each finding at a place in the checkout (commands.locations).
LOCATED = frozenset({Format.SARIF, Format.GITHUB, Format.GITLAB})


def write_outputs(
    report: Report,
    outputs: list[OutputSpec],
    options: RenderOptions,
    step_summary: str | None = None,
) -> None:
    """Render every output. Files are written atomically (chrootcheck.system.atomicfile): each to a
    temporary file in its folder, all renamed into place only when every one rendered, so a
    failure or a SIGTERM leaves the old files intact and no temporary file behind.

    ``step_summary`` ($GITHUB_STEP_SUMMARY): with ``--format github``, the job summary is
    appended to it, once the outputs are in place (renderers only write to their stream)."""
    from chrootcheck.formats.common import printable
    from chrootcheck.system.atomicfile import AtomicFile, interruptible

    github = any(o.fmt is Format.GITHUB for o in outputs)
    options = dataclasses.replace(options, step_summary=bool(github and step_summary))
    if not options.sarif_anchor and any(o.fmt in LOCATED for o in outputs):
        from chrootcheck.commands.locations import locate  # renderers do no I/O: look here

        options = dataclasses.replace(options, locations=locate(report))
    file_options = dataclasses.replace(options, color=False, width=options.width or 120)
    pending: list[AtomicFile] = []
    current: str | None = None
    with interruptible():
        try:
            for out in outputs:
                render = renderer(out.fmt)
                current = out.path if out.path not in (None, "-") else None
                if current is None:
                    render(report, sys.stdout, options)
                    continue
                pending.append(AtomicFile(current))
                render(report, pending[-1].stream, file_options)
            for f in pending:
                current = f.path
                f.commit()
        except OSError as e:
            if current is None:
                raise
            raise ToolError(f"cannot write {printable(current)}: {e.strerror or e}") from None
        finally:
            for f in pending:
                f.discard()
    if github and step_summary:
        _append_step_summary(report, step_summary, options)


def _append_step_summary(report: Report, path: str, options: RenderOptions) -> None:
    from chrootcheck.formats.common import printable
    from chrootcheck.formats.github_format import render_summary

    try:
        with open(path, "a", encoding="utf-8") as summary:
            render_summary(report, summary, options)
    except OSError as e:
        raise ToolError(
            f"cannot write $GITHUB_STEP_SUMMARY {printable(path)}: {e.strerror or e}"
        ) from None


def severity_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--fail-on",
        type=click.Choice([s.value for s in Severity], case_sensitive=False),
        default=Severity.ERROR.value,
        show_default=True,
        help="Exit 1 when a finding has at least this severity.",
    )(f)


def parse_user_option(value: str | None) -> ServiceUser | None:
    if value is None:
        return None
    try:
        return parse_user(value)
    except UserSpecError as e:
        raise click.BadParameter(str(e), param_hint="--user") from None


# -- parse-time validation: a bad value the user typed is one line and exit 2, before any work


def nonempty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback: an empty path ("") is an error, never "the current folder"."""
    values = value if isinstance(value, tuple) else (value,)
    if any(v is not None and not v for v in values):
        raise click.BadParameter("an empty path names nothing; give a path", ctx, param)
    return value


def _source_note(param: click.Parameter | None, value: Any) -> str:
    # click records where a value came from only after converting it: compare with the
    # environment instead (a value typed on the command line that equals it reads the same).
    envvar = getattr(param, "envvar", None)
    if isinstance(envvar, str) and isinstance(value, str) and os.environ.get(envvar) == value:
        return f" (from ${envvar})"
    return ""


class FiniteFloatRange(click.FloatRange):
    """FloatRange that also refuses nan (which compares false with both bounds, so click lets
    it through) and says when the value came from an environment variable."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            rv = super().convert(value, param, ctx)
        except click.BadParameter as e:
            raise click.BadParameter(e.message + _source_note(param, value), ctx, param) from None
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a number{_source_note(param, value)}", param, ctx)
        return rv
