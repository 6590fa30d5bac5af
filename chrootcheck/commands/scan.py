"""``chrootcheck scan JAIL...``"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from chrootcheck.commands.options import (
    FiniteFloatRange,
    check_anchor,
    check_outputs,
    nonempty,
    parse_outputs,
    parse_user_option,
    severity_option,
    write_outputs,
)
from chrootcheck.commands.plugin import PluginAwareCommand
from chrootcheck.formats import Format, RenderOptions
from chrootcheck.report.errors import ToolError
from chrootcheck.report.exitcodes import for_plugin, for_report
from chrootcheck.report.model import Report, Severity

if TYPE_CHECKING:
    from chrootcheck.app.scan import ScanRequest, Target
    from chrootcheck.jail.users import ServiceUser
    from chrootcheck.openssl.hsm import EngineKey
    from chrootcheck.sandbox.model import Sandbox


def _known_scenarios(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    from chrootcheck.probe.scenarios import NAMES

    for name in value:
        if name not in NAMES:
            known = ", ".join(repr(n) for n in NAMES)
            raise click.BadParameter(f"unknown scenario {name!r}; choose from {known}", ctx, param)
    return value


def _known_daemon(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from chrootcheck.report.daemons import PROFILES, lookup

    if value is not None and lookup(value) is None:
        known = "; ".join(
            f"{p.name} ({', '.join(m.name for m in p.modes)})" for p in PROFILES.values()
        )
        raise click.BadParameter(
            f"unknown daemon {value!r}; choose NAME or NAME:MODE from {known}", ctx, param
        )
    return value


@click.command("scan", cls=PluginAwareCommand)
@click.argument("jails", nargs=-1, metavar="JAIL...", callback=nonempty)
@click.option(
    "--format",
    "-f",
    "formats",
    multiple=True,
    metavar="FORMAT[=FILE]",
    help="text (default), json, sarif, github, gitlab, junit, prometheus or nagios; repeat "
    "for several outputs, FORMAT=FILE writes a file.",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    callback=nonempty,
    help="Write the report to FILE instead of stdout.",
)
@severity_option
@click.option(
    "--user",
    "user_spec",
    metavar="NAME|UID[:GID]",
    help="The service's user: check that it can open the devices; the probe runs as it.",
)
@click.option(
    "--cross-mounts", is_flag=True, help="Walk into file systems mounted inside the jail too."
)
@click.option(
    "--sarif-anchor",
    metavar="FILE",
    callback=nonempty,
    help="A regular file that SARIF results point at (devices never are).",
)
@click.option(
    "--no-probe",
    is_flag=True,
    help="Skip the probe (the real libcrypto reseeding inside the jail).",
)
@click.option(
    "--libcrypto",
    metavar="PATH",
    callback=nonempty,
    help="The libcrypto to probe and whose config to follow (default: Python's).",
)
@click.option(
    "--allow-jail-libcrypto",
    is_flag=True,
    help="Consent to probe a --libcrypto inside the jail or writable by another user; only "
    "the probe's children load it, after dropping root.",
)
@click.option(
    "--cycles",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Reseed cycles per probe scenario.",
)
@click.option(
    "--probe-timeout",
    type=FiniteFloatRange(0.1, 600),
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    envvar="CHROOTCHECK_PROBE_TIMEOUT",
    help="Kill a probe scenario that runs longer (a hang: a FIFO in place of a "
    "device). Also from $CHROOTCHECK_PROBE_TIMEOUT.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 256),
    default=None,
    metavar="N",
    help="Probe up to N jails at once (each probe forks four children). Default: one per core.",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    metavar="NAME",
    callback=_known_scenarios,
    help="Run only these probe scenarios (as-is, no-getrandom, old-kernel, "
    "'old-kernel, devices closed', as-configured, as-running).",
)
@click.option(
    "--daemon",
    metavar="NAME[:MODE]",
    callback=_known_daemon,
    help="The daemon that uses the jail (haproxy, stunnel, postfix, openssh, unbound, bind; "
    "a mode: stunnel:daemon, haproxy:'single process'): the prediction joins its profile "
    "with the measured triggers. --discover finds it by itself.",
)
@click.option(
    "--daemon-config",
    metavar="FILE",
    callback=nonempty,
    help="The daemon's own config (stunnel's .conf or haproxy.cfg): its chroot (unless JAILs "
    "are given), its user (unless --user), its mode, its engine key (stunnel's engine, "
    "engineCtrl, engineDefault, engineId, key = pkcs11:...) and engines and providers "
    "(haproxy's ssl-engine, ssl-provider, ssl-provider-path) for the late loads and the "
    "late-load probe. Read inside --root when given.",
)
@click.option(
    "--key",
    "key_uri",
    metavar="URI",
    callback=nonempty,
    help="A key the daemon loads through an engine before its chroot (a pkcs11: URI): the "
    "late-load probe loads it, chroots, drops to --user and signs with it.",
)
@click.option(
    "--engine",
    "engine_id",
    metavar="ID",
    default="pkcs11",
    show_default=True,
    callback=nonempty,
    help="The engine of --key.",
)
@click.option(
    "--engine-ctrl",
    "engine_ctrls",
    multiple=True,
    metavar="CMD[:VALUE]",
    help="A control command for --engine before ENGINE_init, in order (MODULE_PATH:/usr/lib/"
    "softhsm/libsofthsm2.so, PIN:...); a PIN is never shown. Default: the engine's settings "
    "in openssl.cnf.",
)
@click.option(
    "--no-triggers",
    is_flag=True,
    help="Do not measure the triggers (new threads, RAND_seed, fork, many draws) in the "
    "scenarios that fail.",
)
@click.option(
    "--no-late-loads",
    is_flag=True,
    help="Skip the check of openssl.cnf, engines, providers and PKCS#11 modules.",
)
@click.option(
    "--discover",
    is_flag=True,
    help="Also scan every jail this host's daemons are configured to use.",
)
@click.option(
    "--unit",
    metavar="NAME|PATH",
    callback=nonempty,
    help="Scan a systemd unit's service: its RootDirectory= (unless JAILs are given), as its "
    "User=, under its sandbox (SystemCallFilter=, DevicePolicy=, PrivateDevices= ...): the "
    "probe adds the as-configured scenario.",
)
@click.option(
    "--seccomp-profile",
    metavar="FILE",
    callback=nonempty,
    help="An OCI/Docker/Podman/Kubernetes seccomp profile (JSON) the service runs under: "
    "the probe adds the as-configured scenario.",
)
@click.option(
    "--root",
    "tree_root",
    metavar="DIR",
    default=None,
    callback=nonempty,
    help="Read --unit and --discover's files under DIR (an image or another system's "
    "tree), every path resolved inside it.",
)
@click.option(
    "--pid",
    "pids",
    multiple=True,
    type=click.IntRange(1, 2**22),
    metavar="PID",
    help="Scan the jail of this running process (through /proc/PID/root), with an "
    "as-running probe scenario: its own libcrypto, uid, groups, descriptors. Repeatable.",
)
@click.option(
    "--running",
    is_flag=True,
    help="Scan the jail of every running jailed process that maps OpenSSL (as --pid).",
)
@click.option(
    "--read-seccomp",
    is_flag=True,
    help="With --pid/--running: read each process's seccomp filter (ptrace stops it for "
    "about a millisecond) and replay it in the as-running scenario.",
)
@click.option(
    "--discover-root",
    metavar="DIR",
    default="/",
    show_default=True,
    hidden=True,
    help="Read daemon configs under DIR instead of / (for tests).",
)
def command(
    jails: tuple[str, ...],
    formats: tuple[str, ...],
    output: str | None,
    fail_on: str,
    user_spec: str | None,
    cross_mounts: bool,
    sarif_anchor: str | None,
    no_probe: bool,
    libcrypto: str | None,
    allow_jail_libcrypto: bool,
    cycles: int,
    probe_timeout: float,
    jobs: int | None,
    scenarios: tuple[str, ...],
    daemon: str | None,
    daemon_config: str | None,
    key_uri: str | None,
    engine_id: str,
    engine_ctrls: tuple[str, ...],
    no_triggers: bool,
    no_late_loads: bool,
    discover: bool,
    discover_root: str,
    unit: str | None,
    seccomp_profile: str | None,
    tree_root: str | None,
    pids: tuple[int, ...],
    running: bool,
    read_seccomp: bool,
) -> int:
    """Inspect each JAIL as a process chrooted into it would see it, then probe it.

    Reports a missing or fake /dev/urandom and /dev/random, nodev mounts, permissions,
    EGD sockets, the files OpenSSL loads late, and the other nodes and libcrypto copies in
    the jail. The probe forks children that load the real libcrypto, chroot into the jail
    and force reseeds under four scenarios (as-is, no getrandom, old kernel, devices closed),
    and a fifth, as-configured, under the service's own sandbox (--unit, --seccomp-profile).
    """
    from chrootcheck.app.scan import ScanRequest, scan
    from chrootcheck.commands.progress import walk_progress
    from chrootcheck.jail.inspector import ScanOptions
    from chrootcheck.probe import ProbeOptions
    from chrootcheck.report.model import Stage

    started = time.monotonic()
    live = bool(pids) or running
    if live and (jails or discover or unit is not None or daemon_config is not None):
        raise click.UsageError(
            "--pid and --running scan running processes' jails: no JAIL, "
            "--unit, --daemon-config or --discover with them"
        )
    if pids and running:
        raise click.UsageError("give --pid PID... or --running, not both")
    if live and user_spec is not None:
        raise click.UsageError("--pid and --running probe as the process's own user: no --user")
    if read_seccomp and not live:
        raise click.UsageError(
            "--read-seccomp reads a running process's filter: with --pid or --running"
        )
    if "as-running" in scenarios and not live:
        raise click.UsageError(
            "the as-running scenario needs a running process: --pid or --running"
        )
    if not jails and not discover and unit is None and daemon_config is None and not live:
        raise click.UsageError(
            "give at least one JAIL, --unit, --daemon-config, --discover, --pid or --running"
        )
    if engine_ctrls and key_uri is None:
        raise click.UsageError("--engine-ctrl needs --key")
    if unit is not None and seccomp_profile is not None:
        raise click.UsageError("--unit and --seccomp-profile: give one sandbox")
    if "as-configured" in scenarios and unit is None and seccomp_profile is None and not discover:
        raise click.UsageError(
            "the as-configured scenario needs a sandbox: --unit or --seccomp-profile"
        )
    root = tree_root if tree_root is not None else discover_root
    outputs = parse_outputs(formats, output)
    check_outputs(outputs)
    # Checked before the scan, and only for the formats that point at it.
    located = {Format.SARIF, Format.GITHUB, Format.GITLAB} & {o.fmt for o in outputs}
    anchor = check_anchor(sarif_anchor) if sarif_anchor is not None and located else None
    user = parse_user_option(user_spec)
    targets: list[str | Target] = list(jails)
    sandbox = None
    engine_key = _key_option(key_uri, engine_id, engine_ctrls)
    if daemon_config is not None:
        targets, user, daemon = _daemon_config(daemon_config, root, targets, user, daemon)
    if seccomp_profile is not None:
        from chrootcheck.app.sandbox import load_profile

        sandbox = load_profile(seccomp_profile)
        targets = [_with_sandbox(t, sandbox, user) for t in targets]
    if unit is not None:
        targets = _unit_targets(unit, root, targets, user_spec, user)
    if discover:
        targets += _discovered(root, user_spec)
        if not targets:
            click.echo("chrootcheck: discover found no configured jail on this host", err=True)
    probe = (
        None
        if no_probe
        else ProbeOptions(
            cycles=cycles,
            timeout=probe_timeout,
            scenarios=scenarios or None,
            triggers=not no_triggers,
            daemon=daemon,
        )
    )
    # The library is checked against every jail, refused or loaded once, before any stage
    # (scanner.scan): one cause gives one error line, and jail code never runs as root.
    request = ScanRequest(
        inspect=ScanOptions(user=user, cross_mounts=cross_mounts),
        fail_on=Severity(fail_on.lower()),
        probe=probe,
        late_loads=not no_late_loads,
        not_asked={
            Stage.PROBE: "--no-probe",
            Stage.LATE_LOAD_PROBE: "--no-probe",
            Stage.LATE_LOADS: "--no-late-loads",
        },
        libcrypto=libcrypto,
        allow_jail_libcrypto=allow_jail_libcrypto,
        jobs=jobs,
        daemon=daemon,
        engine_key=engine_key,
    )
    if live:
        report = _scan_running(
            sandbox, pids, running, read_seccomp, request, allow_jail_libcrypto, daemon
        )
    else:
        report = scan(targets, request, progress=walk_progress)
    write_outputs(
        report,
        outputs,
        RenderOptions(
            sarif_anchor=anchor,
            scan_seconds=time.monotonic() - started,
            finished_at=time.time(),
        ),
        step_summary=os.environ.get("GITHUB_STEP_SUMMARY") or None,
    )
    _echo_errors(report)
    if any(o.fmt is Format.NAGIOS for o in outputs):
        return for_plugin(report)  # the monitoring-plugin convention (commands/plugin.py)
    return for_report(report)


def _key_option(key_uri: str | None, engine_id: str, ctrls: tuple[str, ...]) -> EngineKey | None:
    from chrootcheck.openssl.hsm import EngineKey

    if key_uri is None:
        return None
    pairs = []
    for c in ctrls:
        name, _, value = c.partition(":")
        if not name.strip():
            raise click.BadParameter(f"--engine-ctrl {c!r}: give CMD or CMD:VALUE")
        pairs.append((name.strip(), value))
    if "/" in engine_id:
        raise click.BadParameter(f"--engine {engine_id!r}: an engine id, not a path")
    return EngineKey(engine_id, key_uri, tuple(pairs), origin="--key")


def _daemon_config(
    path: str,
    root: str,
    targets: list[str | Target],
    user: ServiceUser | None,
    daemon: str | None,
) -> tuple[list[str | Target], ServiceUser | None, str | None]:
    """The jail, user, daemon profile, engine key and loads a daemon's config names: haproxy's
    (a file named haproxy*, or one with a global section) or stunnel's."""
    from chrootcheck.app.scan import Target
    from chrootcheck.discover import haproxy, stunnel
    from chrootcheck.discover._common import Notes, Tree, under
    from chrootcheck.jail.fs import JailOpenError
    from chrootcheck.jail.users import UserSpecError, parse_user

    notes = Notes()
    try:
        with Tree(root) as tree:
            if not tree.exists(path):
                raise ToolError(f"--daemon-config {path}: no such file")
            text = tree.read_text(path, notes) or ""
            is_haproxy = "haproxy" in os.path.basename(path) or any(
                line.split()[:1] == ["global"] for line in text.splitlines()
            )
            reader = haproxy.read_config if is_haproxy else stunnel.read_config
            found = reader(tree, path, notes)
    except JailOpenError as e:
        raise ToolError(f"--root {root}: {e}") from None
    for n in notes.items:
        click.echo(f"chrootcheck: daemon config: {n.message}", err=True)
    if found is None:
        what = "haproxy" if is_haproxy else "stunnel"
        raise ToolError(f"--daemon-config {path}: no chroot in it (read as {what}'s config)")
    if user is None and found.user:
        try:
            user = parse_user(found.user)
        except UserSpecError as e:
            click.echo(f"chrootcheck: daemon config: setuid {found.user}: {e}", err=True)
    daemon = daemon or found.profile
    note = (f"from {path}: {found.note}" if found.note else f"from {path}",)
    if not targets:
        targets = [Target(under(root, found.path), user, note, daemon=daemon)]
    key, loads = found.engine_key, found.loads
    targets = [
        replace(t, engine_key=key, loads=loads, daemon=t.daemon or daemon)
        if isinstance(t, Target)
        else Target(t, user, note, daemon=daemon, engine_key=key, loads=loads)
        for t in targets
    ]
    return targets, user, daemon


