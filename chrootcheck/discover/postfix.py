"""Postfix: the services of master.cf whose ``chroot`` column (the 5th) is ``y``, all jailed
in ``queue_directory`` from main.cf. Debian patches the default of ``-`` to ``y``; upstream
Postfix 3.x defaults to ``n``."""

from __future__ import annotations

from chrootcheck.discover._common import DiscoveredJail, Notes, Tree

MAIN = "/etc/postfix/main.cf"
MASTER = "/etc/postfix/master.cf"
DEFAULT_QUEUE = "/var/spool/postfix"
DEFAULT_OWNER = "postfix"


def _logical(text: str) -> list[tuple[int, str]]:
    """Postfix lines: '#' lines are comments; a line starting with white space continues."""
    out: list[tuple[int, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw[0] in " \t" and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + raw.strip())
        else:
            out.append((n, raw.strip()))
    return out


def main_cf(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for _, line in _logical(text):
        name, sep, value = line.partition("=")
        if sep:
            params[name.strip()] = value.strip()
    return params


def _expand(value: str, params: dict[str, str], depth: int = 0) -> str:
    # $name and ${name} from main.cf, enough for queue_directory = $some_dir forms.
    if "$" not in value or depth > 8:
        return value
    out, i = [], 0
    while i < len(value):
        if value[i] == "$":
            if value[i + 1 : i + 2] in ("{", "("):
                end = value.find("}" if value[i + 1] == "{" else ")", i)
                name, i = (value[i + 2 : end], end + 1) if end > 0 else ("", len(value))
            else:
                j = i + 1
                while j < len(value) and (value[j].isalnum() or value[j] == "_"):
                    j += 1
                name, i = value[i + 1 : j], j
            out.append(_expand(params.get(name, ""), params, depth + 1))
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def find(root: Tree, notes: Notes) -> list[DiscoveredJail]:
    master = root.read_text(MASTER, notes)
    if master is None:
        return []
    debian = root.exists("/etc/debian_version")
    chrooted: list[tuple[int, str]] = []
    dashed = False
    for n, line in _logical(master):
        f = line.split()
        if len(f) < 8:
            continue
        col = f[4]
        if col == "y" or (col == "-" and debian):
            chrooted.append((n, f[0]))
            dashed = dashed or col == "-"
    if not chrooted:
        return []
    params = main_cf(root.read_text(MAIN, notes) or "")
    queue = _expand(params.get("queue_directory", DEFAULT_QUEUE), params) or DEFAULT_QUEUE
    owner = _expand(params.get("mail_owner", DEFAULT_OWNER), params) or DEFAULT_OWNER
    names = ", ".join(sorted({s for _, s in chrooted}))
    note = f"chrooted services: {names}"
    if dashed:
        note += " ('-' counts as y on Debian)"
    return [DiscoveredJail(queue, "postfix", MASTER, chrooted[0][0], owner, note)]
