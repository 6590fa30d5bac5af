"""In-jail path resolution: fixed cases, a reference model (hypothesis), and the kernel itself."""

from __future__ import annotations

import errno
import json
import os
import posixpath
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chrootcheck.jail import fs as jailfs

# ---------------------------------------------------------------- fixed cases


@pytest.fixture
def tree(jail: Path) -> Path:
    (jail / "a" / "b").mkdir(parents=True)
    (jail / "dev").mkdir()
    (jail / "a" / "b" / "f").write_text("x")
    os.symlink("/a/b", jail / "dev" / "abs")
    os.symlink("../../../../a", jail / "dev" / "up")
    os.symlink("loop2", jail / "dev" / "loop1")
    os.symlink("loop1", jail / "dev" / "loop2")
    os.symlink("/etc/passwd", jail / "dev" / "urandom")  # exists on the host, not in the jail
    os.symlink("b/", jail / "a" / "lb")
    return jail


@pytest.mark.parametrize(
    ("path", "follow", "want_path", "want_errno", "nlinks"),
    [
        ("/dev/abs", True, "/a/b", None, 1),  # absolute target restarts at the jail root
        ("/dev/up/b/f", True, "/a/b/f", None, 1),  # '..' stops at the root
        ("/dev/loop1", True, "/dev/loop1", errno.ELOOP, 40),  # the 41st link is refused
        ("/dev/urandom", True, "/etc", errno.ENOENT, 1),  # never the host's /etc/passwd
        ("/dev/urandom", False, "/dev/urandom", None, 0),  # lstat-like: the link itself
        ("/a/lb/f", True, "/a/b/f", None, 1),
        ("/a/lb/f/", True, "/a/b/f", errno.ENOTDIR, 1),  # trailing slash demands a folder
        ("/a/b/f/.", True, "/a/b/f", errno.ENOTDIR, 0),
        ("/a/b/f/..", True, "/a/b/f", errno.ENOTDIR, 0),
        ("/../../..", True, "/", None, 0),
        ("a/./b/../b/f", True, "/a/b/f", None, 0),
        ("/missing/..", True, "/missing", errno.ENOENT, 0),
    ],
)
def test_resolve_cases(
    tree: Path, path: str, follow: bool, want_path: str, want_errno: int | None, nlinks: int
) -> None:
    root = jailfs.open_jail(str(tree))
    try:
        with jailfs.resolve(root, path, follow=follow) as res:
            assert res.error == want_errno
            assert res.path == want_path
            assert len(res.links) == nlinks
            if want_errno is None:
                assert res.fd is not None
                assert res.stat is not None
                assert os.fstat(res.fd).st_ino == res.stat.st_ino
    finally:
        os.close(root)


