"""Jail code never runs as root (issue 9, classes 1 and 8), built like the attack.

A shared object whose constructor appends getuid() to a marker file is compiled here with cc and
planted in a jail as lib/libcrypto.so.3. Every path form that leads to it (direct, ``..``, a
symlink from outside pointing in, the jail named through a symlink, a bind mount of the jail or
of its lib/ folder, a relative path, a folder another user can write) and every command that
could load it: exit 2, one ``chrootcheck: error:`` line, and no marker. With
--allow-jail-libcrypto the constructor runs, but only as an unprivileged uid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chrootcheck.lateload.check import check_jail
from chrootcheck.openssl import library
from chrootcheck.openssl.trust import check_library, jail_roots
from chrootcheck.probe import ProbeOptions, Verdict, run_probe
from chrootcheck.report.errors import ToolError
from tests.conftest import Result, good_jail, run_cli
from tests.debian import tool
from tests.openssl_builds import Build
from tests.probe_helpers import verdicts

Cli = Callable[..., Result]

PLANTED_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "a");
    if (f) { fprintf(f, "%d\n", (int)getuid()); fclose(f); }
}
"""


@pytest.fixture
def marker() -> Iterator[Path]:
    """Where the planted constructor writes. Its folder is writable by every user, so an
    unprivileged uid can leave the marker too; outside tmp_path, whose parents are root's."""
    base = Path(tempfile.mkdtemp(prefix="chrootcheck-marker-"))
    os.chmod(base, 0o777)
    (base / "ran").touch()
    os.chmod(base / "ran", 0o666)  # whichever uid runs the constructor can append
    try:
        yield base / "ran"
    finally:
        shutil.rmtree(base)


def compile_so(out: Path, marker: Path, source: str = PLANTED_C, *flags: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    cc = tool("cc", "gcc")
    cmd = [cc, "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(out), str(src), *flags]
    subprocess.run(cmd, check=True, capture_output=True)
    src.unlink()
    os.chmod(out, 0o755)
    return out


@pytest.fixture
def planted(tmp_path: Path, marker: Path) -> Path:
    """A jail with a planted lib/libcrypto.so.3; returns the jail."""
    jail = tmp_path / "jail"
    (jail / "lib").mkdir(parents=True)
    (jail / "dev").mkdir()
    compile_so(jail / "lib" / "libcrypto.so.3", marker)
    return jail


def ran(marker: Path) -> list[int]:
    """The uids the planted constructor ran as (empty: it never ran)."""
    return [int(x) for x in marker.read_text().split()]


def one_error(r: Result) -> str:
    """Exit 2 and exactly one line on stderr, a chrootcheck error."""
    assert r.code == 2, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r
    assert lines[0].startswith("chrootcheck: error: "), r
    assert "Traceback" not in r.stderr
    return lines[0]


# -- the path forms: (jail argument, --libcrypto argument), built in tmp_path ---------------


def _direct(tmp: Path, jail: Path) -> tuple[str, str]:
    return str(jail), str(jail / "lib" / "libcrypto.so.3")


def _dotdot(tmp: Path, jail: Path) -> tuple[str, str]:
    (tmp / "elsewhere").mkdir()
    return str(jail), str(tmp / "elsewhere" / ".." / "jail" / "lib" / ".." / "lib/libcrypto.so.3")


def _link_to_file(tmp: Path, jail: Path) -> tuple[str, str]:
    (tmp / "app.so").symlink_to(jail / "lib" / "libcrypto.so.3")
    return str(jail), str(tmp / "app.so")


def _link_to_folder(tmp: Path, jail: Path) -> tuple[str, str]:
    (tmp / "libs").symlink_to("jail/lib")  # relative: resolved from tmp
    return str(jail), str(tmp / "libs" / "libcrypto.so.3")


def _jail_through_link(tmp: Path, jail: Path) -> tuple[str, str]:
    (tmp / "jail-link").symlink_to(jail)
    return str(tmp / "jail-link"), str(jail / "lib" / "libcrypto.so.3")


def _relative(tmp: Path, jail: Path) -> tuple[str, str]:
    return str(jail), os.path.relpath(jail / "lib" / "libcrypto.so.3")


PATH_FORMS = [_direct, _dotdot, _link_to_file, _link_to_folder, _jail_through_link, _relative]
SCAN_MODES = [(), ("--no-probe",), ("--no-late-loads",), ("--no-probe", "--no-late-loads")]


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Callable[[Path, Path], Path]]:
    """Real bind mounts, unmounted after the test."""
    done: list[Path] = []

    def mount(source: Path, where: Path) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(source), str(where)], check=True)
        done.append(where)
        return where

    yield mount
    for where in reversed(done):
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


