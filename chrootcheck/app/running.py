"""``scan --pid PID...`` and ``scan --running``: the jails of running services.

``live.ps.gather`` reads the processes from /proc (grouped by jail); each jail becomes one scan
target whose root is ``/proc/PID/root``, opened once here, right after the listing, as the
jail context's root descriptor (every in-jail path is resolved relative to it; a process that
exits afterwards leaves the descriptor valid). The probe adds the **as-running** scenario,
which copies the process: its own libcrypto (``_own_library``: by its host path when that is
the file it runs, else the mapped file itself through ``/proc/PID/map_files``; one inside the
jail or the container only with ``--allow-jail-libcrypto``, and then only in unprivileged
children, like any library a less-trusted user controls), its uid and groups, its seccomp
filter's answers to OpenSSL's calls (``--read-seccomp``), and whether it holds a random device
open. After the probe, ``time_to_failure`` joins its uptime, the library's reseed interval,
its daemon profile and the measured triggers into one line and a number of seconds (the
live stage, app.stages.Live, calls it after the probe).
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from chrootcheck.jail.users import ServiceUser
from chrootcheck.report.daemons import lookup
from chrootcheck.report.errors import ToolError
from chrootcheck.report.model import RunningProcess, TimeToFailure, duration_words

if TYPE_CHECKING:
    from chrootcheck.app.scan import Target
    from chrootcheck.live.model import LiveJail, LiveProcess, MappedLibrary, PsReport
    from chrootcheck.probe.isolated import PreparedLibrary
    from chrootcheck.probe.model import ProbeReport, ScenarioResult
    from chrootcheck.report.daemons import DaemonProfile, Mode
    from chrootcheck.sandbox.model import SeccompFilter


@dataclass
class RunningTargets:
    """The targets, the notes for stderr (one line each), and what the caller must close."""

    targets: list[Target]
    notes: list[str]
    stack: ExitStack  # the jails' root descriptors and the processes' own libraries


def running_targets(
    pids: Sequence[int] | None, *, read_seccomp: bool, consent: bool
) -> RunningTargets:
    """One target per jail of ``pids`` (each must be readable and jailed: ToolError, one line,
    otherwise), or of every running process that maps OpenSSL (``pids`` None)."""
    notes: list[str] = []
    jails, report = _jails(pids, notes)
    stack = ExitStack()
    targets: list[Target] = []
    try:
        for jail in jails:
            subject = _subject(jail)
            if pids is None and subject is None:
                continue  # --running: only the jails of services that use OpenSSL
            proc = subject or jail.processes[0]
            if read_seccomp and proc.seccomp.mode == "filter":
                from chrootcheck.live import seccomp

                # Only the process the scenario copies is stopped, for about a millisecond.
                proc = replace(proc, seccomp_dump=seccomp.dump(proc.pid, proc.seccomp))
            target = _target(jail, proc, consent, notes, stack, named=pids is not None)
            if target is not None:
                targets.append(target)
        if pids is None:
            skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
            if skipped:
                notes.append(f"--running: processes not read: {skipped}")
            if not targets:
                notes.append("--running: no jailed process maps OpenSSL")
    except BaseException:
        stack.close()
        raise
    return RunningTargets(targets, notes, stack)


def _jails(pids: Sequence[int] | None, notes: list[str]) -> tuple[list[LiveJail], PsReport]:
    """The jails to scan, each with all its processes (the master and its workers, even when
    one was named), and the listing. A named PID that cannot be read, or runs in the host's
    root: ToolError (one line)."""
    from chrootcheck.live.ps import gather

    def key(j: LiveJail) -> tuple[int | None, str, int]:
        return (j.mnt_ns, j.device, j.inode)

    if pids is None:
        listing = gather(None, exact=True)
        return list(listing.jails), listing
    named = gather(pids)  # each must be readable: ToolError otherwise
    listing = gather(None, exact=True)
    wanted = {key(j) for j in named.jails if j.confinement != "host"}
    hosted = [p.pid for j in named.jails if j.confinement == "host" for p in j.processes]
    for pid in hosted:
        # A master in the host's root (haproxy -W chroots only its workers): its workers' jails.
        theirs = [j for j in listing.jails if any(p.ppid == pid for p in j.processes)]
        if not theirs:
            raise ToolError(
                f"process {pid} runs in the host's root, not in a jail: nothing to scan"
            )
        for j in theirs:
            kids = sorted(p.pid for p in j.processes if p.ppid == pid)
            notes.append(
                f"process {pid} runs in the host's root; scanning the jail of its children "
                f"{', '.join(map(str, kids))} ({j.root})"
            )
            wanted.add(key(j))
    jails = [j for j in listing.jails if key(j) in wanted]
    found = {key(j) for j in jails}
    jails += [j for j in named.jails if key(j) in wanted and key(j) not in found]  # gone since
    return jails, listing


def _crypto(proc: LiveProcess) -> MappedLibrary | None:
    return next((lib for lib in proc.libraries if lib.kind in ("libcrypto", "static")), None)


def _subject(jail: LiveJail) -> LiveProcess | None:
    """The process the as-running scenario copies: one that maps OpenSSL, a worker (not a
    leader) and not root before others: the one that does the TLS in master-worker daemons."""
    users = [p for p in jail.processes if _crypto(p) is not None]
    if not users:
        return None
    return min(users, key=lambda p: (p.pid in jail.leaders, p.uid == 0, p.pid))


def _target(
    jail: LiveJail,
    proc: LiveProcess,
    consent: bool,
    notes: list[str],
    stack: ExitStack,
    named: bool,
) -> Target | None:
    from chrootcheck.app.scan import Target
    from chrootcheck.jail import fs as jailfs

    path = f"/proc/{proc.pid}/root"
    try:
        root_fd = jailfs.open_jail(path)
    except jailfs.JailOpenError:
        if named:  # a named PID that cannot be read: exit 2
            raise ToolError(f"process {proc.pid} exited while it was being read") from None
        notes.append(f"process {proc.pid} exited before its jail was opened: not scanned")
        return None
    stack.callback(os.close, root_fd)
    label = f"{proc.command}[{proc.pid}]"
    daemon = _daemon(jail, proc)
    lib = _crypto(proc)
    library, probed = _own_library(proc, lib, path, consent)
    if library is not None:
        stack.callback(library.close)
    getrandom, flt, seccomp_notes = _filter(proc)
    held = [d for d in proc.random_devices if d.which == "urandom"] or list(proc.random_devices)
    from chrootcheck.probe.scenarios import Running

    dump = proc.seccomp_dump
    programs = tuple(bytes.fromhex(h) for h in dump.programs) if dump and not dump.error else ()
    running = Running(label, flt, bool(held), programs)
    process = RunningProcess(
        pid=proc.pid,
        command=proc.command,
        cmdline=proc.cmdline,
        uid=proc.uid,
        gid=proc.gid,
        groups=proc.groups,
        user=proc.user,
        start_time=proc.start_time,
        uptime=proc.uptime,
        root=proc.root,
        confinement=jail.confinement,
        mnt_ns=proc.mnt_ns,
        processes=tuple(p.pid for p in jail.processes),
        leaders=jail.leaders,
        daemon=daemon,
        library=lib.path if lib is not None else None,
        library_version=lib.version if lib is not None else None,
        library_on_disk=lib.on_disk if lib is not None else "",
        library_probed=probed,
        random_devices=tuple(f"fd {d.fd}: {d.name} ({d.device})" for d in proc.random_devices),
        holds_urandom=any(d.which == "urandom" for d in proc.random_devices),
        seccomp=proc.seccomp.mode,
        seccomp_filters=proc.seccomp.filters,
        getrandom=getrandom,
        notes=(*proc.notes, *seccomp_notes),
        old_kernel=proc.verdict,
    )
    user = None
    if proc.uid is not None:
        gid = proc.gid if proc.gid is not None else proc.uid
        user = ServiceUser(proc.uid, gid, proc.groups, proc.user)
    return Target(
        path,
        user,
        daemon=daemon,
        process=process,
        library=library,
        running=running,
        root_fd=root_fd,
    )


def _daemon(jail: LiveJail, proc: LiveProcess) -> str | None:
    """Its daemon profile by its command name; haproxy's mode from -W/-Ws or its master."""
    found = lookup(proc.command)
    if found is None:
        return None
    profile, mode = found
    if profile.name == "haproxy":
        args = proc.cmdline.split()
        forked = any(p.pid in jail.leaders and p.children for p in jail.processes)
        master_worker = "-W" in args or "-Ws" in args or forked
        return f"haproxy:{'master-worker' if master_worker else 'single process'}"
    return f"{profile.name}:{mode.name}"


