"""The HSM case without a daemon (issue 16): stunnel's engine settings, PIN hiding, the PKCS#11
modules' own state resolved inside the jail with the user's rights, the daemon profile's
"loaded before the chroot", decode of libp11's errors, and the late-load probe's refusals:
an engine, module or config that a jail's owner controls is never loaded as root (planted
shared objects compiled with cc; their constructor would leave a marker).

The real token, engine and stunnel are in tests/test_hsm_real.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chrootcheck.discover._common import Notes, Tree
from chrootcheck.discover.stunnel import read_config
from chrootcheck.jail.fs import open_jail
from chrootcheck.jail.users import ServiceUser
from chrootcheck.lateload.check import OpenSSLPaths, check_late_loads
from chrootcheck.lateload.modules import Module, check_modules
from chrootcheck.openssl.hsm import HIDDEN, EngineKey
from chrootcheck.report import catalogue
from tests.conftest import good_jail, open_up, run_cli
from tests.test_fix import as_nobody
from tests.test_trust import compile_so, marker

__all__ = ["as_nobody", "marker"]  # fixtures

PIN = "pin-Zq8xW"
NOBODY = ServiceUser(65534, 65534, (65534,), "nobody")


# -- stunnel's engine settings ------------------------------------------------------------


def _stunnel_tree(tmp_path: Path, text: str, include: str | None = None) -> Path:
    etc = tmp_path / "root" / "etc" / "stunnel"
    etc.mkdir(parents=True)
    (etc / "hsm.conf").write_text(text)
    if include is not None:
        (etc / "conf.d").mkdir()
        (etc / "conf.d" / "10-engine.conf").write_text(include)
    return tmp_path / "root"


def test_stunnel_engine_settings_are_read_in_order(tmp_path: Path) -> None:
    root = _stunnel_tree(
        tmp_path,
        "; a comment\nchroot = /var/lib/stunnel4\nsetuid = stunnel4\n"
        "include = /etc/stunnel/conf.d\n"
        "[tls]\naccept = 443\nengineId = pkcs11\nkey = pkcs11:token=cc;object=k;pin-value=1\n"
        "[other]\nkey = pkcs11:object=second\n",
        include=f"engine = pkcs11\nengineCtrl = MODULE_PATH:/usr/lib/softhsm/libsofthsm2.so\n"
        f"engineCtrl = PIN:{PIN}\nengineDefault = RSA\n",
    )
    with Tree(str(root)) as tree:
        found = read_config(tree, "/etc/stunnel/hsm.conf", Notes())
    assert found is not None and found.user == "stunnel4"
    key = found.engine_key
    assert key is not None
    assert key.engine == "pkcs11" and key.default == "RSA"
    assert key.key == "pkcs11:token=cc;object=k;pin-value=1"  # the first service's
    assert key.ctrls == (("MODULE_PATH", "/usr/lib/softhsm/libsofthsm2.so"), ("PIN", PIN))
    assert key.module_path == "/usr/lib/softhsm/libsofthsm2.so"
    assert key.origin.startswith("/etc/stunnel/conf.d/10-engine.conf:1")
    shown = key.describe()
    assert PIN not in shown and "pin-value=1" not in shown and HIDDEN in shown


def test_stunnel_dynamic_engine_names_its_file(tmp_path: Path) -> None:
    root = _stunnel_tree(
        tmp_path,
        "chroot = /j\nengine = dynamic\nengineCtrl = SO_PATH:/opt/e/pkcs11.so\n"
        "engineCtrl = ID:pkcs11\n"
        "engineCtrl = LOAD\n[s]\nengineId = dynamic\nkey = pkcs11:object=k\n",
    )
    with Tree(str(root)) as tree:
        found = read_config(tree, "/etc/stunnel/hsm.conf", Notes())
    assert found is not None and found.engine_key is not None
    assert found.engine_key.engine_so == "/opt/e/pkcs11.so"
    assert found.engine_key.ctrls[-1] == ("LOAD", "")


def test_a_key_file_is_not_an_engine_key(tmp_path: Path) -> None:
    root = _stunnel_tree(tmp_path, "chroot = /j\nengine = pkcs11\n[s]\nkey = /etc/k.pem\n")
    with Tree(str(root)) as tree:
        found = read_config(tree, "/etc/stunnel/hsm.conf", Notes())
    assert found is not None and found.engine_key is None


def test_discover_shows_the_engine_key_without_its_pin(tmp_path: Path) -> None:
    root = _stunnel_tree(
        tmp_path,
        f"chroot = /j\nengine = pkcs11\nengineCtrl = PIN:{PIN}\n[s]\nengineId = pkcs11\n"
        f"key = pkcs11:object=k;pin-value={PIN}\n",
    )
    r = run_cli("discover", "--root", str(root), "--format", "json")
    assert r.code == 0, r
    data = json.loads(r.stdout)
    assert data["schema_version"] == "1.4"
    line = data["jails"][0]["engine_key"]
    assert line.startswith("engine pkcs11, key pkcs11:object=k;pin-value=(hidden)"), line
    assert PIN not in r.stdout + r.stderr


def test_engine_key_scrubs_every_secret() -> None:
    key = EngineKey("pkcs11", f"pkcs11:object=k?pin-value={PIN}", (("PIN", "4711x"),))
    assert key.secrets() == ("4711x", PIN)
    assert key.scrub(f"the pin was 4711x and {PIN}") == f"the pin was {HIDDEN} and {HIDDEN}"
    assert "pin-source=(hidden)" in key.scrub("pkcs11:object=k;pin-source=file:/etc/p")


# -- the modules' own state ---------------------------------------------------------------


@pytest.fixture
def softhsm(tmp_path: Path) -> dict[str, str]:
    """A SoftHSM2 config and a token store on the 'host' with one token."""
    tokens = tmp_path / "host" / "tokens"
    token = tokens / "9eadae1f-f83d-3fc0-7a2a-a811c2b21eed"
    token.mkdir(parents=True)
    for name in ("generation", "token.object", "595c.object", "token.lock"):
        (token / name).write_bytes(b"x")
    conf = tmp_path / "host" / "softhsm2.conf"
    conf.write_text(f"# SoftHSM v2\ndirectories.tokendir = {tokens}/\nobjectstore.backend = file\n")
    return {"SOFTHSM2_CONF": str(conf), "tokens": str(tokens), "token": token.name}


def _state(jail: Path, env: dict[str, str], user: ServiceUser | None) -> list[str]:
    fd = open_jail(str(jail))
    try:
        found = check_modules(
            fd, str(jail), [Module("/usr/lib/softhsm/libsofthsm2.so", "test")], env, user
        )
    finally:
        os.close(fd)
    return [f.check for f in found]


def test_no_token_store_in_the_jail(tmp_path: Path, softhsm: dict[str, str]) -> None:
    jail = tmp_path / "jail"
    jail.mkdir()
    fd = open_jail(str(jail))
    try:
        (f,) = check_modules(
            fd, str(jail), [Module("/usr/lib/softhsm/libsofthsm2.so", "t")], softhsm, NOBODY
        )
    finally:
        os.close(fd)
    assert f.check == catalogue.TOKEN_STORE_MISSING_IN_JAIL.id
    assert softhsm["tokens"] in f.message and "Object handle invalid" in f.message
    target = os.path.join(str(jail), softhsm["tokens"].lstrip("/"))
    assert f"mount --bind {softhsm['tokens']} {target}" in f.remediation
    assert "chrootcheck fix does not do this" in f.remediation


def _jail_with_store(tmp_path: Path, softhsm: dict[str, str]) -> tuple[Path, Path]:
    jail = tmp_path / "jail"
    store = jail / softhsm["tokens"].lstrip("/")
    shutil.copytree(softhsm["tokens"], store)
    return jail, store


@pytest.mark.root
def test_a_store_the_user_cannot_search(tmp_path: Path, softhsm: dict[str, str]) -> None:
    jail, store = _jail_with_store(tmp_path, softhsm)
    os.chmod(store, 0o2770)  # Debian's root:softhsm 2770, and nobody is not in the group
    assert _state(jail, softhsm, NOBODY) == [catalogue.TOKEN_STORE_UNREADABLE.id]
    # in the group, it can
    member = ServiceUser(65534, 65534, (65534, os.stat(store).st_gid), "nobody")
    for p in [store, *store.rglob("*")]:
        os.chmod(p, os.stat(p).st_mode | 0o060)
    assert _state(jail, softhsm, member) == []


@pytest.mark.root
def test_a_token_file_the_user_cannot_read(tmp_path: Path, softhsm: dict[str, str]) -> None:
    jail, store = _jail_with_store(tmp_path, softhsm)
    for p in [store, *store.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    open_up(jail)
    assert _state(jail, softhsm, NOBODY) == []
    os.chmod(store / softhsm["token"] / "generation", 0o600)
    fd = open_jail(str(jail))
    try:
        (f,) = check_modules(fd, str(jail), [Module("/x/libsofthsm2.so", "t")], softhsm, NOBODY)
    finally:
        os.close(fd)
    assert f.check == catalogue.TOKEN_STORE_UNREADABLE.id
    assert "generation (read)" in f.message


def test_a_store_without_the_hosts_token(tmp_path: Path, softhsm: dict[str, str]) -> None:
    jail = tmp_path / "jail"
    (jail / softhsm["tokens"].lstrip("/")).mkdir(parents=True)
    assert _state(jail, softhsm, None) == [catalogue.TOKEN_STORE_MISSING_IN_JAIL.id]


def test_a_symlinked_store_never_leads_out(tmp_path: Path, softhsm: dict[str, str]) -> None:
    """The token store's path in the jail is a symlink to the host's store: resolved inside the
    jail it leads nowhere, as it does for the chrooted daemon."""
    jail = tmp_path / "jail"
    inside = jail / softhsm["tokens"].lstrip("/")
    inside.parent.mkdir(parents=True)
    inside.symlink_to(softhsm["tokens"])  # absolute: restarts at the jail's root
    assert _state(jail, softhsm, None) == [catalogue.TOKEN_STORE_MISSING_IN_JAIL.id]


def test_an_unreadable_softhsm_config_and_opensc(tmp_path: Path) -> None:
    jail = tmp_path / "jail"
    jail.mkdir()
    fd = open_jail(str(jail))
    try:
        found = check_modules(
            fd,
            str(jail),
            [
                Module("/usr/lib/softhsm/libsofthsm2.so", "a"),
                Module("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "b"),
            ],
            {"SOFTHSM2_CONF": str(tmp_path / "nowhere.conf")},
            None,
        )
    finally:
        os.close(fd)
    assert [f.check for f in found] == [catalogue.PKCS11_MODULE_STATE.id] * 2
    assert "pcscd" in found[1].message and found[1].severity.value == "info"


def test_a_remote_p11kit_module_is_recognised(tmp_path: Path) -> None:
    conf = tmp_path / "remote.module"
    conf.write_text("remote: |ssh host p11-kit remote /usr/lib/x.so\n")
    jail = tmp_path / "jail"
    jail.mkdir()
    fd = open_jail(str(jail))
    try:
        (f,) = check_modules(fd, str(jail), [], {}, None, [str(conf)])
    finally:
        os.close(fd)
    assert f.check == catalogue.PKCS11_REMOTE_MODULE.id and "ssh host" in f.message


def test_what_the_daemon_loads_before_its_chroot_is_info(tmp_path: Path) -> None:
    """stunnel's profile: the engine and the module are loaded before the chroot, so missing in
    the jail they are info for it; without a profile, today's hedged errors stay."""
    host = tmp_path / "host"
    (host / "engines").mkdir(parents=True)
    (host / "engines" / "pkcs11.so").write_bytes(b"\x7fELF")
    module = host / "libsofthsm2.so"
    module.write_bytes(b"\x7fELF")
    (host / "openssl.cnf").write_text("# empty\n")
    jail = tmp_path / "jail"
    jail.mkdir()
    key = EngineKey("pkcs11", "pkcs11:object=k", (("MODULE_PATH", str(module)),), origin="t:1")
    paths = OpenSSLPaths(str(host), str(host / "engines"), str(host / "modules"))
    env = {"SOFTHSM2_CONF": str(tmp_path / "none.conf")}
    fd = open_jail(str(jail))
    try:
        hedged = check_late_loads(fd, str(jail), paths, env, engine_key=key)
        profiled = check_late_loads(
            fd,
            str(jail),
            paths,
            env,
            engine_key=key,
            before_chroot=frozenset({"engine", "pkcs11-module", "config"}),
            daemon="stunnel",
        )
    finally:
        os.close(fd)

    def severities(result: object) -> dict[str, str]:
        return {f.check: f.severity.value for f in result.findings}  # type: ignore[attr-defined]

    assert severities(hedged)["CC302"] == "error" and severities(hedged)["CC304"] == "error"
    assert severities(profiled)["CC302"] == "info" and severities(profiled)["CC304"] == "info"
    texts = [f.message for f in profiled.findings if f.check in ("CC302", "CC304")]
    assert all("stunnel loads it before its chroot" in t for t in texts)


