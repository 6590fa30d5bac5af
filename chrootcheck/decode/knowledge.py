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
    ERR_LIB_USER,
    ERR_RFLAG_COMMON,
    ERR_RFLAG_FATAL,
    ErrorRecord,
)
from chrootcheck.report.devices import ENTROPY_DEVICES, mknod_command


class Role(enum.StrEnum):
    ENTROPY = "entropy"  # the seed source gave nothing: the root cause in a jail
    DRBG = "drbg"  # a DRBG failed because of an earlier entropy failure
    WRAPPER = "wrapper"  # a caller's catch-all report of whatever failed below it
    TOKEN = "token"  # a PKCS#11 module cannot reach its token (an HSM key in a jail)
    PKCS11 = "pkcs11"  # another PKCS#11 module error (libp11's table): not the jail's doing


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


_FIX_NODES = (
    f"Create the devices in the jail: {mknod_command(*ENTROPY_DEVICES, mkdir=True)} "
    "(or chrootcheck fix JAIL; --bind on nodev mounts); or keep the devices open "
    "from before the chroot."
)
_CONFIRM = "chrootcheck scan JAIL (with the probe: as root, --user SERVICE_USER)"

ENTROPY = Entry(
    "error-retrieving-entropy",
    Role.ENTROPY,
    "the seed source returned no entropy",
    "A DRBG asked its seed source for entropy to instantiate or reseed and got none. On "
    "Linux the sources are getrandom(2), then /dev/urandom, /dev/random, /dev/hwrng, "
    "/dev/srandom.",
    "Inside a chroot: getrandom is unavailable or blocked (old kernel, seccomp, emulation) "
    "and the jail has no usable /dev/urandom, or the descriptor opened before the chroot was "
    "closed. Seeding before the chroot worked; the reseed (hourly, after fork, after a "
    "backward clock step) runs inside the jail and fails.",
    _FIX_NODES,
    _CONFIRM,
)
IN_ERROR_STATE = Entry(
    "in-error-state",
    Role.DRBG,
    "the DRBG is in its error state",
    "An earlier instantiate or reseed of this DRBG failed; it refuses to generate until it "
    "is successfully re-instantiated. Every request fails the same way meanwhile.",
    "The consequence of the entropy failure before it: each new connection retries, fails "
    "again and logs the same chain.",
    _FIX_NODES + " OpenSSL recovers on its own once entropy is available again.",
    _CONFIRM,
)
RESEED_ERROR = Entry(
    "reseed-error",
    Role.DRBG,
    "the DRBG could not reseed",
    "A reseed was due (time or request count, fork, or prediction resistance) and failed "
    "for lack of entropy.",
    "The hourly reseed of the primary DRBG, or the first use after fork in a jailed worker, "
    "found no seed source inside the jail.",
    _FIX_NODES,
    _CONFIRM,
)
GENERATE_ERROR = Entry(
    "generate-error",
    Role.DRBG,
    "the DRBG could not generate random bytes",
    "RAND_bytes failed in a DRBG, nearly always because a reseed it needed failed first.",
    "A reseed inside the jail found no entropy (see the errors before it).",
    _FIX_NODES,
    _CONFIRM,
)
INSTANTIATING = Entry(
    "error-instantiating-drbg",
    Role.DRBG,
    "a DRBG could not be created and seeded",
    "OpenSSL could not create (instantiate) a DRBG: its seed source gave no entropy. In 3.x "
    "the primary DRBG is then not cached and every later call retries.",
    "The first use of the RNG happened after the chroot, or in a child forked inside the "
    "jail, with no getrandom and no usable /dev/urandom.",
    _FIX_NODES + " Seeding the RNG before the chroot (one RAND_bytes call) also avoids it.",
    _CONFIRM,
)
NOT_SEEDED = Entry(
    "prng-not-seeded",
    Role.ENTROPY,
    "the PRNG was never seeded (OpenSSL 1.0.2/1.1.0)",
    "RAND_poll read fewer than 32 bytes from /dev/urandom, /dev/random, /dev/srandom and EGD, "
    "so RAND_bytes refuses to produce output.",
    "The process first used the RNG inside the jail, which has none of the devices.",
    _FIX_NODES,
    _CONFIRM,
)
SOURCE_TOO_WEAK = Entry(
    "entropy-source-strength-too-weak",
    Role.ENTROPY,
    "the seed source delivered too little entropy",
    "OpenSSL 3.x's SEED-SRC (or JITTER) returned less entropy than the DRBG's strength requires.",
    "The OS seed source found nothing to read inside the jail (no getrandom, no devices).",
    _FIX_NODES,
    _CONFIRM,
)
NONCE = Entry(
    "error-retrieving-nonce",
    Role.ENTROPY,
    "the DRBG could not get a nonce",
    "Instantiation needs a nonce from the parent or the seed source; it failed.",
    "Same cause as 'error retrieving entropy': no seed source in the jail.",
    _FIX_NODES,
    _CONFIRM,
)
PARENT = Entry(
    "parent-cannot-supply-entropy",
    Role.DRBG,
    "the parent DRBG cannot supply entropy",
    "A public or private DRBG reseeds from the primary, and the primary failed.",
    "The primary DRBG's own reseed failed inside the jail.",
    _FIX_NODES,
    _CONFIRM,
)
FETCH_DRBG = Entry(
    "unable-to-fetch-drbg",
    Role.DRBG,
    "OpenSSL could not fetch or create its DRBG",
    "EVP_RAND_fetch found no DRBG implementation, usually because providers or the "
    "configuration file were not loaded.",
    "OpenSSL 3.x loads openssl.cnf and provider modules lazily: when the first use is after "
    "the chroot, they are looked for inside the jail (OPENSSLDIR, MODULESDIR).",
    "Copy openssl.cnf and the provider modules into the jail at the same paths, or "
    "initialise OpenSSL (OPENSSL_init_crypto with LOAD_CONFIG) before the chroot.",
    "chrootcheck scan JAIL (late-loaded files) and chrootcheck info",
)
SSL_WRAPPER = Entry(
    "ssl-catch-all",
    Role.WRAPPER,
    "an SSL routine reports a catch-all 'malloc failure'",
    "Not necessarily a memory shortage: in OpenSSL 1.1.1 SSL_new's catch-all error label "
    "reports any failed sub-step as 'malloc failure' (3.0/3.1 likewise without the function "
    "code; 3.2+ says 'crypto lib'). Read the errors before it for the real cause.",
    "When 'error retrieving entropy' or 'in error state' comes before it, SSL_new failed "
    "because the RNG could not reseed inside the jail: the origin story of chrootcheck "
    "(haproxy stopped accepting TLS connections an hour after start).",
    _FIX_NODES,
    _CONFIRM,
)

