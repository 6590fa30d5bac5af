"""What a daemon's key in an engine is: pure data, shared by discover (which reads it from a
daemon's config), the late loads (which follow its PKCS#11 module) and the late-load probe
(which loads and uses it). No cffi here.

A PIN is a secret: ``shown`` forms hide every secret control command's value and the
``pin-value`` / ``pin-source`` attributes of a ``pkcs11:`` URI (RFC 7512), so that no report,
log line or message ever carries one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Control commands whose value is a secret (libp11: PIN; others use these names).
SECRET_CTRLS = frozenset({"PIN", "SO_PIN", "PASSWORD", "PASSPHRASE"})
HIDDEN = "(hidden)"
_URI_SECRET = re.compile(r"(?i)((?:^|[;?&])(?:pin-value|pin-source)=)[^;?&]*")


def shown_value(name: str, value: str) -> str:
    return HIDDEN if name.upper() in SECRET_CTRLS else hide_uri_secrets(value)


def hide_uri_secrets(text: str) -> str:
    """A ``pkcs11:`` URI with its pin-value and pin-source hidden."""
    return _URI_SECRET.sub(lambda m: m.group(1) + HIDDEN, text)


@dataclass(frozen=True)
class DaemonLoads:
    """The engines and providers a daemon's own config loads (haproxy's ``ssl-engine``,
    ``ssl-provider``, ``ssl-provider-path``, ``ssl-propquery``), by name; ``origin``: where."""

    engines: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    provider_path: str | None = None
    propquery: str | None = None
    origin: str = ""


@dataclass(frozen=True)
class EngineKey:
    """A key a daemon loads through an engine before its chroot and uses at every handshake.

    ``ctrls``: the engine's control commands in order (stunnel's ``engineCtrl``), sent before
    ``ENGINE_init``. ``so_path``: the engine's file when the config names one (else ENGINESDIR
    / ``<engine>.so``, or built in). ``config``: an OpenSSL config the daemon loads first.
    ``origin``: where it was read, "FILE:LINE" or "--key".
    """

    engine: str
    key: str
    ctrls: tuple[tuple[str, str], ...] = ()
    default: str | None = None
    so_path: str | None = None
    config: str | None = None
    origin: str = ""

    @property
    def module_path(self) -> str | None:
        """The PKCS#11 module its ``MODULE_PATH`` control names (the last one wins)."""
        paths = [v for n, v in self.ctrls if n.upper() == "MODULE_PATH"]
        return paths[-1] if paths else None

    @property
    def engine_so(self) -> str | None:
        """The engine's file the config names (``so_path``, else a ``SO_PATH`` control)."""
        if self.so_path:
            return self.so_path
        paths = [v for n, v in self.ctrls if n.upper() == "SO_PATH"]
        return paths[-1] if paths else None

    def secrets(self) -> tuple[str, ...]:
        """The secret values it carries (PINs), to scrub from anything shown."""
        out = [v for n, v in self.ctrls if n.upper() in SECRET_CTRLS and v]
        out += [m.group(0).split("=", 1)[1] for m in _URI_SECRET.finditer(self.key)]
        return tuple(v for v in out if v)

    def scrub(self, text: str) -> str:
        """``text`` with every secret it carries hidden (a library may echo a value)."""
        for secret in sorted(self.secrets(), key=len, reverse=True):
            text = text.replace(secret, HIDDEN)
        return hide_uri_secrets(text)

    @property
    def shown_key(self) -> str:
        return hide_uri_secrets(self.key)

    @property
    def shown_ctrls(self) -> tuple[str, ...]:
        return tuple(f"{n}:{shown_value(n, v)}" for n, v in self.ctrls)

    def describe(self) -> str:
        """One line, without any secret."""
        text = f"engine {self.engine}, key {self.shown_key}"
        if self.ctrls:
            text += " (" + ", ".join(self.shown_ctrls) + ")"
        return text + (f" from {self.origin}" if self.origin else "")