def _scan_running(
    sandbox: Sandbox | None,
    pids: tuple[int, ...],
    running: bool,
    read_seccomp: bool,
    request: ScanRequest,
    consent: bool,
    daemon: str | None,
) -> Report:
    """The jails of running processes (app.running), each with its as-running scenario and
    its time to failure (the live stage)."""
    from chrootcheck.app.running import running_targets
    from chrootcheck.app.scan import scan
    from chrootcheck.commands.progress import walk_progress

    found = running_targets(
        None if running else list(dict.fromkeys(pids)), read_seccomp=read_seccomp, consent=consent
    )
    with found.stack:
        for note in found.notes:
            click.echo(f"chrootcheck: {note}", err=True)
        own = [t if sandbox is None else replace(t, sandbox=sandbox) for t in found.targets]
        if daemon is not None:  # --daemon names the profile instead of the command's name
            own = [
                replace(t, daemon=daemon, process=replace(t.process, daemon=daemon))
                if t.process is not None
                else t
                for t in own
            ]
        return scan(own, request, progress=walk_progress)


def _with_sandbox(target: str | Target, sandbox: Sandbox, user: ServiceUser | None) -> Target:
    from chrootcheck.app.scan import Target

    if isinstance(target, str):
        return Target(target, user, sandbox=sandbox)
    return replace(target, sandbox=sandbox)


