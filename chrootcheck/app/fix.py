"""Plan -> apply -> scan again: the one fix pipeline, for ``chrootcheck fix`` and ``demo``.

Planning only reads the jail. Applying happens under the jail's fix lock, after planning again
under it, so two runs never act on the same state (nor stack two mounts). The jail is scanned
again only when something was applied; the exit code comes from ``exitcodes.for_fix``.
"""

from __future__ import annotations

from collections.abc import Sequence

from chrootcheck.app.scan import ScanRequest, scan
from chrootcheck.fix.fixer import FixOptions, FixPlan, FixRun, apply_fix, jail_lock, plan_fix


def first_workable(jail: str, candidates: Sequence[FixOptions]) -> tuple[FixPlan, FixOptions]:
    """The first of ``candidates`` whose plan is not refused; else the first, whose refusal
    and steps say what is missing (root, CAP_MKNOD ...)."""
    plans = [(plan_fix(jail, o), o) for o in candidates]
    return next((p for p in plans if p[0].refusal is None), plans[0])


def fix_jail(
    jail: str, options: FixOptions, rescan: ScanRequest, *, dry_run: bool = False
) -> FixRun:
    plan = plan_fix(jail, options)
    run = FixRun(plan=plan, dry_run=dry_run)
    if not dry_run:
        # The plan that counts is made under the lock: one made outside it can see another
        # fix's nodes appear in /dev (its ctime moves) and refuse for a change that was ours.
        with jail_lock(jail):
            plan = run.plan = plan_fix(jail, options)
            if plan.refusal is None:
                run.result = apply_fix(plan)
    if run.result is not None:
        run.scan = scan([jail], rescan)
    return run
