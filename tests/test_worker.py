"""system/worker (forked workers, the typed protocol) and system/libc (the one binding)."""

from __future__ import annotations

import ast
import copy
import dataclasses
import enum
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chrootcheck.jail.walker import Counts, Met
from chrootcheck.openssl.errcodes import ErrorRecord
from chrootcheck.openssl.results import ReseedSettings, Step
from chrootcheck.probe import protocol as probe_protocol
from chrootcheck.system import libc, worker
from chrootcheck.system.worker import Channel, Failed, Protocol, ProtocolError

PACKAGE = Path(__file__).resolve().parent.parent / "chrootcheck"


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    name: str
    size: int | None = None


@dataclass(frozen=True)
class Sample:
    number: int
    ratio: float
    flag: bool
    text: str
    colour: Colour
    packing: Literal["1.x", "3.x"]
    inners: tuple[Inner, ...] = ()
    pair: tuple[int, str] = (0, "")
    names: list[str] | None = None
    table: dict[str, int] | None = None


SAMPLES = Protocol(Sample, Inner)

texts = st.text()  # lone surrogates included: file names decoded with surrogateescape
inners = st.builds(Inner, texts, st.none() | st.integers())
samples = st.builds(
    Sample,
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    texts,
    st.sampled_from(Colour),
    st.sampled_from(["1.x", "3.x"]),
    st.lists(inners, max_size=4).map(tuple),
    st.tuples(st.integers(), texts),
    st.none() | st.lists(texts, max_size=3),
    st.none() | st.dictionaries(texts, st.integers(), max_size=3),
)
records = st.builds(
    ErrorRecord,
    st.integers(0, 2**64 - 1),
    texts,
    texts,
    texts,
    file=texts,
    line=st.integers(),
    system=st.booleans(),
    packing=st.sampled_from(["1.x", "3.x"]),
)
steps = st.builds(Step, texts, st.none() | st.booleans(), st.lists(records, max_size=3).map(tuple))
probe_messages = st.one_of(
    st.builds(probe_protocol.Skip, texts),
    st.builds(
        probe_protocol.Settings,
        st.builds(ReseedSettings, texts, st.none() | st.integers(), st.none() | st.integers()),
    ),
    st.builds(
        probe_protocol.CycleRun,
        st.integers(0, 100),
        st.booleans(),
        texts,
        st.lists(steps, max_size=4).map(tuple),
    ),
    st.builds(probe_protocol.Jailed, st.integers(0, 2**32), st.integers(0, 2**32)),
    st.just(probe_protocol.Done()),
    st.builds(Failed, texts),
)
walk_messages = st.one_of(
    st.builds(Met, texts, st.sampled_from(["device", "fifo", "libcrypto"]), st.integers(0)),
    st.builds(Counts, st.integers(0), st.integers(0), st.integers(0), st.integers(0)),
)


def roundtrip(proto: Protocol, message: object) -> object:
    line = proto.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
    return proto.decode(line[:-1])


@settings(max_examples=60, deadline=None)
@given(samples)
def test_roundtrip_of_every_supported_type(message: Sample) -> None:
    assert roundtrip(SAMPLES, message) == message


@settings(max_examples=40, deadline=None)
@given(probe_messages)
def test_roundtrip_of_the_probe_messages(message: object) -> None:
    assert roundtrip(probe_protocol.protocol(10), message) == message


@settings(max_examples=40, deadline=None)
@given(walk_messages)
def test_roundtrip_of_the_walk_messages(message: object) -> None:
    from chrootcheck.jail import walker

    assert roundtrip(walker._SPLIT, message) == message


def asdict_line(message: object) -> bytes:
    """The encoding before it skipped ``dataclasses.asdict``'s deep copies: the reference."""
    body = {"type": type(message).__name__, **dataclasses.asdict(message)}  # type: ignore[call-overload]
    return (json.dumps(body, separators=(",", ":"), allow_nan=False) + "\n").encode("ascii")