@pytest.mark.root
@pytest.mark.parametrize("mode", SCAN_MODES, ids=lambda m: " ".join(m) or "all-stages")
@pytest.mark.parametrize("form", PATH_FORMS, ids=lambda f: f.__name__.strip("_"))
def test_scan_refuses_the_jail_library_in_every_form(
    planted: Path,
    tmp_path: Path,
    marker: Path,
    form: Callable[[Path, Path], tuple[str, str]],
    mode: tuple[str, ...],
) -> None:
    jail_arg, lib_arg = form(tmp_path, planted)
    r = run_cli("scan", jail_arg, "--libcrypto", lib_arg, *mode)
    line = one_error(r)
    assert "refusing to load" in line and "inside the jail" in line
    assert "--allow-jail-libcrypto" in line
    assert r.stdout == ""  # refused before any stage: no half report
    assert ran(marker) == []


@pytest.mark.root
@pytest.mark.parametrize("what", ["jail", "lib-folder"])
def test_scan_refuses_it_through_a_bind_mount(
    planted: Path, tmp_path: Path, marker: Path, bind: Callable[[Path, Path], Path], what: str
) -> None:
    # The jail (or only its lib/ folder) mounted elsewhere: the library's ancestors there are
    # not the jail's; the file's path within the file system says it is in the jail.
    if what == "jail":
        lib = bind(planted, tmp_path / "mnt") / "lib" / "libcrypto.so.3"
    else:
        lib = bind(planted / "lib", tmp_path / "mnt") / "libcrypto.so.3"
    for mode in SCAN_MODES:
        line = one_error(run_cli("scan", str(planted), "--libcrypto", str(lib), *mode))
        assert "inside the jail" in line
    # The other way round: the jail named through its bind mount, the library by its path.
    if what == "jail":
        line = one_error(
            run_cli(
                "scan", str(tmp_path / "mnt"), "--libcrypto", str(planted / "lib/libcrypto.so.3")
            )
        )
        assert "inside the jail" in line
    assert ran(marker) == []


@pytest.mark.root
def test_a_library_in_a_second_jail_is_refused_too(
    planted: Path, tmp_path: Path, marker: Path
) -> None:
    other = tmp_path / "other"
    (other / "dev").mkdir(parents=True)
    lib = str(planted / "lib" / "libcrypto.so.3")
    one_error(run_cli("scan", str(other), str(planted), "--libcrypto", lib))
    assert ran(marker) == []


def _world_writable(tmp: Path, jail: Path) -> Path:
    shared = tmp / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # not sticky: anyone can replace what is in it
    return shared


def _group_writable(tmp: Path, jail: Path) -> Path:
    shared = tmp / "shared"
    shared.mkdir()
    os.chown(shared, 0, 65534)
    os.chmod(shared, 0o775)
    return shared


def _other_owner(tmp: Path, jail: Path) -> Path:
    shared = tmp / "shared"
    shared.mkdir()
    os.chown(shared, 65534, 65534)
    return shared


@pytest.mark.root
@pytest.mark.parametrize(
    "folder", [_world_writable, _group_writable, _other_owner], ids=lambda f: f.__name__[1:]
)
@pytest.mark.parametrize("command", ["scan", "scan-no-probe", "info"])
def test_a_library_another_user_controls_is_refused(
    tmp_path: Path,
    marker: Path,
    folder: Callable[[Path, Path], Path],
    command: str,
) -> None:
    # Outside any jail, but in a folder a less-trusted user can write: the same code.
    jail = tmp_path / "jail"
    (jail / "dev").mkdir(parents=True)
    lib = compile_so(folder(tmp_path, jail) / "libcrypto.so.3", marker)
    if command == "info":
        r = run_cli("info", "--libcrypto", str(lib))
    else:
        mode = ("--no-probe",) if command == "scan-no-probe" else ()
        r = run_cli("scan", str(jail), "--libcrypto", str(lib), *mode)
    line = one_error(r)
    assert "refusing to load" in line and "another user controls it" in line
    assert ran(marker) == []


@pytest.mark.root
@pytest.mark.parametrize("form", PATH_FORMS, ids=lambda f: f.__name__.strip("_"))
def test_info_refuses_a_library_in_a_jail_its_user_owns(
    planted: Path, tmp_path: Path, marker: Path, form: Callable[[Path, Path], tuple[str, str]]
) -> None:
    # info has no jail: what makes the planted file jail code is who controls it.
    for p in [planted, *planted.rglob("*")]:
        os.chown(p, 65534, 65534, follow_symlinks=False)
    _, lib_arg = form(tmp_path, planted)
    line = one_error(run_cli("info", "--libcrypto", lib_arg))
    assert "another user controls it" in line
    assert ran(marker) == []


