"""The sandbox model (chrootcheck.sandbox): real seccomp profiles (one shipped by a Debian
package, edge cases written here) and systemd units with @groups expanded by this machine's
real systemd-analyze, read inside a root like discover --root does."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from chrootcheck.app.sandbox import load_unit
from chrootcheck.report.errors import ToolError
from chrootcheck.report.model import Finding
from chrootcheck.sandbox import oci, systemd
from chrootcheck.sandbox.model import ALLOW, KILL, Action, DevicePolicy
from tests import debian

CONTAINERS_PROFILE = "/usr/share/containers/seccomp.json"


@pytest.fixture(scope="module")
def containers_profile() -> str:
    if not os.path.exists(CONTAINERS_PROFILE):
        why = debian.install("golang-github-containers-common")
        if not os.path.exists(CONTAINERS_PROFILE):
            reason = why or "installed, but no seccomp.json"
            if os.environ.get("CI"):
                pytest.fail(f"containers-common's seccomp.json is needed: {reason}")
            pytest.skip(reason)
    return CONTAINERS_PROFILE


@pytest.fixture(scope="module")
def analyze() -> str:
    return debian.tool("systemd-analyze", "systemd")


def profile(tmp_path: Path, doc: object) -> str:
    p = tmp_path / "profile.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(p)


# --- seccomp profiles ---------------------------------------------------------------------


def test_the_containers_common_default_profile(containers_profile: str) -> None:
    sb = oci.read_profile(containers_profile)
    assert sb.kind == "seccomp profile"
    assert sb.seccomp is not None
    # Its default is ENOSYS (defaultErrnoRet 38), not runc's EPERM.
    assert sb.seccomp.default == Action("errno", errno.ENOSYS)
    for call in ("getrandom", "openat", "read", "shmget", "shmat"):
        assert sb.outcome(call).action == ALLOW, call
    # personality is allowed for a few arguments only: a conditional rule.
    assert sb.outcome("personality", (0,)).action == ALLOW
    assert sb.outcome("personality", (0x0020000,)).action == ALLOW  # UNAME26
    other = sb.outcome("personality", (5,))
    assert other.conditional and other.action == Action("errno", errno.ENOSYS)
    # A call it does not list gets the default.
    assert sb.outcome("kexec_load").action.kind == "errno"


def test_errno_versus_kill_and_the_default_errno(tmp_path: Path) -> None:
    sb = oci.read_profile(
        profile(
            tmp_path,
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["getrandom"], "action": "SCMP_ACT_ERRNO"},
                    {"names": ["shmget"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                    {"names": ["shmat"], "action": "SCMP_ACT_KILL_PROCESS"},
                    {"name": "uname", "action": "SCMP_ACT_KILL"},
                ],
            },
        )
    )
    assert sb.outcome("getrandom").action == Action("errno", errno.EPERM)  # runc's default
    assert sb.outcome("shmget").action == Action("errno", errno.ENOSYS)
    assert sb.outcome("shmat").action == KILL and KILL.kills
    assert sb.outcome("uname").action == Action("kill-thread")
    assert sb.outcome("read").action == ALLOW
    assert "EPERM" in sb.outcome("getrandom").action.describe()


def test_argument_conditions_and_capabilities(tmp_path: Path) -> None:
    sb = oci.read_profile(
        profile(
            tmp_path,
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "syscalls": [
                    # getrandom only with GRND_NONBLOCK (1) set
                    {
                        "names": ["getrandom"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [
                            {"index": 2, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}
                        ],
                    },
                    # for privileged containers only: not applied to a default one
                    {
                        "names": ["shmget"],
                        "action": "SCMP_ACT_ALLOW",
                        "includes": {"caps": ["CAP_SYS_ADMIN"]},
                    },
                    # for an architecture this is not
                    {
                        "names": ["shmat"],
                        "action": "SCMP_ACT_ALLOW",
                        "includes": {"arches": ["s390x"]},
                    },
                ],
            },
        )
    )
    assert sb.outcome("getrandom", (0, 32, 1)).action == ALLOW
    blocked = sb.outcome("getrandom", (0, 32, 0))
    assert blocked.conditional and blocked.action == Action("errno", errno.EPERM)
    assert sb.outcome("shmget").action.kind == "errno"
    assert sb.outcome("shmat").action.kind == "errno"


def test_an_unknown_system_call_is_named(tmp_path: Path) -> None:
    sb = oci.read_profile(
        profile(
            tmp_path,
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getrandom", "no_such_call"], "action": "SCMP_ACT_KILL"}],
            },
        )
    )
    assert sb.outcome("getrandom").action.kills
    assert len(sb.unknown) == 1 and "no_such_call" in sb.unknown[0]
    assert any("no_such_call" in n for n in sb.notes)


@pytest.mark.parametrize(
    ("doc", "said"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ({"syscalls": []}, "no defaultAction"),
        ({"defaultAction": "SCMP_ACT_MAYBE"}, "unknown action 'SCMP_ACT_MAYBE'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, "syscalls is not a list"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}, "names"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "x"}, "error number"),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["read"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 9, "op": "SCMP_CMP_EQ"}],
                    }
                ],
            },
            "index must be 0 to 5",
        ),
    ],
)
def test_what_is_not_a_profile_is_one_line(tmp_path: Path, doc: object, said: str) -> None:
    with pytest.raises(ToolError) as e:
        oci.read_profile(profile(tmp_path, doc))
    assert said in e.value.message and "\n" not in e.value.message


def test_a_missing_profile_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="cannot read the seccomp profile"):
        oci.read_profile(str(tmp_path / "none.json"))


# --- systemd units ------------------------------------------------------------------------


def unit(text: str) -> list[tuple[str, str]]:
    return [("/etc/systemd/system/x.service", "[Service]\n" + text)]


def test_groups_are_expanded_by_systemd_analyze(analyze: str) -> None:
    sb = systemd.parse_unit(unit("SystemCallFilter=@system-service\nSystemCallFilter=~@ipc\n"))
    assert sb.seccomp is not None
    assert sb.seccomp.default == KILL  # SystemCallErrorNumber= unset: kill
    assert sb.outcome("getrandom").action == ALLOW
    assert sb.outcome("shmget").action == KILL  # removed by the ~@ipc that follows
    assert sb.outcome("shmat").action == KILL
    groups = systemd.syscall_groups()
    assert "shmget" in groups["@ipc"] and "@ipc" in groups["@system-service"]


def test_an_allow_list_starts_with_default(analyze: str) -> None:
    sb = systemd.parse_unit(unit("SystemCallFilter=read\nSystemCallErrorNumber=EPERM\n"))
    assert sb.outcome("read").action == ALLOW
    assert sb.outcome("getrandom").action == ALLOW  # in @default since systemd 2xx
    assert sb.outcome("openat").action == Action("errno", errno.EPERM)


def test_deny_lists_errnos_and_resets(analyze: str) -> None:
    sb = systemd.parse_unit(unit("SystemCallFilter=~getrandom shmget:ENOSYS\n"))
    assert sb.seccomp is not None and sb.seccomp.default == ALLOW
    assert sb.outcome("getrandom").action == KILL
    assert sb.outcome("shmget").action == Action("errno", errno.ENOSYS)
    # a later assignment of the other kind removes; an empty one resets
    sb = systemd.parse_unit(unit("SystemCallFilter=~@ipc getrandom\nSystemCallFilter=shmget\n"))
    assert sb.outcome("shmget").action == ALLOW and sb.outcome("shmat").action == KILL
    sb = systemd.parse_unit(unit("SystemCallFilter=~getrandom\nSystemCallFilter=\n"))
    assert sb.seccomp is None and sb.outcome("getrandom").action == ALLOW
    sb = systemd.parse_unit(unit("SystemCallFilter=~getrandom\nSystemCallErrorNumber=EAGAIN\n"))
    assert sb.outcome("getrandom").action == Action("errno", errno.EAGAIN)


def test_unknown_groups_and_calls_are_named(analyze: str) -> None:
    sb = systemd.parse_unit(unit("SystemCallFilter=~@no-such-group getrandom nosuchcall\n"))
    assert sb.outcome("getrandom").action == KILL
    assert any("@no-such-group" in u for u in sb.unknown)
    assert any("nosuchcall" in u for u in sb.unknown)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[Service\nUser=x\n", "bad section"),
        ("[Service]\njust words\n", "not a unit file"),
        ("User=x\n", "outside any [section]"),
    ],
)
def test_a_unit_that_does_not_parse_is_one_line(text: str, said: str) -> None:
    with pytest.raises(ToolError) as e:
        systemd.parse_unit([("/x.service", text)])
    assert said in e.value.message and e.value.message.startswith("/x.service:")


@pytest.mark.parametrize(
    "text",
    [
        "[Service]\nSystemCallErrorNumber=EWHATEVER\n",
        "[Service]\nPrivateDevices=perhaps\n",
        "[Service]\nDevicePolicy=open\n",
        "[Service]\nSystemCallFilter=read:EPERM\n",
    ],
)
def test_bad_values_are_one_line(text: str, analyze: str) -> None:
    with pytest.raises(ToolError) as e:
        systemd.parse_unit([("/x.service", text)])
    assert "/x.service:2" in e.value.message


def test_device_policy() -> None:
    def policy(text: str) -> DevicePolicy:
        d = systemd.parse_unit(unit(text)).devices
        assert d is not None
        return d

    assert policy("").may_read("/dev/urandom", 1, 9)
    strict = policy("DevicePolicy=strict\nDeviceAllow=/dev/null rw\n")
    assert not strict.may_read("/dev/urandom", 1, 9)
    assert policy("DevicePolicy=strict\nDeviceAllow=/dev/urandom r\n").may_read(
        "/dev/urandom", 1, 9
    )
    assert policy("DevicePolicy=strict\nDeviceAllow=char-mem\n").may_read("/dev/random", 1, 8)
    assert not policy("DevicePolicy=strict\nDeviceAllow=/dev/urandom w\n").may_read(
        "/dev/urandom", 1, 9
    )
    # closed (and auto with entries) always allows the pseudo devices
    assert policy("DevicePolicy=closed\n").may_read("/dev/urandom", 1, 9)
    assert policy("DeviceAllow=/dev/sda r\n").may_read("/dev/random", 1, 8)
    assert not policy("DeviceAllow=/dev/sda r\n").may_read("/dev/sdb", 8, 16)
    # an empty DeviceAllow= resets the list
    assert not policy("DevicePolicy=strict\nDeviceAllow=char-mem\nDeviceAllow=\n").may_read(
        "/dev/urandom", 1, 9
    )
    private = systemd.parse_unit(unit("PrivateDevices=yes\n"))
    assert private.provides_devices() and private.devices is not None
    assert private.devices.may_read("/dev/urandom", 1, 9)


def test_mounts_environment_and_root() -> None:
    sb = systemd.parse_unit(
        unit(
            "RootDirectory=/srv/jail\nUser=www\n"
            "BindReadOnlyPaths=/dev/urandom -/dev/random:/dev/random:rbind\n"
            "TemporaryFileSystem=/dev:ro /tmp\n"
            'Environment="OPENSSL_CONF=/etc/ssl/a b.cnf" OTHER=1\n'
        )
    )
    assert sb.root_directory == "/srv/jail" and sb.user == "www"
    assert sb.brings_device("/dev/urandom") and sb.brings_device("/dev/random")
    assert sb.hides_dev()
    assert sb.openssl_conf == "/etc/ssl/a b.cnf"
    assert sb.mounts[1].optional and sb.mounts[0].read_only


# --- files, drop-ins and --root -----------------------------------------------------------


def write(root: Path, path: str, text: str) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_drop_ins_in_systemds_order_inside_the_root(tmp_path: Path, analyze: str) -> None:
    root = tmp_path / "root"
    write(root, "/lib/systemd/system/web-front.service", "[Service]\nRootDirectory=/srv/a\n")
    # /etc's unit file masks /lib's of the same name
    write(root, "/etc/systemd/system/web-front.service", "[Service]\nRootDirectory=/srv/b\n")
    write(
        root,
        "/lib/systemd/system/web-front.service.d/10-filter.conf",
        "[Service]\nSystemCallFilter=~getrandom\n",
    )
    # the same file name in /etc masks the vendor's drop-in
    write(
        root,
        "/etc/systemd/system/web-front.service.d/10-filter.conf",
        "[Service]\nSystemCallFilter=~shmget\n",
    )
    # a prefix drop-in and a type-wide one; sorted by name across folders
    write(
        root,
        "/lib/systemd/system/web-.service.d/20-errno.conf",
        "[Service]\nSystemCallErrorNumber=EPERM\n",
    )
    write(
        root,
        "/run/systemd/system/service.d/05-env.conf",
        "[Service]\nEnvironmentFile=-/etc/default/web\n",
    )
    write(root, "/etc/default/web", "# comment\nexport OPENSSL_CONF='/etc/web/openssl.cnf'\n")
    sb, _ = load_unit("web-front", str(root))
    assert sb.files == (
        "/etc/systemd/system/web-front.service",
        "/run/systemd/system/service.d/05-env.conf",
        "/etc/systemd/system/web-front.service.d/10-filter.conf",
        "/lib/systemd/system/web-.service.d/20-errno.conf",
    )
    assert sb.root_directory == "/srv/b"
    assert sb.outcome("getrandom").action == ALLOW
    assert sb.outcome("shmget").action == Action("errno", errno.EPERM)
    assert sb.openssl_conf == "/etc/web/openssl.cnf"


def test_the_root_is_never_left(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside.conf"
    outside.write_text("[Service]\nSystemCallFilter=~getrandom\n")
    write(root, "/etc/systemd/system/svc.service", "[Service]\nEnvironmentFile=/etc/env\n")
    d = root / "etc/systemd/system/svc.service.d"
    d.mkdir()
    # an absolute symlink restarts at the root: it does not reach the host's file
    (d / "evil.conf").symlink_to(outside)
    (root / "etc/env").symlink_to("../../../../../../../../" + str(tmp_path / "hostenv"))
    (tmp_path / "hostenv").write_text("OPENSSL_CONF=/host\n")
    sb, notes = load_unit("svc.service", str(root))
    assert sb.seccomp is None and sb.openssl_conf is None
    assert any("EnvironmentFile=/etc/env cannot be read" in n for n in sb.notes)
    assert any("evil.conf" in n.message and "missing" in n.message for n in notes.items)


def test_a_unit_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with pytest.raises(ToolError, match=r"no unit nothing\.service"):
        load_unit("nothing", str(tmp_path / "root"))
    with pytest.raises(ToolError, match="cannot read the unit file"):
        load_unit("/etc/none.service", str(tmp_path / "root"))
    with pytest.raises(ToolError, match="--root"):
        load_unit("x", str(tmp_path / "missing"))


# --- the sandbox's checks -----------------------------------------------------------------


def test_the_checks_of_a_sandbox(analyze: str) -> None:
    from chrootcheck.report import catalogue
    from chrootcheck.sandbox.checks import findings

    def ids(text: str) -> dict[str, str]:
        return {f.check: f.severity.value for f in findings(systemd.parse_unit(unit(text)), [])}

    # systemd's default kill on the shm calls of the old-kernel path, and on getrandom
    got = ids("SystemCallFilter=~@ipc getrandom @no-such-group\n")
    assert got[catalogue.SANDBOX_BLOCKS_SHM.id] == "error"
    assert got[catalogue.SANDBOX_KILLS_OPENSSL_CALL.id] == "error"
    assert got[catalogue.SANDBOX_UNKNOWN_NAME.id] == "warning"
    assert catalogue.SANDBOX_BLOCKS_GETRANDOM.id not in got  # a kill, told by CC402
    # an errno on the shm calls is a warning; nothing for a filter OpenSSL never meets
    assert ids("SystemCallFilter=~@ipc\nSystemCallErrorNumber=EPERM\n") == {
        catalogue.SANDBOX_BLOCKS_SHM.id: "warning"
    }
    assert ids("SystemCallFilter=~@mount @reboot\n") == {}
    # a device policy that denies the devices makes a blocked getrandom an error
    got = ids("SystemCallFilter=~getrandom:ENOSYS\nDevicePolicy=strict\n")
    assert got[catalogue.SANDBOX_BLOCKS_GETRANDOM.id] == "error"
    assert got[catalogue.DEVICE_POLICY_DENIES_RANDOM.id] == "error"


def test_mounts_change_whether_the_devices_exist(analyze: str) -> None:
    from chrootcheck.report import catalogue
    from chrootcheck.sandbox.checks import findings

    missing = [catalogue.URANDOM_MISSING.finding("/dev/urandom", "missing")]

    def severity(text: str, prior: list[Finding]) -> str:
        sb = systemd.parse_unit(unit("SystemCallFilter=~getrandom:EPERM\n" + text))
        (f,) = [f for f in findings(sb, prior) if f.check == catalogue.SANDBOX_BLOCKS_GETRANDOM.id]
        return f.severity.value

    assert severity("", missing) == "error"
    assert severity("", []) == "warning"
    assert severity("BindReadOnlyPaths=/dev/urandom\n", missing) == "warning"
    assert severity("TemporaryFileSystem=/dev\n", []) == "error"
