"""Fork one child per scenario, collect their messages, kill the ones that hang.

The children run in parallel (``system.worker.run_many``): the whole probe takes as long as
the slowest scenario; ``start_batch``/``finish_batch`` run the children of several jails' probes
together in one ``worker.Pool`` (``run_batches`` for a known list).
None outlives the probe: an exception (Ctrl-C, SIGTERM, SIGHUP: ``procs.interrupt_on_signals``)
kills and reaps them, and each dies with this process if it is killed outright
(``procs.fork_child``: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from chrootcheck.openssl.library import Libcrypto, prefill
from chrootcheck.openssl.rand import warm_up
from chrootcheck.probe import protocol
from chrootcheck.probe.child import ChildSpec, run_child
from chrootcheck.system import worker


@dataclass(frozen=True)
class ChildOutcome:
    """What the parent learned about one child: its messages and how it ended."""

    spec: ChildSpec
    events: tuple[object, ...] = ()  # probe.protocol messages, and worker.Failed
    exit_status: int | None = None
    signal: str | None = None
    timed_out: bool = False
    error: str | None = None  # unreadable output (the child was killed there)
    seconds: float = 0.0

    @property
    def garbage(self) -> bool:
        return self.error is not None


def run_children(
    lc: Libcrypto | None, specs: list[ChildSpec], timeout: float
) -> list[ChildOutcome]:
    return run_batches([(lc, specs)], timeout)[0]


def run_batches(
    batches: Sequence[tuple[Libcrypto | None, list[ChildSpec]]], timeout: float
) -> list[list[ChildOutcome]]:
    """The children of several probes (one batch per jail), forked together and read in
    parallel; the outcomes batch by batch, in order."""
    with worker.Pool() as pool:
        started = [start_batch(pool, lc, specs, timeout) for lc, specs in batches]
        return [finish_batch(pool, batch) for batch in started]


@dataclass(frozen=True)
class Batch:
    """One probe's children, started in a pool."""

    specs: list[ChildSpec]
    workers: list[worker.Worker]


def start_batch(
    pool: worker.Pool, lc: Libcrypto | None, specs: list[ChildSpec], timeout: float
) -> Batch:
    """Fork one probe's children in ``pool`` (which reads them with every other batch)."""
    prefill(lc)  # here, not again in every child (a no-op once filled)
    if lc is not None:
        warm_up(lc)  # the error strings, once (nothing seeded; each child reads the config)
    cycles = max((spec.cycles for spec in specs), default=1)
    targets = [functools.partial(run_child, lc, spec) for spec in specs]
    return Batch(specs, pool.start(targets, protocol.protocol(cycles), timeout))


def finish_batch(pool: worker.Pool, batch: Batch) -> list[ChildOutcome]:
    """Wait for one batch's children; their outcomes, in order."""
    return [
        ChildOutcome(
            spec, tuple(o.messages), o.exit_status, o.signal, o.timed_out, o.error, o.seconds
        )
        for spec, o in zip(batch.specs, pool.wait(batch.workers), strict=True)
    ]