def _unit_targets(
    unit: str,
    root: str,
    jails: list[str | Target],
    user_spec: str | None,
    user: ServiceUser | None,
) -> list[str | Target]:
    """The JAILs under the unit's sandbox, or else the unit's RootDirectory= (inside root)
    as its User=."""
    from chrootcheck.app.sandbox import load_unit, root_directory
    from chrootcheck.app.scan import Target

    sandbox, notes = load_unit(unit, root)
    for n in notes.items:
        click.echo(f"chrootcheck: unit: {n.message}", err=True)
    if jails:
        return [_with_sandbox(t, sandbox, user) for t in jails]
    if not sandbox.root_directory:
        if sandbox.root_image:
            from chrootcheck.sandbox.model import ROOT_IMAGE_ADVICE

            raise ToolError(
                f"{sandbox.source}: RootImage={sandbox.root_image}: the image is not scanned "
                f"({ROOT_IMAGE_ADVICE})"
            )
        raise ToolError(f"{sandbox.source}: no RootDirectory= (none): give the JAIL to scan")
    path = root_directory(sandbox, root)
    svc_user = user
    spec = user_spec or sandbox.user
    notes_out = [f"under the sandbox of {', '.join(sandbox.files)}"]
    if user is None and spec:
        from chrootcheck.jail.users import UserSpecError, parse_user

        try:
            svc_user = parse_user(spec)
        except UserSpecError as e:
            notes_out.append(f"User={spec} is not on this host ({e}); checked without it")
    return [Target(path, svc_user, tuple(notes_out), sandbox=sandbox)]


