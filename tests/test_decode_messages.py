"""decode: what users paste (issue 11) — Postfix's 0A0000EA from smtpd, messages without an
OpenSSL code, and the two parsing bugs (a reason swallowing the log's trailing text, request
ids taken for bare codes)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from chrootcheck.decode import knowledge
from chrootcheck.decode.chains import scan_line
from chrootcheck.decode.messages import find
from tests.conftest import Result

POSTFIX = (
    "Dec  1 10:00:01 mx postfix/smtpd[4242]: warning: TLS library problem: "
    "error:0A0000EA:SSL routines::callback failed:ssl/statem/statem_srvr.c:4080:"
)


def test_postfix_callback_failed_is_entropy_in_the_postfix_jail() -> None:
    [e] = scan_line(POSTFIX, 1)
    assert e.entry is knowledge.POSTFIX_CALLBACK and e.entry.is_entropy_problem
    assert "RAND_seed" in e.entry.jail_cause and "SYNC_CHROOT" in e.entry.fix
    # the same code from anything else is only a failed callback
    [other] = scan_line("nginx: error:0A0000EA:SSL routines::callback failed", 1)
    assert other.entry is knowledge.CALLBACK_FAILED and not other.entry.is_entropy_problem


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("ssh-keygen: PRNG is not seeded", "prng-not-seeded"),
        ("openssl genrsa: PRNG not seeded", "prng-not-seeded"),
        ("curl: (35) Insufficient randomness", "curl-insufficient-randomness"),
        ("pdns_server: randombytes failed", "libsodium-randombytes"),
        ("sodium: randombytes_buf() aborted the process", "libsodium-randombytes"),
        ("get_seed_from_urandom(): failed to open /dev/urandom", "cannot-open-urandom"),
        ("php-fpm: Cannot get system entropy", "cannot-get-system-entropy"),
        ("140:RAND_write_file:Not a regular file", "rand-write-file-not-regular"),
        (
            "postfix/smtpd[9]: warning: cannot allocate server SSL_CTX: disabling TLS support",
            "postfix-disabling-tls",
        ),
        (
            "stunnel: LOG3[ui]: PRNG was not seeded with enough random bytes",
            "stunnel-prng-not-seeded",
        ),
    ],
)
def test_messages_users_paste(line: str, key: str) -> None:
    [m] = find(line, 7)
    assert (m.line_no, m.entry.key) == (7, key)
    assert m.entry.is_entropy_problem == (key != "rand-write-file-not-regular")


def test_a_printed_reason_is_the_chains_not_a_message() -> None:
    line = "1:error:24064064:random number generator:RAND_bytes:PRNG not seeded:md_rand.c:1:"
    assert find(line, 1) == []
    [e] = scan_line(line, 1)
    assert e.entry is knowledge.NOT_SEEDED


def test_the_reason_stops_where_the_log_goes_on() -> None:
    line = (
        "2024/01/01 10:00:00 [crit] 12#12: *5 SSL_do_handshake() failed (SSL: "
        "error:0A000086:SSL routines::certificate verify failed) while SSL handshaking, "
        "client: 10.0.0.1, server: 0.0.0.0:443"
    )
    [e] = scan_line(line, 1)
    assert (e.printed_reason, e.reason) == ("certificate verify failed",) * 2
    [u] = scan_line("x (error:0A0FFFFF:SSL routines::some new reason) while y", 1)
    assert u.printed_reason == "some new reason"  # unknown reasons end at the bracket too
    [f] = scan_line("error:12345678:lib(36):func(100):reason(100)", 1)
    assert f.printed_reason == "reason(100)"  # a balanced fallback stays whole


@pytest.mark.parametrize(
    "line",
    [
        "ERROR req_id=0200d031 getnameinfo failed",
        "2026-12-01 request 0200d031 error while reading",
        "trace=1c8000bd span=2406c06e",
    ],
)
def test_request_ids_are_not_bare_codes(line: str) -> None:
    assert scan_line(line, 1) == []


def test_bare_codes_still_found_where_openssl_is_named() -> None:
    for line in ("2406C06E", "SSL_read failed: 1C8000BD", "libcrypto: 1C8000BD", "rv=0x1C8000BD"):
        assert [e.form for e in scan_line(line, 1)] == ["bare"], line


def test_cli_text_json_and_exit(cli: Callable[..., Result]) -> None:
    log = "\n".join(["noise", POSTFIX, "curl: (35) Insufficient randomness", "more noise"])
    r = cli("decode", input=log + "\n")
    assert r.code == 1, r
    assert "Message (line 3): ENTROPY" in r.stdout
    assert "[postfix-smtpd-callback-failed]" in r.stdout
    assert "1 known message(s) (1 about entropy)" in r.stderr
    j = cli("decode", "--format", "json", input=log + "\n")
    data = json.loads(j.stdout)
    assert data["messages"] == [
        {
            "line_no": 3,
            "knowledge": "curl-insufficient-randomness",
            "entropy_problem": True,
            "text": "curl: (35) Insufficient randomness",
        }
    ]
    assert set(data["knowledge"]) == {
        "postfix-smtpd-callback-failed",
        "curl-insufficient-randomness",
    }
    assert data["summary"]["entropy_messages"] == 1
    # a message that is not about entropy exits 0
    harmless = cli("decode", input="RAND_write_file:Not a regular file\n")
    assert harmless.code == 0 and "[rand-write-file-not-regular]" in harmless.stdout
