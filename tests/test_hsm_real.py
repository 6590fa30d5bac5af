"""The HSM case of the origin story, measured (issue 16): a real chrooting stunnel 5.68 signing
with an RSA key held in a real SoftHSM2 token through libp11's pkcs11 engine (Debian packages
stunnel4, softhsm2, libengine-pkcs11-openssl, opensc for pkcs11-tool; installed on demand).

One token for the module (``hsm``); per jail, the daemon's real handshakes on loopback against
what ``chrootcheck scan --daemon-config`` says: the late-load probe's verdict (CC220) and the
module-state findings (CC210 token store missing, CC211 unreadable for the user), and the
engine and module stunnel loads before its chroot at info, not error.

Measured here (OpenSSL 3.0, stunnel 5.68, libp11 0.4.12, SoftHSM 2.6.1): without the token
store, or with Debian's root:softhsm 2770 store and a user outside the group, every handshake
fails ('error:42000082:PKCS#11 module::Object handle invalid', '0A080006 EVP lib') while
stunnel logs 'Configuration successful'; with only the token store, or a complete jail, every
handshake works.

haproxy (Debian's 2.6, no engine support) under strace: its OPENSSL_CONF, providers and crt
files are opened before its chroot and nothing after it, handshakes included; ssl-engine and a
crt given as a pkcs11: URI stop it at start.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from chrootcheck.formats import Format
from tests.conftest import good_jail, open_up, run_cli, stop_daemon
from tests.debian import install, tool
from tests.realdaemons import free_port, wait_listening

PIN = "pin-Zq8xW"  # distinctive: asserted absent from every output
SO_PIN = "so-Zq8xW-1"
KEY_URI = "pkcs11:token=cc;object=k;type=private"
HANDSHAKES = 2


@dataclass(frozen=True)
class Hsm:
    base: Path
    conf: Path  # SOFTHSM2_CONF
    tokens: Path  # directories.tokendir
    module: str  # libsofthsm2.so
    engine: str  # libp11's pkcs11.so
    cert: Path  # a certificate for the token's key
    stunnel: str

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}


def _engine_file(openssl: str) -> str:
    out = subprocess.run([openssl, "version", "-e"], capture_output=True, text=True, check=True)
    folder = out.stdout.split('"')[1]
    return os.path.join(folder, "pkcs11.so")


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Hsm:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    softhsm_util = tool("softhsm2-util", "softhsm2")
    pkcs11_tool = tool("pkcs11-tool", "opensc")
    stunnel = tool("stunnel4")
    openssl = tool("openssl")
    engine = _engine_file(openssl)
    if not os.path.exists(engine):
        why = install("libengine-pkcs11-openssl")
        if not os.path.exists(engine):
            reason = why or f"libengine-pkcs11-openssl installed, but no {engine}"
            if os.environ.get("CI"):
                pytest.fail(f"the pkcs11 engine is needed: {reason}")
            pytest.skip(reason)
    modules = sorted(glob.glob("/usr/lib/*/softhsm/libsofthsm2.so")) or [
        "/usr/lib/softhsm/libsofthsm2.so"
    ]
    module = modules[0]
    base = tmp_path_factory.mktemp("hsm")
    open_up(base)
    tokens = base / "tokens"
    tokens.mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}

    def run(*cmd: str, extra: dict[str, str] | None = None) -> None:
        subprocess.run(
            cmd, env={**env, **(extra or {})}, check=True, capture_output=True, timeout=120
        )

    run(softhsm_util, "--init-token", "--free", "--label", "cc", "--so-pin", SO_PIN, "--pin", PIN)
    run(pkcs11_tool, "--module", module, "--login", "--pin", PIN, "--keypairgen",
        "--key-type", "rsa:2048", "--id", "01", "--label", "k")  # fmt: skip
    req_cnf = base / "req.cnf"
    req_cnf.write_text(
        "openssl_conf = init\n[init]\nengines = engines\n[engines]\npkcs11 = p11\n"
        f"[p11]\nengine_id = pkcs11\ndynamic_path = {engine}\nMODULE_PATH = {module}\n"
        "[req]\ndistinguished_name = dn\n[dn]\n"
    )
    cert = base / "cert.pem"
    run(openssl, "req", "-x509", "-engine", "pkcs11", "-keyform", "engine",
        "-key", f"{KEY_URI};pin-value={PIN}", "-subj", "/CN=localhost", "-days", "2",
        "-out", str(cert), extra={"OPENSSL_CONF": str(req_cnf)})  # fmt: skip
    # The daemon's user reads the token after its chroot: the store is the user's (as Debian's
    # is the softhsm group's); each jail copies or binds it.
    for p in [tokens, *tokens.rglob("*")]:
        os.chown(p, 65534, -1)
    return Hsm(base, conf, tokens, module, engine, cert, stunnel)


# -- the jails ----------------------------------------------------------------------------


def _copy_store(jail: Path, hsm: Hsm) -> Path:
    dest = jail / str(hsm.tokens).lstrip("/")
    shutil.copytree(hsm.tokens, dest, symlinks=True)
    for p in [dest, *dest.rglob("*")]:
        os.chown(p, 65534, -1)
    return dest


def _copy_file(jail: Path, path: str) -> None:
    real = os.path.realpath(path)
    for p in dict.fromkeys([path, real]):
        dest = jail / p.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copy2(real, dest)


def _copy_with_libraries(jail: Path, path: str) -> None:
    _copy_file(jail, path)
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    for lib in re.findall(r"(/\S+)", out):
        if os.path.exists(lib):
            _copy_file(jail, lib)


def make_jail(kind: str, tmp_path: Path, hsm: Hsm) -> Path:
    jail = good_jail(tmp_path / kind)  # the random devices: only the HSM is at stake here
    open_up(jail)
    if kind in ("only-store", "complete"):
        _copy_store(jail, hsm)
    elif kind == "unreadable":
        # Debian's /var/lib/softhsm/tokens: root:softhsm 2770; nobody is not in the group.
        store = _copy_store(jail, hsm)
        gid = 994
        try:
            import grp

            gid = grp.getgrnam("softhsm").gr_gid
        except KeyError:
            pass
        for p in [store, *store.rglob("*")]:
            os.chown(p, 0, gid)
        os.chmod(store, 0o2770)
    if kind == "complete":
        _copy_with_libraries(jail, hsm.engine)
        _copy_with_libraries(jail, hsm.module)
        _copy_file(jail, str(hsm.conf))
    return jail


# -- the real daemon ----------------------------------------------------------------------


def stunnel_conf(tmp_path: Path, jail: Path, hsm: Hsm, port: int) -> Path:
    conf = tmp_path / f"{jail.name}.conf"
    conf.write_text(
        f"foreground = yes\npid =\ndebug = 5\nchroot = {jail}\nsetuid = nobody\n"
        f"setgid = nogroup\nengine = pkcs11\nengineCtrl = MODULE_PATH:{hsm.module}\n"
        f"engineCtrl = PIN:{PIN}\n[tls]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:9\n"
        f"engineId = pkcs11\nkey = {KEY_URI}\ncert = {hsm.cert}\n"
    )
    return conf


def handshakes(tmp_path: Path, jail: Path, hsm: Hsm) -> tuple[list[bool], str, Path]:
    """Start the real stunnel for ``jail``, make HANDSHAKES TLS handshakes (bounded), stop it:
    which worked, its log, and its config."""
    port = free_port()
    conf = stunnel_conf(tmp_path, jail, hsm, port)
    log = tmp_path / f"{jail.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [hsm.stunnel, str(conf)], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **hsm.env},
        )  # fmt: skip
    results = []
    try:
        wait_listening(port, proc, log, "stunnel")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        for _ in range(HANDSHAKES):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                    with ctx.wrap_socket(raw):
                        results.append(True)
            except (OSError, ssl.SSLError):
                results.append(False)
    finally:
        stop_daemon(proc)
    return results, log.read_text(errors="replace"), conf


def scan(conf: Path, hsm: Hsm, *extra: str) -> tuple[int, dict[str, list[dict[str, object]]]]:
    r = run_cli(
        "scan", "--daemon-config", str(conf), "--scenario", "as-is", "--no-triggers",
        "--format", "json", *extra, env=hsm.env, timeout=120,
    )  # fmt: skip
    assert r.code in (0, 1), r
    jail = json.loads(r.stdout)["jails"][0]
    by_check: dict[str, list[dict[str, object]]] = {}
    for f in jail["findings"]:
        by_check.setdefault(f["check"], []).append(f)
    by_check["notices"] = jail["notices"]
    return r.code, by_check


# jail kind -> (handshakes work, the static finding that explains it)
CASES = {
    "missing": (False, "CC210"),
    "unreadable": (False, "CC211"),
    "only-store": (True, None),
    "complete": (True, None),
}


@pytest.mark.root
@pytest.mark.parametrize("kind", list(CASES))
def test_the_probe_agrees_with_the_real_handshakes(kind: str, tmp_path: Path, hsm: Hsm) -> None:
    works, static = CASES[kind]
    jail = make_jail(kind, tmp_path, hsm)
    done, log, conf = handshakes(tmp_path, jail, hsm)
    assert "Configuration successful" in log, log[-3000:]
    assert done == [works] * HANDSHAKES, (done, log[-3000:])
    if not works:  # what the log shows
        assert "PKCS#11 module::Object handle invalid" in log
        assert "0A080006" in log

    code, found = scan(conf, hsm)
    verdict = found.get("CC220", [])
    assert bool(verdict) is (not works), found
    if not works:
        message = str(verdict[0]["message"])
        assert "Object handle invalid" in message and "nobody" in message, message
        assert verdict[0]["severity"] == "error"
    else:
        notes = [n for n in found["notices"] if n["topic"] == "late-load-probe"]
        assert any("signed inside the jail as nobody" in str(n["message"]) for n in notes), notes
    for check in ("CC210", "CC211"):
        assert bool(found.get(check)) is (check == static), (check, found.get(check))
    # The engine and the module stunnel loads before its chroot are never errors for it.
    for check in ("CC302", "CC304"):
        assert all(f["severity"] == "info" for f in found.get(check, [])), found[check]
        assert all(f["details"]["before_chroot"] == "measured" for f in found.get(check, []))
    assert code == (0 if works else 1)
    assert PIN not in json.dumps(found)


@pytest.mark.root
def test_the_remediation_fixes_the_outage(tmp_path: Path, hsm: Hsm) -> None:
    """Bind-mounting the token store read-write at its path, as CC210 says: the probe and the
    real handshakes then agree that it works."""
    jail = make_jail("missing", tmp_path, hsm)
    _, log, conf = handshakes(tmp_path, jail, hsm)
    _, found = scan(conf, hsm)
    remedy = str(found["CC210"][0]["remediation"])
    target = jail / str(hsm.tokens).lstrip("/")
    assert f"mount --bind {hsm.tokens} {target}" in remedy, remedy
    target.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(hsm.tokens), str(target)], check=True)
    try:
        done, log, conf = handshakes(tmp_path, jail, hsm)
        code, found = scan(conf, hsm)
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert done == [True] * HANDSHAKES, log[-3000:]
    assert "CC220" not in found and "CC210" not in found, found
    assert code == 0


@pytest.mark.root
def test_no_pin_in_any_output(tmp_path: Path, hsm: Hsm) -> None:
    jail = make_jail("missing", tmp_path, hsm)
    conf = stunnel_conf(tmp_path, jail, hsm, free_port())
    outs = {f: tmp_path / f"out.{f.value}" for f in Format}
    args = [a for f, p in outs.items() for a in ("--format", f"{f.value}={p}")]
    r = run_cli(
        "scan", "--daemon-config", str(conf), "--scenario", "as-is", "--no-triggers", *args,
        env=hsm.env, timeout=120,
    )  # fmt: skip
    assert r.code == 2, r  # with nagios among the outputs: the plugin convention, CRITICAL
    assert "CRITICAL" in outs[Format.NAGIOS].read_text()
    assert "CC220" in outs[Format.JSON].read_text()
    for f, path in outs.items():
        assert PIN not in path.read_text(), f
    assert PIN not in r.stdout + r.stderr
    # --key with the PIN in the URI and as a control command: hidden too.
    r = run_cli(
        "scan", str(jail), "--user", "nobody", "--key", f"{KEY_URI};pin-value={PIN}",
        "--engine-ctrl", f"MODULE_PATH:{hsm.module}", "--engine-ctrl", f"PIN:{PIN}",
        "--scenario", "as-is", "--no-triggers", "--format", "json", env=hsm.env, timeout=120,
    )  # fmt: skip
    assert r.code == 1, r
    assert "CC220" in r.stdout and "(hidden)" in r.stdout
    assert PIN not in r.stdout + r.stderr


@pytest.mark.root
def test_discover_finds_the_engine_key_in_stunnels_config(tmp_path: Path, hsm: Hsm) -> None:
    """scan --discover: stunnel's engine settings from /etc/stunnel/*.conf reach the late loads
    and the late-load probe, as --daemon-config's do."""
    root = tmp_path / "root"
    jail = make_jail("missing", root, hsm)
    etc = root / "etc" / "stunnel"
    etc.mkdir(parents=True)
    text = stunnel_conf(tmp_path, jail, hsm, 4433).read_text()
    (etc / "hsm.conf").write_text(text.replace(f"chroot = {jail}", f"chroot = /{jail.name}"))
    r = run_cli(
        "scan", "--discover", "--discover-root", str(root), "--scenario", "as-is",
        "--no-triggers", "--format", "json", env=hsm.env, timeout=120,
    )  # fmt: skip
    assert r.code == 1, r
    (report,) = json.loads(r.stdout)["jails"]
    assert report["jail"] == str(jail)
    checks = {f["check"]: f for f in report["findings"]}
    assert "CC220" in checks and "CC210" in checks, sorted(checks)
    assert checks["CC302"]["severity"] == "info"  # stunnel loads its engine before the chroot
    assert PIN not in r.stdout + r.stderr