@settings(max_examples=60, deadline=None)
@given(samples | probe_messages)
def test_the_encoding_is_byte_for_byte_what_asdict_gave(message: object) -> None:
    proto = SAMPLES if isinstance(message, Sample) else probe_protocol.protocol(10)
    assert proto.encode(message) == asdict_line(message)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_decoding_any_bytes_is_a_message_or_a_protocol_error(data: bytes) -> None:
    try:
        message = SAMPLES.decode(data)
    except ProtocolError:
        return
    assert isinstance(message, (Sample, Inner, Failed))


GOOD = {"type": "Inner", "name": "x", "size": 3}


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"not json", "not a JSON line"),
        (b"\xff\xfe{}", "not a JSON line"),
        (b"[1, 2]", "not an object"),
        (json.dumps({**GOOD, "type": "Sample2"}).encode(), "unknown message type"),
        (json.dumps({"name": "x"}).encode(), "unknown message type"),
        (json.dumps({**GOOD, "size": True}).encode(), "Inner.size: bool"),
        (json.dumps({**GOOD, "size": "3"}).encode(), "Inner.size: str"),
        (json.dumps({**GOOD, "extra": 1}).encode(), "unknown field 'extra'"),
        (json.dumps({"type": "Inner"}).encode(), "field 'name' missing"),
        (b'{"type": "Inner", "name": "x", "size": NaN}', "NaN is not allowed"),
        (b'{"type": "Inner", "name": "x", "name": "y"}', "duplicate key"),
        (b'{"type": "Failed", "message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "JSON"),
        (b'{"type": "Inner", "name": "' + b"x" * (1 << 20) + b'"}', "at most"),
    ],
)
def test_decode_refuses(line: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        SAMPLES.decode(line)


def test_nested_and_typed_values_are_checked() -> None:
    base = {
        "type": "Sample",
        "number": 1,
        "ratio": 1,
        "flag": False,
        "text": "t",
        "colour": "red",
        "packing": "3.x",
    }
    ok = SAMPLES.decode(json.dumps(base).encode())
    assert isinstance(ok, Sample) and ok.ratio == 1.0 and ok.colour is Colour.RED
    for change, why in [
        ({"colour": "green"}, "not a Colour"),
        ({"packing": "2.x"}, "Sample.packing"),
        ({"inners": [{"name": 5}]}, r"Sample.inners\[0\].name"),
        ({"inners": {"name": "x"}}, "Sample.inners"),
        ({"pair": [1, "a", 2]}, "3 items, not 2"),
        ({"table": {"k": "v"}}, r"Sample.table\['k'\]"),
        ({"number": 1.5}, "Sample.number: float"),
        ({"number": True}, "Sample.number: bool"),
        ({"ratio": True}, "Sample.ratio: bool"),
        ({"flag": 0}, "Sample.flag: int"),
        ({"packing": 3}, "Sample.packing"),
        ({"names": ["a", None]}, r"Sample.names\[1\]"),
    ]:
        with pytest.raises(ProtocolError, match=why):
            SAMPLES.decode(json.dumps({**base, **change}).encode())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
SAMPLE_FIELDS = [f.name for f in dataclasses.fields(Sample)]


@settings(max_examples=300, deadline=None)
@given(
    samples,
    st.dictionaries(st.sampled_from([*SAMPLE_FIELDS, "extra"]), JSON_VALUES, max_size=3),
    st.lists(st.sampled_from(SAMPLE_FIELDS), max_size=2),
)
@example(Sample(1, 1.0, True, "", Colour.RED, "1.x"), {"ratio": True}, [])
@example(Sample(1, 1.0, True, "", Colour.RED, "1.x"), {"inners": [{"name": "x", "z": 1}]}, [])
def test_the_compiled_checks_accept_exactly_what_the_field_by_field_check_accepts(
    message: Sample, changes: dict[str, object], dropped: list[str]
) -> None:
    """worker._checked (one closure per type, the fast path) against worker._from_dict (the
    field by field check that words the errors): the same value, or both refuse."""
    data = json.loads(SAMPLES.encode(message))
    del data["type"]
    data.update(changes)
    for name in dropped:
        data.pop(name, None)
    try:
        expected = worker._from_dict(Sample, copy.deepcopy(data), "Sample")
    except ProtocolError:
        with pytest.raises(worker._Slow):
            worker._checked(Sample)(data)
    else:
        got = worker._checked(Sample)(data)
        assert got == expected and type(got) is type(expected)


def test_encode_refuses_what_the_protocol_does_not_carry() -> None:
    with pytest.raises(TypeError):
        SAMPLES.encode(Counts(1, 2, 3, 4))
    with pytest.raises(ValueError):
        SAMPLES.encode(Inner("x" * (1 << 20)))
    with pytest.raises(TypeError):

        @dataclass
        class Mutable:
            x: int

        Protocol(Mutable)


# ---------------------------------------------------------------------------- real workers


def raw(data: bytes, then: str = "exit") -> worker.Channel | None:
    """A target writing ``data`` straight to the pipe, then exiting, hanging or dying."""

    def target(out: Channel) -> int:
        os.write(out.fd, data)
        if then == "hang":
            time.sleep(60)
        if then == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        return 0

    return target  # type: ignore[return-value]


def test_messages_and_exit_status_come_back() -> None:
    def target(out: Channel) -> int:
        out.send(Inner("a"))
        out.send(Inner("b", 2))
        return 7

    o = worker.run(target, SAMPLES, 10)
    assert o.messages == [Inner("a"), Inner("b", 2)]
    assert (o.exit_status, o.signal, o.timed_out, o.error) == (7, None, False, None)
    assert not o.ok and o.failure() == "exit status 7"


def test_an_exception_in_the_child_becomes_a_failed_message() -> None:
    def target(out: Channel) -> None:
        out.send(Inner("before"))
        raise RuntimeError("boom")

    o = worker.run(target, SAMPLES, 10)
    assert o.messages == [Inner("before"), Failed("RuntimeError: boom")]
    assert o.exit_status == worker.EXIT_FAILED
    assert o.failure() == "RuntimeError: boom"


def test_garbage_output_is_an_error_value_and_the_child_is_killed() -> None:
    good = SAMPLES.encode(Inner("a"))
    started = time.monotonic()
    o = worker.run(raw(good + b"\x00garbage\n" + good, then="hang"), SAMPLES, 30)  # type: ignore[arg-type]
    assert time.monotonic() - started < 10  # killed at once, not at the timeout
    assert o.messages == [Inner("a")]  # what came before is kept, nothing after
    assert o.error is not None and "not a JSON line" in o.error
    assert o.signal == "SIGKILL" and not o.timed_out


def test_oversized_output_is_cut_off() -> None:
    small = Protocol(Inner, max_line=1000, max_bytes=5000, max_messages=3)
    o = worker.run(raw(b"x" * 100_000, then="hang"), small, 30)  # type: ignore[arg-type]
    assert o.error is not None and "more than 5000 bytes" in o.error
    o = worker.run(raw(b"x" * 2000, then="hang"), small, 30)  # type: ignore[arg-type]
    assert o.error is not None and "a line of more than 1000 bytes" in o.error
    o = worker.run(raw(small.encode(Inner("a")) * 4, then="hang"), small, 30)  # type: ignore[arg-type]
    assert o.error == "more than 3 messages" and o.messages == [Inner("a")] * 3


def test_a_truncated_last_message_is_an_error() -> None:
    line = SAMPLES.encode(Inner("whole")) + SAMPLES.encode(Inner("cut"))[:-5]
    o = worker.run(raw(line), SAMPLES, 10)  # type: ignore[arg-type]
    assert o.messages == [Inner("whole")]
    assert o.error is not None and "cut short" in o.error
    assert o.exit_status == 0


def test_a_child_killed_mid_message() -> None:
    line = SAMPLES.encode(Inner("whole")) + SAMPLES.encode(Inner("cut"))[:-5]
    o = worker.run(raw(line, then="die"), SAMPLES, 10)  # type: ignore[arg-type]
    assert o.messages == [Inner("whole")]
    assert o.signal == "SIGKILL" and o.error is not None and "cut short" in o.error
    assert not o.ok


def test_a_hanging_child_times_out_and_is_reaped() -> None:
    pids: list[int] = []

    def target(out: Channel) -> None:
        out.send(Inner(str(os.getpid())))
        time.sleep(60)

    started = time.monotonic()
    o = worker.run(target, SAMPLES, 0.5)
    assert time.monotonic() - started < 5
    assert o.timed_out and o.signal == "SIGKILL" and o.failure() == "it did not answer in time"
    assert isinstance(o.messages[0], Inner)
    pids.append(int(o.messages[0].name))
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)  # reaped: not our child any more


