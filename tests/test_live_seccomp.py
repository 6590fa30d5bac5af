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
