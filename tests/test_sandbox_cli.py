"""`scan --unit`, `scan --seccomp-profile` and `scan --discover` with the service's sandbox:
the real CLI, real jails, the as-configured scenario run for real, the sandbox's checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import debian
from tests.conftest import good_jail, open_up
from tests.openssl_builds import Build
from tests.test_fix import as_nobody
from tests.test_signals import cli_args, jailed, spawn, wait_for
from tests.test_trust import compile_so, marker, ran

# fixtures shared with tests/test_trust.py, test_signals.py, test_fix.py
__all__ = ["as_nobody", "marker", "spawn"]

pytestmark = pytest.mark.root


def _write(root: Path, path: str, text: str) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def _tree(tmp_path: Path, unit: str, devices: bool = True) -> Path:
    """A system tree with /etc/systemd/system/web.service and its jail /srv/jail."""
    root = tmp_path / "root"
    jail = root / "srv" / "jail"
    (jail / "dev").mkdir(parents=True)
    if devices:
        good_jail(jail)
    open_up(jail / "dev")
    _write(root, "/etc/systemd/system/web.service", "[Service]\nRootDirectory=/srv/jail\n" + unit)
    return root


def _json(stdout: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(stdout)
    return doc


def _scenario(jail: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in jail["probe"]["scenarios"] if s["name"] == name)
    return found


def _checks(jail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["check"]: f for f in jail["findings"]}


def test_a_unit_that_kills_on_getrandom(cli, tmp_path: Path) -> None:
    debian.tool("systemd-analyze", "systemd")
    root = _tree(tmp_path, "SystemCallFilter=@system-service\nSystemCallFilter=~getrandom\n")
    r = cli("scan", "--unit", "web", "--root", str(root), "--no-late-loads", "-f", "json")
    assert r.code == 1, r
    (jail,) = _json(r.stdout)["jails"]
    assert jail["jail"] == str(root / "srv" / "jail")
    s = _scenario(jail, "as-configured")
    assert s["verdict"] == "crashed" and s["signal"] == "SIGSYS", s
    assert "getrandom" in s["explanation"]
    assert _scenario(jail, "as-is")["verdict"] == "pass"
    kill = _checks(jail)["CC402"]
    assert "getrandom" in kill["message"] and kill["severity"] == "error"
    assert jail["probe"]["prediction"].startswith("Under the service's own sandbox")
    # the text format names the scenario too
    text = cli("scan", "--unit", "web", "--root", str(root), "--no-late-loads")
    assert "as-configured" in text.stdout and "SIGSYS" in text.stdout


def test_a_profile_that_blocks_getrandom(cli, tmp_path: Path, jail: Path) -> None:
    profile = tmp_path / "p.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["getrandom", "shmget"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
                ],
            }
        )
    )
    open_up(jail)
    # no devices in the jail: an error
    r = cli("scan", str(jail), "--seccomp-profile", str(profile), "--no-late-loads", "-f", "json")
    (j,) = _json(r.stdout)["jails"]
    assert _checks(j)["CC400"]["severity"] == "error"
    assert _checks(j)["CC401"]["severity"] == "warning"
    assert _scenario(j, "as-configured")["verdict"] == _scenario(j, "no-getrandom")["verdict"]
    # devices there: a warning
    good_jail(jail)
    r = cli("scan", str(jail), "--seccomp-profile", str(profile), "--no-probe", "-f", "json")
    (j,) = _json(r.stdout)["jails"]
    assert _checks(j)["CC400"]["severity"] == "warning"


def test_a_device_policy_through_discover(cli, tmp_path: Path) -> None:
    root = _tree(tmp_path, "DevicePolicy=strict\nDeviceAllow=/dev/null rw\n")
    r = cli("scan", "--discover", "--root", str(root), "--no-late-loads", "-f", "json")
    (jail,) = _json(r.stdout)["jails"]
    denied = {f["path"] for f in jail["findings"] if f["check"] == "CC403"}
    assert denied == {"/dev/urandom", "/dev/random"}, r
    assert any(s["name"] == "as-configured" for s in jail["probe"]["scenarios"])
    assert r.code == 1


def test_private_devices_through_the_model(cli, tmp_path: Path) -> None:
    root = _tree(tmp_path, "PrivateDevices=yes\n", devices=False)
    r = cli("scan", "--unit", "web.service", "--root", str(root), "--no-late-loads", "-f", "json")
    assert r.code == 0, r
    (jail,) = _json(r.stdout)["jails"]
    checks = _checks(jail)
    assert checks["CC404"]["severity"] == "info"
    assert checks["CC101"]["severity"] == "info"  # softened: systemd brings its own /dev
    # measured: the probe child made systemd's private /dev in the jail, in its own namespace
    assert _scenario(jail, "as-configured")["verdict"] == "pass"
    assert "measured: the as-configured scenario passed" in checks["CC101"]["message"]
    assert not (root / "srv" / "jail" / "dev" / "urandom").exists()


def test_a_missing_bind_source_is_a_finding(cli, tmp_path: Path) -> None:
    root = _tree(tmp_path, "BindReadOnlyPaths=/dev/hwrng:/dev/urandom\nBindPaths=-/opt/x\n")
    r = cli("scan", "--unit", "web", "--root", str(root), "--no-late-loads", "-f", "json")
    assert r.code == 1, r
    (jail,) = _json(r.stdout)["jails"]
    missing = [f for f in jail["findings"] if f["check"] == "CC406"]
    assert [f["details"]["source"] for f in missing] == ["/dev/hwrng"], missing  # not "-" ones
    assert "inside " + str(root) in missing[0]["message"]
    s = _scenario(jail, "as-configured")
    assert s["verdict"] == "skipped" and "the unit does not start" in s["explanation"], s


def test_the_root_directory_is_resolved_inside_the_root(cli, tmp_path: Path) -> None:
    root = _tree(tmp_path, "")
    # /srv/jail is an absolute symlink: it leads to <root>/data/jail, never to the host's
    (root / "srv" / "jail").rename(root / "srv" / "real")
    (root / "data").mkdir()
    (root / "srv" / "real").rename(root / "data" / "jail")
    (root / "srv" / "jail").symlink_to("/data/jail")
    r = cli("scan", "--unit", "web", "--root", str(root), "--no-probe", "-f", "json")
    assert r.code == 0, r
    assert _json(r.stdout)["jails"][0]["jail"] == str(root / "data" / "jail")
    (root / "srv" / "jail").unlink()
    (root / "srv" / "jail").symlink_to("/nowhere")
    r = cli("scan", "--unit", "web", "--root", str(root), "--no-probe")
    assert r.code == 2 and "RootDirectory=/srv/jail is not a folder inside" in r.stderr, r


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--seccomp-profile", "{not json"], "not JSON"),
        (["--unit", "/bad.service"], "not a unit file"),
        (["--unit", "missing"], "no unit missing.service"),
        (["--unit", "web", "--seccomp-profile", "x"], "give one sandbox"),
        (["--scenario", "as-configured"], "needs a sandbox"),
        (["--unit", "/norootdir.service"], "no RootDirectory="),
    ],
)
def test_bad_input_is_one_line(cli, tmp_path: Path, args: list[str], said: str) -> None:
    root = tmp_path / "root"
    _write(root, "/bad.service", "[Service]\nthis is not an assignment\n")
    _write(root, "/norootdir.service", "[Service]\nUser=www\n")
    profile = tmp_path / "p.json"
    profile.write_text("{not json")
    args = [str(profile) if a == "{not json" else a for a in args]
    jail = tmp_path / "jail"
    jail.mkdir()
    extra = [] if "--unit" in args else [str(jail)]
    r = cli("scan", *extra, *args, "--root", str(root))
    assert r.code == 2, r
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert any(said in x for x in lines), r


def test_a_root_image_is_never_a_silent_pass(cli, tmp_path: Path, jail: Path) -> None:
    root = tmp_path / "root"
    _write(root, "/etc/systemd/system/img.service", "[Service]\nRootImage=/var/img.raw\n")
    r = cli("scan", "--unit", "img", "--root", str(root), "--no-probe")
    assert r.code == 2 and r.stderr.count("\n") == 1, r
    assert "RootImage=/var/img.raw: the image is not scanned" in r.stderr
    assert "mount it read-only" in r.stderr and "scan --unit UNIT DIR" in r.stderr
    # the image mounted by the user, given as the JAIL: checked, and the report says so
    good_jail(jail)
    r = cli("scan", "--unit", "img", "--root", str(root), str(jail), "--no-probe", "-f", "json")
    assert r.code == 0, r
    (j,) = _json(r.stdout)["jails"]
    said = [n["message"] for n in j["notices"] if n["topic"] == "sandbox"]
    assert any("the image is not scanned; this jail" in m for m in said), j["notices"]


PROVIDER_CONF = """openssl_conf = init
[init]
providers = prov
[prov]
planted = planted_sect
default = default_sect
[planted_sect]
module = {module}
activate = 1
[default_sect]
activate = 1
"""


def _conf_unit(tmp_path: Path, module: Path, mode: int = 0o644) -> tuple[Path, Path]:
    conf = tmp_path / "etc-ssl" / "service.cnf"
    conf.parent.mkdir()
    conf.write_text(PROVIDER_CONF.format(module=module))
    os.chmod(conf, mode)
    unit = tmp_path / "web.service"
    unit.write_text(f"[Service]\nEnvironment=OPENSSL_CONF={conf}\n")
    return unit, conf


def test_the_units_openssl_conf_is_loaded_once_trusted(
    cli, tmp_path: Path, jail: Path, marker: Path
) -> None:
    # A provider the unit's config names, root's and outside the jail: the as-configured
    # child loads it (the marker shows uid 0: before the chroot, as the daemon does); the
    # other scenarios keep the host's config.
    good_jail(jail)
    open_up(jail)
    (tmp_path / "trusted").mkdir()
    module = compile_so(tmp_path / "trusted" / "planted.so", marker)
    unit, _ = _conf_unit(tmp_path, module)
    args = ("scan", "--unit", str(unit), str(jail), "--no-late-loads", "-f", "json")
    r = cli(*args)
    (j,) = _json(r.stdout)["jails"]
    s = _scenario(j, "as-configured")
    assert s["verdict"] == "pass" and "OPENSSL_CONF=" in s["description"], s
    assert ran(marker) == [0]
    loaded = [st for st in s["cycles"][0]["steps"] if "CONF_modules_load_file" in st["action"]]
    assert loaded and str(unit.parent) in loaded[0]["action"], s["cycles"][0]
    assert all(
        "CONF_modules" not in st["action"] for st in _scenario(j, "as-is")["cycles"][0]["steps"]
    )


def test_an_untrusted_openssl_conf_is_refused(
    cli, tmp_path: Path, jail: Path, marker: Path
) -> None:
    good_jail(jail)
    open_up(jail)
    # a provider inside the jail: never loaded as root, the scenario says why
    (jail / "lib").mkdir()
    module = compile_so(jail / "lib" / "planted.so", marker)
    unit, conf = _conf_unit(tmp_path, module)
    r = cli("scan", "--unit", str(unit), str(jail), "--no-late-loads", "-f", "json")
    s = _scenario(_json(r.stdout)["jails"][0], "as-configured")
    assert s["verdict"] == "skipped", s
    assert "refusing to load the unit's OPENSSL_CONF" in s["explanation"]
    assert f"its provider {module}" in s["explanation"] and "inside the jail" in s["explanation"]
    # a config another user may rewrite: refused too, whatever it names
    os.chmod(conf, 0o666)
    (tmp_path / "trusted").mkdir()
    unit, conf = _conf_unit(
        tmp_path / "trusted", compile_so(tmp_path / "trusted" / "p.so", marker), 0o666
    )
    r = cli("scan", "--unit", str(unit), str(jail), "--no-late-loads", "-f", "json")
    s = _scenario(_json(r.stdout)["jails"][0], "as-configured")
    assert s["verdict"] == "skipped" and "writable by every user" in s["explanation"], s
    assert ran(marker) == []


def _with_private_dev(pid: int) -> bool:
    """Whether process ``pid`` (chrooted) sees a tmpfs on /dev: the unit's mounts are made."""
    try:
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(ln.split()[4] == "/dev" and " - tmpfs " in ln for ln in lines)