def _own_library(
    proc: LiveProcess, lib: MappedLibrary | None, jail: str, consent: bool
) -> tuple[PreparedLibrary | None, str]:
    """The process's own libcrypto, prepared for the probe, and one line saying which library
    the probe runs. Root loads only a file outside the jail (and the container) that passes
    the trust check; anything else needs consent, and then only unprivileged children load it."""
    host = "the host's libcrypto (as for a jail)"
    if lib is None:
        return None, f"{host}: the process maps no libcrypto"
    if lib.kind == "static":
        return None, f"{host}: OpenSSL is linked into its executable ({lib.version})"
    from chrootcheck.openssl.trust import CheckError, check_mapped, jail_roots
    from chrootcheck.probe.isolated import prepare_checked, prepare_library

    try:
        if lib.resolved_in == "host root" and lib.on_disk == "same" and lib.on_disk_path:
            prepared = prepare_library(lib.on_disk_path, [jail], consent)
            how = f"its own libcrypto, {lib.on_disk_path}"
        else:
            inside = None
            if lib.resolved_in == "process root":
                inside = f"{jail} ({proc.root})"
            elif lib.resolved_in != "host root":
                inside = f"of {jail}'s mount namespace (a container's file system)"
            if inside is not None and not consent:
                return None, (
                    f"{host}: its own, {lib.path}, lies inside the jail and is not loaded by "
                    "root (--allow-jail-libcrypto: probe it in unprivileged children)"
                )
            shown = lib.path + (" (deleted)" if lib.deleted else "")
            checked = check_mapped(lib.map_file, shown, inside, jail_roots([jail]))
            prepared = prepare_checked(checked, consent)
            how = f"its own libcrypto, the mapped file itself ({lib.map_file}: {shown})"
    except CheckError as e:
        return None, f"{host}: its own, {lib.path}, cannot be opened: {e}"
    except ToolError as e:
        return None, f"{host}: its own, {lib.path}, is not used: {e.message}" + (
            f" ({e.hint})" if e.hint else ""
        )
    if prepared.isolated:
        how += ", loaded only by the probe's unprivileged children (consent)"
    return prepared, how