@pytest.mark.root
def test_fix_and_its_rescan_never_load_the_jail_library(planted: Path, marker: Path) -> None:
    r = run_cli("fix", str(planted), "--mknod")
    assert r.code == 0, r
    assert ran(marker) == []
    # fix and demo take no --libcrypto at all: one line, exit 2.
    one_error(run_cli("fix", str(planted), "--mknod", "--libcrypto", str(planted / "lib")))
    one_error(run_cli("demo", "--libcrypto", str(planted / "lib" / "libcrypto.so.3")))
    assert ran(marker) == []


# -- the API keeps the same promise -----------------------------------------------------------


@pytest.mark.root
def test_the_loader_never_loads_an_untrusted_library_as_root(planted: Path, marker: Path) -> None:
    lib = str(planted / "lib" / "libcrypto.so.3")
    with pytest.raises(ToolError, match="inside the jail"):
        library.load(lib, jails=[str(planted)])
    # Consent does not make root load it: only an unprivileged child may.
    with pytest.raises(ToolError, match="as root"):
        library.load(lib, jails=[str(planted)], consent=True)
    with pytest.raises(ToolError, match="inside the jail"):
        run_probe(str(planted), [], ProbeOptions(libcrypto=lib))
    with pytest.raises(ToolError, match="inside the jail"):
        check_jail(str(planted), libcrypto=lib)  # the late-load checks' own entry point
    assert ran(marker) == []


@pytest.mark.root
def test_a_sibling_pulled_in_from_the_jail_is_refused(
    planted: Path, tmp_path: Path, marker: Path
) -> None:
    # A trusted library outside the jail that needs libplanted.so, which is not on the linker's
    # path; beside it, a link into the jail. The sibling loader must check it like the library.
    compile_so(planted / "lib" / "libplanted.so", marker)
    app = tmp_path / "app"
    app.mkdir()
    needs = compile_so(
        app / "libneeds.so",
        marker,
        "int needs_something(void) { return 1; }\n",
        "-Wl,--no-as-needed",
        f"-L{planted / 'lib'}",
        "-lplanted",
    )
    (app / "libplanted.so").symlink_to(planted / "lib" / "libplanted.so")
    line = one_error(run_cli("scan", str(planted), "--no-probe", "--libcrypto", str(needs)))
    assert "needs libplanted.so, which is refused: it lies inside the jail" in line
    assert ran(marker) == []


def test_check_library_follows_paths_like_the_kernel(tmp_path: Path) -> None:
    jail = tmp_path / "jail"
    (jail / "lib").mkdir(parents=True)
    (jail / "lib" / "libx.so").write_bytes(b"")
    (tmp_path / "up").symlink_to("jail/lib/../lib")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "f")
    roots = jail_roots([str(jail)])
    checked = check_library(str(tmp_path / "up" / "libx.so"), roots)
    try:
        assert checked.real == str(jail / "lib" / "libx.so")
        assert checked.concern is not None and "inside the jail" in checked.concern
    finally:
        os.close(checked.fd)
    outside = check_library(str(jail / "lib" / "libx.so"), ())
    os.close(outside.fd)
    assert outside.concern is None  # trusted
    for bad, why in [
        (tmp_path / "loop", "too many levels"),
        (tmp_path / "fifo" / "f", "not a regular file"),  # never opened for reading
        (tmp_path / "nope.so", "no such file"),
        (jail, "is a directory"),
    ]:
        with pytest.raises(Exception, match=why):
            check_library(str(bad), roots)


# -- with consent: loaded, but never as root ---------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize("extra", [(), ("--no-probe",), ("--user", "root")], ids=str)
def test_with_consent_the_planted_code_runs_unprivileged(
    planted: Path, marker: Path, extra: tuple[str, ...]
) -> None:
    lib = str(planted / "lib" / "libcrypto.so.3")
    r = run_cli("scan", str(planted), "--libcrypto", lib, "--allow-jail-libcrypto", *extra)
    line = one_error(r)  # it is not a libcrypto: said once, up front
    assert "not a libcrypto" in line
    uids = ran(marker)
    assert uids, "the constructor never ran: the test proves nothing"
    assert 0 not in uids
    assert set(uids) == {65534}


