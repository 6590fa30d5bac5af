"""``chrootcheck fix JAIL (--mknod | --bind)``: plan, apply (unless --dry-run), scan again."""

from __future__ import annotations

import sys

import click

from chrootcheck.commands.options import nonempty, severity_option, text_or_json_option
from chrootcheck.report.errors import ToolError


def _parse_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an octal mode such as 0666", param_hint="--mode"
        ) from None
    if not 0 <= mode <= 0o777:
        raise click.BadParameter(
            f"{value!r}: only permission bits (0000-0777) are allowed", param_hint="--mode"
        )
    return mode


@click.command("fix")
@click.argument("jail", metavar="JAIL", callback=nonempty)
@click.option(
    "--mknod",
    is_flag=True,
    help="Create the device nodes with mknod (needs CAP_MKNOD, not on nodev).",
)
@click.option(
    "--bind", is_flag=True, help="Bind-mount the host's nodes onto empty placeholder files instead."
)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--only", type=click.Choice(["urandom", "random"]), help="Fix only this device.")
@click.option(
    "--mode",
    "mode_text",
    metavar="MODE",
    help="Permission bits for nodes made with --mknod.  [default: 0666]",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Rename a wrong node or a file in the way aside (content kept), then fix.",
)
@text_or_json_option()
@severity_option
def command(
    jail: str,
    mknod: bool,
    bind: bool,
    dry_run: bool,
    only: str | None,
    mode_text: str | None,
    replace: bool,
    fmt: str,
    fail_on: str,
) -> int:
    """Create the missing /dev/urandom and /dev/random in JAIL, safely.

    Never overwrites or deletes: anything wrong in the way is left alone and reported
    (--replace renames it aside). After applying, the jail is scanned again.
    Exit 0 when the jail is correct afterwards (or the dry-run plan can be applied),
    1 when findings at or above --fail-on remain, 2 on a refusal or error.
    """
    from chrootcheck.app.fix import fix_jail
    from chrootcheck.app.scan import ScanRequest
    from chrootcheck.fix.fixer import DEFAULT_MODE, FixOptions, Method
    from chrootcheck.formats import RenderOptions
    from chrootcheck.formats.common import error_line
    from chrootcheck.formats.fix_format import render_json, render_text
    from chrootcheck.report.exitcodes import for_fix
    from chrootcheck.report.model import Severity

    if mknod == bind:
        raise click.UsageError(
            "choose one way to fix: --mknod (create device nodes) or --bind "
            "(bind-mount the host's nodes)"
        )
    method = "mknod" if mknod else "bind"
    if mode_text is not None and bind:
        raise click.BadParameter(
            "--mode applies to --mknod only (a bind mount shows the host node's mode)",
            param_hint="--mode",
        )
    options = FixOptions(
        method=Method(method),
        only=(only,) if only else ("urandom", "random"),
        mode=_parse_mode(mode_text) if mode_text else DEFAULT_MODE,
        replace=replace,
    )
    # Plan, apply under the jail's lock (planning again under it), scan again: app.fix.
    rescan = ScanRequest(fail_on=Severity(fail_on.lower()))
    run = fix_jail(jail, options, rescan, dry_run=dry_run)
    plan = run.plan
    render = render_json if fmt == "json" else render_text
    if plan.refusal is not None and not dry_run and fmt == "text":
        # A refusal outside --dry-run is a one-line error; the plan explains it in --dry-run.
        raise ToolError(plan.refusal.message, plan.refusal.hint)
    render(run, sys.stdout, RenderOptions())
    if plan.refusal is not None:
        click.echo(error_line(plan.refusal.message, plan.refusal.hint), err=True)
    if run.result is not None and run.result.failed:
        failed = [
            f"{plan.steps[o.step].action.value} {plan.steps[o.step].path}: {o.message}"
            for o in run.result.outcomes
            if o.status.value == "failed"
        ]
        click.echo(error_line(f"{len(failed)} step(s) failed: " + "; ".join(failed)), err=True)
    return for_fix(run)