# -- decode ------------------------------------------------------------------------------

# stunnel 5.68's own log, measured (tests/test_hsm_real.py): the newest error first.
STUNNEL_LOG = (
    "2026.12.01 17:50:12 LOG3[ui]: ENGINE_ctrl_cmd: eng_back.c:421: "
    "error:40800064:pkcs11 engine::invalid id\n"
    "2026.12.01 17:50:12 LOG5[ui]: Configuration successful\n"
    "2026.12.01 17:50:13 LOG3[0]: error queue: ../ssl/statem/statem_lib.c:361: "
    "error:0A080006:SSL routines::EVP lib\n"
    "2026.12.01 17:50:13 LOG3[0]: SSL_accept: p11_rsa.c:120: "
    "error:42000082:PKCS#11 module::Object handle invalid\n"
)


def test_decode_explains_the_hsm_chain(tmp_path: Path) -> None:
    log = tmp_path / "stunnel.log"
    log.write_text(STUNNEL_LOG)
    r = run_cli("decode", str(log), "--format", "json")
    assert r.code == 1, r
    data = json.loads(r.stdout)
    assert data["summary"]["token_chains"] == 1 and data["summary"]["entropy_chains"] == 0
    engine, hsm = data["chains"]
    assert engine["errors"][0]["knowledge"] == "pkcs11-engine-error"
    assert not engine["token_problem"]
    assert hsm["token_problem"]
    assert hsm["verdict"].startswith(
        "the PKCS#11 module cannot reach its token: in a jail, the token store is missing or "
        "unreadable for the service user"
    )
    evp, module = hsm["errors"]
    assert evp["knowledge"] == "evp-lib-after-pkcs11" and "PKCS#11" in evp["consequence"]
    assert module["knowledge"] == "pkcs11-token-unreachable"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("error:41800082:PKCS#11 module::Object handle invalid", "pkcs11-token-unreachable"),
        ("error:420000E0:PKCS#11 module::No PKCS#11 token present", "pkcs11-token-unreachable"),
        ("error:420000A0:PKCS#11 module::PIN incorrect", "pkcs11-pin"),
        ("error:42000068:PKCS#11 module::Key size range", "pkcs11-module-error"),
        ("error:4080006A:pkcs11 engine::object not found", "pkcs11-engine-error"),
    ],
)
def test_decode_libp11_codes_by_name(tmp_path: Path, line: str, key: str) -> None:
    log = tmp_path / "x.log"
    log.write_text(f"stunnel: {line}\n")
    r = run_cli("decode", str(log), "--format", "json")
    found = json.loads(r.stdout)["chains"][0]["errors"][0]["knowledge"]
    assert found == key
    assert r.code == (1 if key == "pkcs11-token-unreachable" else 0)


