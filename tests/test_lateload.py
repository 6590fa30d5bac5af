"""Late-loaded files against real jails: a compiled engine, a provider module, a PKCS#11 module."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chrootcheck.jail import fs as jailfs
from chrootcheck.lateload.check import (
    LateLoadResult,
    LoadTime,
    OpenSSLPaths,
    Presence,
    check_late_loads,
)
from chrootcheck.report.model import Severity

ENGINE_C = r"""
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/engine.h>

static int bind_fn(ENGINE * e, const char *id)
{
  if (!ENGINE_set_id(e, "simple") ||
      !ENGINE_set_name(e, "simple engine")) {
    return 0;
  } else {
    return 1;
  }
}

IMPLEMENT_DYNAMIC_CHECK_FN();
IMPLEMENT_DYNAMIC_BIND_FN(bind_fn);
"""


@pytest.fixture(scope="session")
def engine_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The origin story's minimal engine, compiled with the system compiler and headers."""
    d = tmp_path_factory.mktemp("engine")
    (d / "simple_engine.c").write_text(ENGINE_C)
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "a C compiler is needed to build the test engine"
    subprocess.run(
        [cc, "-c", "-fpic", "-Wno-deprecated-declarations", "simple_engine.c"],
        cwd=d,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [cc, "-shared", "-o", "simple_engine.so", "simple_engine.o"],
        cwd=d,
        check=True,
        capture_output=True,
    )
    return d / "simple_engine.so"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    h = tmp_path / "host"
    h.mkdir()
    return h


@pytest.fixture
def root_fd(jail: Path) -> Iterator[int]:
    fd = jailfs.open_jail(str(jail))
    yield fd
    os.close(fd)


def place(jail: Path, host_file: Path) -> Path:
    """Copy a host file into the jail at the same path (what a careful admin does)."""
    target = jail / str(host_file).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if host_file.is_dir():
        target.mkdir(exist_ok=True)
    else:
        shutil.copy2(host_file, target)
    return target


def run(root_fd: int, jail: Path, cnf: Path, **paths: str) -> LateLoadResult:
    p = OpenSSLPaths(
        openssldir=str(cnf.parent),
        enginesdir=paths.get("enginesdir"),
        modulesdir=paths.get("modulesdir"),
    )
    return check_late_loads(root_fd, str(jail), p, {"OPENSSL_CONF": str(cnf)})


def by_check(res: LateLoadResult, check: str) -> list[str]:
    return [f.path for f in res.findings if f.check == check]


def engine_cnf(host: Path, engine: Path) -> Path:
    cnf = host / "openssl.cnf"
    cnf.write_text(f"""\
openssl_conf            = openssl_def

[openssl_def]
engines = engine_section

[engine_section]
simple = simple_section

[simple_section]
engine_id = simple
dynamic_path = {engine}
init = 0

[req]
distinguished_name = req_distinguished_name

[req_distinguished_name]
""")
    return cnf


