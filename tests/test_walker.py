"""The walk: counts against os.walk, and a split walk (two processes) equal to a serial one."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from chrootcheck.jail import fs as jailfs
from chrootcheck.jail import walker
from tests.conftest import make_socket


def build_tree(root: Path, seed: int, folders: int = 60) -> None:
    rng = random.Random(seed)
    dirs = [root]
    for i in range(folders):
        d = rng.choice(dirs) / f"d{i}"
        d.mkdir()
        dirs.append(d)
    for i in range(folders * 8):
        d = rng.choice(dirs)
        kind = rng.random()
        p = d / f"e{i}"
        if kind < 0.05:
            os.mkfifo(p)
        elif kind < 0.08:
            make_socket(p)
        elif kind < 0.15:
            os.symlink("/etc", p)
        else:
            p.write_text("x")


def walk(root: Path, split_after: int | None) -> walker.WalkResult:
    fd = jailfs.open_jail(str(root))
    try:
        return walker.walk(fd, mounts={}, split_after=split_after)
    finally:
        os.close(fd)


def os_walk_counts(root: Path) -> tuple[int, int]:
    entries = folders = 0
    for _, dirnames, filenames in os.walk(root):
        folders += 1
        entries += len(dirnames) + len(filenames)
    return entries, folders


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counts_match_os_walk(tmp_path: Path, seed: int) -> None:
    build_tree(tmp_path, seed)
    result = walk(tmp_path, None)
    assert (result.stats.entries, result.stats.directories) == os_walk_counts(tmp_path)
    fifos = {m.path for m in result.met if m.kind == "fifo"}
    assert fifos == {
        "/" + str(p.relative_to(tmp_path))
        for p in tmp_path.rglob("*")
        if p.is_fifo() and not p.is_symlink()
    }


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the real forks the walk makes (the fork itself is real)."""
    calls: list[int] = []
    real = os.fork

    def counting() -> int:
        pid = real()
        if pid:
            calls.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting)
    return calls


@pytest.mark.parametrize("split_after", [0, 1, 50, 200])
def test_split_walk_equals_serial_walk(tmp_path: Path, split_after: int, forks: list[int]) -> None:
    build_tree(tmp_path, 7, folders=120)
    serial = walk(tmp_path, None)
    assert forks == []
    split = walk(tmp_path, split_after)
    assert len(forks) == 1
    assert split.stats.entries == serial.stats.entries
    assert split.stats.directories == serial.stats.directories
    assert sorted(split.met, key=lambda m: m.path) == sorted(serial.met, key=lambda m: m.path)


def test_split_walk_survives_a_failing_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forks: list[int]
) -> None:
    build_tree(tmp_path, 11, folders=80)
    serial = walk(tmp_path, None)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the child cannot answer")

    # The forked child inherits the patch: it dies without sending, the parent walks its share.
    from chrootcheck.system import worker

    monkeypatch.setattr(worker.Channel, "send", broken)
    split = walk(tmp_path, 0)
    assert len(forks) == 1
    assert split.stats.entries == serial.stats.entries
    assert sorted(split.met, key=lambda m: m.path) == sorted(serial.met, key=lambda m: m.path)


def test_walk_leaves_no_fd_and_no_child(tmp_path: Path) -> None:
    build_tree(tmp_path, 5)
    before = set(os.listdir("/proc/self/fd"))
    walk(tmp_path, 0)
    assert set(os.listdir("/proc/self/fd")) == before
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