def test_run_many_reads_in_parallel_and_kills_only_the_hanging_one() -> None:
    def quick(n: int) -> worker.Channel:
        def target(out: Channel) -> None:
            out.send(Inner("quick", n))

        return target  # type: ignore[return-value]

    def slow(out: Channel) -> None:
        out.send(Inner("slow"))
        time.sleep(60)

    started = time.monotonic()
    outs = worker.run_many([quick(1), slow, quick(2)], SAMPLES, 1.0)  # type: ignore[list-item]
    assert time.monotonic() - started < 6
    assert [o.messages for o in outs] == [[Inner("quick", 1)], [Inner("slow")], [Inner("quick", 2)]]
    assert [o.timed_out for o in outs] == [False, True, False]
    assert [o.ok for o in outs] == [True, False, True]


def _says(name: str) -> Callable[[Channel], None]:
    def target(out: Channel) -> None:
        out.send(Inner(name, os.getpid()))

    return target


def _hangs(out: Channel) -> None:
    out.send(Inner("hangs", os.getpid()))
    time.sleep(60)


def test_pool_a_worker_that_ended_while_nobody_read_it_is_not_taken_for_hung() -> None:
    """scan's rolling pool: the parent walks the next jail while earlier children run; one
    whose time ran out meanwhile, unread, has its whole output read, not a timeout."""
    with worker.Pool() as pool:
        first = pool.start([_says("a"), _says("b")], SAMPLES, 0.2)
        time.sleep(0.5)  # the caller busy elsewhere, past the workers' timeout
        outs = pool.wait(first)
    assert [o.messages[0].name for o in outs] == ["a", "b"]  # type: ignore[attr-defined]
    assert [(o.ok, o.timed_out) for o in outs] == [(True, False), (True, False)]


