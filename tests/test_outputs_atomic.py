"""-o/--output and FORMAT=FILE: atomic replacement, clean errors, nothing half-written."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest

from chrootcheck.formats import Format
from chrootcheck.system.atomicfile import AtomicFile, interruptible


def error_lines(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if x.startswith("chrootcheck: error: ")]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("fmt", list(Format))
def test_missing_folder_is_one_error_before_the_scan(
    cli, jail: Path, tmp_path: Path, fmt: Format
) -> None:
    target = tmp_path / "no" / "such" / "out"
    r = cli("scan", str(jail), "--format", fmt.value, "-o", str(target))
    assert r.code == (3 if fmt is Format.NAGIOS else 2), r
    (line,) = error_lines(r.stderr)
    assert f"cannot write {target}: the folder {target.parent} does not exist" in line, r
    assert not (tmp_path / "no").exists()


def test_a_folder_as_output(cli, jail: Path, tmp_path: Path) -> None:
    r = cli("scan", str(jail), "--format", "json", "-o", str(tmp_path))
    assert r.code == 2 and "it is a folder" in error_lines(r.stderr)[0], r


def test_replaces_atomically_keeping_mode_and_symlink(cli, jail: Path, tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    inode = real.stat().st_ino
    r = cli("scan", str(jail), "--no-probe", "--format", "json", "-o", str(link))
    assert r.code == 1, r
    assert link.is_symlink() and json.loads(real.read_text())["jails"][0]["jail"] == str(jail)
    assert real.stat().st_ino != inode  # a new file renamed into place, not rewritten
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_a_new_file_gets_the_umask_mode(cli, jail: Path, tmp_path: Path) -> None:
    out = tmp_path / "new.prom"
    r = cli("scan", str(jail), "--no-probe", "--format", "prometheus", "-o", str(out))
    assert r.code == 1, r
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def test_a_failing_output_leaves_every_old_file_intact(cli, jail: Path, tmp_path: Path) -> None:
    old_json = tmp_path / "r.json"
    old_json.write_text("old json")
    old_sarif = tmp_path / "r.sarif"
    old_sarif.write_text("old sarif")
    r = cli(
        "scan",
        str(jail),
        "--no-probe",
        "--format",
        f"json={old_json}",
        "--format",
        f"sarif={old_sarif}",
        "--sarif-anchor",
        str(tmp_path / "missing"),
    )
    assert r.code == 2, r
    assert len(error_lines(r.stderr)) == 1, r
    assert old_json.read_text() == "old json" and old_sarif.read_text() == "old sarif"
    assert leftovers(tmp_path) == []


def test_a_device_target_is_written_in_place(cli, jail: Path) -> None:
    r = cli("scan", str(jail), "--no-probe", "--format", "json", "-o", os.devnull)
    assert r.code == 1 and r.stderr.count("chrootcheck: error") == 0, r


def test_sigterm_while_writing_removes_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.prom"
    target.write_text("old\n")
    f = AtomicFile(str(target))
    with pytest.raises(KeyboardInterrupt), interruptible():
        try:
            f.stream.write("half a fi")
            assert len(leftovers(tmp_path)) == 1
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            f.discard()
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_a_temp_name_planted_as_a_symlink_is_never_followed(tmp_path: Path) -> None:
    # O_EXCL|O_NOFOLLOW: whatever sits in a shared folder, the temp file is a fresh one.
    f = AtomicFile(str(tmp_path / "x.json"))
    try:
        assert f.temp is not None and not os.path.islink(f.temp)
        assert os.stat(f.temp).st_nlink == 1
    finally:
        f.discard()


@pytest.mark.root
def test_read_only_collector_folder(cli, jail: Path, tmp_path: Path, tmpfs) -> None:
    folder = tmpfs(tmp_path / "ro", "ro")
    for fmt in ("prometheus", "nagios"):
        r = cli("scan", str(jail), "--no-probe", "--format", fmt, "-o", str(folder / "x"))
        assert r.code == (3 if fmt == "nagios" else 2), r
        (line,) = error_lines(r.stderr)
        assert "is on a read-only file system" in line, r
    assert list(folder.iterdir()) == []


@pytest.mark.root
def test_collector_folder_on_another_file_system(cli, jail: Path, tmp_path: Path, tmpfs) -> None:
    folder = tmpfs(tmp_path / "textfile")
    out = folder / "chrootcheck.prom"
    for _ in range(2):  # create, then replace across the mount boundary's own folder
        r = cli("scan", str(jail), "--no-probe", "--format", "prometheus", "-o", str(out))
        assert r.code == 1, r
        assert "chrootcheck_jail_scan_ok" in out.read_text()
        assert sorted(p.name for p in folder.iterdir()) == ["chrootcheck.prom"]
