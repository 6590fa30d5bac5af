"""Forked workers, and the one typed protocol they answer their parent on.

Every process chrootcheck forks runs through here: the probe's children, the child that
describes a consented library, the walker's helper, the live package's namespace and seccomp
replay children. The risky work (a chroot, a setns, a seccomp filter, a jail's library) happens
in the child; results come back through a pipe; a bad end becomes an error value, never an
exception in the parent nor a traceback on the terminal.

``start`` forks with ``procs.fork_child`` (the worker dies with chrootcheck), runs
``target(channel)`` in the child and exits with its return value (None: 0); an exception in the
target is sent as ``Failed`` and the child exits with ``EXIT_FAILED``. The child never returns
into the caller's code and never runs its clean-up. ``Worker.finish`` (one worker) and
``run_many`` (several in parallel) read the messages, kill a worker past its timeout, reap it,
and give an ``Outcome``: the messages, the exit status or signal, the timeout, the protocol
error.

The protocol: each message is a frozen dataclass, sent as one JSON line
``{"type": "<class name>", <field>: <value>, ...}``, so a child that crashes or hangs has still
told how far it got. The parent decodes each line into a class its ``Protocol`` names,
checking every field against its annotation (int, float, str, bool, None, Literal, unions,
tuples, lists, str-keyed dicts, enums, nested dataclasses). A child that loaded jail code is
not trusted, so nothing is unpickled or evaluated, and anything else is a protocol error: not
JSON or not UTF-8, an unknown type, a missing or unknown field, a wrong type, NaN, a duplicate
key, a line over ``max_line`` bytes, more than ``max_bytes`` or ``max_messages`` in all, a last
line cut short (the child died mid-message). The parent then stops reading, kills the worker
and keeps the messages that came before. Parent and child are the same program (a fork, no
exec), so the class names are the whole versioning there is.

Importing this module does not load cffi.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import faulthandler
import json
import os
import resource
import selectors
import signal
import time
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from chrootcheck.system import procs

T = TypeVar("T")
EXIT_FAILED = 3  # the target raised (a Failed message says what)
REAP_GRACE = 1.0  # after EOF a worker is exiting: wait this long before SIGKILL


class ProtocolError(ValueError):
    """A worker's output that is not a message of its protocol."""


@dataclass(frozen=True)
class Failed:
    """The target raised, or the worker says it cannot go on: one line. Every protocol has it."""

    message: str


class Protocol:
    """The messages one kind of worker may send, and the limits on what the parent reads."""

    def __init__(
        self,
        *messages: type,
        max_line: int = 1 << 20,
        max_bytes: int = 16 << 20,
        max_messages: int = 100_000,
    ) -> None:
        self.types: dict[str, type] = {}
        for cls in (*messages, Failed):
            if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
                raise TypeError(f"{cls.__name__} is not a frozen dataclass")
            if any(f.name == "type" for f in dataclasses.fields(cls)):
                raise TypeError(f"{cls.__name__} has a field named 'type', the tag's key")
            self.types[cls.__name__] = cls
        self.max_line = max_line
        self.max_bytes = max_bytes
        self.max_messages = max_messages

    def encode(self, message: object) -> bytes:
        """One line, newline included. Raises TypeError for a message not of this protocol,
        ValueError for a value JSON cannot carry exactly (NaN, infinity)."""
        name = type(message).__name__
        if self.types.get(name) is not type(message):
            raise TypeError(f"{name} is not a message of this protocol")
        body = {"type": name, **_plain(message)}
        line = json.dumps(body, separators=(",", ":"), allow_nan=False) + "\n"
        if len(line) > self.max_line:  # ensure_ascii: characters are bytes
            raise ValueError(f"a {name} message of {len(line)} bytes (at most {self.max_line})")
        return line.encode("ascii")

    def decode(self, line: bytes) -> object:
        """The message on one line (without its newline); ProtocolError if it is not one."""
        if len(line) > self.max_line:
            raise ProtocolError(f"a line of {len(line)} bytes (at most {self.max_line})")
        try:
            data = json.loads(
                line.decode("utf-8"),
                parse_constant=_no_constant,
                object_pairs_hook=_unique_keys,
            )
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise ProtocolError(f"not a JSON line: {_short(e)}") from None
        if not isinstance(data, dict):
            raise ProtocolError(f"a JSON {type(data).__name__}, not an object")
        tag = data.pop("type", None)
        cls = self.types.get(tag) if isinstance(tag, str) else None
        if cls is None:
            raise ProtocolError(f"unknown message type {_short(tag)}")
        try:
            return _checked(cls)(data)
        except _Slow:  # not a valid message: the field by field check says where and why
            return _from_dict(cls, data, str(tag))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """What ``dataclasses.asdict`` makes of a message for ``json.dumps`` (the same JSON), without
    its deep copies: dataclasses as dicts in field order, lists and tuples as lists, dicts as
    dicts, anything else as it is (``json.dumps`` refuses what it cannot carry)."""
    if value is None or type(value) in (str, int, bool, float):
        return value
    cls = type(value)
    names = _FIELD_NAMES.get(cls)
    if names is None and dataclasses.is_dataclass(cls) and not isinstance(value, type):
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    if names is not None:
        return {n: _plain(getattr(value, n)) for n in names}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a duplicate key")
    return out


