"""``chrootcheck demo``: a throw-away jail goes red, gets fixed, goes green, and is removed.

The jail is shaped like Debian's haproxy jail (/var/lib/haproxy: an empty dev/), plus a fake
/dev/random that is a regular file, to show a critical finding and --replace at work. It is
scanned with the same pipeline as ``chrootcheck scan`` (so the probe shows up once it is part
of it), fixed and scanned again by the same pipeline as ``chrootcheck fix`` (app.fix: --mknod,
or --bind where mknod cannot work), and removed, bind mounts first, whatever happens (an error,
Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from chrootcheck.app.fix import first_workable, fix_jail
from chrootcheck.app.scan import ScanRequest, scan
from chrootcheck.fix import fixer
from chrootcheck.fix.fixer import FixOptions, FixPlan, FixRun, Method
from chrootcheck.jail import mounts
from chrootcheck.probe import ProbeOptions
from chrootcheck.report.errors import ToolError
from chrootcheck.report.exitcodes import ExitCode, for_fix
from chrootcheck.report.model import Report
from chrootcheck.system import procs

FAKE_RANDOM = b"chosen by fair dice roll, guaranteed to be random\n"


@dataclass(frozen=True)
class DemoOptions:
    method: Method | None = None  # None: mknod, or bind where mknod cannot work


@dataclass
class DemoRun:
    jail: str = ""
    before: Report | None = None
    plan: FixPlan | None = None  # the plan tried; refused when privileges are missing
    fix: FixRun | None = None  # None when the fix could not run
    cleanup: list[str] = field(default_factory=list)
    cleanup_failed: bool = False


# Stages are shown as they happen: "jail", "before", "fix", "needs-root", "cleanup".
Emit = Callable[[str, DemoRun], None]


def build_jail(base: str) -> str:
    jail = os.path.join(base, "var", "lib", "haproxy")
    os.makedirs(os.path.join(jail, "dev"), mode=0o755)
    # What a careless setup script leaves: a regular file where the device should be.
    with open(os.path.join(jail, "dev", "random"), "wb") as f:
        f.write(FAKE_RANDOM)
    return jail


def choose_plan(jail: str, options: DemoOptions) -> tuple[FixPlan, FixOptions]:
    methods = [options.method] if options.method else [Method.MKNOD, Method.BIND]
    # Without root none works: then the first plan's refusal and steps say what needs root.
    return first_workable(jail, [FixOptions(method=m, replace=True) for m in methods])


# The probe's two telling scenarios: today's (passes) and the origin story's (fails, then
# passes once the nodes exist). The full matrix is `chrootcheck scan`'s job.
DEMO_SCAN = ScanRequest(probe=ProbeOptions(scenarios=("as-is", "old-kernel, devices closed")))


def run_demo(options: DemoOptions, emit: Emit) -> ExitCode:
    # SIGTERM and SIGHUP clean up as Ctrl-C does, and a second signal cannot cut the clean-up
    # short (the CLI sets this up for every command already; here for other callers too).
    with procs.interrupt_on_signals():
        return _run_demo(options, emit)


def _run_demo(options: DemoOptions, emit: Emit) -> ExitCode:
    run = DemoRun()
    try:
        base = tempfile.mkdtemp(prefix="chrootcheck-demo-")
    except OSError as e:
        raise ToolError(
            f"cannot make a temporary folder for the demo: {e.strerror or e}",
            "set TMPDIR to a writable folder",
        ) from None
    try:
        run.jail = build_jail(base)
        emit("jail", run)
        run.before = scan([run.jail], DEMO_SCAN)
        emit("before", run)
        run.plan, fix_options = choose_plan(run.jail, options)
        if run.plan.refusal is not None:
            emit("needs-root", run)
            code = ExitCode.OK  # the demo showed what it could; nothing is wrong with it
        else:
            run.fix = fix_jail(run.jail, fix_options, DEMO_SCAN)
            run.plan = run.fix.plan
            emit("fix", run)
            code = for_fix(run.fix)
    finally:
        cleanup(base, run)
        emit("cleanup", run)
    if run.cleanup_failed:
        raise ToolError(f"could not remove the demo's folder {base}", "; ".join(run.cleanup))
    return code


def cleanup(base: str, run: DemoRun) -> None:
    """Unmount what the demo mounted under ``base`` (deepest first), then remove ``base``.
    If a mount stays, nothing is removed: rmtree must never reach into a mounted host node."""
    real = os.path.realpath(base)
    for _ in range(3):
        points = sorted(mounts.mounts_under(real), key=lambda p: -p.count("/"))
        if not points:
            break
        for point in points:
            try:
                fixer.umount_detach(real + point)
                run.cleanup.append(f"unmounted {real + point}")
            except OSError as e:
                run.cleanup.append(f"could not unmount {real + point}: {e.strerror}")
    if mounts.mounts_under(real):
        run.cleanup_failed = True
        run.cleanup.append(f"left {base} in place: something is still mounted below it")
        return
    try:
        shutil.rmtree(base)
        run.cleanup.append(f"removed {base}")
    except OSError as e:
        run.cleanup_failed = True
        run.cleanup.append(f"could not remove {base}: {e.strerror}")
