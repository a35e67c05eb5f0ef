"""The rsync mover and the sha256 manifests on real directories, with the real rsync."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fleetflow import checksums, rsync
from fleetflow.errors import TransferFailed

pytestmark = pytest.mark.integration


def tree(root: Path, files: int, size: int) -> None:
    for i in range(files):
        path = root / f"d{i % 7}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    (root / "link").symlink_to("d0/f0.bin")


def test_a_pass_copies_everything_then_only_what_changed_and_removes_what_went(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    tree(source, 50, 10_000)
    lines: list[str] = []
    first = rsync.sync(source, target, progress=lines.append, every=0)
    assert (first.bytes, first.files) == (50 * 10_000, 50)  # a link is no regular file
    assert checksums.manifest(source) == checksums.manifest(target)
    assert lines and "bytes sent" in lines[-1]

    changed = source / "d1" / "f1.bin"
    changed.write_bytes(os.urandom(10_000))
    later = changed.stat().st_mtime + 5  # rsync's quick check compares whole seconds
    os.utime(changed, (later, later))
    (source / "d2" / "f2.bin").unlink()
    (target / ".f9.bin.XyZ123").write_bytes(b"a crashed pass's leftover")
    assert rsync.sync(source, target, dry_run=True).size == 10_000  # predicted, not sent
    second = rsync.sync(source, target)
    assert (second.bytes, second.files) == (10_000, 1)
    assert checksums.manifest(source) == checksums.manifest(target)
    assert rsync.sync(source, target).bytes == 0


def test_the_manifest_is_every_files_sha256_and_a_link_by_its_target(tmp_path: Path) -> None:
    tree(tmp_path, 20, 3000)
    found = checksums.manifest(tmp_path, workers=4)
    assert len(found) == 21 and found["link"] == "->d0/f0.bin"
    assert (
        found["d3/f3.bin"] == hashlib.sha256((tmp_path / "d3" / "f3.bin").read_bytes()).hexdigest()
    )


def test_a_volume_that_is_not_a_directory_here_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TransferFailed, match=r"source volume.s directory .* not on this machine"):
        rsync.sync(tmp_path / "nope", tmp_path)
