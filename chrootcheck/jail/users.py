"""The service's user (``--user NAME|UID[:GID]``) and what it may open.

Names are looked up in the host's user database: a daemon resolves its user before it
chroots, so the host's /etc/passwd is the one that counts.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str | None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.uid}:{self.gid})" if self.name else f"{self.uid}:{self.gid}"


NOBODY = 65534


class UserSpecError(ValueError):
    pass


def parse_user(spec: str) -> ServiceUser:
    """``haproxy``, ``99``, ``99:99``, ``haproxy:nogroup``."""
    user_part, _, group_part = spec.partition(":")
    if not user_part:
        raise UserSpecError(f"--user {spec!r}: give a user name or a numeric uid")
    name: str | None
    if user_part.isdigit():
        uid = int(user_part)
        try:
            entry = pwd.getpwuid(uid)
            name, gid = entry.pw_name, entry.pw_gid
        except KeyError:
            name, gid = None, uid
    else:
        try:
            entry = pwd.getpwnam(user_part)
        except KeyError:
            raise UserSpecError(f"--user {spec!r}: no user {user_part!r} on this host") from None
        name, uid, gid = entry.pw_name, entry.pw_uid, entry.pw_gid
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            try:
                gid = grp.getgrnam(group_part).gr_gid
            except KeyError:
                raise UserSpecError(
                    f"--user {spec!r}: no group {group_part!r} on this host"
                ) from None
    groups: tuple[int, ...] = (gid,)
    if name is not None:
        try:
            groups = tuple(sorted(set(os.getgrouplist(name, gid))))
        except OSError:
            pass
    if uid > 0xFFFFFFFE or gid > 0xFFFFFFFE:
        raise UserSpecError(f"--user {spec!r}: uid and gid must be below 4294967295")
    return ServiceUser(uid=uid, gid=gid, groups=groups, name=name)


def may(user: ServiceUser, st: os.stat_result, want: int) -> bool:
    """Whether ``user`` has the permission bits ``want`` (4 read, 2 write, 1 search) on ``st``.

    The kernel's DAC rule: owner bits if the user owns it, else group bits if one of its groups
    owns it, else other bits. uid 0 passes (CAP_DAC_OVERRIDE), except search needs one x bit.
    """
    mode = stat.S_IMODE(st.st_mode)
    if user.uid == 0:
        return want != 1 or bool(mode & 0o111) or stat.S_ISDIR(st.st_mode)
    if st.st_uid == user.uid:
        bits = (mode >> 6) & 7
    elif st.st_gid in user.groups or st.st_gid == user.gid:
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & want == want


def others_may(st: os.stat_result, want: int) -> bool:
    return stat.S_IMODE(st.st_mode) & want == want