def _short(value: object, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_HINTS: dict[type, dict[str, Any]] = {}


def _from_dict(cls: type, data: object, where: str) -> Any:
    if not isinstance(data, dict):
        raise ProtocolError(f"{where}: an object expected, not {type(data).__name__}")
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - set(fields)
    if unknown:
        raise ProtocolError(f"{where}: unknown field {_short(min(unknown))}")
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ProtocolError(f"{where}: field {name!r} missing")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:  # a __post_init__ that refuses the values
        raise ProtocolError(f"{where}: {_short(e)}") from None


def _convert(tp: Any, value: object, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is type(None) or tp is None:
        ok = value is None
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        ok = False
    elif tp is str:
        ok = isinstance(value, str)
    elif origin is typing.Literal:
        ok = any(value == v and type(value) is type(v) for v in typing.get_args(tp))
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ProtocolError(f"{where}: {_short(value)} is not a {tp.__name__}") from None
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    elif origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _convert(arg, value, where)
            except ProtocolError as e:
                if arg is not type(None):
                    errors.append(e)
        if len(errors) == 1:  # X | None: say what is wrong with the X
            raise errors[0]
        ok = False
    elif origin in (tuple, list):
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: {type(value).__name__} where a list is expected")
        args = typing.get_args(tp)
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            items = [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        elif len(args) == len(value):
            items = [
                _convert(a, v, f"{where}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            ]
        else:
            raise ProtocolError(f"{where}: {len(value)} items, not {len(args)}")
        return tuple(items) if origin is tuple else items
    elif origin is dict:
        key_type, value_type = typing.get_args(tp)
        if key_type is not str:
            raise TypeError(f"{where}: only str keys cross the pipe")
        if not isinstance(value, dict):
            raise ProtocolError(f"{where}: {type(value).__name__} where an object is expected")
        return {k: _convert(value_type, v, f"{where}[{k!r}]") for k, v in value.items()}
    elif origin is None and tp not in (Any, object):
        ok = False
    else:
        raise TypeError(f"{where}: the protocol cannot carry {tp!r}")
    if not ok:
        raise ProtocolError(f"{where}: {type(value).__name__} where {_name(tp)} is expected")
    return value


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


# The same checks, compiled once per type into closures: a probe child's messages are decoded
# for every jail of a fleet, and walking the annotations again for every value cost more than
# the JSON itself. A closure accepts exactly what ``_convert`` accepts and returns the same
# value; on anything else it raises ``_Slow`` and ``decode`` runs ``_from_dict``, which raises
# the ProtocolError that says where and why.


class _Slow(Exception):
    """Not a value of this type: ``_from_dict`` says what is wrong with it."""


_CHECKERS: dict[Any, Callable[[Any], Any]] = {}


def _checked(tp: Any) -> Callable[[Any], Any]:
    try:
        return _CHECKERS[tp]
    except KeyError:
        pass
    except TypeError:  # unhashable: not cached
        return _checker(tp)
    check = _CHECKERS[tp] = _checker(tp)
    return check


def _checker(tp: Any) -> Callable[[Any], Any]:
    origin = typing.get_origin(tp)

    def exactly(kind: type) -> Callable[[Any], Any]:
        def check(value: Any) -> Any:
            if type(value) is not kind:
                raise _Slow
            return value

        return check

    if tp is type(None) or tp is None:
        return exactly(type(None))
    if tp in (bool, int, str):
        return exactly(tp)
    if tp is float:

        def number(value: Any) -> Any:
            if type(value) is not float and type(value) is not int:
                raise _Slow
            return float(value)

        return number
    if origin is typing.Literal:
        allowed = typing.get_args(tp)

        def literal(value: Any) -> Any:
            if not any(value == v and type(value) is type(v) for v in allowed):
                raise _Slow
            return value

        return literal
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        members = tp

        def member(value: Any) -> Any:
            try:
                return members(value)
            except ValueError:
                raise _Slow from None

        return member
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _record(tp)
    if origin in (typing.Union, types.UnionType):
        options = [_checked(arg) for arg in typing.get_args(tp)]

        def union(value: Any) -> Any:
            for option in options:
                try:
                    return option(value)
                except _Slow:
                    pass
            raise _Slow

        return union
    if origin in (tuple, list):
        args = typing.get_args(tp)
        as_tuple = origin is tuple
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            item = _checked(args[0])

            def sequence(value: Any) -> Any:
                if not isinstance(value, list):
                    raise _Slow
                items = [item(v) for v in value]
                return tuple(items) if as_tuple else items

            return sequence
        each = [_checked(a) for a in args]

        def fixed(value: Any) -> Any:
            if not isinstance(value, list) or len(value) != len(each):
                raise _Slow
            items = [c(v) for c, v in zip(each, value, strict=True)]
            return tuple(items) if as_tuple else items

        return fixed
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if key_type is not str:
            raise _Slow  # _convert raises the TypeError
        values = _checked(value_type)

        def mapping(value: Any) -> Any:
            if not isinstance(value, dict):
                raise _Slow
            return {k: values(v) for k, v in value.items()}

        return mapping

    def never(value: Any) -> Any:  # not a type the protocol carries: _convert says so
        raise _Slow

    return never


def _record(cls: type) -> Callable[[Any], Any]:
    """A dataclass from a JSON object; its fields' checks are made on first use (a dataclass
    may hold itself)."""
    fields: list[tuple[str, Callable[[Any], Any], bool]] | None = None
    names: frozenset[str] = frozenset()

    def record(data: Any) -> Any:
        nonlocal fields, names
        if fields is None:
            hints = _HINTS.get(cls)
            if hints is None:
                hints = _HINTS[cls] = typing.get_type_hints(cls)
            init = [f for f in dataclasses.fields(cls) if f.init]
            names = frozenset(f.name for f in init)
            fields = [
                (
                    f.name,
                    _checked(hints[f.name]),
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                )
                for f in init
            ]
        if type(data) is not dict or not data.keys() <= names:
            raise _Slow
        values = {}
        for name, check, required in fields:
            if name in data:
                values[name] = check(data[name])
            elif required:
                raise _Slow
        try:
            return cls(**values)
        except (TypeError, ValueError):
            raise _Slow from None

    return record


# ------------------------------------------------------------------------------ the child


class Channel:
    """The child's end of the pipe: ``send`` writes one message, whole."""

    def __init__(self, fd: int, protocol: Protocol) -> None:
        self.fd = fd
        self.protocol = protocol

    def send(self, message: object) -> None:
        view = memoryview(self.protocol.encode(message))
        while view:
            view = view[os.write(self.fd, view) :]


def _run_child(target: Callable[[Channel], int | None], channel: Channel, quiet: bool) -> NoReturn:
    code = EXIT_FAILED
    try:
        if quiet:
            # A crash is reported by the parent, never dumped as a core file into a jail (the
            # cwd there) nor as a traceback on the user's terminal.
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            faulthandler.disable()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)
        rc = target(channel)
        code = 0 if rc is None else rc
    except BaseException as e:
        try:
            channel.send(Failed(f"{type(e).__name__}: {e}"))
        except BaseException:
            pass
    finally:
        os._exit(code)


# ----------------------------------------------------------------------------- the parent


@dataclass
class Outcome:
    """What the parent learned from one worker: its messages and how it ended."""

    messages: list[object] = field(default_factory=list)
    exit_status: int | None = None
    signal: str | None = None  # "SIGSEGV" when a signal ended it
    timed_out: bool = False  # killed by the parent past its timeout
    error: str | None = None  # the protocol error that made the parent stop reading
    seconds: float = 0.0

    def all(self, cls: type[T]) -> list[T]:
        return [m for m in self.messages if isinstance(m, cls)]

    def first(self, cls: type[T]) -> T | None:
        return next((m for m in self.messages if isinstance(m, cls)), None)

    @property
    def ok(self) -> bool:
        """Exited with 0, told of no failure, output all readable."""
        return self.exit_status == 0 and self.error is None and self.first(Failed) is None

    def failure(self) -> str:
        """Why it did not end well, in a few words ("" when it did)."""
        failed = self.first(Failed)
        if failed is not None:
            return failed.message
        if self.timed_out:
            return "it did not answer in time"
        if self.error is not None:
            return f"its output was unreadable: {self.error}"
        if self.signal is not None:
            return f"killed by {self.signal}"
        if self.exit_status:
            return f"exit status {self.exit_status}"
        return ""


class Worker:
    """A forked worker as its parent sees it: the pid, the read end of the pipe, what was read."""

    def __init__(self, pid: int, fd: int, protocol: Protocol) -> None:
        self.pid = pid
        self.fd = fd
        self.protocol = protocol
        self.outcome = Outcome()
        self.started = time.monotonic()
        self.reading = True  # until EOF or a protocol error
        self.reaped = False
        self._buffer = b""
        self._bytes = 0

    @classmethod
    def start(
        cls, target: Callable[[Channel], int | None], protocol: Protocol, *, quiet: bool = True
    ) -> Worker:
        """Fork; in the child run ``target`` (see the module doc). ``quiet``: stdout and stderr
        to /dev/null, no core dump. A caller that must record the worker before any
        interruption wraps the call and the record in ``procs.signals_deferred``."""
        rfd, wfd = os.pipe()
        try:
            pid = procs.fork_child()
        except BaseException:
            os.close(rfd)
            os.close(wfd)
            raise
        if pid == 0:
            os.close(rfd)
            _run_child(target, Channel(wfd, protocol), quiet)
        os.close(wfd)
        os.set_blocking(rfd, False)
        return cls(pid, rfd, protocol)

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bool:
        """Read what the pipe holds now and decode the whole lines; False once reading is over
        (EOF, or a protocol error: then the worker is killed)."""
        if not self.reading:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            self.reading = False
            if self._buffer:
                self._fail(f"a last message cut short after {len(self._buffer)} bytes")
            return False
        self._bytes += len(chunk)
        if self._bytes > self.protocol.max_bytes:
            self._fail(f"more than {self.protocol.max_bytes} bytes in all")
            return False
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        if len(self._buffer) > self.protocol.max_line:
            self._fail(f"a line of more than {self.protocol.max_line} bytes")
            return False
        for line in lines:
            if len(self.outcome.messages) >= self.protocol.max_messages:
                self._fail(f"more than {self.protocol.max_messages} messages")
                return False
            try:
                self.outcome.messages.append(self.protocol.decode(line))
            except ProtocolError as e:
                self._fail(str(e))
                return False
        return True

    def _fail(self, why: str) -> None:
        self.outcome.error = why
        self.reading = False
        self._buffer = b""
        self.kill()

    def kill(self) -> None:
        if self.reaped:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def expire(self, timeout: float, since: float | None = None) -> None:
        """Past ``timeout`` seconds since the start (or ``since``): stop reading, kill it, note
        the timeout."""
        if self.reading and time.monotonic() - max(self.started, since or 0.0) > timeout:
            self.outcome.timed_out = True
            self.reading = False
            self.kill()

    def reap(self) -> Outcome:
        """Wait for it (SIGKILL if it still runs after ``REAP_GRACE`` or is still being read),
        close the pipe, note how it ended. Idempotent."""
        if self.reaped:
            return self.outcome
        if self.reading:  # given up on (an interruption): do not wait for it
            self.kill()
            self.reading = False
        deadline = time.monotonic() + REAP_GRACE
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.kill()
                _, status = os.waitpid(self.pid, 0)
                break
            time.sleep(0.001)
        self.reaped = True
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            try:
                self.outcome.signal = signal.Signals(sig).name
            except ValueError:
                self.outcome.signal = f"signal {sig}"
        elif os.WIFEXITED(status):
            self.outcome.exit_status = os.WEXITSTATUS(status)
        self.outcome.seconds = time.monotonic() - self.started
        try:
            os.close(self.fd)
        except OSError:
            pass
        return self.outcome

    def finish(self, timeout: float | None = None) -> Outcome:
        """Read to the end (killing it past ``timeout`` seconds since its start), then reap.
        Whatever interrupts this (an exception, Ctrl-C), the worker is killed and reaped."""
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self.fd, selectors.EVENT_READ)
                while self.reading:
                    wait = None
                    if timeout is not None:
                        self.expire(timeout)
                        wait = max(0.01, self.started + timeout - time.monotonic())
                    if self.reading and sel.select(wait):
                        self.read()
        finally:
            self.reap()
        return self.outcome


def run(
    target: Callable[[Channel], int | None],
    protocol: Protocol,
    timeout: float | None = None,
    *,
    quiet: bool = True,
) -> Outcome:
    """Fork one worker, read it to the end (``timeout``: seconds), reap it."""
    with procs.signals_deferred():  # the worker is recorded before any clean-up can run
        worker = Worker.start(target, protocol, quiet=quiet)
    return worker.finish(timeout)


def run_many(
    targets: Sequence[Callable[[Channel], int | None]], protocol: Protocol, timeout: float
) -> list[Outcome]:
    """Fork one worker per target, all at once, read them in parallel, each killed past
    ``timeout`` seconds; the outcomes in the order of ``targets``. Whatever interrupts this
    (an exception, SIGINT, SIGTERM, SIGHUP: ``procs.interrupt_on_signals``), every worker is
    killed and reaped. Forked, read and reaped in this one call and thread (PDEATHSIG follows
    the thread)."""
    with Pool() as pool:
        return pool.wait(pool.start(targets, protocol, timeout))


class Pool:
    """Workers started in groups as the caller goes (``start``), all read together whenever
    the caller waits for one group (``wait``): a scan forks the next jail's probe while the
    previous ones still run. Used as a context manager, in the thread that forks (PDEATHSIG
    follows the thread): whatever ends the block (an exception, SIGINT, SIGTERM, SIGHUP:
    ``procs.interrupt_on_signals``), every worker still alive is killed and reaped."""

    def __init__(self) -> None:
        # Started, not yet reaped: its timeout, and when it was last waited for.
        self._live: dict[Worker, tuple[float, float]] = {}
        self._selector = selectors.DefaultSelector()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Pool:
        self._stack.enter_context(procs.interrupt_on_signals())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for w in list(self._live):
                self._drop(w)
        finally:
            self._selector.close()
            self._stack.close()

    def start(
        self,
        targets: Sequence[Callable[[Channel], int | None]],
        protocol: Protocol,
        timeout: float,
    ) -> list[Worker]:
        """Fork one worker per target, each to be killed past ``timeout`` seconds."""
        started = []
        for target in targets:
            with procs.signals_deferred():  # a worker forked is a worker recorded
                w = Worker.start(target, protocol)
                self._live[w] = (timeout, w.started)
            self._selector.register(w.fd, selectors.EVENT_READ, w)
            started.append(w)
        return started

    def wait(self, workers: Sequence[Worker]) -> list[Outcome]:
        """Read every live worker until these have ended (or timed out), reap these; their
        outcomes, in order. A worker's timeout counts from its start or from the start of this
        wait, whichever is later: while the caller did something else, nobody read its pipe
        (a worker with more to say than a pipe holds waits for the reader), so only a worker
        that hangs while it is read is taken for hung."""
        now = time.monotonic()
        self._live = {w: (timeout, now) for w, (timeout, _) in self._live.items()}
        while True:
            # What is there first: a worker that ended while the caller was busy elsewhere
            # (the next jail's walk, a trigger) is read to its end, not taken for a hang.
            while ready := self._selector.select(timeout=0):
                for key, _ in ready:
                    if not key.data.read():
                        self._selector.unregister(key.fd)
            for w, (timeout, since) in self._live.items():
                w.expire(timeout, since)
                if not w.reading and w.fd in self._selector.get_map():
                    self._selector.unregister(w.fd)
            if not any(w.reading for w in workers):
                break
            wait = min(
                max(w.started, since) + timeout - time.monotonic()
                for w, (timeout, since) in self._live.items()
                if w.reading
            )
            for key, _ in self._selector.select(timeout=max(0.01, wait)):
                w = key.data
                if not w.read():
                    self._selector.unregister(w.fd)
        for w in workers:
            self._drop(w)
        return [w.outcome for w in workers]

    def _drop(self, w: Worker) -> None:
        if w.fd in self._selector.get_map():
            self._selector.unregister(w.fd)
        w.reap()
        self._live.pop(w, None)
