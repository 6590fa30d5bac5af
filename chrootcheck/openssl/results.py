"""Plain results of calls into libcrypto: pure data, no cffi, safe for formats and JSON."""

from __future__ import annotations

from dataclasses import dataclass

from chrootcheck.openssl.errcodes import ErrorRecord


@dataclass(frozen=True)
class Step:
    """The outcome of one call into the library. ``ok`` is None when it does not apply."""

    action: str
    ok: bool | None
    errors: tuple[ErrorRecord, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class ReseedSettings:
    """When each DRBG reseeds: after ``*_requests`` generate calls or ``*_seconds`` seconds.

    ``source`` says where the numbers come from: "library" (read through the API),
    "documented defaults" (1.1.1 has no getter), or "none" (no DRBG: 1.1.0 and older).
    """

    source: str
    primary_requests: int | None = None
    primary_seconds: int | None = None
    public_requests: int | None = None
    public_seconds: int | None = None
    private_requests: int | None = None
    private_seconds: int | None = None


@dataclass(frozen=True)
class LibcryptoSummary:
    """What a loaded libcrypto is: its version and which APIs it has (openssl.library)."""

    path: str
    version: str  # "OpenSSL 3.0.19 27 Jan 2026"
    version_number: int
    series: str  # 3.x, 1.1.1, 1.1.0, 1.0.2
    rand_api: str
    has_drbg_1_1_1: bool
    has_evp_rand: bool
    has_keep_devices_open: bool
    has_err_get_error_all: bool
    has_openssl_info: bool
