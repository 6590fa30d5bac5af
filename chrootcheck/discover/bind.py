"""BIND: ``-t DIR`` (and ``-u USER``) in named's options: Debian's /etc/default/named (older:
/etc/default/bind9), Red Hat's /etc/sysconfig/named, or the ExecStart of its systemd unit."""

from __future__ import annotations

import shlex

from chrootcheck.discover._common import DiscoveredJail, Notes, Tree, strip_hash_comment

DEFAULTS = ("/etc/default/named", "/etc/default/bind9", "/etc/sysconfig/named")
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)
UNITS = ("named.service", "bind9.service", "named-chroot.service")


def _split(s: str) -> list[str]:
    try:
        return shlex.split(s)
    except ValueError:
        return s.split()


def parse_args(args: list[str]) -> tuple[str | None, str | None]:
    """(-t DIR, -u USER) from named's arguments; ``-tDIR`` works as getopt allows."""
    chroot = user = None
    i = 0
    while i < len(args):
        a = args[i]
        for flag in ("-t", "-u"):
            if a == flag and i + 1 < len(args):
                value: str | None = args[i + 1]
                i += 1
            elif a.startswith(flag) and len(a) > 2:
                value = a[2:]
            else:
                continue
            if flag == "-t":
                chroot = value
            else:
                user = value
            break
        i += 1
    return chroot, user


def find(root: Tree, notes: Notes) -> list[DiscoveredJail]:
    out: list[DiscoveredJail] = []
    for path in DEFAULTS:
        text = root.read_text(path, notes)
        if text is None:
            continue
        for n, raw in enumerate(text.splitlines(), 1):
            line = strip_hash_comment(raw).strip()
            if line.startswith("export "):
                line = line[7:].lstrip()
            name, sep, value = line.partition("=")
            if not sep or name.strip() != "OPTIONS":
                continue
            words = _split(value)
            chroot, user = parse_args(_split(words[0]) if len(words) == 1 else words)
            if chroot:
                out.append(DiscoveredJail(chroot, "named", path, n, user))
    for d in UNIT_DIRS:
        for unit in UNITS:
            path = f"{d}/{unit}"
            text = root.read_text(path, notes)
            if text is None:
                continue
            for n, raw in enumerate(text.splitlines(), 1):
                line = raw.strip()
                if not line.startswith("ExecStart="):
                    continue
                chroot, user = parse_args(_split(line[len("ExecStart=") :].lstrip("@-:+!")))
                if chroot and not chroot.startswith("$"):
                    out.append(
                        DiscoveredJail(chroot, "named", path, n, user, f"from the unit {unit}")
                    )
    return out
