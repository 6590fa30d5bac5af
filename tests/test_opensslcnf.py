"""The OpenSSL config parser, on files written the way OpenSSL documents and ships them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from chrootcheck.lateload.opensslcnf import load_modules, parse_file, parse_text

# Debian 12's /usr/lib/ssl/openssl.cnf, the parts that matter (comments as shipped).
DEBIAN_CNF = """\
#
# OpenSSL example configuration file.
# See doc/man5/config.pod for more info.
#

# Note that you can include other files from the main configuration
# file using the .include directive.
#.include filename

# This definition stops the following lines choking if HOME isn't
# defined.
HOME			= .

# Use this in order to automatically load providers.
openssl_conf = openssl_init

[openssl_init]
providers = provider_sect
ssl_conf = ssl_sect

# List of providers to load
[provider_sect]
default = default_sect
# The fips section name should match the section name inside the
# included fipsmodule.cnf.
# fips = fips_sect

[default_sect]
# activate = 1

[ CA_default ]
dir		= ./demoCA		# Where everything is kept
certs		= $dir/certs		# Where the issued certs are kept
private_key	= $dir/private/cakey.pem# The private key

[ssl_sect]
system_default = system_default_sect

[system_default_sect]
MinProtocol = TLSv1.2
CipherString = DEFAULT:@SECLEVEL=2
"""


def test_debian_config() -> None:
    cfg = parse_text(DEBIAN_CNF, "openssl.cnf")
    assert cfg.problems == []
    assert cfg.get(None, "openssl_conf") == "openssl_init"
    # Section names are trimmed; $dir expands within the section; '#' ends the value.
    assert cfg.get("CA_default", "certs") == "./demoCA/certs"
    assert cfg.get("CA_default", "private_key") == "./demoCA/private/cakey.pem"
    # A lookup falls back to the default section, as _CONF_get_string does.
    assert cfg.get("CA_default", "HOME") == "."
    mods = load_modules(cfg)
    assert mods.init_section == "openssl_init"
    [p] = mods.providers
    assert (p.identity, p.module, p.activate) == ("default", None, False)
    assert mods.engines == [] and mods.random is None


def test_expansion_forms() -> None:
    cfg = parse_text(
        "top = T\n[a]\nx = 1\n[b]\n"
        "braces = ${a::x}-$(a::x)-$a::x\n"
        "default = ${top}\n"
        "env = ${ENV::HOME}\n"
        "esc = a\\$b\\tc\n"
        'quoted = "$notexpanded # kept"  # gone\n'
        "single = 'it''s'\n",
        env={"HOME": "/root"},
    )
    assert cfg.problems == []
    assert cfg.get("b", "braces") == "1-1-1"
    assert cfg.get("b", "default") == "T"
    assert cfg.get("b", "env") == "/root"
    assert cfg.get("b", "esc") == "a$b\tc"
    assert cfg.get("b", "quoted") == "$notexpanded # kept"
    assert cfg.get("b", "single") == "its"


def test_undefined_variable_is_a_problem() -> None:
    cfg = parse_text("ok = 1\nbad = $nope\n")
    assert [(p.where.line, "no value" in p.message) for p in cfg.problems] == [(2, True)]
    assert cfg.get(None, "ok") == "1"


def test_dollarid_pragma() -> None:
    cfg = parse_text(".pragma dollarid:on\nx = a$b\ny = 1\nz = ${y}\n")
    assert cfg.problems == []
    assert cfg.get(None, "x") == "a$b"
    assert cfg.get(None, "z") == "1"


def test_continuation_and_last_value_wins() -> None:
    cfg = parse_text("[s]\nk = one \\\n two\nk = three\n")
    assert cfg.get("s", "k") == "three"
    [v] = cfg.section("s") or []
    assert v.where.line == 4


def test_section_prefixed_assignment() -> None:
    cfg = parse_text("[a]\nb::k = v\n")
    assert cfg.get("b", "k") == "v"
    assert cfg.value("a", "k") is None


def test_include_file_folder_and_pragmas(tmp_path: Path) -> None:
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "b.cnf").write_text("[s]\nfrom_dir = 1\n")
    (inc / "a.CONF").write_text("[s]\nupper = 1\n")
    (inc / "skip.txt").write_text("[s]\nskipped = 1\n")
    (tmp_path / "one.cnf").write_text("[s]\nfrom_file = 1\n")
    main = tmp_path / "openssl.cnf"
    main.write_text(
        f".include {tmp_path}/one.cnf\n.include={inc}\n"
        f".pragma includedir:{tmp_path}\n.include one.cnf\n"
        ".include /does/not/exist.cnf\n"
    )
    cfg = parse_file(str(main))
    assert cfg.problems == []
    assert cfg.get("s", "from_file") == cfg.get("s", "from_dir") == cfg.get("s", "upper") == "1"
    assert cfg.get("s", "skipped") is None
    kinds = {(s.path, s.kind, s.exists) for s in cfg.sources}
    assert (str(inc), "include-dir", True) in kinds
    assert ("/does/not/exist.cnf", "include", False) in kinds


def test_abspath_pragma_rejects_relative(tmp_path: Path) -> None:
    main = tmp_path / "openssl.cnf"
    main.write_text(".pragma = abspath:true\n.include rel.cnf\n")
    cfg = parse_file(str(main))
    assert [p.where.line for p in cfg.problems] == [2]


def test_include_env_base(tmp_path: Path) -> None:
    (tmp_path / "x.cnf").write_text("k = v\n")
    main = tmp_path / "m.cnf"
    main.write_text(".include x.cnf\n")
    cfg = parse_file(str(main), {"OPENSSL_CONF_INCLUDE": str(tmp_path)})
    assert cfg.get(None, "k") == "v"


def test_include_loop_terminates(tmp_path: Path) -> None:
    a = tmp_path / "a.cnf"
    a.write_text(f".include {a}\n")
    cfg = parse_file(str(a))
    assert any("nested" in p.message for p in cfg.problems)


def test_fifo_config_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "openssl.cnf"
    os.mkfifo(fifo)
    cfg = parse_file(str(fifo))  # would block forever if opened for reading as a file
    assert cfg.sources[0].error


def test_engines_and_providers_modules() -> None:
    cfg = parse_text("""\
