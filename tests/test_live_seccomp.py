"""`ps --read-seccomp`: the filters of a real process, read with ptrace and replayed in a child."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result
from tests.live_support import process_of, running

pytestmark = pytest.mark.root


def read_seccomp(cli: Callable[..., Result], pid: int) -> dict[str, Any]:
    result = cli("ps", "--read-seccomp", "--pid", str(pid), "--format", "json")
    assert result.code == 0, str(result)
    return process_of(json.loads(result.stdout), pid)


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


@pytest.mark.parametrize(
    ("how", "result", "errno", "signal", "verdict"),
    [
        ("ENOSYS", "errno", "ENOSYS", None, "getrandom blocked (ENOSYS): OpenSSL falls back"),
        ("EPERM", "errno", "EPERM", None, "getrandom blocked (EPERM): OpenSSL falls back"),
        ("kill", "killed", None, "SIGSYS", "getrandom kills the process (SIGSYS)"),
    ],
)
def test_a_filter_on_getrandom_is_read_and_replayed(
    cli: Callable[..., Result],
    jail: Path,
    how: str,
    result: str,
    errno: str | None,
    signal: str | None,
    verdict: str,
) -> None:
    with running({"jail": str(jail), "seccomp": how}) as h:
        proc = read_seccomp(cli, h["pid"])
        after = status(h["pid"])
    assert h["popen"].returncode == 0  # it went on undisturbed and ended when told to
    assert after["TracerPid"] == "0"  # detached
    assert after["State"].startswith("S")  # not left stopped
    assert proc["seccomp"] == {"mode": "filter", "filters": 1, "no_new_privs": True}
    dump = proc["seccomp_dump"]
    assert dump["error"] is None
    assert len(dump["filters"]) == 1 and dump["filters"][0] > 0
    [program] = dump["programs"]  # the program itself, hex, as the kernel gave it
    assert len(bytes.fromhex(program)) == dump["filters"][0] * 8
    assert 0 < dump["stopped_ms"] < 100
    outcomes = {o["syscall"]: o for o in dump["outcomes"]}
    assert set(outcomes) == {"getrandom", "shmget", "shmat", "open", "read", "lseek"}
    g = outcomes["getrandom"]
    assert (g["result"], g["errno"], g["signal"]) == (result, errno, signal)
    for other in ("shmget", "shmat", "open", "read", "lseek"):
        assert outcomes[other]["result"] == "allowed", outcomes[other]
    assert dump["verdict"].startswith(verdict)


def test_two_filters_are_replayed_in_order_and_all_apply(
    cli: Callable[..., Result], jail: Path
) -> None:
    # A process that inherits its parent's filter and adds its own: both count.
    with running({"jail": str(jail), "seccomp": "EPERM", "seccomp2": "open"}) as h:
        proc = read_seccomp(cli, h["pid"])
    dump = proc["seccomp_dump"]
    assert proc["seccomp"]["filters"] == 2 == len(dump["filters"])
    outcomes = {o["syscall"]: o for o in dump["outcomes"]}
    assert outcomes["getrandom"]["errno"] == "EPERM"
    assert (outcomes["open"]["result"], outcomes["open"]["errno"]) == ("errno", "EACCES")
    assert outcomes["read"]["result"] == "allowed"
    assert "no seed source" in dump["verdict"]


def test_without_the_option_nothing_is_traced(cli: Callable[..., Result], jail: Path) -> None:
    with running({"jail": str(jail), "seccomp": "ENOSYS"}) as h:
        result = cli("ps", "--pid", str(h["pid"]), "--format", "json")
    proc = process_of(json.loads(result.stdout), h["pid"])
    assert proc["seccomp"]["filters"] == 1
    assert proc["seccomp_dump"] is None


def test_text_output_shows_the_replay(cli: Callable[..., Result], jail: Path) -> None:
    with running({"jail": str(jail), "seccomp": "ENOSYS"}) as h:
        result = cli("ps", "--read-seccomp", "--pid", str(h["pid"]))
    assert result.code == 0, str(result)
    assert "seccomp: filter, 1 filter(s), no_new_privs" in result.stdout
    assert "getrandom(buf, 16, 0): fails with ENOSYS" in result.stdout
    assert 'open("/dev/urandom", O_RDONLY|O_CLOEXEC): allowed' in result.stdout


def _child_under(programs: tuple[bytes, ...], prefixed: bool = True) -> tuple[str, int]:
    """Fork a child that installs ``programs`` as the as-running probe child does (or bare,
    without its prefix), calls getrandom, and writes what it got to a pipe: (what it wrote,
    its wait status)."""
    import errno as errno_mod
    import os

    from chrootcheck.probe import sandbox
    from chrootcheck.system import libc

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.close(r)
            if prefixed:
                sandbox.apply_programs(programs)
            else:
                libc.install_seccomp_programs(programs)
            try:
                os.getrandom(16)
                got = "allowed"
            except OSError as e:
                got = errno_mod.errorcode[e.errno]
            os.write(w, got.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read().decode()
    _, wait_status = os.waitpid(pid, 0)
    return said, wait_status


def _kills_write() -> bytes:
    """A program that kills on write(2), a call of the probe's own (its report to the parent)."""
    import struct

    from chrootcheck.system import libc

    nr = libc.syscall_number("write")
    assert nr is not None

    def insn(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    return insn(0x20, k=0) + insn(0x15, 0, 1, nr) + insn(0x06, k=0) + insn(0x06, k=0x7FFF0000)


@pytest.mark.parametrize("how", ["ENOSYS", "kill"])
def test_the_dumped_program_itself_runs_in_the_probe_child_with_its_own_calls_exempt(
    jail: Path, how: str
) -> None:
    """scan's as-running child installs the programs exactly as dumped, each behind a prefix
    that allows the harness's calls: the helper's real filter answers getrandom, and a second
    program that kills on write(2) does not stop the child's report."""
    import os
    import signal

    from chrootcheck.live.seccomp import read_filters

    with running({"jail": str(jail), "seccomp": how}) as h:
        programs, _ = read_filters(h["pid"])
    assert len(programs) == 1
    said, wait_status = _child_under((*programs, _kills_write()))
    if how == "ENOSYS":
        assert (said, wait_status) == ("ENOSYS", 0)
    else:  # the real filter kills at getrandom, before anything is written
        assert said == ""
        assert os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGSYS
    # The prefix is what keeps the report: bare, the same program kills the child at write.
    assert _child_under((_kills_write(),)) == ("allowed", 0)
    said, wait_status = _child_under((_kills_write(),), prefixed=False)
    assert said == "" and os.WTERMSIG(wait_status) == signal.SIGSYS


def test_a_program_too_long_for_the_prefix_is_refused_before_anything_is_installed() -> None:
    """The kernel takes up to 4,096 instructions; with the prefix a program that long cannot be
    installed, so the probe child falls back to the filter's answers (nothing half-installed)."""
    import errno as errno_mod
    import os
    import struct

    from chrootcheck.probe import sandbox

    allow = struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000)  # ret ALLOW
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.close(r)
            try:
                sandbox.apply_programs((allow * 4090,))
                got = "installed"
            except OSError as e:
                got = errno_mod.errorcode[e.errno or 0]
            with open("/proc/self/status") as f:
                mode = next(x for x in f if x.startswith("Seccomp:")).split()[1]
            os.write(w, f"{got} {mode}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read().decode()
    os.waitpid(pid, 0)
    assert said == "E2BIG 0"  # refused, and no filter at all in the child
