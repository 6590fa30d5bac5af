"""The probe child: a forked process that behaves like a jailed daemon, then reports.

Order, as a daemon does it: new namespaces; the scenario's changes to the system (personality,
seccomp); initialise libcrypto and its config and draw random bytes (seeding happens here,
outside the jail); one control cycle; chroot, chdir("/"), drop privileges, no_new_privs; then
the reseed cycles inside the jail. Each stage is one JSON line on the pipe, so the parent
knows how far a child got even when it crashes or hangs. Each stage is one typed message
(``probe.protocol``) sent through ``system.worker``, which forks the child, silences it (no
core file in the jail, no traceback on the terminal) and turns an exception into a ``Failed``.
A library that failed the trust check (loaded with consent) changes the start: drop root, load
it, then a user namespace to chroot.

After the chroot nothing may import a module (the jail has no Python): everything used there
is imported at the top of this file.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat

from chrootcheck.jail.egd import EGD_PATHS
from chrootcheck.openssl.library import Libcrypto, load_checked
from chrootcheck.openssl.rand import Rand, for_library, init_crypto, load_config
from chrootcheck.openssl.results import Step
from chrootcheck.openssl.trust import CheckedLibrary
from chrootcheck.probe import isolated, sandbox, triggers
from chrootcheck.probe.protocol import CycleRun, Done, Failed, Jailed, SeedView, Settings, Skip
from chrootcheck.probe.scenarios import PROBE_LOOK, Scenario
from chrootcheck.system import procs
from chrootcheck.system.worker import Channel

# What RAND_poll of 1.0.2/1.1.0 opens, in order (e_os.h DEVRANDOM).
_LEGACY_DEVICES = ("/dev/urandom", "/dev/random", "/dev/srandom")
# Every seed path of every version (DEVRANDOM, DEVRANDOM_EGD); a build with its own
# -DDEVRANDOM list reads under /dev, which ``_seed_view`` lists whole.
_SEED_PATHS = (
    "/dev/urandom",
    "/dev/random",
    "/dev/hwrng",
    "/dev/srandom",
    *EGD_PATHS,
)
_DEV_ENTRIES_CAP = 512


@dataclasses.dataclass(frozen=True)
class ChildSpec:
    jail: str
    scenario: Scenario
    cycles: int
    as_root: bool
    uid: int | None
    gid: int | None
    groups: tuple[int, ...]
    # A library that failed the trust check (loaded with consent): the child drops to uid/gid
    # first, loads it, then enters a user namespace to chroot. None: ``lc`` is loaded already.
    library: CheckedLibrary | None = None
    root_fd: int | None = None  # the scan's descriptor on the jail root; None: open spec.jail
    # A trigger (probe.triggers) to run inside the jail instead of the reseed cycles.
    trigger: str | None = None


def run_child(lc: Libcrypto | None, spec: ChildSpec, out: Channel) -> None:
    """The worker's target, right after fork(): the stages, each told on ``out``."""
    scenario = spec.scenario
    jail_fd = spec.root_fd
    if spec.library is not None and jail_fd is None:
        # Opened while we may still reach it: the unprivileged user may not search its parents.
        jail_fd = os.open(spec.jail, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    if spec.library is not None:
        if spec.as_root:
            assert spec.uid is not None and spec.gid is not None
            isolated.drop_privileges(spec.uid, spec.gid, spec.groups)
        else:
            isolated.drop_privileges(os.geteuid(), os.getegid(), ())
        procs.die_with_parent()  # a credential change cleared it; the library's code runs next
        lc = load_checked(spec.library)  # its constructors run here, never as root
    assert lc is not None
    try:
        # After dropping root, a user namespace: root there over our own uid only, enough to
        # chroot.
        sandbox.enter_namespaces(spec.as_root and spec.library is None)
    except OSError as e:
        kind = "IPC and mount" if spec.as_root and spec.library is None else "user, IPC and mount"
        out.send(Skip(f"cannot create {kind} namespaces: {e.strerror}"))
        return
    procs.die_with_parent()  # a new user namespace is a credential change: re-arm
    if scenario.skip:
        out.send(Skip(scenario.skip))
        return
    if scenario.private_devices or scenario.mounts or scenario.deny_devices:
        # The unit's own mounts over the jail, in this child's private mount namespace, as
        # systemd sets them up before the service starts.
        try:
            if jail_fd is None:
                jail_fd = os.open(spec.jail, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            else:
                jail_fd = _in_this_namespace(jail_fd)
            jail_fd = sandbox.build_namespace(
                jail_fd, scenario.private_devices, scenario.mounts, scenario.sources_root
            )
        except sandbox.Unstartable as e:
            out.send(Skip(str(e)))
            return
        except OSError as e:
            out.send(Skip(f"cannot set up the unit's mounts: {e.strerror or e}"))
            return
    try:
        if scenario.uname26:
            sandbox.set_uname26()
        if scenario.block_getrandom:
            sandbox.block_getrandom()
        if scenario.seccomp is not None and not scenario.seccomp_after_seed:
            sandbox.apply_filter(scenario.seccomp)
    except OSError as e:
        out.send(Skip(f"cannot set up the scenario: {e.strerror}"))
        return

    if scenario.openssl_conf:
        os.environ["OPENSSL_CONF"] = scenario.openssl_conf  # the unit's (vetted by the scan)
    rand = for_library(lc)
    steps = [init_crypto(lc)]
    if scenario.openssl_conf:
        # The library may be initialised already (Python's ssl module shares the system's):
        # its modules loaded now, before the chroot, as the daemon's start loads them.
        steps.append(load_config(lc, scenario.openssl_conf))
    if scenario.close_devices:
        if rand.keep_devices_open(False):
            steps.append(Step("RAND_keep_random_devices_open(0)", True))
        else:
            steps.append(
                Step(
                    "RAND_keep_random_devices_open(0)",
                    None,
                    (),
                    "not in this library: it closes devices after every read anyway",
                )
            )
    steps.append(_named(rand.draw(32), "RAND_bytes(32) at start-up, before the chroot"))
    if scenario.seccomp_programs:
        try:
            sandbox.apply_programs(scenario.seccomp_programs)
        except OSError as e:  # checked before any is installed; the kernel took them before
            steps.append(
                Step(
                    "its seccomp programs as dumped",
                    None,
                    (),
                    f"not installed ({e.strerror}): their answers to OpenSSL's calls instead",
                )
            )
        else:
            scenario = dataclasses.replace(scenario, seccomp=None)
    if scenario.seccomp is not None and scenario.seccomp_after_seed:
        try:
            sandbox.apply_filter(scenario.seccomp)
        except OSError as e:
            out.send(Skip(f"cannot set up the scenario: {e.strerror}"))
            return
    out.send(Settings(rand.reseed_settings()))
    if spec.trigger is None:
        steps.extend(_cycle_steps(rand, inside=False))
    # A trigger's child runs no control cycle: its reseeds would move the counters it measures.
    out.send(CycleRun(0, False, rand.state(), tuple(steps)))

    try:
        deny = scenario.deny_devices
        if jail_fd is not None:
            os.fchdir(jail_fd)  # the very folder the scan judged, whatever its path leads to now
        jail = spec.jail if jail_fd is None else "."
        if spec.library is None:
            sandbox.enter_jail(jail, spec.uid, spec.gid, spec.groups, deny)
        else:
            sandbox.enter_jail(jail, None, None, (), deny)  # the ids were dropped before the load
    except OSError as e:
        out.send(Failed(f"cannot enter the jail: {e}"))
        return
    # setuid/setgid to the service's user cleared PR_SET_PDEATHSIG: without this, a child hung
    # in the jail (a FIFO at /dev/urandom) would outlive a SIGKILLed chrootcheck, as nobody.
    procs.die_with_parent()
    out.send(Jailed(os.getuid(), os.getgid()))
    if spec.trigger is not None:
        out.send(triggers.run(spec.trigger, rand))
        out.send(SeedView(_seed_view()))
        out.send(Done())
        return
    failed = False
    for i in range(1, spec.cycles + 1):
        steps = _cycle_steps(rand, inside=True)
        failed = failed or any(s.ok is False for s in steps)
        out.send(CycleRun(i, True, rand.state(), tuple(steps)))
    if failed:  # only a failing scenario has triggers, and they are all the view is for
        out.send(SeedView(_seed_view()))
    out.send(Done())


def _seed_view() -> tuple[str, ...]:
    """What the jailed user sees at every path OpenSSL may read entropy from, and in /dev:
    lstat, stat through the links (resolved by the kernel, inside the chroot), access(R_OK)
    and a nodev mount. A regular file, socket or FIFO is named by its inode: its contents or
    its listener decide, so it is never taken as like another's."""
    names: list[str] = []
    try:
        with os.scandir("/dev") as entries:  # read no further than the cap: a huge /dev is
            for entry in entries:  # this jail's own, not a reason to time out
                names.append(entry.name)
                if len(names) > _DEV_ENTRIES_CAP:
                    root = os.stat("/")
                    return (
                        f"/dev: over {_DEV_ENTRIES_CAP} entries",
                        f"/ {root.st_dev}:{root.st_ino}",
                    )
    except OSError as e:
        listed = f"/dev: {_errno(e)}"
    else:
        listed = f"/dev: {len(names)} entries"
    names.sort()
    paths = dict.fromkeys([*_SEED_PATHS, *(f"/dev/{n}" for n in names)])
    return (listed, *(_path_view(p) for p in paths))


def _path_view(path: str) -> str:
    try:
        link = os.lstat(path)
    except OSError as e:
        return f"{path} {_errno(e)}"
    parts = [path, f"lstat {_node(link)}"]
    try:
        st = os.stat(path) if stat.S_ISLNK(link.st_mode) else link
    except OSError as e:
        parts.append(f"stat {_errno(e)}")
        return " ".join(parts)
    parts.append(f"stat {_node(st)} read={os.access(path, os.R_OK)}")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        try:
            parts.append(f"nodev={bool(os.statvfs(path).f_flag & os.ST_NODEV)}")
        except OSError as e:
            parts.append(f"statvfs {_errno(e)}")
    return " ".join(parts)


def _errno(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def _node(st: os.stat_result) -> str:
    kind = stat.S_IFMT(st.st_mode)
    what = f"{kind:o} {stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid}"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return f"{what} rdev={os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return what
    return f"{what} inode={st.st_dev}:{st.st_ino} size={st.st_size}"


def _in_this_namespace(fd: int) -> int:
    """The scan's descriptor on the jail was opened in the parent's mount namespace: a mount
    on it (or under a chroot into it) would fail with EINVAL here. The same folder, opened in
    this child's namespace and checked by identity (a path swapped meanwhile is refused)."""
    new = os.open(os.readlink(f"/proc/self/fd/{fd}"), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    a, b = os.fstat(fd), os.fstat(new)
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        os.close(new)
        raise OSError(errno.ESTALE, "the jail's folder changed while the probe started")
    return new


def _cycle_steps(rand: Rand, inside: bool) -> list[Step]:
    steps = [rand.primary_reseed(), rand.public_reseed(), rand.set_reseed_interval(1)]
    steps.append(_named(rand.draw(32), "RAND_bytes(32) with reseed interval 1 (a natural reseed)"))
    if not rand.has_drbg and inside:
        steps.append(_legacy_devices())
    return steps


def _legacy_devices() -> Step:
    # md_rand's RAND_poll reports success even when it reads nothing; look as it would. The
    # library itself never reopens them: this look is the probe's (analysis never counts it).
    for path in _LEGACY_DEVICES:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError:
            continue
        try:
            if os.read(fd, 32):
                return Step(PROBE_LOOK, True, (), path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return Step(
        PROBE_LOOK,
        False,
        (),
        "none of /dev/urandom, /dev/random, /dev/srandom gives bytes: RAND_poll mixes "
        "only pid, uid and time",
    )


def _named(step: Step, action: str) -> Step:
    return dataclasses.replace(step, action=action)
