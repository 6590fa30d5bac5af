"""How ``chrootcheck fix`` shows its plan, its outcomes and the scan after: text or JSON.

The same ``FixPlan`` is rendered for --dry-run and after applying, so the JSON ``plan`` of a
dry run equals the ``plan`` an applying run reports.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from chrootcheck.fix.fixer import Action, FixPlan, FixRun, Outcome, Status, Step
from chrootcheck.formats import RenderOptions
from chrootcheck.formats.common import printable, report_data, to_data
from chrootcheck.report.model import SCHEMA_VERSION

REBOOT_NOTE = (
    "A bind mount does not survive a reboot. To make it last, add these lines to "
    "/etc/fstab, or install the systemd mount units below and enable them "
    "(systemctl daemon-reload; systemctl enable --now UNIT)."
)


def step_data(step: Step) -> dict[str, Any]:
    return {
        "action": step.action.value,
        "path": printable(step.path),
        "reason": printable(step.reason),
        "mode": f"{step.mode:04o}" if step.mode is not None else None,
        "device": list(step.device) if step.device else None,
        "source": step.source,
        "new_path": printable(step.new_path) if step.new_path else None,
        "expect": list(step.expect) if step.expect else None,
        "needs": list(step.needs),
    }


def plan_data(plan: FixPlan) -> dict[str, Any]:
    return {
        "jail": printable(plan.jail),
        "method": plan.method.value,
        "only": list(plan.only),
        "replace": plan.replace,
        "steps": [step_data(s) for s in plan.steps],
        "refusal": to_data(plan.refusal),
        "persistence": None
        if plan.persistence is None
        else {
            "fstab": [printable(x) for x in plan.persistence.fstab],
            # Lines, not one string: printable() escapes newlines, and lines read better.
            "systemd_units": [
                {
                    "name": printable(n),
                    "path": f"/etc/systemd/system/{printable(n)}",
                    "lines": [printable(x) for x in c.rstrip("\n").split("\n")],
                }
                for n, c in plan.persistence.units
            ],
        },
        "changes": plan.changes,
    }


def run_data(run: FixRun) -> dict[str, Any]:
    from chrootcheck.report.exitcodes import for_fix

    return {
        "schema_version": SCHEMA_VERSION,
        "command": "fix",
        "dry_run": run.dry_run,
        "plan": plan_data(run.plan),
        "outcomes": None
        if run.result is None
        else [
            {"step": o.step, "status": o.status.value, "message": printable(o.message)}
            for o in run.result.outcomes
        ],
        "changed": bool(run.result and run.result.changed),
        "scan": report_data(run.scan) if run.scan is not None else None,
        "exit_code": int(for_fix(run)),
    }


def render_json(run: FixRun, stream: TextIO, options: RenderOptions) -> None:
    json.dump(run_data(run), stream, indent=2, ensure_ascii=False)
    stream.write("\n")


ACTION_STYLE = {
    Action.MKDIR: "green",
    Action.MKNOD: "green",
    Action.PLACEHOLDER: "green",
    Action.BIND: "green",
    Action.RENAME_ASIDE: "yellow",
    Action.KEEP: "dim",
    Action.LEAVE: "bold yellow",
    Action.REFUSE: "bold red",
}
STATUS_STYLE = {
    Status.DONE: "bold green",
    Status.UNCHANGED: "dim",
    Status.FAILED: "bold red",
    Status.SKIPPED: "yellow",
}


def step_what(step: Step) -> str:
    if step.action is Action.MKDIR:
        return f"mode {step.mode:04o}, owner root" if step.mode is not None else ""
    if step.action is Action.MKNOD and step.device and step.mode is not None:
        return f"c {step.device[0]}:{step.device[1]}, mode {step.mode:04o}, owner root"
    if step.action is Action.PLACEHOLDER:
        return "an empty file for the bind mount to cover"
    if step.action is Action.BIND:
        return f"host {step.source} (mount --bind)"
    if step.action is Action.RENAME_ASIDE:
        return f"to {step.new_path}"
    return ""


def render_text(run: FixRun, stream: TextIO, options: RenderOptions) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from chrootcheck.formats import text_format

    console = text_format.make_console(stream, options)
    plan = run.plan
    head = Text.assemble(
        ("Fix plan for ", "bold"),
        (printable(plan.jail), "bold"),
        f"  (--{plan.method.value}" + (", --replace" if plan.replace else "") + ")",
    )
    console.print(head)
    outcomes: dict[int, Outcome] = {o.step: o for o in run.result.outcomes} if run.result else {}
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("step", no_wrap=True)
    table.add_column("path", overflow="fold")
    table.add_column("what", overflow="fold")
    table.add_column("why", overflow="fold", ratio=1)
    if run.result is not None:
        table.add_column("result", overflow="fold", ratio=1)
    for i, step in enumerate(plan.steps):
        row = [
            Text(step.action.value, ACTION_STYLE[step.action]),
            Text(printable(step.path)),
            Text(printable(step_what(step))),
            Text(printable(step.reason)),
        ]
        if run.result is not None:
            o = outcomes.get(i)
            # What was done repeats the "what" column; only a failure needs its message.
            text = (
                ""
                if o is None
                else (
                    o.status.value
                    if o.status in (Status.DONE, Status.UNCHANGED)
                    else f"{o.status.value}: {printable(o.message)}"
                )
            )
            row.append(Text(text, STATUS_STYLE[o.status] if o else ""))
        table.add_row(*row)
    if plan.steps:
        console.print(table)
    if plan.refusal is not None:
        console.print(
            Text(
                "refused: "
                + printable(plan.refusal.message)
                + (f" ({plan.refusal.hint})" if plan.refusal.hint else ""),
                "bold red",
            )
        )
    elif not plan.changes:
        left = any(s.action is Action.LEAVE for s in plan.steps)
        console.print(
            Text(
                "Nothing to change: "
                + (
                    "everything else is left alone as reported; --replace moves it aside."
                    if left
                    else "the jail's entropy devices are already correct."
                )
                + (" No change was made." if run.result is not None else ""),
                "yellow" if left else "green",
            )
        )
    elif run.dry_run:
        console.print(Text("Dry run: nothing was changed.", "yellow"))
    if plan.persistence is not None and plan.refusal is None:
        console.print()
        console.print(Text(REBOOT_NOTE, "yellow"))
        console.print(Text("# /etc/fstab", "dim"))
        for line in plan.persistence.fstab:
            console.print(Text(printable(line)))
        for name, content in plan.persistence.units:
            console.print(Text(f"# /etc/systemd/system/{printable(name)}", "dim"))
            for line in content.rstrip("\n").split("\n"):
                console.print(Text(printable(line)))
    for note in run.notes:
        console.print(Text(printable(note), "dim"))
    if run.scan is not None:
        console.print()
        console.print(Text("Scan after the fix:", "bold"))
        text_format.render(run.scan, stream, options)