# -- never load the jail's code as root ----------------------------------------------------


@pytest.fixture
def planted(tmp_path: Path, marker: Path) -> tuple[Path, Path]:
    """A jail with a planted shared object (its constructor writes the marker)."""
    jail = good_jail(tmp_path / "jail")
    lib = jail / "usr" / "lib" / "evil.so"
    lib.parent.mkdir(parents=True)
    return jail, compile_so(lib, marker)


def _refused(r_stdout: str) -> list[dict[str, object]]:
    findings = json.loads(r_stdout)["jails"][0]["findings"]
    return [f for f in findings if f["check"] == catalogue.ENGINE_CODE_UNTRUSTED.id]


@pytest.mark.root
@pytest.mark.parametrize(
    "form",
    ["module", "module-via-symlink", "so-path", "dynamic-dir", "engine-id-path"],
)
def test_jail_code_is_never_loaded_as_root(
    form: str, tmp_path: Path, planted: tuple[Path, Path], marker: Path
) -> None:
    jail, lib = planted
    args = ["--key", "pkcs11:object=k"]
    if form == "module":
        args += ["--engine-ctrl", f"MODULE_PATH:{lib}"]
    elif form == "module-via-symlink":
        link = tmp_path / "outside.so"
        link.symlink_to(lib)  # a host path that leads into the jail
        args += ["--engine-ctrl", f"MODULE_PATH:{link}"]
    elif form == "so-path":
        args += ["--engine", "dynamic", "--engine-ctrl", f"SO_PATH:{lib}", "--engine-ctrl", "LOAD"]
    elif form == "dynamic-dir":
        args += ["--engine", "dynamic", "--engine-ctrl", f"DIR_ADD:{lib.parent}",
                 "--engine-ctrl", "DIR_LOAD:2", "--engine-ctrl", "ID:evil",
                 "--engine-ctrl", "LOAD"]  # fmt: skip
    else:  # ENGINE_by_id loads an id with a '/' as a path
        args = ["--daemon-config", str(_config(tmp_path, jail, f"engine = {lib}"))]
    r = run_cli(
        "scan", str(jail), *args, "--scenario", "as-is", "--no-triggers", "--no-late-loads",
        "--format", "json", timeout=120,
    )  # fmt: skip
    assert r.code == 1, r
    refused = _refused(r.stdout)
    assert refused, r.stdout
    assert "not probed" in str(refused[0]["message"])
    assert marker.read_text() == "", "the planted constructor ran"


