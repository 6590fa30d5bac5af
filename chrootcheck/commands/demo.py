"""``chrootcheck demo``: build a throw-away jail, scan it, fix it, scan it again, remove it."""

from __future__ import annotations

import sys

import click


@click.command("demo")
@click.option("--mknod", is_flag=True, help="Fix with mknod.")
@click.option("--bind", is_flag=True, help="Fix with bind mounts.")
def command(mknod: bool, bind: bool) -> int:
    """Show chrootcheck at work on a throw-away jail shaped like Debian's haproxy jail.

    The jail (an empty dev/ and a fake /dev/random) is scanned (red), fixed, scanned again
    (green) and removed. Without root the fix is skipped and the steps that need root are
    listed. By default --mknod is used, or --bind where nodes cannot be made.
    """
    from rich.text import Text

    from chrootcheck.app.demo import DemoOptions, DemoRun, run_demo
    from chrootcheck.fix.fixer import Method, needs_text
    from chrootcheck.formats import RenderOptions, text_format
    from chrootcheck.formats.common import printable
    from chrootcheck.formats.fix_format import render_text

    if mknod and bind:
        raise click.UsageError("choose at most one of --mknod and --bind")
    method = "mknod" if mknod else "bind" if bind else None
    options = RenderOptions()
    console = text_format.make_console(sys.stdout, options)

    def say(text: str, style: str = "bold") -> None:
        console.print()
        for line in text.split("\n"):
            console.print(Text(printable(line), style))

    def emit(stage: str, run: DemoRun) -> None:
        if stage == "jail":
            say(
                f"1. A throw-away jail shaped like Debian's haproxy jail: {run.jail}\n"
                "   an empty dev/, plus a fake /dev/random that is a regular file."
            )
        elif stage == "before" and run.before is not None:
            say("2. chrootcheck scan JAIL (before the fix):")
            text_format.render(run.before, sys.stdout, options)
        elif stage == "fix" and run.fix is not None:
            say(f"3. chrootcheck fix JAIL --{run.fix.plan.method.value} --replace:")
            render_text(run.fix, sys.stdout, options)
        elif stage == "needs-root" and run.plan is not None:
            assert run.plan.refusal is not None
            say(f"3. The fix cannot run here: {run.plan.refusal.message}.", "bold yellow")
            for step in run.plan.steps:
                if step.needs:
                    line = f"   {step.action.value} {step.path}: needs root ({needs_text(step)})"
                    console.print(Text(printable(line)))
            console.print(Text("   Run it as root to see the jail fixed: sudo chrootcheck demo"))
        elif stage == "cleanup":
            say("4. Cleaning up: " + "; ".join(run.cleanup), "dim")

    return run_demo(DemoOptions(method=Method(method) if method else None), emit)
