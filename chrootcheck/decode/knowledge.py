"""A small knowledge base of the OpenSSL errors that entropy trouble in a jail produces.

Each entry says what the error means, the likely cause inside a chroot jail, the fix, and
the chrootcheck command that confirms it. Entries are found by library and reason number
under the code's packing, so they work for the printed forms and for bare codes alike.
Facts: docs/decode.md and the OpenSSL sources cited in the reference notes (openssl-rand.md
sections 4-5, failure-modes.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chrootcheck.openssl.errcodes import (
    ERR_LIB_PROV,
    ERR_LIB_RAND,
    ERR_LIB_SSL,
    ERR_RFLAG_COMMON,
    ERR_RFLAG_FATAL,
    ErrorRecord,
)
from chrootcheck.report.devices import ENTROPY_DEVICES, mknod_command


class Role(enum.StrEnum):
    ENTROPY = "entropy"  # the seed source gave nothing: the root cause in a jail
    DRBG = "drbg"  # a DRBG failed because of an earlier entropy failure
    WRAPPER = "wrapper"  # a caller's catch-all report of whatever failed below it


@dataclass(frozen=True)
class Entry:
    key: str  # a stable slug, also the anchor in docs/decode.md
    role: Role
    title: str
    meaning: str
    jail_cause: str
    fix: str
    confirm: str  # the chrootcheck command that confirms it

    @property
    def is_entropy_problem(self) -> bool:
        return self.role in (Role.ENTROPY, Role.DRBG)


_FIX_NODES = (f"Create the devices in the jail: {mknod_command(*ENTROPY_DEVICES, mkdir=True)} "
              "(or chrootcheck fix JAIL; --bind on nodev mounts); or keep the devices open "
              "from before the chroot.")
_CONFIRM = "chrootcheck scan JAIL (with the probe: as root, --user SERVICE_USER)"

ENTROPY = Entry(
    "error-retrieving-entropy", Role.ENTROPY, "the seed source returned no entropy",
    "A DRBG asked its seed source for entropy to instantiate or reseed and got none. On "
    "Linux the sources are getrandom(2), then /dev/urandom, /dev/random, /dev/hwrng, "
    "/dev/srandom.",
    "Inside a chroot: getrandom is unavailable or blocked (old kernel, seccomp, emulation) "
    "and the jail has no usable /dev/urandom, or the descriptor opened before the chroot was "
    "closed. Seeding before the chroot worked; the reseed (hourly, after fork, after a "
    "backward clock step) runs inside the jail and fails.",
    _FIX_NODES, _CONFIRM)
IN_ERROR_STATE = Entry(
    "in-error-state", Role.DRBG, "the DRBG is in its error state",
    "An earlier instantiate or reseed of this DRBG failed; it refuses to generate until it "
    "is successfully re-instantiated. Every request fails the same way meanwhile.",
    "The consequence of the entropy failure before it: each new connection retries, fails "
    "again and logs the same chain.",
    _FIX_NODES + " OpenSSL recovers on its own once entropy is available again.", _CONFIRM)
RESEED_ERROR = Entry(
    "reseed-error", Role.DRBG, "the DRBG could not reseed",
    "A reseed was due (time or request count, fork, or prediction resistance) and failed "
    "for lack of entropy.",
    "The hourly reseed of the primary DRBG, or the first use after fork in a jailed worker, "
    "found no seed source inside the jail.",
    _FIX_NODES, _CONFIRM)
GENERATE_ERROR = Entry(
    "generate-error", Role.DRBG, "the DRBG could not generate random bytes",
    "RAND_bytes failed in a DRBG, nearly always because a reseed it needed failed first.",
    "A reseed inside the jail found no entropy (see the errors before it).",
    _FIX_NODES, _CONFIRM)
INSTANTIATING = Entry(
    "error-instantiating-drbg", Role.DRBG, "a DRBG could not be created and seeded",
    "OpenSSL could not create (instantiate) a DRBG: its seed source gave no entropy. In 3.x "
    "the primary DRBG is then not cached and every later call retries.",
    "The first use of the RNG happened after the chroot, or in a child forked inside the "
    "jail, with no getrandom and no usable /dev/urandom.",
    _FIX_NODES + " Seeding the RNG before the chroot (one RAND_bytes call) also avoids it.",
    _CONFIRM)
NOT_SEEDED = Entry(
    "prng-not-seeded", Role.ENTROPY, "the PRNG was never seeded (OpenSSL 1.0.2/1.1.0)",
    "RAND_poll read fewer than 32 bytes from /dev/urandom, /dev/random, /dev/srandom and EGD, "
    "so RAND_bytes refuses to produce output.",
    "The process first used the RNG inside the jail, which has none of the devices.",
    _FIX_NODES, _CONFIRM)
SOURCE_TOO_WEAK = Entry(
    "entropy-source-strength-too-weak", Role.ENTROPY,
    "the seed source delivered too little entropy",
    "OpenSSL 3.x's SEED-SRC (or JITTER) returned less entropy than the DRBG's strength "
    "requires.",
    "The OS seed source found nothing to read inside the jail (no getrandom, no devices).",
    _FIX_NODES, _CONFIRM)
NONCE = Entry(
    "error-retrieving-nonce", Role.ENTROPY, "the DRBG could not get a nonce",
    "Instantiation needs a nonce from the parent or the seed source; it failed.",
    "Same cause as 'error retrieving entropy': no seed source in the jail.",
    _FIX_NODES, _CONFIRM)
PARENT = Entry(
    "parent-cannot-supply-entropy", Role.DRBG, "the parent DRBG cannot supply entropy",
    "A public or private DRBG reseeds from the primary, and the primary failed.",
    "The primary DRBG's own reseed failed inside the jail.",
    _FIX_NODES, _CONFIRM)
FETCH_DRBG = Entry(
    "unable-to-fetch-drbg", Role.DRBG, "OpenSSL could not fetch or create its DRBG",
    "EVP_RAND_fetch found no DRBG implementation, usually because providers or the "
    "configuration file were not loaded.",
    "OpenSSL 3.x loads openssl.cnf and provider modules lazily: when the first use is after "
    "the chroot, they are looked for inside the jail (OPENSSLDIR, MODULESDIR).",
    "Copy openssl.cnf and the provider modules into the jail at the same paths, or "
    "initialise OpenSSL (OPENSSL_init_crypto with LOAD_CONFIG) before the chroot.",
    "chrootcheck scan JAIL (late-loaded files) and chrootcheck info")
SSL_WRAPPER = Entry(
    "ssl-catch-all", Role.WRAPPER, "an SSL routine reports a catch-all 'malloc failure'",
    "Not necessarily a memory shortage: in OpenSSL 1.1.1 SSL_new's catch-all error label "
    "reports any failed sub-step as 'malloc failure' (3.0/3.1 likewise without the function "
    "code; 3.2+ says 'crypto lib'). Read the errors before it for the real cause.",
    "When 'error retrieving entropy' or 'in error state' comes before it, SSL_new failed "
    "because the RNG could not reseed inside the jail: the origin story of chrootcheck "
    "(haproxy stopped accepting TLS connections an hour after start).",
    _FIX_NODES, _CONFIRM)

# The explanation of SSL_new's catch-all when an entropy error came first in the same chain.
CONSEQUENCE = (
    "This is not an out-of-memory error: SSL_new (or SSL_CTX_new) failed because the random "
    "number generator could not (re)seed, as the entropy error above shows, and reported it "
    "through its catch-all 'malloc failure'.")

# 1.x: (lib, reason) -> entry; the function code does not change the meaning.
_TABLE_1X: dict[tuple[int, int], Entry] = {
    (ERR_LIB_RAND, 100): NOT_SEEDED,
    (ERR_LIB_RAND, 108): INSTANTIATING,
    (ERR_LIB_RAND, 110): ENTROPY,
    (ERR_LIB_RAND, 111): NONCE,
    (ERR_LIB_RAND, 112): GENERATE_ERROR,
    (ERR_LIB_RAND, 114): IN_ERROR_STATE,
    (ERR_LIB_RAND, 115): IN_ERROR_STATE,
    (ERR_LIB_RAND, 118): RESEED_ERROR,
    (ERR_LIB_SSL, 65): SSL_WRAPPER,  # ERR_R_MALLOC_FAILURE
}
_COMMON = ERR_RFLAG_COMMON
_TABLE_3X: dict[tuple[int, int], Entry] = {
    (ERR_LIB_RAND, 100): NOT_SEEDED,
    (ERR_LIB_RAND, 108): INSTANTIATING,
    (ERR_LIB_RAND, 110): ENTROPY,
    (ERR_LIB_RAND, 111): NONCE,
    (ERR_LIB_RAND, 112): GENERATE_ERROR,
    (ERR_LIB_RAND, 114): IN_ERROR_STATE,
    (ERR_LIB_RAND, 118): RESEED_ERROR,
    (ERR_LIB_RAND, 143): FETCH_DRBG,
    (ERR_LIB_RAND, 144): FETCH_DRBG,
    (ERR_LIB_PROV, 186): SOURCE_TOO_WEAK,
    (ERR_LIB_PROV, 187): PARENT,
    (ERR_LIB_PROV, 188): INSTANTIATING,
    (ERR_LIB_PROV, 189): ENTROPY,
    (ERR_LIB_PROV, 190): NONCE,
    (ERR_LIB_PROV, 191): GENERATE_ERROR,
    (ERR_LIB_PROV, 192): IN_ERROR_STATE,
    (ERR_LIB_PROV, 193): IN_ERROR_STATE,
    (ERR_LIB_PROV, 197): RESEED_ERROR,
    (ERR_LIB_PROV, 204): RESEED_ERROR,
    (ERR_LIB_SSL, _COMMON | ERR_RFLAG_FATAL | 256): SSL_WRAPPER,  # malloc failure (3.0/3.1)
    (ERR_LIB_SSL, _COMMON | 15): SSL_WRAPPER,  # crypto lib (3.2+)
    (ERR_LIB_SSL, _COMMON | 36): SSL_WRAPPER,  # RAND lib
}

ENTRIES: tuple[Entry, ...] = tuple(dict.fromkeys([*_TABLE_1X.values(), *_TABLE_3X.values()]))


def lookup(record: ErrorRecord) -> Entry | None:
    table = _TABLE_1X if record.packing == "1.x" else _TABLE_3X
    return table.get((record.lib, record.reason_code))
