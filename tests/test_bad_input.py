"""Bad input is exit 2 with one line (issue 9, classes 7 and 8), checked before any work.

Every option a user types is validated when the command line is parsed: an empty path, nan,
inf, negative or zero numbers, unknown names, garbage in $CHROOTCHECK_PROBE_TIMEOUT. A bad
--libcrypto is found once, before any stage, so it is said once, not once per stage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Result, run_cli

J = "{jail}"  # replaced by a real (empty) jail
LIB_DIR = "{tmp}"  # a folder, where a library is expected

CASES: list[tuple[tuple[str, ...], dict[str, str], str]] = [
    # (arguments, environment, what the one line says)
    (("scan", ""), {}, "empty path"),
    (("scan", J, ""), {}, "empty path"),
    (("scan",), {}, "give at least one JAIL"),
    (("scan", J, "--scenario", "bogus"), {}, "unknown scenario 'bogus'"),
    (("scan", J, "--scenario", "as-is", "--scenario", "As-Is"), {}, "unknown scenario"),
    (("scan", J, "--probe-timeout", "nan"), {}, "'nan' is not a number"),
    (("scan", J, "--probe-timeout", "inf"), {}, "not in the range"),
    (("scan", J, "--probe-timeout", "-1"), {}, "not in the range"),
    (("scan", J, "--probe-timeout", "0"), {}, "not in the range"),
    (("scan", J, "--probe-timeout", "soon"), {}, "not a valid float"),
    (("scan", J), {"CHROOTCHECK_PROBE_TIMEOUT": "garbage"}, "$CHROOTCHECK_PROBE_TIMEOUT"),
    (("scan", J), {"CHROOTCHECK_PROBE_TIMEOUT": "nan"}, "$CHROOTCHECK_PROBE_TIMEOUT"),
    (("scan", J, "--no-probe"), {"CHROOTCHECK_PROBE_TIMEOUT": "-5"}, "$CHROOTCHECK_PROBE_TIMEOUT"),
    (("scan", J, "--cycles", "0"), {}, "not in the range"),
    (("scan", J, "--cycles", "-3"), {}, "not in the range"),
    (("scan", J, "--cycles", "many"), {}, "not a valid integer"),
    (("scan", J, "--libcrypto", ""), {}, "empty path"),
    (("scan", J, "--libcrypto", "/etc/passwd"), {}, "/etc/passwd: invalid ELF header"),
    (("scan", J, J, "--libcrypto", "/etc/passwd"), {}, "invalid ELF header"),
    (("scan", J, "--no-probe", "--libcrypto", "/etc/passwd"), {}, "invalid ELF header"),
    (("scan", J, "--no-late-loads", "--libcrypto", "/etc/passwd"), {}, "invalid ELF header"),
    (("scan", J, "--libcrypto", "/no/such/libcrypto.so"), {}, "no such file"),
    (("scan", J, "--libcrypto", LIB_DIR), {}, "is a directory"),
    (("scan", J, "--libcrypto", "/dev/null"), {}, "not a regular file"),
    (("scan", J, "-o", ""), {}, "empty path"),
    (("scan", J, "--sarif-anchor", ""), {}, "empty path"),
    (("scan", J, "--user", ""), {}, "--user"),
    (("scan", J, "--format", "xml"), {}, "unknown format"),
    (("scan", J, "--format", "json="), {}, "give a file"),
    (("scan", J, "--fail-on", "never"), {}, "--fail-on"),
    (("info", "--libcrypto", ""), {}, "empty path"),
    (("info", "--libcrypto", "/etc/passwd"), {}, "invalid ELF header"),
    (("info", "--format", "xml"), {}, "--format"),
    (("fix", "", "--mknod"), {}, "empty path"),
    (("fix", J), {}, "choose one way to fix"),
    (("fix", J, "--mknod", "--mode", "nan"), {}, "not an octal mode"),
    (("fix", J, "--mknod", "--mode", "-1"), {}, "only permission bits"),
    (("fix", J, "--mknod", "--only", "both"), {}, "--only"),
    (("demo", "--mknod", "--bind"), {}, "at most one"),
    (("demo", "--libcrypto", "x"), {}, "No such option"),
]


@pytest.mark.parametrize(("args", "env", "says"), CASES, ids=lambda v: repr(v)[:60])
def test_bad_input_is_exit_2_with_one_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    jail = tmp_path / "jail"
    (jail / "dev").mkdir(parents=True)
    argv = [a.replace(J, str(jail)).replace(LIB_DIR, str(tmp_path)) for a in args]
    r = run_cli(*argv, env=env)
    assert r.code == 2, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r
    assert lines[0].startswith("chrootcheck: error: "), r
    assert says in lines[0], r
    assert r.stdout == "", r  # refused before any work: no half report


@pytest.mark.parametrize("value", ["0.5", "600", "1e1"])
def test_good_timeouts_still_pass(tmp_path: Path, value: str, cli: Callable[..., Result]) -> None:
    r = cli("scan", str(tmp_path), "--no-probe", "--probe-timeout", value)
    assert r.code in (0, 1), r
    r = cli("scan", str(tmp_path), "--no-probe", env={"CHROOTCHECK_PROBE_TIMEOUT": value})
    assert r.code in (0, 1), r
