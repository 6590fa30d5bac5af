"""stunnel: the global ``chroot``, ``setuid``/``setgid`` and ``foreground`` of each
``/etc/stunnel/*.conf``, through ``include`` (a folder: every file in it, in name order).

Global options are those before the first ``[service]`` section (an included file's too, as
stunnel reads it in place). ``foreground = yes`` (or ``quiet``) keeps one process with a
thread per connection; without it stunnel forks after the chroot (``stunnel:daemon``).
Debian's ``stunnel@.service`` runs ``/etc/stunnel/%i.conf`` in the foreground: a config with
such a unit and no ``foreground = yes`` does not start under it, which is noted.
"""

from __future__ import annotations

from chrootcheck.discover._common import DiscoveredJail, Includes, Notes, Tree

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
        state: dict[str, tuple[str, str, int]] = {}
        inc = Includes(root, notes, "include")
        _read(inc, cfg, state, [False])
        if "chroot" not in state:
            continue
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
        out.append(
            DiscoveredJail(path, "stunnel", src, line, user, note, profile=f"stunnel:{mode}")
        )
    return out


def _read(
    inc: Includes, path: str, state: dict[str, tuple[str, str, int]], in_service: list[bool]
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
            if not sep or in_service[0]:
                continue
            key, value = key.strip().lower(), value.strip()
            if key == "include":
                folder = value.rstrip("/") or "/"
                for name in sorted(inc.tree.listdir(folder)):
                    _read(inc, f"{folder}/{name}", state, in_service)
            elif key in ("chroot", "setuid", "setgid", "foreground"):
                state[key] = (value, path, n)
    finally:
        inc.leave()