CALLBACK_FAILED = Entry(
    "ssl-callback-failed",
    Role.WRAPPER,
    "an SSL callback failed",
    "A callback the application installed (session tickets, SNI, ALPN ...) returned an error; "
    "OpenSSL reports only that it failed.",
    "In Postfix's smtpd it is the session-ticket callback, which draws random bytes: see "
    "'postfix-smtpd-callback-failed'. Elsewhere read the application's own log line.",
    "Depends on the callback; for Postfix see 'postfix-smtpd-callback-failed'.",
    "chrootcheck decode (with the daemon's whole log)",
)
POSTFIX_CALLBACK = Entry(
    "postfix-smtpd-callback-failed",
    Role.ENTROPY,
    "Postfix smtpd: STARTTLS fails in its session-ticket callback (entropy in the jail)",
    "smtpd logs only 'error:0A0000EA:SSL routines::callback failed' (statem_srvr.c): its "
    "session-ticket callback could not get random bytes. No entropy code is ever logged.",
    "smtpd runs chrooted in /var/spool/postfix and calls RAND_seed three times per STARTTLS; "
    "on OpenSSL 3.x that reseeds the primary DRBG from the OS, so without getrandom and "
    "without /dev/urandom in the jail every STARTTLS fails from the first session; tlsmgr "
    "spins on /dev/urandom.",
    "Create /var/spool/postfix/dev/urandom and dev/random (Debian: 'systemctl restart "
    "postfix' does it while SYNC_CHROOT=y in /etc/default/postfix), or run smtpd unchrooted "
    "(master.cf column 5 = n).",
    "chrootcheck scan /var/spool/postfix --daemon postfix --user postfix",
)
STUNNEL_PRNG = Entry(
    "stunnel-prng-not-seeded",
    Role.ENTROPY,
    "stunnel could not seed OpenSSL at start",
    "stunnel checks RAND_status() before its chroot and gave up: OpenSSL had no seed source "
    "(its RNDfile, $RANDFILE and EGD fallbacks go through RAND_add, which on 3.x needs the OS "
    "source too). It exits with 'Failed to initialize TLS'.",
    "getrandom(2) is blocked (a seccomp filter, an old kernel) and /dev/urandom cannot be "
    "opened, before the chroot already: the jail is not the cause.",
    "Allow getrandom(2) in the service's sandbox (SystemCallFilter=), or give it /dev/urandom.",
    "chrootcheck scan JAIL --daemon stunnel (the no-getrandom scenario)",
)
CURL_RANDOM = Entry(
    "curl-insufficient-randomness",
    Role.ENTROPY,
    "curl: (35) Insufficient randomness",
    "curl's TLS backend could not get random bytes for the handshake.",
    "curl (or libcurl in a daemon) runs inside a chroot with no getrandom and no /dev/urandom.",
    _FIX_NODES,
    _CONFIRM,
)
LIBSODIUM = Entry(
    "libsodium-randombytes",
    Role.ENTROPY,
    "libsodium's randombytes failed or aborted",
    "libsodium's randombytes could not read its source and aborts the process (often with "
    "no message at all: libsodium#625, pdns#6125).",
    "sodium_init ran after the chroot, or getrandom is unavailable and the jail has no "
    "/dev/urandom.",
    _FIX_NODES + " Calling sodium_init() before the chroot also avoids it.",
    _CONFIRM,
)
URANDOM_OPEN = Entry(
    "cannot-open-urandom",
    Role.ENTROPY,
    "a process could not open /dev/urandom",
    "The process seeds its own generator from /dev/urandom and could not open it.",
    "Inside a chroot the path is looked up in the jail, which has no /dev/urandom (or a "
    "nodev mount, or a node it may not read).",
    _FIX_NODES,
    _CONFIRM,
)
SYSTEM_ENTROPY = Entry(
    "cannot-get-system-entropy",
    Role.ENTROPY,
    "the program cannot get system entropy",
    "Neither getrandom(2) nor /dev/urandom gave the program any random bytes.",
    "getrandom is blocked or unavailable and the jail has no usable /dev/urandom.",
    _FIX_NODES,
    _CONFIRM,
)
POSTFIX_NO_TLS = Entry(
    "postfix-disabling-tls",
    Role.ENTROPY,
    "Postfix disabled TLS: mail is accepted in clear text",
    "smtpd could not create its server SSL_CTX ('cannot allocate server SSL_CTX: disabling "
    "TLS support'): it still offers STARTTLS but answers it '454 4.7.0 TLS not available due "
    "to local problem', senders go on in clear text, and mail arrives unencrypted.",
    "OpenSSL could not seed at all: getrandom(2) is blocked (a seccomp sandbox) and no "
    "/dev/urandom could be opened, before the chroot already.",
    "Allow getrandom(2) in the service's sandbox, or give it /dev/urandom; then restart Postfix.",
    "chrootcheck scan /var/spool/postfix --daemon postfix (the no-getrandom scenario)",
)
RAND_WRITE_FILE = Entry(
    "rand-write-file-not-regular",
    Role.WRAPPER,
    "RAND_write_file: the seed file is not a regular file",
    "The application saves its RNG state to $RANDFILE or ~/.rnd and that path is a device or "
    "other special file (often /dev/urandom itself); OpenSSL refuses to write to it.",
    "Harmless for seeding: OpenSSL 1.1.1+ seeds from the OS, not from that file. Inside a "
    "jail the path is the jail's.",
    "Point RANDFILE at a regular file the service may write, or unset it.",
    "chrootcheck scan JAIL",
)