# -- haproxy: what it loads before its chroot, measured ------------------------------------


def _haproxy_cfg(path: Path, jail: Path, port: int, global_lines: str, crt: str) -> Path:
    path.write_text(
        f"global\n  chroot {jail}\n  user nobody\n  group nogroup\n{global_lines}"
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 1s\n"
        f"frontend tls\n  bind 127.0.0.1:{port} ssl crt {crt}\n"
    )
    return path


def _opens(trace: str) -> tuple[list[str], list[str]]:
    """The paths opened before and after the (first) chroot, from strace -f."""
    before: list[str] = []
    after: list[str] = []
    seen = before
    for line in trace.splitlines():
        if re.search(r"\bchroot\(", line) and line.rstrip().endswith("= 0"):
            seen = after
            continue
        m = re.search(r'\bopenat\([^,]+, "([^"]+)"', line)
        if m and "ENOENT" not in line:
            seen.append(m.group(1))
    return before, after


@pytest.mark.root
def test_haproxy_loads_its_config_provider_and_key_before_its_chroot(
    tmp_path: Path, hsm: Hsm
) -> None:
    """Debian's haproxy (2.6) under strace, with ssl-provider, its own OPENSSL_CONF, a crt
    file, chroot and user nobody, and real handshakes after the chroot: everything is opened
    before the chroot, nothing after. Its build has no engine support (haproxy -vv: -ENGINE):
    ssl-engine is an unknown keyword there and haproxy does not start; nor does it with a crt
    (or key) given as a pkcs11: URI, which it reads as a file name. docs/late-loads.md."""
    haproxy = tool("haproxy")
    strace = tool("strace")
    openssl = tool("openssl")
    vv = subprocess.run([haproxy, "-vv"], capture_output=True, text=True, check=True).stdout
    modules = subprocess.run(
        [openssl, "version", "-m"], capture_output=True, text=True, check=True
    ).stdout.split('"')[1]
    legacy = os.path.join(modules, "legacy.so")
    jail = good_jail(tmp_path / "jail")
    open_up(jail)
    pem = tmp_path / "site.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pem),
         "-out", str(tmp_path / "cert.pem"), "-subj", "/CN=localhost", "-days", "2"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    pem.write_text(pem.read_text() + (tmp_path / "cert.pem").read_text())
    cnf = tmp_path / "haproxy-openssl.cnf"
    cnf.write_text("openssl_conf = init\n[init]\n")
    env = {**os.environ, "OPENSSL_CONF": str(cnf)}
    engine = "+ENGINE" in vv.split()
    port = free_port()
    lines = "  ssl-provider legacy\n  ssl-provider default\n"
    if engine:  # a build with engine support: its engine is measured the same way
        lines += "  ssl-engine pkcs11\n"
    cfg = _haproxy_cfg(tmp_path / "haproxy.cfg", jail, port, lines, str(pem))
    trace = tmp_path / "trace"
    log = tmp_path / "haproxy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [strace, "-f", "-qq", "-o", str(trace), "-e", "trace=openat,chroot",
             haproxy, "-db", "-f", str(cfg)],
            env={**env, **hsm.env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    done = []
    try:
        wait_listening(port, proc, log, "haproxy")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        for _ in range(HANDSHAKES):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as tls:
                    done.append(tls.version())
    finally:
        # strace passes no SIGTERM on: stop haproxy itself (its tracee), then strace ends.
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        for pid in children.read_text().split() if children.exists() else ():
            os.kill(int(pid), signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert len(done) == HANDSHAKES, done
    before, after = _opens(trace.read_text())
    assert str(cnf) in before and legacy in before and str(pem) in before, before
    if engine:
        assert hsm.engine in before, before
    assert after == [], after  # the handshakes read nothing inside the jail
    # The profile says so: the provider missing in the jail is info for haproxy, measured.
    r = run_cli(
        "scan", "--daemon-config", str(cfg), "--no-probe", "--format", "json",
        env={"OPENSSL_CONF": str(cnf)}, timeout=120,
    )  # fmt: skip
    assert r.code in (0, 1), r
    found = json.loads(r.stdout)["jails"][0]["findings"]
    (provider,) = [f for f in found if f["check"] == "CC303" and f["path"] == legacy]
    assert provider["severity"] == "info", provider
    assert provider["details"]["before_chroot"] == "measured"
    assert "haproxy loads it before its chroot (its daemon profile, measured)" in str(
        provider["message"]
    )

    if not engine:  # Debian's build: ssl-engine stops it at start
        bad = _haproxy_cfg(tmp_path / "engine.cfg", jail, port, "  ssl-engine pkcs11\n", str(pem))
        r = subprocess.run([haproxy, "-c", "-f", str(bad)], capture_output=True, text=True)
        assert r.returncode != 0 and "unknown keyword 'ssl-engine'" in r.stdout + r.stderr, r
    # A key in the token, named by its URI: haproxy reads crt as a file name.
    uri = _haproxy_cfg(tmp_path / "uri.cfg", jail, port, "", f"'{KEY_URI}'")
    r = subprocess.run([haproxy, "-c", "-f", str(uri)], capture_output=True, text=True)
    assert r.returncode != 0 and "unable to stat SSL certificate from file" in r.stdout + r.stderr
