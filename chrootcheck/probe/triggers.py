"""The triggers: what makes a seeded OpenSSL go back to the OS for entropy, run inside the jail.

Each trigger runs in its own probe child (``probe.child``), after the same start-up as the
scenario (seeded before the chroot, no control cycle: its explicit reseeds would move the
counters being measured), and reports one ``TriggerRun``:

* ``threads``: new threads one at a time, each drawing like a TLS handshake does (RAND_bytes,
  and RAND_priv_bytes where there is a private DRBG) then ending; every new thread's DRBGs
  are seeded from the primary, which reseeds from the OS after its request limit.
* ``rand-seed``: RAND_seed inside the jail (Postfix's smtpd and tlsmgr), then a draw; on 3.x
  it reseeds the primary from the OS.
* ``fork``: a fork, the child drawing bytes (master-worker daemons, stunnel without
  ``foreground``); OpenSSL reseeds after a fork.
* ``draws``: many draws from one thread: the public DRBG's request counter.

The time trigger needs no child of its own: the scenario's cycles reseed the primary
explicitly, which is what its reseed interval does after that time.

Imported at the top of ``probe.child``: nothing here may import a module after the chroot.
"""

from __future__ import annotations

import os
import threading

from chrootcheck.openssl.rand import Rand
from chrootcheck.openssl.results import Step
from chrootcheck.probe.protocol import TriggerRun
from chrootcheck.probe.scenarios import DRAWS, FORK, RAND_SEED, THREADS
from chrootcheck.system import procs

THREAD_CAP = 1024
SEED_CAP = 16
FORK_CAP = 4
# Past the public DRBG's default request limit (65536): it reseeds from the primary once,
# the path a busy thread takes. The primary serves 256 such requests before it goes to the
# OS itself, which no cap a probe can afford reaches (docs/probe.md, "Triggers").
DRAW_CAP = (1 << 16) + 16

_EXIT_DRAW_FAILED = 3


def run(name: str, rand: Rand) -> TriggerRun:
    if name == THREADS:
        return _threads(rand)
    if name == RAND_SEED:
        return _rand_seed(rand)
    if name == FORK:
        return _fork(rand)
    if name == DRAWS:
        return _draws(rand)
    raise ValueError(f"unknown trigger {name!r}")


def _handshake_draws(rand: Rand) -> list[Step]:
    steps = [rand.draw(32)]
    if rand.has_drbg:
        steps.append(rand.draw_private(32))
    return steps


def _failed(steps: list[Step]) -> Step | None:
    return next((s for s in steps if s.ok is False), None)


def _threads(rand: Rand) -> TriggerRun:
    for i in range(1, THREAD_CAP + 1):
        got: list[Step] = []
        thread = threading.Thread(target=lambda out=got: out.extend(_handshake_draws(rand)))
        thread.start()
        thread.join()
        bad = _failed(got) if got else Step("a new thread", False, (), "the thread died")
        if bad is not None:
            return TriggerRun(THREADS, True, i, THREAD_CAP, bad.action, bad.errors)
    return TriggerRun(THREADS, False, 0, THREAD_CAP)


def _rand_seed(rand: Rand) -> TriggerRun:
    for i in range(1, SEED_CAP + 1):
        # What Postfix mixes in: time and pid, no entropy worth the name.
        data = f"{os.getpid()}:{i}".encode().ljust(32, b"\0")
        steps = [rand.seed(data), rand.draw(32)]
        bad = _failed(steps)
        if bad is not None:
            return TriggerRun(RAND_SEED, True, i, SEED_CAP, bad.action, bad.errors)
    return TriggerRun(RAND_SEED, False, 0, SEED_CAP)


def _fork(rand: Rand) -> TriggerRun:
    for i in range(1, FORK_CAP + 1):
        pid = procs.fork_child()
        if pid == 0:
            ok = _failed(_handshake_draws(rand)) is None
            os._exit(0 if ok else _EXIT_DRAW_FAILED)
        _, status = os.waitpid(pid, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            why = (
                "the forked child's draw failed"
                if os.WIFEXITED(status) and os.WEXITSTATUS(status) == _EXIT_DRAW_FAILED
                else f"the forked child ended with status {status}"
            )
            return TriggerRun(FORK, True, i, FORK_CAP, why)
    return TriggerRun(FORK, False, 0, FORK_CAP)


def _draws(rand: Rand) -> TriggerRun:
    i, step = rand.draw_until_failure(DRAW_CAP)
    if step is not None:
        return TriggerRun(DRAWS, True, i, DRAW_CAP, step.action, step.errors)
    return TriggerRun(DRAWS, False, 0, DRAW_CAP)