# --- PKCS#11 modules through libp11 (the pkcs11 engine): the HSM case ---------------------
# libp11 registers its library at run time (ERR_get_next_error_library: its number varies,
# 41800082 in one process, 42000082 in stunnel) and uses the module's own return value, a
# PKCS#11 CKR_* code, as the reason. So it is found by the library's printed name and the
# reason number (src/p11_err.c and eng_err.c in OpenSC/libp11).
PKCS11_LIBRARY_NAMES = ("pkcs#11 module", "pkcs11 library", "pkcs11 engine")
_CONFIRM_TOKEN = (
    "chrootcheck scan JAIL --daemon-config DAEMON.conf (or --key pkcs11:URI --user USER): the "
    "late-load probe signs inside the jail, and the token-store findings name the store"
)
TOKEN_UNREACHABLE = Entry(
    "pkcs11-token-unreachable",
    Role.TOKEN,
    "the PKCS#11 module cannot reach its token",
    "The key's module answered that the object, key, session or token it was asked to use "
    "is not there (CKR_OBJECT_HANDLE_INVALID and its kin): the handle the daemon got when it "
    "loaded the key no longer leads to a token the module can read.",
    "In a jail, the token store is missing or unreadable for the service user: the daemon "
    "loaded the key before its chroot as root; SoftHSM2 reopens the token's files "
    "(<tokendir>/<token>/generation, the key's .object) at every signature, inside the jail, "
    "as the user. Every handshake fails from the first, while the daemon stays up.",
    "Bind-mount the token store read-write at the same path in the jail (mount --bind "
    "TOKENDIR JAIL/TOKENDIR) and let the service user read it (Debian: usermod -aG softhsm "
    "USER); or move the token store into the jail.",
    _CONFIRM_TOKEN,
)
PKCS11_PIN = Entry(
    "pkcs11-pin",
    Role.PKCS11,
    "the PKCS#11 token refused the PIN",
    "CKR_PIN_INCORRECT, _INVALID, _LEN_RANGE, _EXPIRED or _LOCKED: the PIN the daemon gave "
    "(engineCtrl = PIN:..., pin-value in the URI) is wrong or the PIN is locked.",
    "Not the jail: the key is loaded before the chroot, with the PIN from the config.",
    "Fix the PIN in the daemon's config (or unlock it with the SO PIN).",
    _CONFIRM_TOKEN,
)
PKCS11_OTHER = Entry(
    "pkcs11-module-error",
    Role.PKCS11,
    "a PKCS#11 module error",
    "The module returned a PKCS#11 error code (the reason is the CKR_* value, named in "
    "libp11's table); the text says which.",
    "Usually not the jail; if it appears only after the chroot, the module is missing "
    "something it reads late (its token store, a socket, a cache).",
    "Read the reason; compare with the same key used outside the jail.",
    _CONFIRM_TOKEN,
)
PKCS11_ENGINE = Entry(
    "pkcs11-engine-error",
    Role.PKCS11,
    "the pkcs11 engine (libp11) refused a setting",
    "The engine's own errors: 'invalid id' or 'invalid parameter' (a control command's value, "
    "a key URI it cannot parse), 'object not found' (no object on the token matches the key "
    "URI), 'unknown command' (a control command it does not have).",
    "Not the jail when it happens at start, before the chroot: the daemon's engine settings "
    "(engineCtrl, the key URI). stunnel logs one 'invalid id' at start for a control it tries "
    "and then works.",
    "Check the engine settings and the key URI (p11tool --list-all, pkcs11-tool -O).",
    _CONFIRM_TOKEN,
)
EVP_AFTER_PKCS11 = Entry(
    "evp-lib-after-pkcs11",
    Role.WRAPPER,
    "EVP lib: the signature below the TLS layer failed",
    "libssl reports 'EVP lib' (0A080006) when the EVP call it made (the handshake's "
    "signature) failed: the error before it in the chain says why.",
    "After a PKCS#11 module error: the HSM key could not sign inside the jail.",
    "Fix what the error before it names.",
    _CONFIRM_TOKEN,
)
# CKR_* values (PKCS#11 v2.40): the token, session or object is gone for the module.
_CKR_TOKEN = frozenset(
    {
        0x05,  # CKR_GENERAL_ERROR
        0x06,  # CKR_FUNCTION_FAILED
        0x30,  # CKR_DEVICE_ERROR
        0x32,  # CKR_DEVICE_REMOVED
        0x60,  # CKR_KEY_HANDLE_INVALID
        0x82,  # CKR_OBJECT_HANDLE_INVALID
        0xB0,  # CKR_SESSION_CLOSED
        0xB3,  # CKR_SESSION_HANDLE_INVALID
        0xE0,  # CKR_TOKEN_NOT_PRESENT
        0xE1,  # CKR_TOKEN_NOT_RECOGNIZED
        0x101,  # CKR_USER_NOT_LOGGED_IN
        0x190,  # CKR_CRYPTOKI_NOT_INITIALIZED
    }
)
_CKR_PIN = frozenset({0xA0, 0xA1, 0xA2, 0xA3, 0xA4})  # CKR_PIN_INCORRECT ... _LOCKED
# The consequence text of a TLS-layer catch-all after a PKCS#11 token error.
TOKEN_CONSEQUENCE = (
    "The TLS layer's report of the failed signature: the PKCS#11 module cannot reach its "
    "token (the PKCS#11 error in this chain); in a jail, the token store is missing or "
    "unreadable for the service user."
)


