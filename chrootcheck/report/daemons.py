"""Daemon profiles: how each daemon meets OpenSSL's reseed triggers once it is in its jail.

A small declarative table (docs/probe.md, "Daemon profiles"): the process model, which
triggers each mode hits and how often, what the daemon logs when it fails, and what its
packaging does to the jail. The probe joins a profile with the triggers it measured
(``probe.trigger_table.daemon_prediction``); ``discover`` attaches the profile of the daemon
it found, ``scan --daemon NAME[:MODE]`` names it by hand. Pure data, no imports.

The trigger names are the probe's (``probe.scenarios.TRIGGERS``, and ``time``). ``measured``
says whether the profile was checked against the real daemon in a jail (failure-modes.md,
"Ground truth with real daemons") or follows from the daemon's design only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Use:
    """One trigger a mode hits: ``how`` in plain words, ``unit`` what one hit is."""

    trigger: str  # threads, rand-seed, fork, draws, time
    how: str
    unit: str = ""  # "connection", "STARTTLS" ...: the N-th thread is the N-th of these


@dataclass(frozen=True)
class Mode:
    name: str
    when: str  # how to tell it from the configuration
    uses: tuple[Use, ...]  # in the order the daemon meets them


@dataclass(frozen=True)
class DaemonProfile:
    name: str
    process_model: str
    modes: tuple[Mode, ...]  # the first is the default (the distribution's packaging)
    logs: str  # what it logs when reseeding fails
    packaging: str  # what its packaging does to the jail
    getrandom_blocked: str  # what happens when getrandom(2) is blocked
    measured: bool
    # The late-loaded files (lateload roles: config, engine, provider, pkcs11-module ...) the
    # daemon loads before its chroot: not needed in the jail, so info, not findings, for it.
    # Empty: not known, and the late loads keep their hedged severities.
    loads_before_chroot: tuple[str, ...] = ()
    # Those of them measured with the real daemon (strace, real handshakes); the rest follow
    # from its design, and the lowered findings say which.
    measured_before_chroot: tuple[str, ...] = ()

    def mode(self, name: str | None) -> Mode:
        if name is None:
            return self.modes[0]
        return next(m for m in self.modes if m.name == name)


_TIME = Use("time", "the primary DRBG reseeds from the OS every 3600 s")

PROFILES: dict[str, DaemonProfile] = {
    p.name: p
    for p in (
        DaemonProfile(
            name="haproxy",
            process_model="one process with nbthread threads made at start; in master-worker "
            "mode (-W/-Ws, as Debian's unit runs it) the master forks the workers after the "
            "chroot",
            modes=(
                Mode(
                    "master-worker",
                    "master-worker in global, or -W/-Ws in the unit",
                    (Use("fork", "the workers are forked after the chroot", "connection"), _TIME),
                ),
                Mode("single process", "neither", (_TIME,)),
            ),
            logs="every handshake fails with error:1C8000BD ... error retrieving entropy; "
            "clients see TLS alert 80 (internal error); the process stays up",
            packaging="Debian's /var/lib/haproxy has an empty dev/: nothing copies the devices in",
            getrandom_blocked="does not start: 'unable to allocate SSL context'",
            measured=True,
            # Measured with Debian's haproxy 2.6 under strace (tests/test_hsm_real.py): its
            # OPENSSL_CONF, the ssl-provider modules and the crt files are opened before the
            # chroot, nothing after it, handshakes included. Its build has no engine support
            # (haproxy -vv: -ENGINE, ssl-engine is an unknown keyword): "engine" follows from
            # the design of builds that have it (ssl-engine is applied while parsing).
            loads_before_chroot=("config", "include", "include-dir", "engine", "provider"),
            measured_before_chroot=("config", "include", "include-dir", "provider"),
        ),
        DaemonProfile(
            name="stunnel",
            process_model="one thread per connection; with foreground = no it forks after the "
            "chroot",
            modes=(
                Mode(
                    "foreground",
                    "foreground = yes (Debian's stunnel@.service needs it)",
                    (Use("threads", "a new thread for every connection", "connection"), _TIME),
                ),
                Mode(
                    "daemon",
                    "foreground = no (the default)",
                    (Use("fork", "it forks after the chroot", "connection"), _TIME),
                ),
            ),
            logs="error:1C8000BD error retrieving entropy, 1200006C, 1C8000C0, 0A0C0103 for "
            "that connection and every one after it",
            packaging="Debian's example chroots to /var/lib/stunnel4/; nothing copies the "
            "devices in",
            getrandom_blocked="exits 1 at start: 'PRNG was not seeded with enough random "
            "bytes', 'Failed to initialize TLS'",
            measured=True,
            # Measured with stunnel 5.68, libp11 and SoftHSM2 (docs/late-loads.md): it reads
            # OPENSSL_CONF, dlopens the engine and providers, loads the PKCS#11 module and the
            # key before its chroot; after it only the module's own state is read.
            loads_before_chroot=(
                "config",
                "include",
                "include-dir",
                "engine",
                "provider",
                "pkcs11-module",
                "p11-kit-module",
                "p11-kit-config",
                "config-module",
            ),
            measured_before_chroot=(
                "config",
                "include",
                "include-dir",
                "engine",
                "provider",
                "pkcs11-module",
            ),
        ),
        DaemonProfile(
            name="postfix",
            process_model="master forks and execs smtpd outside the chroot; smtpd makes its "
            "SSL_CTX before the chroot and lives for max_idle (100 s) or max_use (100 "
            "sessions); tlsmgr chroots too",
            modes=(
                Mode(
                    "smtpd",
                    "a chrooted smtpd in master.cf",
                    (
                        Use(
                            "rand-seed",
                            "smtpd calls RAND_seed three times per STARTTLS, inside the jail",
                            "STARTTLS",
                        ),
                        _TIME,
                    ),
                ),
            ),
            logs="only error:0A0000EA:SSL routines::callback failed from smtpd (the "
            "session-ticket callback), never an entropy code; tlsmgr spins",
            packaging="Debian's configure-instance.sh copies /dev/random and /dev/urandom into "
            "the jail at every start unless SYNC_CHROOT=n in /etc/default/postfix: "
            "'systemctl restart postfix' is a fix",
            getrandom_blocked="starts, logs 'cannot allocate server SSL_CTX: disabling TLS "
            "support', still offers STARTTLS but answers it '454 4.7.0 TLS not available due "
            "to local problem', and accepts mail in clear text",
            measured=True,
        ),
        DaemonProfile(
            name="openssh",
            process_model="sshd re-executes itself for each connection (so it seeds before "
            "the chroot); the session's process chroots (ChrootDirectory) and lives as long "
            "as the session",
            modes=(
                Mode(
                    "sshd",
                    "ChrootDirectory",
                    (
                        Use(
                            "time",
                            "only a session longer than the "
                            "primary's reseed interval reseeds inside the jail",
                        ),
                    ),
                ),
            ),
            logs="not measured against a real sshd",
            packaging="the chroot is the administrator's folder: nothing copies the devices in",
            getrandom_blocked="cannot start, or starts without working crypto",
            measured=False,
        ),
        DaemonProfile(
            name="unbound",
            process_model="one process; num-threads threads made at start; no thread or fork "
            "per query",
            modes=(Mode("server", "chroot: in server:", (_TIME,)),),
            logs="not measured against a real unbound",
            packaging='Debian\'s unbound has chroot: "" (none) unless configured',
            getrandom_blocked="cannot start, or starts without TLS",
            measured=False,
        ),
        DaemonProfile(
            name="bind",
            process_model="named: one process, worker threads made at start (-n), chrooted with -t",
            modes=(Mode("named", "-t DIR", (_TIME,)),),
            logs="not measured against a real named",
            packaging="the chroot (-t) is the administrator's; named-chroot.service (Fedora) "
            "sets it up",
            getrandom_blocked="cannot start, or starts without TLS",
            measured=False,
        ),
    )
}
# discover's names for the same daemons
ALIASES = {"named": "bind", "sshd": "openssh", "bind9": "bind"}


def lookup(spec: str) -> tuple[DaemonProfile, Mode] | None:
    """``NAME`` or ``NAME:MODE`` (``stunnel:daemon``); None when unknown."""
    name, _, mode = spec.partition(":")
    profile = PROFILES.get(ALIASES.get(name, name))
    if profile is None:
        return None
    if mode and all(m.name != mode for m in profile.modes):
        return None
    return profile, profile.mode(mode or None)