_CALLS = ("getrandom", "shmget", "shmat", "open")


def _filter(proc: LiveProcess) -> tuple[str, SeccompFilter | None, list[str]]:
    """What getrandom does under its filter (words), the filter's answers to OpenSSL's calls as
    rules for the probe child, and notes."""
    from chrootcheck.sandbox.model import ALLOW, KILL, Action, Rule, SeccompFilter

    mode = proc.seccomp.mode
    if mode == "disabled":
        return "allowed (no seccomp filter)", None, []
    if mode != "filter":
        return f"unknown (seccomp mode {mode})", None, []
    dump = proc.seccomp_dump
    if dump is None:
        return (
            "unknown: its seccomp filter was not read",
            None,
            [
                "its seccomp filter was not read (--read-seccomp): the as-running scenario "
                "runs without it"
            ],
        )
    if dump.error is not None or not dump.outcomes:
        why = dump.error or "no outcome"
        return f"unknown: its filter could not be read ({why})", None, []
    rules: list[Rule] = []
    said = "allowed by its filter"
    for o in dump.outcomes:
        if o.syscall not in _CALLS or o.result in ("allowed", "error"):
            continue
        if o.result == "killed":
            action = KILL
        else:
            action = Action("errno", getattr(errno_mod, o.errno or "EPERM", errno_mod.EPERM))
        names = ("open", "openat") if o.syscall == "open" else (o.syscall,)
        rules.extend(Rule(n, action) for n in names)
        if o.syscall == "getrandom":
            said = f"{action.describe()} under its filter"
    return said, SeccompFilter(ALLOW, tuple(rules)) if rules else None, []


# -- time to failure ------------------------------------------------------------------------


def time_to_failure(proc: RunningProcess, probe: ProbeReport | None) -> TimeToFailure:
    """ "haproxy[1234] (master-worker), started 47 min ago, holds no /dev/urandom, getrandom
    blocked by its filter: TLS fails at the next primary reseed, within 13 min"."""
    from chrootcheck.probe.model import Verdict
    from chrootcheck.probe.scenarios import AS_RUNNING

    found = lookup(proc.daemon) if proc.daemon else None
    head = f"{proc.command}[{proc.pid}]" + (f" ({found[1].name})" if found else "")
    if proc.uptime is not None:
        head += f", started {duration_words(proc.uptime)} ago"
    held = "holds /dev/urandom open" if proc.holds_urandom else "holds no /dev/urandom"
    if proc.random_devices and not proc.holds_urandom:
        held = "holds /dev/random open"
    getrandom = "getrandom " + proc.getrandom
    facts = f"{head}, {held}, {getrandom}"
    result = None
    if probe is not None and not probe.skipped_reason:
        result = next((s for s in probe.scenarios if s.name == AS_RUNNING), None)
    if result is None or result.verdict is Verdict.SKIPPED:
        why = (
            "the probe did not run"
            if probe is None or probe.skipped_reason
            else "the as-running scenario did not run"
        )
        return TimeToFailure("unknown", None, f"{facts}: no prediction ({why})")
    series = probe.libcrypto.series if probe is not None and probe.libcrypto else ""
    if result.verdict is Verdict.PASS and series in ("1.0.2", "1.1.0"):
        return TimeToFailure(
            "safe",
            None,
            f"{facts}: safe: OpenSSL {series} never reseeds from the OS by itself (md_rand, "
            "seeded once at start): TLS keeps working whatever the jail holds",
        )
    if result.verdict is Verdict.PASS:
        if proc.getrandom.startswith("unknown") and not proc.random_devices:
            return TimeToFailure(
                "unknown",
                None,
                f"{facts}: reseeding works without its filter; read the filter with "
                "--read-seccomp to know whether getrandom reaches the kernel",
            )
        kept = "device kept" if proc.random_devices else "no device needed"
        return TimeToFailure(
            "safe",
            None,
            f"{facts}: safe: {getrandom.split(' (')[0]}, {kept}: every reseed inside the jail "
            "works (measured with its library and ids)",
        )
    if result.verdict is Verdict.CRASHED and result.signal == "SIGSYS":
        return TimeToFailure(
            "fails",
            0.0,
            f"{facts}: its filter kills it at OpenSSL's next getrandom ({result.explanation})",
            "getrandom",
        )
    if result.verdict is not Verdict.FAIL and result.verdict is not Verdict.RISK:
        return TimeToFailure(
            "unknown", None, f"{facts}: no prediction (the probe child: {result.verdict.value})"
        )
    return _fails(proc, probe, result, found, facts)


