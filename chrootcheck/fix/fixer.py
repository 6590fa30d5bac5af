"""Repair a jail's entropy devices: plan first (pure data), then apply that very plan.

Safety rules (docs/fix.md):
- Never overwrite, never delete. Something wrong in the way is left alone and reported; with
  ``replace`` it is renamed aside (``<name>.chrootcheck-<timestamp>``, renameat2 NOREPLACE)
  with its content intact.
- Everything is created relative to directory descriptors opened with O_NOFOLLOW, with
  exclusive creation (mkdirat, mknodat, O_CREAT|O_EXCL): a path swapped for a symlink between
  the plan and the change makes the step fail, it never reaches the host.
- Every change is verified afterwards with fstat on a descriptor of what was made.
- /dev being a symlink refuses the whole fix; so does the jail being the host's root.
- One fix at a time per jail (``jail_lock``: flock on the jail folder's fd, no lock file), and
  one mount per node (checked before and after mounting). Interrupted by Ctrl-C, SIGTERM or
  SIGHUP, a fix undoes its own bind mounts and placeholders (``_undo``).

Exit codes (the policy lives in ``exit_code``): 0 the jail is correct after the fix (or a dry
run printed a plan that can be applied), 1 findings at or above --fail-on remain after applying
(for instance something was left alone without --replace), 2 a refusal or a failed step.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from chrootcheck.jail import fs as jailfs
from chrootcheck.jail import mounts
from chrootcheck.report.devices import ENTROPY_DEVICES
from chrootcheck.report.errors import ToolError
from chrootcheck.report.model import Report
from chrootcheck.system import libc, procs

# By name ("urandom"), in the order they are fixed.
DEVICES: dict[str, tuple[int, int]] = {d.name: d.numbers for d in ENTROPY_DEVICES}
DEV_MODE = 0o755
DEFAULT_MODE = 0o666
PLACEHOLDER_MODE = 0o644

CAP_SYS_ADMIN = 21
CAP_MKNOD = 27
# How long a fix waits for another one on the same jail (applying takes milliseconds).
LOCK_WAIT = 60.0


class Method(enum.StrEnum):
    MKNOD = "mknod"
    BIND = "bind"


class Action(enum.StrEnum):
    MKDIR = "mkdir"
    MKNOD = "mknod"
    PLACEHOLDER = "placeholder"  # an empty file for a bind mount to cover
    BIND = "bind"
    RENAME_ASIDE = "rename-aside"
    KEEP = "keep"  # already correct
    LEAVE = "leave"  # wrong, but left alone (no --replace)
    REFUSE = "refuse"  # unsafe to touch at all


CHANGING = frozenset(
    {Action.MKDIR, Action.MKNOD, Action.PLACEHOLDER, Action.BIND, Action.RENAME_ASIDE}
)


@dataclass(frozen=True)
class FixOptions:
    method: Method
    only: tuple[str, ...] = ("urandom", "random")
    mode: int = DEFAULT_MODE
    replace: bool = False
    timestamp: str | None = None  # for rename-aside names; now when None


@dataclass(frozen=True)
class Step:
    action: Action
    path: str  # inside the jail
    reason: str
    mode: int | None = None
    device: tuple[int, int] | None = None  # numbers made (mknod) or expected from the source (bind)
    source: str | None = None  # bind: the host's node
    new_path: str | None = None  # rename-aside: where it goes, inside the jail
    # The identity (st_dev, st_ino) of what the step acts on when it already exists: apply
    # checks it again, so an object swapped in after planning is not touched.
    expect: tuple[int, int, int] | None = None
    needs: tuple[str, ...] = ()  # capabilities the step needs (for "needs root" messages)

    @property
    def changes(self) -> bool:
        return self.action in CHANGING


@dataclass(frozen=True)
class Refusal:
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class Persistence:
    """What makes a bind mount survive a reboot: one fstab line and one systemd unit per node."""

    fstab: tuple[str, ...]
    units: tuple[tuple[str, str], ...]  # (unit file name, content)


@dataclass(frozen=True)
class FixPlan:
    jail: str  # absolute host path
    method: Method
    only: tuple[str, ...]
    replace: bool
    steps: tuple[Step, ...]
    refusal: Refusal | None = None
    persistence: Persistence | None = None
    jail_identity: tuple[int, int] = (0, 0)

    @property
    def changes(self) -> bool:
        return any(s.changes for s in self.steps)


class Status(enum.StrEnum):
    DONE = "done"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    SKIPPED = "skipped"  # an earlier step it depends on failed


@dataclass(frozen=True)
class Outcome:
    step: int  # index into plan.steps
    status: Status
    message: str


@dataclass(frozen=True)
class FixResult:
    plan: FixPlan
    outcomes: tuple[Outcome, ...]

    @property
    def changed(self) -> bool:
        return any(o.status is Status.DONE for o in self.outcomes)

    @property
    def failed(self) -> bool:
        return any(o.status is Status.FAILED for o in self.outcomes)


@dataclass
class FixRun:
    """What the fix command shows: the plan, what applying it did, and the scan after."""

    plan: FixPlan
    dry_run: bool
    result: FixResult | None = None
    scan: Report | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return self.plan.refusal is not None

    @property
    def steps_failed(self) -> bool:
        return self.result is not None and self.result.failed


# ---------------------------------------------------------------------------- planning


def plan_fix(jail: str, options: FixOptions) -> FixPlan:
    """Look at the jail (read-only) and decide every step. Raises ToolError when there is no
    jail to plan for; every other reason not to proceed is a ``refusal`` in the plan."""
    host = os.path.abspath(jail)
    _refuse_host_root(jail)
    try:
        root_fd = jailfs.open_jail(jail)
    except jailfs.JailOpenError as e:
        raise ToolError(str(e)) from None
    try:
        return _plan(root_fd, host, options)
    except OSError as e:
        # An unreadable /dev (not root, odd permissions): a one-line error, not a traceback.
        raise ToolError(
            f"cannot inspect {host!r} to plan the fix: {e.strerror or e}", "run as root"
        ) from None
    finally:
        os.close(root_fd)


def _refuse_host_root(jail: str) -> None:
    try:
        st = os.stat(jail)
        is_root = os.path.realpath(jail) == "/" or os.path.samestat(st, os.stat("/"))
    except OSError:
        return  # open_jail reports a missing jail with its own message
    if is_root:
        raise ToolError(
            f"refusing to fix {jail!r}: it is the host's root, not a jail",
            "give the jail's folder, e.g. /var/lib/haproxy",
        )


def _plan(root_fd: int, host: str, options: FixOptions) -> FixPlan:
    stamp = options.timestamp or time.strftime("%Y%m%dT%H%M%S")
    only = tuple(n for n in DEVICES if n in options.only)
    root_st = os.fstat(root_fd)
    steps: list[Step] = []
    dev_fd: int | None = None
    try:
        dev_state, dev_fd = _plan_dev(root_fd, options, stamp, steps)
        if dev_state in ("ok", "create"):
            for name in only:
                _plan_device(dev_fd, name, options, stamp, steps)
        refusal = _refusal(root_fd, dev_fd, dev_state, options, steps)
    finally:
        if dev_fd is not None:
            os.close(dev_fd)
    persistence = None
    if options.method is Method.BIND:
        points = [s.path for s in steps if s.action is Action.BIND]
        persistence = persistence_for(host, points) if points else None
    return FixPlan(
        jail=host,
        method=options.method,
        only=only,
        replace=options.replace,
        steps=tuple(steps),
        refusal=refusal,
        persistence=persistence,
        jail_identity=(root_st.st_dev, root_st.st_ino),
    )


def _plan_dev(
    root_fd: int, options: FixOptions, stamp: str, steps: list[Step]
) -> tuple[str, int | None]:
    """Plan /dev. Returns its state ("ok", "create", "blocked", "refused") and, when it
    exists as a folder, an O_PATH fd on it."""
    try:
        st = os.stat("dev", dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        steps.append(Step(Action.MKDIR, "/dev", "/dev is missing", mode=DEV_MODE))
        return "create", None
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink("dev", dir_fd=root_fd)
        steps.append(
            Step(
                Action.REFUSE,
                "/dev",
                f"/dev is a symlink (to {target!r}): creating "
                "through it could write outside the jail",
                expect=_ident(st),
            )
        )
        return "refused", None
    if stat.S_ISDIR(st.st_mode):
        fd = os.open("dev", jailfs.O_PATH_DIR, dir_fd=root_fd)
        if not _same(os.fstat(fd), st):
            os.close(fd)
            steps.append(Step(Action.REFUSE, "/dev", "/dev changed while it was checked"))
            return "refused", None
        return "ok", fd
    what = _describe(st)
    if options.replace:
        steps.append(
            Step(
                Action.RENAME_ASIDE,
                "/dev",
                f"/dev is {what}, not a folder",
                new_path="/" + _aside(root_fd, "dev", stamp),
                expect=_ident(st),
            )
        )
        steps.append(
            Step(Action.MKDIR, "/dev", "/dev is missing once the old one is aside", mode=DEV_MODE)
        )
        return "create", None
    steps.append(
        Step(
            Action.LEAVE,
            "/dev",
            f"/dev is {what}, not a folder; left alone (--replace moves it aside)",
            expect=_ident(st),
        )
    )
    return "blocked", None


def _plan_device(
    dev_fd: int | None, name: str, options: FixOptions, stamp: str, steps: list[Step]
) -> None:
    path = f"/dev/{name}"
    numbers = DEVICES[name]
    st: os.stat_result | None = None
    if dev_fd is not None:
        try:
            st = os.stat(name, dir_fd=dev_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
    create = _create_steps(path, numbers, options)
    if st is None:
        steps.extend(_with_reason(create, f"{path} is missing"))
        return
    assert dev_fd is not None
    if stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == numbers:
        nodev = _nodev_at(dev_fd, name)
        mode = stat.S_IMODE(st.st_mode)
        # Others can read it, or it has exactly the --mode asked for (a second run with
        # --mode 0640 must not call its own node wrong).
        wanted = options.method is Method.MKNOD and mode == options.mode
        if not nodev and (mode & 0o004 or wanted):
            steps.append(
                Step(
                    Action.KEEP,
                    path,
                    f"{path} is already c {numbers[0]}:{numbers[1]}",
                    expect=_ident(st),
                )
            )
            return
        if nodev and options.method is Method.BIND:
            # The node stays underneath; the mount only covers it.
            steps.append(
                Step(
                    Action.BIND,
                    path,
                    f"{path} is correct but on a nodev file system: cover it with the host's node",
                    device=numbers,
                    source=path,
                    expect=_ident(st),
                    needs=("CAP_SYS_ADMIN",),
                )
            )
            return
        why = (
            "on a nodev file system (it cannot be opened)"
            if nodev
            else f"mode {stat.S_IMODE(st.st_mode):04o}: others cannot read it"
        )
        _wrong(
            path,
            f"c {numbers[0]}:{numbers[1]} but {why}",
            st,
            create,
            name,
            dev_fd,
            options,
            stamp,
            steps,
        )
        return
    if (
        options.method is Method.BIND
        and stat.S_ISREG(st.st_mode)
        and st.st_size == 0
        and st.st_nlink == 1
    ):
        # An empty file is what an earlier --bind leaves after a reboot: bind onto it again
        # (nothing is lost, it is empty, and the mount does not change it).
        steps.append(
            Step(
                Action.BIND,
                path,
                f"{path} is an empty placeholder: bind the host's node onto it",
                device=numbers,
                source=path,
                expect=_ident(st),
                needs=("CAP_SYS_ADMIN",),
            )
        )
        return
    what = _describe(st, dev_fd, name)
    _wrong(path, what, st, create, name, dev_fd, options, stamp, steps)


def _wrong(
    path: str,
    what: str,
    st: os.stat_result,
    create: list[Step],
    name: str,
    dev_fd: int,
    options: FixOptions,
    stamp: str,
    steps: list[Step],
) -> None:
    if options.replace:
        steps.append(
            Step(
                Action.RENAME_ASIDE,
                path,
                f"{path} is {what}",
                new_path=f"/dev/{_aside(dev_fd, name, stamp)}",
                expect=_ident(st),
            )
        )
        steps.extend(_with_reason(create, f"{path} is free once the old one is aside"))
    else:
        steps.append(
            Step(
                Action.LEAVE,
                path,
                f"{path} is {what}; left alone (--replace moves it aside, content kept)",
                expect=_ident(st),
            )
        )


def _create_steps(path: str, numbers: tuple[int, int], options: FixOptions) -> list[Step]:
    if options.method is Method.MKNOD:
        return [
            Step(Action.MKNOD, path, "", mode=options.mode, device=numbers, needs=("CAP_MKNOD",))
        ]
    return [
        Step(Action.PLACEHOLDER, path, "", mode=PLACEHOLDER_MODE),
        Step(Action.BIND, path, "", device=numbers, source=path, needs=("CAP_SYS_ADMIN",)),
    ]


def _with_reason(steps: list[Step], reason: str) -> list[Step]:
    return [
        Step(s.action, s.path, reason, s.mode, s.device, s.source, s.new_path, s.expect, s.needs)
        for s in steps
    ]


def _refusal(
    root_fd: int, dev_fd: int | None, dev_state: str, options: FixOptions, steps: list[Step]
) -> Refusal | None:
    refused = [s for s in steps if s.action is Action.REFUSE]
    if refused:
        return Refusal(
            f"refusing to fix: {refused[0].reason}", "make /dev a real folder inside the jail"
        )
    # /dev's own file system when it exists, else the root's (where mkdir puts it).
    where_fd = dev_fd if dev_fd is not None and dev_state == "ok" else root_fd
    flags = os.fstatvfs(where_fd).f_flag
    if (
        options.method is Method.MKNOD
        and flags & os.ST_NODEV
        and not all(s.action is Action.KEEP for s in steps)
    ):
        return Refusal(
            "the jail's /dev is on a file system mounted nodev: device nodes "
            "there cannot be opened",
            "use --bind",
        )
    if not any(s.changes for s in steps):
        return None
    needs = {n for s in steps for n in s.needs}
    caps = effective_capabilities()
    if "CAP_MKNOD" in needs and not _has(caps, CAP_MKNOD):
        who = "not running as root" if os.geteuid() != 0 else "no CAP_MKNOD"
        return Refusal(
            f"cannot create device nodes: {who}",
            "run as root, or use --bind where mknod is not allowed",
        )
    if "CAP_SYS_ADMIN" in needs and not _has(caps, CAP_SYS_ADMIN):
        who = "not running as root" if os.geteuid() != 0 else "no CAP_SYS_ADMIN"
        return Refusal(f"cannot bind-mount: {who}", "run as root")
    creates = any(
        s.action in (Action.MKDIR, Action.MKNOD, Action.PLACEHOLDER, Action.RENAME_ASIDE)
        for s in steps
    )
    if creates and flags & os.ST_RDONLY:
        return Refusal(
            "the jail's /dev is on a read-only file system",
            "remount it read-write, or create placeholder files and use --bind",
        )
    return None


# ---------------------------------------------------------------------------- applying


def apply_fix(plan: FixPlan) -> FixResult:
    """Carry out ``plan`` step by step; each step's outcome is recorded, none is retried.

    It runs under the jail's lock (``jail_lock``; taken here unless this process holds it
    already). Interrupted (Ctrl-C, SIGTERM, SIGHUP), it undoes its bind mounts and removes the
    placeholders it made before the interruption goes on: a killed fix leaves neither."""
    if plan.refusal is not None:
        raise ToolError(plan.refusal.message, plan.refusal.hint)
    with procs.interrupt_on_signals(), jail_lock(plan.jail):
        return _apply(plan)


@dataclass
class _Made:
    """What this run made that an interruption must undo."""

    placeholders: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # path -> id
    mounts: list[tuple[str, int, int]] = field(default_factory=list)  # path, O_PATH fd, mnt_id


def _apply(plan: FixPlan) -> FixResult:
    try:
        root_fd = jailfs.open_jail(plan.jail)
    except jailfs.JailOpenError as e:
        raise ToolError(str(e)) from None
    outcomes: list[Outcome] = []
    dev_fd: int | None = None
    broken: set[str] = set()  # in-jail paths whose earlier step failed
    made = _Made()
    try:
        if _ident(os.fstat(root_fd))[:2] != plan.jail_identity:
            raise ToolError(f"jail {plan.jail!r} changed since the plan was made")
        for i, step in enumerate(plan.steps):
            blocked = step.path in broken or (step.path != "/dev" and "/dev" in broken)
            if blocked:
                outcomes.append(Outcome(i, Status.SKIPPED, "an earlier step failed"))
                continue
            if not step.changes:
                outcomes.append(Outcome(i, Status.UNCHANGED, _unchanged_text(step)))
                continue
            # A signal waits until the step is done and noted in ``made``: a placeholder is
            # never made without being noted, a mount never made without its fd kept.
            with procs.signals_deferred():
                dev_fd = _apply_step(root_fd, dev_fd, i, step, made, broken, outcomes)
    except KeyboardInterrupt:
        if dev_fd is not None:
            with procs.signals_deferred():
                _undo(dev_fd, made)
        raise
    finally:
        for _, fd, _ in made.mounts:
            os.close(fd)
        if dev_fd is not None:
            os.close(dev_fd)
        os.close(root_fd)
    return FixResult(plan=plan, outcomes=tuple(outcomes))


def _apply_step(
    root_fd: int,
    dev_fd: int | None,
    i: int,
    step: Step,
    made: _Made,
    broken: set[str],
    outcomes: list[Outcome],
) -> int | None:
    """Apply one step, note its outcome; returns the /dev fd (opened on first use)."""
    try:
        if step.path == "/dev":
            message = _apply_dev_step(root_fd, step)
        else:
            if dev_fd is None:
                try:
                    dev_fd = _open_dev(root_fd)
                except OSError:
                    broken.add("/dev")  # every later node step is skipped
                    raise
            message = _apply_node_step(dev_fd, step, made)
        outcomes.append(Outcome(i, Status.DONE, message))
    except (OSError, _StepError) as e:
        broken.add(step.path)
        text = _failure_text(e, step)
        if step.action is Action.BIND and step.path in made.placeholders and dev_fd is not None:
            text += _undo_placeholder(dev_fd, step.path, made.placeholders.pop(step.path))
        outcomes.append(Outcome(i, Status.FAILED, text))
    return dev_fd


def _undo(dev_fd: int, made: _Made) -> None:
    """After an interruption: unmount this run's bind mounts, then remove its placeholders."""
    for _, fd, mnt_id in reversed(made.mounts):
        try:
            _umount_own(fd, mnt_id)
        except OSError:
            pass  # still mounted: the placeholder under it stays too (it is not empty to see)
    for path, ident in made.placeholders.items():
        _undo_placeholder(dev_fd, path, ident)