def _config(tmp_path: Path, jail: Path, engine_line: str) -> Path:
    conf = tmp_path / "stunnel.conf"
    conf.write_text(
        f"chroot = {jail}\nsetuid = nobody\n{engine_line}\n[s]\nengineId = x\n"
        "key = pkcs11:object=k\n"
    )
    return conf


@pytest.mark.root
def test_a_daemon_config_naming_jail_code_is_refused(
    tmp_path: Path, planted: tuple[Path, Path], marker: Path
) -> None:
    jail, lib = planted
    conf = _config(
        tmp_path, jail, f"engine = dynamic\nengineCtrl = SO_PATH:{lib}\nengineCtrl = LOAD"
    )
    conf.write_text(conf.read_text().replace("engineId = x", "engineId = dynamic"))
    r = run_cli(
        "scan", "--daemon-config", str(conf), "--scenario", "as-is", "--no-triggers",
        "--format", "json", timeout=120,
    )  # fmt: skip
    assert r.code == 1, r
    assert _refused(r.stdout)
    assert marker.read_text() == ""


@pytest.mark.root
def test_a_module_another_user_can_replace_is_refused(tmp_path: Path, marker: Path) -> None:
    jail = good_jail(tmp_path / "jail")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # world-writable, no sticky bit: anyone can swap the module
    lib = compile_so(shared / "module.so", marker)
    r = run_cli(
        "scan", str(jail), "--key", "pkcs11:object=k", "--engine-ctrl", f"MODULE_PATH:{lib}",
        "--scenario", "as-is", "--no-triggers", "--no-late-loads", "--format", "json",
        timeout=120,
    )  # fmt: skip
    assert r.code == 1, r
    refused = _refused(r.stdout)
    assert refused and str(lib) in str(refused[0]["message"])
    assert marker.read_text() == ""