def _fails(
    proc: RunningProcess,
    probe: ProbeReport | None,
    result: ScenarioResult,
    found: tuple[DaemonProfile, Mode] | None,
    facts: str,
) -> TimeToFailure:
    """A failing (or no-seed-source) scenario: the next primary reseed, or a trigger sooner."""
    from chrootcheck.probe.model import Verdict
    from chrootcheck.probe.scenarios import FORK, THREADS

    interval = (probe.reseed.primary_seconds if probe and probe.reseed else None) or 3600
    by = {t.trigger: t for t in result.triggers}
    sooner = []
    uses = {u.trigger for u in found[1].uses} if found else set()
    fork, threads = by.get(FORK), by.get(THREADS)
    if FORK in uses and fork is not None and fork.breaks:
        sooner.append("at once in every process it forks from now on (a reload's new workers)")
    if THREADS in uses and threads is not None and threads.breaks and threads.at:
        sooner.append(f"at about its new thread {threads.at} (a connection each)")
    uptime = proc.uptime or 0.0
    left = max(0.0, interval - uptime)
    if left == 0:
        text = (
            f"{facts}: TLS fails now: its primary DRBG's reseed was due "
            f"{duration_words(uptime - interval)} ago (every {interval} s), and every draw after "
            "it fails"
        )
    else:
        text = f"{facts}: TLS fails at the next primary reseed, in about {duration_words(left)}"
    if result.verdict is Verdict.RISK:
        text += " (whatever the jail holds: OpenSSL has no seed source left under its conditions)"
    if sooner:
        text += "; sooner " + " and ".join(sooner)
    return TimeToFailure("fails", round(left, 1), text, "time")


OLD_KERNEL, OLD_KERNEL_CLOSED = "old-kernel", "old-kernel, devices closed"


def old_kernel_time_to_failure(
    proc: RunningProcess, probe: ProbeReport | None
) -> TimeToFailure | None:
    """The same process on a kernel without getrandom (older than 3.17; UNAME26: older than
    4.8 too), measured, not reasoned: the probe's generic old-kernel scenario that matches its
    descriptors ("old-kernel" when it holds a random device open, "old-kernel, devices closed"
    when it holds none) ran with its own library, uid and groups, in its own IPC namespace
    under UNAME26. None when that scenario did not run (``--scenario``)."""
    from chrootcheck.probe.model import Verdict

    if probe is None or probe.skipped_reason:
        return None
    name = OLD_KERNEL if proc.random_devices else OLD_KERNEL_CLOSED
    result = next((s for s in probe.scenarios if s.name == name), None)
    if result is None or result.verdict is Verdict.SKIPPED:
        return None
    found = lookup(proc.daemon) if proc.daemon else None
    facts = f"on a kernel older than 4.8 (measured: the {name!r} scenario with its library and ids)"
    if result.verdict is Verdict.PASS:
        how = "the device it holds open" if proc.random_devices else "the jail's /dev/urandom"
        return TimeToFailure("safe", None, f"{facts}: safe: reseeds read {how}")
    if result.verdict is not Verdict.FAIL and result.verdict is not Verdict.RISK:
        return TimeToFailure(
            "unknown", None, f"{facts}: no prediction (the probe child: {result.verdict.value})"
        )
    return _fails(proc, probe, result, found, facts)