def test_pool_waits_for_one_group_while_reading_all_and_kills_a_hang_past_its_timeout() -> None:
    started = time.monotonic()
    with worker.Pool() as pool:
        hung = pool.start([_hangs], SAMPLES, 0.5)
        later = pool.start([_says("later")], SAMPLES, 10)
        [quick] = pool.wait(later)  # the hung one is read meanwhile, not waited for
        [slow] = pool.wait(hung)
    assert quick.ok and quick.messages[0].name == "later"  # type: ignore[attr-defined]
    assert slow.timed_out and slow.messages[0].name == "hangs"  # type: ignore[attr-defined]
    assert time.monotonic() - started < 6


def test_pool_leaving_early_kills_and_reaps_every_worker() -> None:
    with pytest.raises(RuntimeError), worker.Pool() as pool:
        workers = pool.start([_hangs, _hangs], SAMPLES, 60)
        wait_for = time.monotonic() + 10
        while not all(w.read() and w.outcome.messages for w in workers):
            assert time.monotonic() < wait_for
            time.sleep(0.01)
        raise RuntimeError("an error in the caller, between two waits")
    for w in workers:
        assert w.reaped and w.outcome.signal == "SIGKILL"
        with pytest.raises(ChildProcessError):
            os.waitpid(w.pid, os.WNOHANG)