def test_engine_config_is_real(host: Path, engine_so: Path) -> None:
    # The same config makes the real openssl CLI load the compiled engine: the test config is
    # one OpenSSL accepts, not one only our parser understands.
    cnf = engine_cnf(host, engine_so)
    out = subprocess.run(
        ["openssl", "engine"],
        env={**os.environ, "OPENSSL_CONF": str(cnf)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "(simple) simple engine" in out


def test_engine_missing_in_jail(host: Path, jail: Path, root_fd: int, engine_so: Path) -> None:
    cnf = engine_cnf(host, engine_so)
    place(jail, cnf)
    res = run(root_fd, jail, cnf)
    [f] = [f for f in res.findings if f.check == "CC302"]
    assert f.path == str(engine_so)
    assert f.severity is Severity.ERROR
    assert f"mkdir -p {jail}{engine_so.parent}" in f.remediation
    assert f"cp -pL {engine_so} {jail}{engine_so}" in f.remediation
    assert f.details["when"] == LoadTime.WITH_CONFIG.value
    assert "simple_section" in f.message


def test_engine_present_in_jail(host: Path, jail: Path, root_fd: int, engine_so: Path) -> None:
    cnf = engine_cnf(host, engine_so)
    place(jail, cnf)
    place(jail, engine_so)
    res = run(root_fd, jail, cnf)
    assert by_check(res, "CC302") == []
    assert by_check(res, "CC300") == []
    [eng] = [f for f in res.files if f.role == "engine"]
    assert eng.in_jail is Presence.PRESENT


def test_engine_symlink_out_of_jail_is_not_followed(
    host: Path, jail: Path, root_fd: int, engine_so: Path
) -> None:
    # An absolute link inside the jail resolves against the jail root, never the host's.
    cnf = engine_cnf(host, engine_so)
    place(jail, cnf)
    target = jail / str(engine_so).lstrip("/")
    target.parent.mkdir(parents=True)
    target.symlink_to(engine_so)  # names the host path; inside the jail that path is this link
    res = run(root_fd, jail, cnf)
    [eng] = [f for f in res.files if f.role == "engine"]
    assert eng.in_jail is Presence.UNREACHABLE  # a link to itself: ELOOP inside the jail
    assert by_check(res, "CC302") == [str(engine_so)]


def test_engine_from_enginesdir(host: Path, jail: Path, root_fd: int, engine_so: Path) -> None:
    # No dynamic_path: ENGINE_by_id loads ENGINESDIR/<id>.so.
    enginesdir = host / "engines-3"
    enginesdir.mkdir()
    shutil.copy(engine_so, enginesdir / "simple.so")
    cnf = host / "openssl.cnf"
    cnf.write_text("openssl_conf = i\n[i]\nengines = e\n[e]\nsimple = s\n[s]\ninit = 0\n")
    place(jail, cnf)
    res = run(root_fd, jail, cnf, enginesdir=str(enginesdir))
    assert by_check(res, "CC302") == [str(enginesdir / "simple.so")]
    assert by_check(res, "CC306") == [str(enginesdir)]
    place(jail, enginesdir)
    place(jail, enginesdir / "simple.so")
    res = run(root_fd, jail, cnf, enginesdir=str(enginesdir))
    assert by_check(res, "CC302") == []
    assert by_check(res, "CC306") == []


def provider_cnf(host: Path, module: str, activate: bool = True) -> Path:
    cnf = host / "openssl.cnf"
    cnf.write_text(f"""\
openssl_conf = openssl_init

[openssl_init]
providers = provider_sect

[provider_sect]
default = default_sect
hsm = hsm_sect

[default_sect]
activate = 1

[hsm_sect]
module = {module}
{"activate = 1" if activate else "# activate = 1"}
""")
    return cnf


def test_provider_missing_and_present(
    host: Path, jail: Path, root_fd: int, engine_so: Path
) -> None:
    module = host / "x.so"
    shutil.copy(engine_so, module)
    cnf = provider_cnf(host, str(module))
    place(jail, cnf)
    res = run(root_fd, jail, cnf)
    [f] = [f for f in res.findings if f.check == "CC303"]
    assert (f.path, f.severity) == (str(module), Severity.ERROR)
    assert "hsm_sect" in f.message
    place(jail, module)
    assert by_check(run(root_fd, jail, cnf), "CC303") == []


def test_provider_not_activated_is_info(
    host: Path, jail: Path, root_fd: int, engine_so: Path
) -> None:
    module = host / "x.so"
    shutil.copy(engine_so, module)
    cnf = provider_cnf(host, str(module), activate=False)
    place(jail, cnf)
    [f] = [f for f in run(root_fd, jail, cnf).findings if f.check == "CC303"]
    assert f.severity is Severity.INFO


def test_provider_relative_module_uses_modulesdir(host: Path, jail: Path, root_fd: int) -> None:
    modulesdir = host / "ossl-modules"
    modulesdir.mkdir()
    (modulesdir / "legacy.so").write_bytes(b"\x7fELF")
    cnf = host / "openssl.cnf"
    cnf.write_text(
        "openssl_conf = i\n[i]\nproviders = p\n[p]\nlegacy = l\ndefault = d\n"
        "[l]\nactivate = 1\n[d]\nactivate = 1\n"
    )
    place(jail, cnf)
    res = run(root_fd, jail, cnf, modulesdir=str(modulesdir))
    # legacy comes from MODULESDIR; default is built in and names no file.
    assert by_check(res, "CC303") == [str(modulesdir / "legacy.so")]
    assert by_check(res, "CC307") == [str(modulesdir)]


def pkcs11_cnf(host: Path, engine: Path, module: Path) -> Path:
    cnf = host / "openssl.cnf"
    cnf.write_text(f"""\
openssl_conf = openssl_init

[openssl_init]
engines = engine_section

[engine_section]
pkcs11 = pkcs11_section

[pkcs11_section]
engine_id = pkcs11
dynamic_path = {engine}
MODULE_PATH = {module}
init = 0
""")
    return cnf


def test_pkcs11_module_path(host: Path, jail: Path, root_fd: int, engine_so: Path) -> None:
    engine = host / "pkcs11.so"
    module = host / "libsofthsm2.so"
    shutil.copy(engine_so, engine)
    shutil.copy(engine_so, module)
    cnf = pkcs11_cnf(host, engine, module)
    place(jail, cnf)
    place(jail, engine)
    res = run(root_fd, jail, cnf)
    [f] = [f for f in res.findings if f.check == "CC304"]
    assert (f.path, f.severity) == (str(module), Severity.ERROR)
    # libp11 loads the module at the first key operation: late even with an early config.
    assert f.details["when"] == LoadTime.FIRST_USE.value
    assert any("first use" in n.message and str(module) in n.message for n in res.notices)
    place(jail, module)
    assert by_check(run(root_fd, jail, cnf), "CC304") == []


def test_pkcs11_module_missing_on_host_too(
    host: Path, jail: Path, root_fd: int, engine_so: Path
) -> None:
    engine = host / "pkcs11.so"
    shutil.copy(engine_so, engine)
    cnf = pkcs11_cnf(host, engine, host / "nowhere.so")
    res = run(root_fd, jail, cnf)
    assert by_check(res, "CC311") == [str(host / "nowhere.so")]
    assert by_check(res, "CC304") == []


def test_config_missing_in_jail(host: Path, jail: Path, root_fd: int, engine_so: Path) -> None:
    cnf = engine_cnf(host, engine_so)
    [f] = [f for f in run(root_fd, jail, cnf).findings if f.check == "CC300"]
    assert (f.path, f.severity) == (str(cnf), Severity.WARNING)
    # A config that loads nothing: missing it loses little.
    cnf.write_text("[req]\ndistinguished_name = dn\n[dn]\n")
    [f] = [f for f in run(root_fd, jail, cnf).findings if f.check == "CC300"]
    assert f.severity is Severity.INFO
    place(jail, cnf)
    assert by_check(run(root_fd, jail, cnf), "CC300") == []


def test_includes_missing_in_jail(host: Path, jail: Path, root_fd: int) -> None:
    inc = host / "inc.cnf"
    inc.write_text("[random]\nseed = JITTER\n")
    folder = host / "conf.d"
    folder.mkdir()
    (folder / "10-a.cnf").write_text("x = 1\n")
    (folder / "README").write_text("not a config\n")
    cnf = host / "openssl.cnf"
    cnf.write_text(f"openssl_conf = i\n.include {inc}\n.include = {folder}\n[i]\nrandom = random\n")
    place(jail, cnf)
    res = run(root_fd, jail, cnf)
    expected = [str(inc), str(folder), str(folder / "10-a.cnf")]
    assert sorted(by_check(res, "CC301")) == sorted(expected)
    assert str(folder / "README") not in [f.path for f in res.files]
    place(jail, inc)
    place(jail, folder)
    place(jail, folder / "10-a.cnf")
    assert by_check(run(root_fd, jail, cnf), "CC301") == []


def test_random_jitter_policy(host: Path, jail: Path, root_fd: int) -> None:
    cnf = host / "openssl.cnf"
    cnf.write_text(
        "openssl_conf = init\n[init]\nrandom = rand_sect\n[rand_sect]\n"
        "random = CTR-DRBG\nseed = JITTER\n"
    )
    place(jail, cnf)
    res = run(root_fd, jail, cnf)
    assert res.policy.urandom_needed is False
    assert res.policy.seed == "JITTER"
    assert "enable-jitter" in (res.policy.condition or "")
    [f] = [f for f in res.findings if f.check == "CC310"]
    assert "/dev/urandom not needed" in f.message


def test_random_drbg_type_keeps_urandom(host: Path, jail: Path, root_fd: int) -> None:
    cnf = host / "openssl.cnf"
    cnf.write_text("openssl_conf = init\n[init]\nrandom = r\n[r]\nrandom = HASH-DRBG\n")
    res = run(root_fd, jail, cnf)
    assert res.policy.urandom_needed is True
    assert res.policy.drbg == "HASH-DRBG"


def test_random_provider_depends(host: Path, jail: Path, root_fd: int) -> None:
    cnf = host / "openssl.cnf"
    cnf.write_text("openssl_conf = init\n[init]\nrandom = r\n[r]\nrandom_provider = hwrng\n")
    assert run(root_fd, jail, cnf).policy.urandom_needed is None


def test_no_random_section(host: Path, jail: Path, root_fd: int, engine_so: Path) -> None:
    res = run(root_fd, jail, engine_cnf(host, engine_so))
    assert res.policy.urandom_needed is True
    assert by_check(res, "CC310") == []


def test_syntax_error_reported(host: Path, jail: Path, root_fd: int) -> None:
    cnf = host / "openssl.cnf"
    cnf.write_text("openssl_conf = init\n[init]\n[broken\nthis is not a setting\n")
    res = run(root_fd, jail, cnf)
    lines = sorted(f.details["line"] for f in res.findings if f.check == "CC308")
    assert lines == [3, 4]
    # openssl_conf naming a section that is not there is reported at its own line.
    cnf.write_text("openssl_conf = nowhere\n")
    [f] = [f for f in run(root_fd, jail, cnf).findings if f.check == "CC308"]
    assert f.details["line"] == 1 and "nowhere" in f.message


def test_host_config_absent_is_quiet(host: Path, jail: Path, root_fd: int) -> None:
    res = run(root_fd, jail, host / "openssl.cnf")
    assert res.findings == []
    assert res.policy.urandom_needed is True


def test_default_paths_match_the_openssl_cli() -> None:
    # The system libcrypto (Python's) and the openssl CLI are the same build here. Asked in a
    # subprocess: gather_info touches the DRBG of the process that loads libcrypto.
    import json
    import sys

    def version(flag: str) -> str:
        out = subprocess.run(
            ["openssl", "version", flag], capture_output=True, text=True, check=True
        ).stdout
        return out.split('"')[1]

    code = (
        "import json; from chrootcheck.lateload.check import default_paths; "
        "p = default_paths(); "
        "print(json.dumps([p.openssldir, p.enginesdir, p.modulesdir]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    ).stdout
    assert json.loads(out) == [version("-d"), version("-e"), version("-m")]


def test_check_jail_by_path(host: Path, jail: Path, engine_so: Path) -> None:
    from chrootcheck.lateload.check import check_jail

    cnf = engine_cnf(host, engine_so)
    res = check_jail(str(jail), OpenSSLPaths(str(host)), {"OPENSSL_CONF": str(cnf)})
    assert by_check(res, "CC302") == [str(engine_so)]
    assert res.config == str(cnf)


def test_p11kit_module_configs(tmp_path: Path) -> None:
    # p11-kit-proxy's module configs, as Debian's softhsm2 package ships its .module file.
    from chrootcheck.lateload.check import _p11kit_items

    proxy = tmp_path / "usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"
    proxy.parent.mkdir(parents=True)
    proxy.write_bytes(b"\x7fELF")
    mods = tmp_path / "usr/share/p11-kit/modules"
    mods.mkdir(parents=True)
    (mods / "softhsm2.module").write_text("module: libsofthsm2.so\n")
    (mods / "opensc.module").write_text(
        "# a comment\nmodule: /usr/lib/opensc-pkcs11.so\ncritical: no\n"
    )
    os.mkfifo(mods / "fifo.module")  # must not block the scan
    items = {(i.role, i.path) for i in _p11kit_items(str(tmp_path))}
    assert ("pkcs11-module", str(proxy)) in items
    assert ("p11-kit-config", str(mods / "softhsm2.module")) in items
    assert ("p11-kit-module", str(proxy.parent / "pkcs11/libsofthsm2.so")) in items
    assert ("p11-kit-module", "/usr/lib/opensc-pkcs11.so") in items
    assert all(i.when is LoadTime.FIRST_USE for i in _p11kit_items(str(tmp_path)))