class _StepError(Exception):
    pass


_locked: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the jails this process has locked


@contextmanager
def jail_lock(jail: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold the jail's fix lock: an exclusive ``flock`` on the jail's root folder, through a
    descriptor (so nothing is created in the jail, nothing is left behind, and the kernel
    drops the lock when the process dies, even of SIGKILL). The root rather than ``dev``:
    ``dev`` may not exist yet, or be moved aside. Re-entrant within one process. Waits up to
    ``wait`` seconds for another fix of the same jail, then raises ToolError."""
    try:
        root_fd = jailfs.open_jail(jail)
    except jailfs.JailOpenError as e:
        raise ToolError(str(e)) from None
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    except OSError as e:
        raise ToolError(f"cannot lock the jail {jail!r}: {e.strerror or e}") from None
    finally:
        os.close(root_fd)
    try:
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if key in _locked:
            yield
            return
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ToolError(
                        f"another process holds the fix lock of {jail!r} (waited {wait:.0f} s)",
                        _lock_holder(st),
                    ) from None
                time.sleep(0.02)
        _locked.add(key)
        try:
            yield
        finally:
            _locked.discard(key)
    finally:
        os.close(fd)  # releases the flock


def _lock_holder(st: os.stat_result) -> str | None:
    # /proc/locks: "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                if "->" not in fields and len(fields) > 5 and fields[5] == want:
                    return f"held by pid {fields[4]}"
    except OSError:
        pass
    return None


def _unchanged_text(step: Step) -> str:
    return {
        Action.KEEP: "already correct",
        Action.LEAVE: "left alone",
        Action.REFUSE: "refused",
    }.get(step.action, "unchanged")


def _undo_placeholder(dev_fd: int, path: str, made: tuple[int, int, int]) -> str:
    # An empty placeholder with nothing mounted on it reads 0 bytes: worse than no file.
    # It is this run's own empty file (same identity), so removing it loses nothing.
    name = path.rsplit("/", 1)[1]
    try:
        st = os.stat(name, dir_fd=dev_fd, follow_symlinks=False)
        if _ident(st) == made and stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(name, dir_fd=dev_fd)
            return "; the empty placeholder made for it was removed again"
    except OSError:
        pass
    return "; the empty placeholder made for it is still there"


def _failure_text(e: Exception, step: Step) -> str:
    if isinstance(e, OSError):
        name = errno.errorcode.get(e.errno or 0, "error")
        text = f"{name}: {e.strerror or e}"
        if step.action is Action.MKNOD and e.errno == errno.EPERM:
            # CAP_MKNOD inside a user namespace or a device cgroup still forbids device nodes.
            text += " (mknod is not allowed here; use --bind)"
        if step.action is Action.BIND and e.errno == errno.EPERM:
            text += " (mounting is not allowed here: a container or a user namespace?)"
        return text
    return str(e)


def _open_dev(root_fd: int) -> int:
    # O_NOFOLLOW|O_DIRECTORY: a /dev swapped for a symlink since the plan fails here (ELOOP or
    # ENOTDIR), it is never followed out of the jail.
    return os.open("dev", jailfs.O_PATH_DIR, dir_fd=root_fd)


def _apply_dev_step(root_fd: int, step: Step) -> str:
    if step.action is Action.RENAME_ASIDE:
        return _rename_aside(root_fd, "dev", step)
    if step.action is Action.MKDIR:
        assert step.mode is not None
        with _umask(0):
            os.mkdir("dev", step.mode, dir_fd=root_fd)
        fd = os.open("dev", jailfs.O_PATH_DIR, dir_fd=root_fd)
        try:
            _own_root(fd)
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != step.mode:
                raise _StepError(f"/dev is not what was made: {_describe(st)}")
        finally:
            os.close(fd)
        return f"made /dev, mode {step.mode:04o}, owner root"
    raise _StepError(f"no such step for /dev: {step.action}")


def _apply_node_step(dev_fd: int, step: Step, made: _Made) -> str:
    name = step.path.rsplit("/", 1)[1]
    if step.action is Action.RENAME_ASIDE:
        return _rename_aside(dev_fd, name, step)
    if step.action is Action.MKNOD:
        assert step.mode is not None and step.device is not None
        with _umask(0):
            os.mknod(name, stat.S_IFCHR | step.mode, os.makedev(*step.device), dir_fd=dev_fd)
        fd = os.open(name, jailfs.O_PATH_ANY, dir_fd=dev_fd)
        try:
            _own_root(fd)
            _verify_node(os.fstat(fd), step.device, step.path, step.mode)
        finally:
            os.close(fd)
        major, minor = step.device
        return f"made {step.path}: c {major}:{minor}, mode {step.mode:04o}, owner root"
    if step.action is Action.PLACEHOLDER:
        assert step.mode is not None
        with _umask(0):
            fd = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                step.mode,
                dir_fd=dev_fd,
            )
        try:
            st = os.fstat(fd)
            made.placeholders[step.path] = _ident(st)
            if not stat.S_ISREG(st.st_mode) or st.st_size:
                raise _StepError(f"{step.path} is not the empty file that was made")
        finally:
            os.close(fd)
        return f"made the empty placeholder {step.path}"
    if step.action is Action.BIND:
        return _bind(dev_fd, name, step, made)
    raise _StepError(f"no such step: {step.action}")


def _rename_aside(dir_fd: int, name: str, step: Step) -> str:
    assert step.new_path is not None
    new = step.new_path.rsplit("/", 1)[1]
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if step.expect is not None and _ident(st) != step.expect:
        raise _StepError(f"{step.path} changed since the plan was made; not touched")
    renameat2_noreplace(dir_fd, name, dir_fd, new)
    moved = os.stat(new, dir_fd=dir_fd, follow_symlinks=False)
    if _ident(moved)[:2] != _ident(st)[:2]:  # rename itself updates the ctime
        raise _StepError(f"{step.new_path} is not what was moved there")
    return f"moved {step.path} aside to {step.new_path} (content kept)"


def _bind(dev_fd: int, name: str, step: Step, made: _Made) -> str:
    assert step.source is not None and step.device is not None
    src = os.open(step.source, os.O_PATH | os.O_CLOEXEC)
    try:
        _verify_node(os.fstat(src), step.device, f"the host's {step.source}", None)
        target = os.open(name, jailfs.O_PATH_ANY, dir_fd=dev_fd)
        try:
            tst = os.fstat(target)
            if step.expect is not None and _ident(tst) != step.expect:
                raise _StepError(f"{step.path} changed since the plan was made; not touched")
            empty = stat.S_ISREG(tst.st_mode) and tst.st_size == 0
            if not empty and not stat.S_ISCHR(tst.st_mode):
                raise _StepError(f"{step.path} is {_describe(tst)}: not a placeholder")
            if mount_id(target) != mount_id(dev_fd):
                raise _StepError(f"something is mounted on {step.path} already; not touched")
            # Both ends named through /proc/self/fd: the kernel mounts onto exactly the inode
            # checked above, whatever happens to the path meanwhile.
            mount_bind(f"/proc/self/fd/{src}", f"/proc/self/fd/{target}")
        finally:
            os.close(target)
    finally:
        os.close(src)
    # Our mount is the topmost at the point now (the lock keeps other fixes out); its fd is
    # kept, so it can be undone exactly, whatever is mounted or renamed later.
    fd = os.open(name, jailfs.O_PATH_ANY, dir_fd=dev_fd)
    ours = mount_id(fd)
    made.mounts.append((step.path, fd, ours))
    try:
        # Someone outside the lock (an admin, an older chrootcheck) mounted there between the
        # check above and our mount: ours sits on theirs. One mount per node: undo ours.
        if _stacked(ours):
            raise _StepError(f"another mount appeared on {step.path} meanwhile; ours was undone")
        _verify_node(os.fstat(fd), step.device, step.path, None)
    except _StepError:
        made.mounts.pop()
        try:
            _umount_own(fd, ours)
        finally:
            os.close(fd)
        raise
    return f"bind-mounted the host's {step.source} onto {step.path}"


def mount_id(fd: int) -> int:
    """The id of the mount ``fd`` is on (/proc/self/fdinfo), as /proc/self/mountinfo lists it."""
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOTSUP, "no mnt_id in /proc/self/fdinfo")


def _stacked(mnt_id: int) -> bool:
    """Whether mount ``mnt_id`` sits on another mount at the very same point."""
    tree = mounts.mount_tree()
    me = tree.get(mnt_id)
    parent = tree.get(me[0]) if me is not None else None
    return me is not None and parent is not None and parent[1] == me[1]


def _umount_own(fd: int, mnt_id: int) -> None:
    """Unmount the mount that ``fd`` (opened on its root right after mounting) is on; only if
    it is still mounted, so that nothing else is ever unmounted through a stale fd."""
    if mnt_id in mounts.mount_tree():
        umount_detach(f"/proc/self/fd/{fd}")


def _verify_node(st: os.stat_result, numbers: tuple[int, int], what: str, mode: int | None) -> None:
    if not stat.S_ISCHR(st.st_mode) or (os.major(st.st_rdev), os.minor(st.st_rdev)) != numbers:
        raise _StepError(f"{what} is {_describe(st)}, not c {numbers[0]}:{numbers[1]}")
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        raise _StepError(f"{what} has mode {stat.S_IMODE(st.st_mode):04o}, not {mode:04o}")


def _own_root(fd: int) -> None:
    # chown through the O_PATH fd's /proc link: the exact inode just made, never a path.
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (0, 0):
        os.chown(f"/proc/self/fd/{fd}", 0, 0)


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    # The mode must be exactly what was planned; mknod/mkdir filter it through the umask.
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------- helpers


def _ident(st: os.stat_result) -> tuple[int, int, int]:
    # Inode numbers are reused at once on most file systems; the ctime (set by the kernel on
    # every creation, never settable from user space) tells a new object from the planned one.
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return _ident(a) == _ident(b) and a.st_mode == b.st_mode


def _nodev_at(dir_fd: int, name: str) -> bool:
    fd = os.open(name, jailfs.O_PATH_ANY, dir_fd=dir_fd)
    try:
        return bool(os.fstatvfs(fd).f_flag & os.ST_NODEV)
    finally:
        os.close(fd)


def _describe(st: os.stat_result, dir_fd: int | None = None, name: str | None = None) -> str:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return f"a regular file of {st.st_size} bytes" if st.st_size else "an empty regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "c" if stat.S_ISCHR(mode) else "b"
        return f"the device {kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    if stat.S_ISLNK(mode) and dir_fd is not None and name is not None:
        return f"a symlink to {os.readlink(name, dir_fd=dir_fd)!r}"
    kind = jailfs.kind_of(mode)
    return f"a {kind}" if kind[0] not in "aeiou" else f"an {kind}"


def _aside(dir_fd: int, name: str, stamp: str) -> str:
    base = f"{name}.chrootcheck-{stamp}"
    candidate, n = base, 0
    while True:
        try:
            os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return candidate
        n += 1
        candidate = f"{base}-{n}"


def effective_capabilities() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return ~0 if os.geteuid() == 0 else 0


def _has(caps: int, cap: int) -> bool:
    return bool(caps >> cap & 1)


def needs_text(step: Step) -> str:
    return " and ".join(step.needs)


# ---------------------------------------------------------------------------- syscalls

# Through the one libc binding (``system.libc``): cffi, loaded on the first mount or rename.


def mount_bind(source: str, target: str) -> None:
    libc.mount(source, target, libc.MS_BIND, what="mount --bind")


def umount_detach(target: str) -> None:
    libc.umount2(target, libc.MNT_DETACH, what="umount")


def renameat2_noreplace(src_dir: int, src: str, dst_dir: int, dst: str) -> None:
    libc.renameat2(src_dir, src, dst_dir, dst, libc.RENAME_NOREPLACE, what="rename")


# ---------------------------------------------------------------------------- persistence


def systemd_escape_path(path: str) -> str:
    """systemd-escape --path: the unit name a .mount for ``path`` must have."""
    trimmed = path.strip("/")
    if not trimmed:
        return "-"
    out = []
    for i, ch in enumerate(os.fsencode(trimmed)):
        c = chr(ch)
        if c == "/":
            out.append("-")
        elif (c.isascii() and (c.isalnum() or c in ":_.")) and not (i == 0 and c == "."):
            out.append(c)
        else:
            out.append(f"\\x{ch:02x}")
    return "".join(out)


def _fstab_escape(path: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def persistence_for(jail: str, points: list[str]) -> Persistence:
    fstab: list[str] = []
    units: list[tuple[str, str]] = []
    for point in points:
        where = jail.rstrip("/") + point
        fstab.append(f"{_fstab_escape(point)} {_fstab_escape(where)} none bind 0 0")
        unit = systemd_escape_path(where) + ".mount"
        units.append(
            (
                unit,
                "\n".join(
                    [
                        "[Unit]",
                        f"Description=Host {point} in the jail {jail} (chrootcheck fix --bind)",
                        "",
                        "[Mount]",
                        f"What={point}",
                        f"Where={where}",
                        "Type=none",
                        "Options=bind",
                        "",
                        "[Install]",
                        "WantedBy=local-fs.target",
                        "",
                    ]
                ),
            )
        )
    return Persistence(fstab=tuple(fstab), units=tuple(units))