def test_bad_key_options_are_one_line(tmp_path: Path) -> None:
    jail = tmp_path / "jail"
    jail.mkdir()
    for args in (
        ["--engine-ctrl", "PIN:1"],
        ["--key", "pkcs11:object=k", "--engine", "../x"],
        ["--key", ""],
    ):
        r = run_cli("scan", str(jail), *args)
        assert r.code == 2, (args, r)
        assert "Traceback" not in r.stderr
    r = run_cli("scan", "--daemon-config", str(tmp_path / "missing.conf"))
    assert r.code == 2 and r.stderr.startswith("chrootcheck: error:"), r


# -- haproxy's engines and providers --------------------------------------------------------


def test_haproxy_engines_and_providers_feed_the_late_loads(tmp_path: Path) -> None:
    jail = tmp_path / "jail"
    jail.mkdir()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        f"global\n    chroot {jail}\n    user nobody\n    ssl-engine pkcs11 RSA\n"
        f"    ssl-provider-path {tmp_path}/mods\n    ssl-provider legacy\n"
        "    ssl-provider default\n    ssl-propquery provider=legacy\ndefaults\n    mode tcp\n"
    )
    with Tree("/") as tree:
        from chrootcheck.discover import haproxy

        found = haproxy.read_config(tree, str(cfg), Notes())
    assert found is not None and found.loads is not None
    assert found.loads.engines == ("pkcs11",) and found.loads.providers == ("legacy", "default")
    assert found.loads.provider_path == f"{tmp_path}/mods"
    assert found.loads.propquery == "provider=legacy"
    assert found.loads.origin == f"{cfg}:4"
    r = run_cli("scan", "--daemon-config", str(cfg), "--no-probe", "--format", "json")
    assert r.code == 1, r  # the empty jail has no /dev
    paths = {
        f["path"]: f for f in json.loads(r.stdout)["jails"][0]["findings"] if "role" in f["details"]
    }
    assert f"{tmp_path}/mods/legacy.so" in paths  # the default provider is built in
    assert not any(p.endswith("/default.so") for p in paths)
    # by hand, as haproxy: what it loads before its chroot is info
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "legacy.so").write_bytes(b"\x7fELF")
    r = run_cli(
        "scan", str(jail), "--daemon-config", str(cfg), "--no-probe", "--format", "json"
    )  # fmt: skip
    legacy = [
        f for f in json.loads(r.stdout)["jails"][0]["findings"] if f["path"] == f"{mods}/legacy.so"
    ]
    assert legacy[0]["check"] == "CC303" and legacy[0]["severity"] == "info", legacy
    assert "haproxy loads it before its chroot" in legacy[0]["message"]