def pkcs11_entry(record: ErrorRecord, printed_library: str) -> Entry | None:
    """libp11's errors, by the printed library name and the CKR_* reason."""
    names = {printed_library.strip().lower(), record.library.lower()}
    if not names & set(PKCS11_LIBRARY_NAMES):
        return None
    if "pkcs11 engine" in names:  # eng_err.c: its own reasons, not CKR_* values
        return PKCS11_ENGINE
    mask = 0xFFF if record.packing == "1.x" else 0x7FFFFF
    reason = record.reason_code & mask
    if reason in _CKR_TOKEN:
        return TOKEN_UNREACHABLE
    if reason in _CKR_PIN:
        return PKCS11_PIN
    return PKCS11_OTHER


# Messages users paste that carry no OpenSSL code (or need the line around the code).
PHRASES: tuple[tuple[str, Entry], ...] = (
    (r"PRNG was not seeded with enough random bytes", STUNNEL_PRNG),
    (r"PRNG (?:is )?not seeded", NOT_SEEDED),
    (r"\(35\) Insufficient randomness", CURL_RANDOM),
    (r"randombytes(?:_[a-z]+)?(?:\(\))?:? failed|randombytes.{0,40}abort", LIBSODIUM),
    (r"get_seed_from_urandom\(\): failed to open /dev/urandom", URANDOM_OPEN),
    (r"Cannot get system entropy", SYSTEM_ENTROPY),
    (r"disabling TLS support", POSTFIX_NO_TLS),
    (r"RAND_write_file:? ?Not a regular file", RAND_WRITE_FILE),
)