def _discovered(root: str, user_spec: str | None) -> list[Target]:
    """The configured jails as scan targets, each with the user its daemon runs as."""
    from chrootcheck.app.scan import Target
    from chrootcheck.discover import scan_targets
    from chrootcheck.jail.users import UserSpecError, parse_user

    if not os.path.isdir(root):
        raise ToolError(f"--discover-root {root}: not a folder")
    found, notices = scan_targets(root)
    for n in notices:
        click.echo(f"chrootcheck: discover: {n.message}", err=True)
    targets: list[Target] = []
    for t in found:
        notes = [*t.notes, f"configured by {', '.join(t.daemons)}"]
        user = None
        spec = user_spec or t.user
        if spec:
            try:
                user = parse_user(spec)
            except UserSpecError as e:
                notes.append(
                    f"user {spec!r} from the config is not on this host ({e}); checked without it"
                )
        sandbox = None
        if t.units:
            from chrootcheck.app.sandbox import load_unit

            try:
                sandbox, _ = load_unit(t.units[0], root)
            except ToolError as e:
                notes.append(f"{t.units[0]}: sandbox not read: {e.message}")
        if t.profile:
            notes.append(f"daemon profile {t.profile} (its prediction joins the measured triggers)")
        targets.append(
            Target(
                t.jail,
                user,
                tuple(notes),
                t.provides_devices,
                sandbox,
                daemon=t.profile,
                engine_key=t.engine_key,
                loads=t.loads,
            )
        )
    return targets


def _echo_errors(report: Report) -> None:
    # Tool errors also go to stderr as one line each, whatever the format on stdout.
    from chrootcheck.formats.common import error_line
    from chrootcheck.report.model import NoticeKind

    for jail in report.jails:
        for n in jail.notices:
            if n.kind is NoticeKind.ERROR:
                click.echo(error_line(f"{n.label}: {n.message}"), err=True)