def test_sigkill_leaves_none_of_the_units_mounts(
    spawn, tmp_path: Path, libcrypto_102: Build
) -> None:
    # 1.0.2 under PrivateDevices=yes with a strict policy: RAND_poll would read nothing, so
    # trigger children run, each with the unit's mounts in its own namespace. chrootcheck is
    # killed while one of them has them: the children die with it (PR_SET_PDEATHSIG), their
    # namespaces with them; nothing was ever mounted or made on the host or in the jail.
    jail = tmp_path / "bare"
    (jail / "dev").mkdir(parents=True)
    open_up(jail / "dev")
    unit = tmp_path / "web.service"
    unit.write_text("[Service]\nRootDirectory=/srv/jail\nPrivateDevices=yes\nDevicePolicy=strict\n")
    args = ("scan", "--unit", str(unit), str(jail), "--libcrypto", libcrypto_102.path)
    p = spawn(*cli_args(*args, "--no-late-loads", "-f", "json"), jail=jail)
    wait_for(
        lambda: any(_with_private_dev(pid) for pid in jailed(jail)),
        30,
        "a probe child with the unit's /dev",
    )
    assert str(jail) not in Path("/proc/self/mountinfo").read_text()  # not even meanwhile
    p.proc.kill()
    assert p.proc.wait(timeout=10) == -signal.SIGKILL
    wait_for(lambda: not jailed(jail), 5, "the probe children to die")
    assert os.listdir(jail / "dev") == []
    assert str(jail) not in Path("/proc/self/mountinfo").read_text()


