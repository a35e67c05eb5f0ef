"""sha256 manifests of a directory tree (every regular file's digest by its relative path), and
what its files hold.

Files are hashed in parallel threads: ``hashlib`` releases the GIL while it digests, so a tree
of many files hashes at about the disks' speed instead of one core's. A symbolic link is
recorded by its target (``->target``), not followed: a copy must have the same link.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _files(root: Path) -> Iterator[str]:
    for folder, _dirs, names in os.walk(root):
        for name in names:
            yield os.path.relpath(os.path.join(folder, name), root)


def _digest(root: Path, relative: str) -> str:
    path = root / relative
    if path.is_symlink():
        return "->" + os.readlink(path)
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def usage(root: Path) -> int:
    """The bytes of every regular file under ``root``."""
    return sum(
        os.lstat(os.path.join(root, path)).st_size
        for path in _files(root)
        if not os.path.islink(os.path.join(root, path))
    )


def manifest(root: Path, workers: int | None = None) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    paths = sorted(_files(root))
    threads = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        digests = pool.map(lambda p: _digest(root, p), paths, chunksize=16)
        return dict(zip(paths, digests, strict=True))
