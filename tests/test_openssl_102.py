"""OpenSSL 1.0.2 told as it is (issue 11): `info` names md_rand, not a DRBG; the late-load note
does not claim that anything loads openssl.cnf, which 1.0.2's libcrypto alone never does."""

from __future__ import annotations

import json
from collections.abc import Callable

from chrootcheck.lateload.check import LateFile, LoadTime, Presence, _timing_notices
from tests.conftest import Result
from tests.openssl_builds import Build


def test_info_names_md_rand(cli: Callable[..., Result], libcrypto_102: Build) -> None:
    res = cli("info", "--libcrypto", libcrypto_102.path, "--format", "json")
    assert res.code == 0, res
    method = json.loads(res.stdout)["rand_method"]
    assert method == "the library's own md_rand (RAND_SSLeay): no DRBG, seeded once, never reseeded"
    text = cli("info", "--libcrypto", libcrypto_102.path)
    assert "md_rand (RAND_SSLeay)" in text.stdout and "own DRBG" not in text.stdout


def test_info_names_the_drbg_elsewhere(cli: Callable[..., Result], libcrypto_30: Build) -> None:
    res = cli("info", "--libcrypto", libcrypto_30.path, "--format", "json")
    assert json.loads(res.stdout)["rand_method"] == "the library's own DRBG (RAND_OpenSSL)"


def test_late_load_note_for_102_does_not_claim_the_config_is_loaded() -> None:
    engine = "/usr/lib/engines/libpadlock.so"
    files = [
        LateFile(engine, "engine", LoadTime.WITH_CONFIG, "cnf:3 [e] dynamic_path", True, True,
                 Presence.MISSING)
    ]  # fmt: skip
    [modern] = _timing_notices(files, "/etc/ssl/openssl.cnf")
    assert modern.message.startswith("the probe loads /etc/ssl/openssl.cnf before its chroot")
    [old] = _timing_notices(files, "/usr/local/ssl/openssl.cnf", loads_config=False)
    assert "probe loads" not in old.message
    assert old.message.startswith(
        "1.0.2's libcrypto alone never loads /usr/local/ssl/openssl.cnf (nor does the probe"
    )
    assert old.message.endswith("/usr/lib/engines/libpadlock.so")