# The explanation of SSL_new's catch-all when an entropy error came first in the same chain.
CONSEQUENCE = (
    "This is not an out-of-memory error: SSL_new (or SSL_CTX_new) failed because the random "
    "number generator could not (re)seed, as the entropy error above shows, and reported it "
    "through its catch-all 'malloc failure'."
)

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
    (ERR_LIB_SSL, 234): CALLBACK_FAILED,  # 0A0000EA
    (ERR_LIB_SSL, _COMMON | 6): EVP_AFTER_PKCS11,  # 0A080006 EVP lib
}

ENTRIES: tuple[Entry, ...] = tuple(
    dict.fromkeys(
        [
            *_TABLE_1X.values(),
            *_TABLE_3X.values(),
            POSTFIX_CALLBACK,
            *(e for _, e in PHRASES),
            TOKEN_UNREACHABLE,
            PKCS11_PIN,
            PKCS11_OTHER,
            PKCS11_ENGINE,
        ]
    )
)


def lookup(record: ErrorRecord, text: str = "", printed_library: str = "") -> Entry | None:
    """The entry for a decoded error; ``text`` (its log line) can make it more precise:
    0A0000EA from postfix/smtpd is entropy in the Postfix jail. ``printed_library``: the
    library as the log printed it (libp11's number is given at run time)."""
    if record.lib >= ERR_LIB_USER:
        return pkcs11_entry(record, printed_library)
    table = _TABLE_1X if record.packing == "1.x" else _TABLE_3X
    entry = table.get((record.lib, record.reason_code))
    if entry is CALLBACK_FAILED and "postfix/smtpd" in text:
        return POSTFIX_CALLBACK
    return entry