def test_user_rights_apply_to_late_loaded_files(tmp_path: Path) -> None:
    """--user is applied to the files OpenSSL loads late: present but unreadable for the
    service user is not present (issue 16: 0.1.0 passed such jails)."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "openssl.cnf").write_text("openssl_conf = init\n[init]\n")
    jail = tmp_path / "jail"
    inside = jail / str(host).lstrip("/") / "openssl.cnf"
    inside.parent.mkdir(parents=True)
    inside.write_text("openssl_conf = init\n[init]\n")
    os.chmod(inside, 0o600)
    open_up(inside.parent)
    paths = OpenSSLPaths(str(host), None, None)
    fd = open_jail(str(jail))
    try:
        as_root = check_late_loads(fd, str(jail), paths, {})
        as_nobody = check_late_loads(fd, str(jail), paths, {}, user=NOBODY)
    finally:
        os.close(fd)
    assert "CC300" not in {f.check for f in as_root.findings}
    (f,) = [f for f in as_nobody.findings if f.check == "CC300"]
    assert "cannot be reached in the jail: nobody (65534:65534) cannot read it" in f.message
    os.chmod(inside, 0o644)
    fd = open_jail(str(jail))
    try:
        readable = check_late_loads(fd, str(jail), paths, {}, user=NOBODY)
    finally:
        os.close(fd)
    assert "CC300" not in {f.check for f in readable.findings}


def test_a_units_softhsm2_conf_finds_the_token_store(tmp_path: Path) -> None:
    """A unit's Environment= gives OPENSSL_CONF (an engine with a SoftHSM2 module) and
    SOFTHSM2_CONF (its token store): the late loads follow both."""
    host = tmp_path / "host"
    host.mkdir()
    module = host / "libsofthsm2.so"
    module.write_bytes(b"\x7fELF")
    tokens = host / "tokens"
    (tokens / "tok").mkdir(parents=True)
    (tokens / "tok" / "generation").write_bytes(b"1")
    softhsm_conf = host / "softhsm2.conf"
    softhsm_conf.write_text(f"directories.tokendir = {tokens}\n")
    cnf = host / "openssl.cnf"
    cnf.write_text(
        "openssl_conf = init\n[init]\nengines = engines\n[engines]\npkcs11 = p11\n"
        f"[p11]\nengine_id = pkcs11\nMODULE_PATH = {module}\ninit = 0\n"
    )
    unit = tmp_path / "hsm.service"
    unit.write_text(
        f"[Service]\nExecStart=/usr/bin/stunnel4\nEnvironment=OPENSSL_CONF={cnf}\n"
        f'Environment="SOFTHSM2_CONF={softhsm_conf}"\n'
    )
    jail = tmp_path / "jail"
    jail.mkdir()
    r = run_cli("scan", str(jail), "--unit", str(unit), "--no-probe", "--format", "json")
    assert r.code == 1, r
    found = {f["check"]: f for f in json.loads(r.stdout)["jails"][0]["findings"]}
    assert found["CC210"]["details"]["config"] == str(softhsm_conf)
    assert found["CC210"]["details"]["tokendir"] == str(tokens)
    assert found["CC304"]["path"] == str(module)


@pytest.mark.root
def test_a_module_the_host_lacks_is_a_config_error_not_a_trust_one(tmp_path: Path) -> None:
    jail = good_jail(tmp_path / "jail")
    missing = tmp_path / "nowhere" / "libsofthsm2.so"
    r = run_cli(
        "scan", str(jail), "--key", "pkcs11:object=k", "--engine-ctrl", f"MODULE_PATH:{missing}",
        "--scenario", "as-is", "--no-triggers", "--no-late-loads", "--format", "json",
        timeout=120,
    )  # fmt: skip
    assert r.code == 0, r  # CC221 is a warning
    found = {f["check"]: f for f in json.loads(r.stdout)["jails"][0]["findings"]}
    assert "CC222" not in found
    assert "which the host does not have" in found["CC221"]["message"]


# -- the late-load probe without root ------------------------------------------------------


@pytest.mark.root
def test_the_late_load_probe_is_skipped_without_root(as_nobody) -> None:
    # It chroots and drops to the service user as the daemon does: only root can. As nobody
    # its checks are skipped with the reason, in every format, never passed.
    base, run = as_nobody
    jail = good_jail(base / "jail")
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
    key = ("--key", f"pkcs11:object=k;pin-value={PIN}", "--engine-ctrl", f"PIN:{PIN}")
    reason = "not run: needs root (it chroots as the daemon does)"
    ids = [c.id for c in catalogue.in_stage(catalogue.Stage.LATE_LOAD_PROBE)]
    assert ids
    out = base / "out"
    out.mkdir()
    os.chown(out, 65534, 65534)
    json_out, junit_out = out / "scan.json", out / "scan.xml"
    r = run(
        "scan", str(jail), *key, "--scenario", "as-is", "--no-triggers",
        "--format", f"json={json_out}", "--format", f"junit={junit_out}",
    )  # fmt: skip
    assert r.code in (0, 1) and "Traceback" not in r.stderr, r
    assert PIN not in r.stdout + r.stderr + json_out.read_text() + junit_out.read_text()
    (j,) = json.loads(json_out.read_text())["jails"]
    skips = [n for n in j["notices"] if n["topic"] == "late-load-probe"]
    assert [(n["kind"], n["message"]) for n in skips] == [("skipped", reason)], j["notices"]
    assert not any(f["check"] in ids for f in j["findings"])
    cases = {c.get("classname"): c for c in ET.fromstring(junit_out.read_text()).iter("testcase")}
    for check_id in ids:
        skipped = cases[f"chrootcheck.{check_id}"].find("skipped")
        assert skipped is not None, check_id
        assert reason in (skipped.get("message") or ""), ET.tostring(skipped)