# A planted library that passes for a libcrypto 1.1.0 (the exports chrootcheck requires), so
# that the probe's children load it too, not only the child that describes it.
FAKE_LIBCRYPTO_C = (
    PLANTED_C
    + r"""
#include <string.h>
unsigned long OpenSSL_version_num(void) { return 0x1010007fUL; }
const char *OpenSSL_version(int t) {
    return t == 4 ? "OPENSSLDIR: \"/usr/lib/ssl\"" : "OpenSSL 1.1.0g (planted)";
}
unsigned long ERR_get_error(void) { return 0; }
unsigned long ERR_get_error_line_data(const char **f, int *l, const char **d, int *fl) {
    return 0;
}
const char *ERR_lib_error_string(unsigned long e) { return 0; }
const char *ERR_reason_error_string(unsigned long e) { return 0; }
const char *ERR_func_error_string(unsigned long e) { return 0; }
void ERR_clear_error(void) {}
int RAND_bytes(unsigned char *buf, int n) { memset(buf, 7, n); return 1; }
int RAND_status(void) { return 1; }
int RAND_poll(void) { return 1; }
"""
)


@pytest.mark.root
@pytest.mark.parametrize("user", [(), ("--user", "root"), ("--user", "daemon")], ids=str)
def test_with_consent_the_probe_children_load_it_unprivileged(
    planted: Path, marker: Path, user: tuple[str, ...]
) -> None:
    lib = compile_so(planted / "lib" / "libcrypto.so.1.1", marker, FAKE_LIBCRYPTO_C)
    r = run_cli("scan", str(planted), "--libcrypto", str(lib), "--allow-jail-libcrypto", *user)
    assert r.code in (0, 1), r
    assert "chrootcheck: error" not in r.stderr, r
    assert "OpenSSL 1.1.0g (planted)" in r.stdout
    uids = ran(marker)
    # Once in the child that describes it, once in each of the four scenarios' children, and
    # once in each trigger child: four triggers in each scenario where this no-DRBG library's
    # RAND_poll would read nothing (all four: the jail has no devices).
    assert len(uids) == 1 + 4 + 4 * 4, uids
    assert 0 not in uids
    # The describing child runs as nobody; the scenarios as the service's user, never root.
    assert uids[0] == 65534
    assert set(uids[1:]) == {1 if user == ("--user", "daemon") else 65534}


@pytest.mark.root
def test_with_consent_a_real_libcrypto_in_the_jail_still_gets_verdicts(
    tmp_path: Path, libcrypto_30: Build
) -> None:
    import json

    jail = good_jail(tmp_path / "jail")
    inside = jail / "lib" / "libcrypto.so.3"
    inside.parent.mkdir()
    shutil.copy(libcrypto_30.path, inside)
    r = run_cli(
        "scan", str(jail), "--libcrypto", str(inside), "--allow-jail-libcrypto", "--format", "json"
    )
    assert r.code == 0, r
    data = json.loads(r.stdout)["jails"][0]
    probe = data["probe"]
    assert probe["libcrypto"]["path"] == str(inside)
    assert probe["libcrypto"]["series"] == "3.x"
    assert probe["mode"].startswith("root, dropped before loading the library")
    assert probe["uid"] == 65534
    verdicts = {s["name"]: s["verdict"] for s in probe["scenarios"]}
    assert verdicts == {
        "as-is": "pass",
        "no-getrandom": "risk",
        "old-kernel": "pass",
        "old-kernel, devices closed": "pass",
    }
    # The late-load checks followed the jail library's own folders, learned in the child.
    assert not any(n["kind"] == "error" for n in data["notices"])


@pytest.mark.root
def test_with_consent_the_probe_api_isolates_it_too(tmp_path: Path, libcrypto_111: Build) -> None:
    # tmp_path's parents are root's (0700): the unprivileged children reach the library and
    # the jail through descriptors opened before they dropped root.
    jail = good_jail(tmp_path / "jail")
    src = Path(libcrypto_111.path)
    inside = jail / "lib" / src.name
    inside.parent.mkdir()
    shutil.copy(src, inside)
    allowed = ProbeOptions(libcrypto=str(inside), allow_jail_libcrypto=True, scenarios=("as-is",))
    fds_before = set(os.listdir("/proc/self/fd"))
    report = run_probe(str(jail), [], allowed)
    assert report.libcrypto is not None and report.libcrypto.series == "1.1.1"
    assert verdicts(report) == {"as-is": Verdict.PASS}
    # This (root) process never loaded it.
    assert str(inside) not in {os.path.realpath(lc.path) for lc in library._CACHE.values()}
    assert set(os.listdir("/proc/self/fd")) == fds_before