def test_a_crash_is_a_signal_with_no_traceback_and_no_core(tmp_path: Path) -> None:
    def target(out: Channel) -> None:
        os.chdir(tmp_path)
        print("not on the terminal")  # quiet: stdout is /dev/null
        os.kill(os.getpid(), signal.SIGSEGV)

    o = worker.run(target, SAMPLES, 10)
    assert o.signal == "SIGSEGV" and o.messages == []
    assert list(tmp_path.iterdir()) == []  # no core file


# ---------------------------------------------------------------------------- the binding


def test_no_ctypes_and_cffi_only_in_the_two_bindings() -> None:
    ctypes_users, cffi_users = [], set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            tops = {n.split(".")[0] for n in names}
            if "ctypes" in tops:
                ctypes_users.append(f"{path}:{node.lineno}")
            if "cffi" in tops:
                cffi_users.add(str(path.relative_to(PACKAGE)))
    assert ctypes_users == []
    assert cffi_users == {"openssl/cdefs.py", "system/libc.py"}


def test_system_modules_do_not_load_cffi_on_import() -> None:
    code = (
        "import sys, chrootcheck.system.libc, chrootcheck.system.worker, "
        "chrootcheck.system.procs, chrootcheck.probe.protocol, chrootcheck.jail.walker; "
        "print(sorted(m for m in sys.modules if 'cffi' in m or m.endswith('openssl.cdefs')))"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_errno_is_exact(tmp_path: Path) -> None:
    with pytest.raises(OSError) as e:
        libc.setns(-1, libc.CLONE_NEWNS)
    assert e.value.errno == errno.EBADF and str(e.value).startswith("[Errno 9] setns: ")
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError) as e2:
            libc.renameat2(fd, "a", fd, "b", libc.RENAME_NOREPLACE)
        assert "rename: File exists" in str(e2.value)
        libc.renameat2(fd, "a", fd, "c", libc.RENAME_NOREPLACE)
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c"]
    with pytest.raises(OSError) as e3:
        libc.prctl(-1)
    assert e3.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e4:
        libc.umount2(str(tmp_path), libc.MNT_DETACH)
    assert e4.value.errno in (errno.EINVAL, errno.EPERM)  # not a mount point / not root


def test_a_seccomp_filter_through_the_binding() -> None:
    if libc.seccomp() is None:
        pytest.skip("no libseccomp.so.2")

    def target(out: Channel) -> int:
        libc.load_seccomp_filter({"getrandom": libc.scmp_act_errno(errno.ENOSYS)})
        try:
            os.getrandom(1)
        except OSError as e:
            return e.errno or 0
        return 0

    o = worker.run(target, Protocol(), 10)
    assert o.exit_status == errno.ENOSYS
    with pytest.raises(OSError, match="does not know"):
        libc.load_seccomp_filter({"no_such_call": libc.SCMP_ACT_ALLOW})


def test_the_probe_reads_unreadable_output_as_a_crash_at_the_stage_reached() -> None:
    from chrootcheck.probe.analysis import scenario_result
    from chrootcheck.probe.child import ChildSpec
    from chrootcheck.probe.model import Verdict
    from chrootcheck.probe.runner import ChildOutcome
    from chrootcheck.probe.scenarios import BY_NAME

    spec = ChildSpec("/j", BY_NAME["as-is"], 1, True, 0, 0, ())
    seeded = (
        probe_protocol.Settings(ReseedSettings("none")),
        probe_protocol.CycleRun(0, False, "ready", (Step("RAND_bytes", True),)),
    )
    bad = ChildOutcome(spec, seeded, signal="SIGKILL", error="not a JSON line: x")
    r = scenario_result(bad, [], 10.0)
    assert r.verdict is Verdict.CRASHED and r.phase == "seeded"
    assert "unreadable output (not a JSON line: x)" in r.explanation
    done = (*seeded, probe_protocol.Jailed(0, 0), probe_protocol.Done())
    good = ChildOutcome(spec, done, exit_status=0)
    assert scenario_result(good, [], 10.0).verdict is Verdict.PASS