openssl_conf = init
[init]
engines = eng
providers.1 = prov
random = rnd
mymod = my_sect
[eng]
pkcs11 = p11
[p11]
engine_id = pkcs11
dynamic_path = /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
MODULE_PATH = /usr/lib/softhsm/libsofthsm2.so
default_algorithms = RAND
[prov]
fips = fips_sect
pkcs11 = pk_sect
[fips_sect]
module = /usr/lib/ossl-modules/fips.so
activate = 1
[pk_sect]
module = /usr/lib/ossl-modules/pkcs11.so
pkcs11-module-path = /usr/lib/p11-kit-proxy.so
[rnd]
seed = JITTER
[my_sect]
path = /opt/mymod.so
""")
    assert cfg.problems == []
    mods = load_modules(cfg)
    [e] = mods.engines
    assert e.engine_id == "pkcs11" and e.init and e.replaces_rand
    assert e.module_path == "/usr/lib/softhsm/libsofthsm2.so"
    assert [(p.identity, p.activate) for p in mods.providers] == [("fips", True), ("pkcs11", False)]
    assert mods.providers[1].pkcs11_module_path == "/usr/lib/p11-kit-proxy.so"
    assert mods.random is not None and mods.random.settings["seed"] == "JITTER"
    assert [(o.name, o.path) for o in mods.others] == [("mymod", "/opt/mymod.so")]


def test_missing_sections_are_problems() -> None:
    mods = load_modules(parse_text("openssl_conf = init\n[init]\nengines = nowhere\n"))
    assert [p.where.line for p in mods.problems] == [3]


def test_openssl_agrees_on_a_value(tmp_path: Path) -> None:
    # The real openssl CLI reads the same value the same way: quotes, '#', ${sect::var}.
    cnf = tmp_path / "t.cnf"
    cnf.write_text(
        '[a]\nname = "x # y"  # comment\n[req]\ndistinguished_name = dn\n'
        "prompt = no\n[dn]\nCN = ${a::name}-z\n"
    )
    ours = parse_text(cnf.read_text()).get("dn", "CN")
    assert ours == "x # y-z"
    out = subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-x509",
            "-nodes",
            "-config",
            str(cnf),
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            str(tmp_path / "k"),
            "-noout",
            "-subject",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"subject=CN = {ours}"


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("ab[]=$:{}()#\"'\\. \t\n_ENV.includepragma/")), max_size=200
    )
)
def test_never_raises(text: str) -> None:
    cfg = parse_text(text)
    load_modules(cfg)
    for p in cfg.problems:
        assert p.where.line >= 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_on_any_text(text: str) -> None:
    load_modules(parse_text(text))
