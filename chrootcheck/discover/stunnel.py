"""stunnel: the global ``chroot``, ``setuid``/``setgid`` and ``foreground`` of each
``/etc/stunnel/*.conf``, through ``include`` (a folder: every file in it, in name order).

Global options are those before the first ``[service]`` section (an included file's too, as
stunnel reads it in place). ``foreground = yes`` (or ``quiet``) keeps one process with a
thread per connection; without it stunnel forks after the chroot (``stunnel:daemon``).
Debian's ``stunnel@.service`` runs ``/etc/stunnel/%i.conf`` in the foreground: a config with
such a unit and no ``foreground = yes`` does not start under it, which is noted.

The engine key: the global ``engine`` (an id, or ``dynamic`` with ``engineCtrl = SO_PATH:...``),
the ``engineCtrl = COMMAND[:VALUE]`` lines after it (``MODULE_PATH``, ``PIN`` ...),
``engineDefault``, and the first service's ``engineId`` and ``key`` (a ``pkcs11:`` URI). stunnel
loads all of it, and the key, before its chroot (measured: failure-modes.md); the late-load
probe does the same (``EngineKey``). A PIN is kept only to be sent to the engine, never shown.
"""

from __future__ import annotations

from dataclasses import replace

from chrootcheck.discover._common import DiscoveredJail, Includes, Notes, Tree
from chrootcheck.openssl.hsm import EngineKey

FOLDER = "/etc/stunnel"
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
TEMPLATE = "stunnel@.service"


def _comment(line: str) -> str:
    # stunnel: ';' and '#' start a comment at the beginning of a line.
    s = line.strip()
    return "" if s.startswith((";", "#")) else s


def find(root: Tree, notes: Notes) -> list[DiscoveredJail]:
    out = []
    template = any(root.exists(f"{d}/{TEMPLATE}") for d in UNIT_DIRS)
    for cfg in root.glob(f"{FOLDER}/*.conf", notes):
        found = read_config(root, cfg, notes, template)
        if found is not None:
            out.append(found)
    return out


def read_config(
    root: Tree, cfg: str, notes: Notes, template: bool = False
) -> DiscoveredJail | None:
    """One stunnel config: its jail, user, mode and engine key (None: it does not chroot)."""
    state: dict[str, tuple[str, str, int]] = {}
    engine = _Engine()
    inc = Includes(root, notes, "include")
    _read(inc, cfg, state, [False], engine)
    if "chroot" not in state:
        return None
    path, src, line = state["chroot"]
    fg = state.get("foreground", ("no", "", 0))[0].lower() in ("yes", "quiet")
    mode = "foreground" if fg else "daemon"
    note = (
        "foreground = yes: one thread per connection"
        if fg
        else "foreground = no: forks after the chroot"
    )
    if template:
        instance = cfg.rsplit("/", 1)[-1].removesuffix(".conf")
        note += f"; {TEMPLATE} can run it as stunnel@{instance}"
        if not fg:
            note += " (which needs foreground = yes)"
    user = state["setuid"][0] if "setuid" in state else None
    found = DiscoveredJail(path, "stunnel", src, line, user, note, profile=f"stunnel:{mode}")
    key = engine.key()
    return replace(found, engine_key=key) if key is not None else found


class _Engine:
    """The engine settings as stunnel reads them, in order."""

    def __init__(self) -> None:
        self.engine: str | None = None
        self.ctrls: list[tuple[str, str]] = []
        self.default: str | None = None
        self.engine_id: str | None = None
        self.key_uri: str | None = None
        self.where = ""

    def set(self, key: str, value: str, where: str, in_service: bool) -> None:
        if key == "engine" and not in_service:
            self.engine, self.where = value, where
        elif key == "enginectrl" and not in_service:
            name, _, arg = value.partition(":")
            self.ctrls.append((name.strip(), arg.strip()))
        elif key == "enginedefault" and not in_service:
            self.default = value
        elif key == "engineid" and self.engine_id is None:
            self.engine_id = value
        elif key == "key" and self.key_uri is None and value.startswith("pkcs11:"):
            self.key_uri, self.where = value, self.where or where

    def key(self) -> EngineKey | None:
        # The global engine is what stunnel loads (and its controls go to); a service's
        # engineId only picks it. "auto" loads every built-in one: then engineId says which.
        engine = self.engine if self.engine not in (None, "auto") else self.engine_id
        if engine is None or self.key_uri is None or engine == "auto":
            return None
        so_path = next((v for n, v in self.ctrls if n.upper() == "SO_PATH"), None)
        return EngineKey(
            engine,
            self.key_uri,
            tuple(self.ctrls),
            self.default,
            so_path,
            origin=self.where,
        )


def _read(
    inc: Includes,
    path: str,
    state: dict[str, tuple[str, str, int]],
    in_service: list[bool],
    engine: _Engine,
) -> None:
    opened = inc.enter(path)
    if opened is None:
        return
    try:
        for n, raw in enumerate(opened[1].splitlines(), 1):
            line = _comment(raw)
            if line.startswith("["):
                in_service[0] = True  # global options end at the first service section
                continue
            key, sep, value = line.partition("=")
            if not sep:
                continue
            key, value = key.strip().lower(), value.strip()
            if key.startswith(("engine", "key")):
                engine.set(key, value, f"{path}:{n}", in_service[0])
            if in_service[0]:
                continue
            if key == "include":
                folder = value.rstrip("/") or "/"
                for name in sorted(inc.tree.listdir(folder)):
                    _read(inc, f"{folder}/{name}", state, in_service, engine)
            elif key in ("chroot", "setuid", "setgid", "foreground"):
                state[key] = (value, path, n)
    finally:
        inc.leave()
