"""The sandbox a scan runs under: a unit (by name or path, read inside ``--root``) or a
seccomp profile, turned into the ``chrootcheck.sandbox`` model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from chrootcheck.discover._common import Notes, Tree, TreeUnits, under
from chrootcheck.jail import fs as jailfs
from chrootcheck.report.errors import ToolError
from chrootcheck.sandbox import oci, systemd
from chrootcheck.sandbox.model import Sandbox

if TYPE_CHECKING:
    from chrootcheck.lateload.check import OpenSSLPaths


def load_unit(unit: str, root: str = "/") -> tuple[Sandbox, Notes]:
    """The sandbox of ``unit`` (a name looked up in the unit folders, or a path), with every
    path resolved inside ``root``. ToolError (one line) for a unit that cannot be had."""
    notes = Notes()
    try:
        tree = Tree(root)
    except jailfs.JailOpenError as e:
        raise ToolError(f"--root {root}: {e}") from None
    with tree:
        sandbox = systemd.read_unit(unit, TreeUnits(tree, notes))
        # A bind mount's source is on the host (or inside --root): one without "-" that is
        # not there keeps the unit from starting.
        missing = tuple(
            m.source
            for m in sandbox.mounts
            if m.source is not None and not m.optional and not _found(tree, m.source)
        )
    return replace(sandbox, tree_root=os.path.abspath(root), missing_sources=missing), notes


def _found(tree: Tree, path: str) -> bool:
    with tree.resolve(path) as res:  # symlinks followed, inside the tree
        return res.found


def root_directory(sandbox: Sandbox, root: str = "/") -> str:
    """The host path of the unit's RootDirectory=, resolved inside ``root`` (its symlinks
    never lead out). ToolError when it is not a folder there."""
    assert sandbox.root_directory is not None
    try:
        tree = Tree(root)
    except jailfs.JailOpenError as e:
        raise ToolError(f"--root {root}: {e}") from None
    with tree:
        resolved = tree.folder(sandbox.root_directory)
    if resolved is None:
        inside = "" if root in ("", "/") else f" inside {root}"
        raise ToolError(
            f"{sandbox.source}: RootDirectory={sandbox.root_directory} is not a folder{inside}"
        )
    return under(root, resolved)


def load_profile(path: str) -> Sandbox:
    return oci.read_profile(path)


def vet_openssl_conf(
    sandbox: Sandbox, paths: OpenSSLPaths, jails: Sequence[str]
) -> tuple[str | None, str | None]:
    """The unit's OPENSSL_CONF for the probe's as-configured children, which load it as root
    before the chroot as the daemon does: (the config to load, None), or (None, why it is
    refused). Refused when it, or anything it includes or loads (engines, providers, PKCS#11
    modules), fails openssl.trust's rules: inside one of ``jails``, or writable by another
    user. (None, None) for a config inside --root: another system's, never loaded here."""
    from chrootcheck.lateload.check import config_loads
    from chrootcheck.openssl import trust

    conf = sandbox.openssl_conf
    assert conf is not None
    what = f"the unit's OPENSSL_CONF={conf}"
    if sandbox.tree_root not in ("", "/"):
        return None, None  # another system's config: not loaded (as_configured says so)
    if not conf.startswith("/"):
        return None, f"{what} is not an absolute path"
    roots = trust.jail_roots(jails)
    try:
        loads = config_loads({"OPENSSL_CONF": conf}, paths)
    except ToolError as e:
        return None, f"{what} cannot be read: {e.message}"
    for path, role, is_dir in loads:
        try:
            if is_dir:
                concern = trust.check_folder(path, roots)
            else:
                checked = trust.check_library(path, roots)
                os.close(checked.fd)
                concern = checked.concern
        except trust.CheckError:
            continue  # not there: OpenSSL loads nothing from it
        if concern is not None:
            named = "it" if path == conf else f"its {role} {path}"
            return None, (
                f"refusing to load {what} as root: {named}: {concern} (code or settings a "
                "less-trusted user controls)"
            )
    return conf, None
