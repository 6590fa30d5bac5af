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