def test_the_units_dev_without_root(as_nobody, libcrypto_102: Build) -> None:
    # Not root: the probe runs in a user namespace, where mknod is refused: systemd's nodes
    # are bound from the host's /dev instead, and the jail's missing /dev made in a shadow of
    # its root. 1.0.2's RAND_poll then reads /dev/urandom inside it.
    base, run = as_nobody
    lib = base / "lib"
    shutil.copytree(Path(libcrypto_102.path).parent, lib)
    jail = base / "jail"
    jail.mkdir()
    unit = base / "web.service"
    unit.write_text("[Service]\nRootDirectory=/srv/jail\nPrivateDevices=yes\n")
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
    library = str(lib / Path(libcrypto_102.path).name)
    args = ("scan", "--unit", str(unit), str(jail), "--libcrypto", library, "--no-late-loads")
    r = run(*args, "-f", "json")
    (j,) = _json(r.stdout)["jails"]
    assert j["probe"]["mode"] == "user namespace", j["probe"]
    s = _scenario(j, "as-configured")
    assert s["verdict"] == "pass" and "RAND_poll there would read /dev/urandom" in s["explanation"]
    assert "reads none" in _scenario(j, "as-is")["explanation"]
    assert os.listdir(jail) == []


def test_an_openssl_conf_inside_root_is_never_loaded(cli, tmp_path: Path, marker: Path) -> None:
    root = _tree(tmp_path, "Environment=OPENSSL_CONF=/etc/ssl/service.cnf\n")
    (root / "trusted").mkdir()
    module = compile_so(root / "trusted" / "planted.so", marker)
    _write(root, "/etc/ssl/service.cnf", PROVIDER_CONF.format(module=module))
    r = cli("scan", "--unit", "web", "--root", str(root), "--no-late-loads", "-f", "json")
    s = _scenario(_json(r.stdout)["jails"][0], "as-configured")
    assert (
        s["verdict"] == "pass" and "not its OPENSSL_CONF=/etc/ssl/service.cnf" in s["description"]
    )
    assert ran(marker) == []