def test_resolve_leaves_no_fd_open(tree: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    root = jailfs.open_jail(str(tree))
    for p in ("/dev/abs", "/dev/loop1", "/dev/urandom", "/a/lb/f", "/nope/x"):
        jailfs.resolve(root, p).close()
    os.close(root)
    assert set(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_open_jail_errors(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "x"
    if kind == "file":
        target.write_text("")
    with pytest.raises(
        jailfs.JailOpenError, match="does not exist" if kind == "missing" else "not a folder"
    ):
        jailfs.open_jail(str(target))


# ---------------------------------------------------------------- reference model

NAMES = ["a", "b", "c"]
Node = tuple[str, str]  # ("dir", "") | ("file", "") | ("link", target)


def reference_resolve(fs: dict[tuple[str, ...], Node], path: str) -> tuple[str, int | None]:
    """A small recursive model of Linux path lookup inside a chroot (open(2) semantics)."""
    budget = [40]

    def walk(start: tuple[str, ...], p: str, follow_last: bool) -> tuple[str, ...]:
        cur: tuple[str, ...] = () if p.startswith("/") else start
        parts = p.split("/")
        # "x/" and "x/." (and "x/..") demand that x be a folder
        comps = [c for c in parts if c not in ("", ".")]
        trailing = bool(parts) and parts[-1] in ("", ".") and bool(comps)
        for i, c in enumerate(comps):
            last = i == len(comps) - 1
            if c == "..":
                cur = cur[:-1]
                continue
            nxt = (*cur, c)
            node = fs.get(nxt)
            if node is None:
                raise _Fail(nxt, errno.ENOENT)
            if node[0] == "link" and (not last or follow_last or trailing):
                budget[0] -= 1
                if budget[0] < 0:
                    raise _Fail(nxt, errno.ELOOP)
                if not node[1]:
                    raise _Fail(nxt, errno.ENOENT)
                cur = walk(cur, node[1], True)
                node = fs[cur] if cur else ("dir", "")
                if (not last or trailing) and node[0] != "dir":
                    raise _Fail(cur, errno.ENOTDIR)
                continue
            if (not last or trailing) and node[0] != "dir":
                raise _Fail(nxt, errno.ENOTDIR)
            cur = nxt
        return cur

    try:
        return "/" + "/".join(walk((), path, True)), None
    except _Fail as e:
        return "/" + "/".join(e.at), e.errno


class _Fail(Exception):
    def __init__(self, at: tuple[str, ...], err: int) -> None:
        self.at, self.errno = at, err


path_strategy = st.lists(st.sampled_from([*NAMES, "..", ".", ""]), min_size=0, max_size=5).map(
    "/".join
) | st.lists(st.sampled_from([*NAMES, ".."]), min_size=1, max_size=4).map(
    lambda p: "/" + "/".join(p)
)


@st.composite
def trees(draw: st.DrawFn) -> dict[tuple[str, ...], Node]:
    fs: dict[tuple[str, ...], Node] = {}

    def fill(prefix: tuple[str, ...], depth: int) -> None:
        for name in NAMES:
            kind = draw(
                st.sampled_from(
                    ["none", "dir", "file", "link"] if depth < 2 else ["none", "file", "link"]
                )
            )
            here = (*prefix, name)
            if kind == "dir":
                fs[here] = ("dir", "")
                fill(here, depth + 1)
            elif kind == "file":
                fs[here] = ("file", "")
            elif kind == "link":
                fs[here] = ("link", draw(path_strategy.filter(bool)))  # Linux refuses ""

    fill((), 0)
    return fs


def build(root: Path, fs: dict[tuple[str, ...], Node]) -> None:
    for parts, (kind, target) in sorted(fs.items(), key=lambda kv: len(kv[0])):
        p = root.joinpath(*parts)
        if kind == "dir":
            p.mkdir()
        elif kind == "file":
            p.write_text("")
        else:
            os.symlink(target, p)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fs=trees(), paths=st.lists(path_strategy, min_size=1, max_size=6))
def test_resolve_matches_reference_model(
    tmp_path_factory: pytest.TempPathFactory, fs: dict[tuple[str, ...], Node], paths: list[str]
) -> None:
    root = tmp_path_factory.mktemp("jail")
    build(root, fs)
    fd = jailfs.open_jail(str(root))
    try:
        for p in paths:
            want_path, want_err = reference_resolve(fs, p)
            with jailfs.resolve(fd, p) as res:
                assert (res.error, res.path) == (want_err, want_path), p
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the kernel as the oracle


def kernel_lookup(root: Path, paths: list[str]) -> list[tuple[int | None, int | None]]:
    """stat() each path in a child chrooted into ``root``: (inode, errno) as the kernel sees it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            os.chroot(root)
            os.chdir("/")
            out = []
            for p in paths:
                try:
                    out.append([os.stat(p).st_ino, None])
                except OSError as e:
                    out.append([None, e.errno])
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return [tuple(x) for x in json.loads(data)]  # type: ignore[misc]


@pytest.mark.root
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fs=trees(), paths=st.lists(path_strategy, min_size=1, max_size=8))
def test_resolve_matches_the_kernel_after_chroot(
    tmp_path_factory: pytest.TempPathFactory, fs: dict[tuple[str, ...], Node], paths: list[str]
) -> None:
    root = tmp_path_factory.mktemp("jail")
    build(root, fs)
    # An empty path is not a path for stat(2); resolve() treats it as the root on purpose.
    paths = [p for p in paths if p] or ["/"]
    kernel = kernel_lookup(root, paths)
    fd = jailfs.open_jail(str(root))
    try:
        for p, (ino, err) in zip(paths, kernel, strict=True):
            with jailfs.resolve(fd, p) as res:
                got = (res.stat.st_ino if res.found and res.stat else None, res.error)
                assert got == (ino, err), (p, res.path)
    finally:
        os.close(fd)


def test_reference_model_sanity() -> None:
    # The model itself must be able to say no: a loop, a dangling link, a file used as a folder.
    fs: dict[tuple[str, ...], Node] = {
        ("a",): ("link", "b"),
        ("b",): ("link", "a"),
        ("c",): ("file", ""),
    }
    assert reference_resolve(fs, "/a")[1] == errno.ELOOP
    assert reference_resolve(fs, "/c/x")[1] == errno.ENOTDIR
    assert reference_resolve(fs, "/x")[1] == errno.ENOENT
    assert reference_resolve(fs, "/c/../c") == ("/c", errno.ENOTDIR)
    assert posixpath.normpath("/c/../c") == "/c"  # what a naive normaliser would wrongly accept
