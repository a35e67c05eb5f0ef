"""sha256 manifests of a directory tree (every regular file's digest by its relative path), and
what its files hold.

The digests come from coreutils' ``sha256sum``, run over batches of files in as many processes
at once as the machine has cores: a tree of many small files is hashed at the disks' speed
rather than at one Python thread's, which holds the GIL between files. A symbolic link is
recorded by its target (``->target``), not followed: a copy must have the same link.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fleetflow.errors import TransferFailed

BATCH = 512
"""Files per ``sha256sum`` process: long enough to spread its start, short enough to balance."""


def _files(root: Path) -> Iterator[str]:
    for folder, _dirs, names in os.walk(root):
        for name in names:
            yield os.path.relpath(os.path.join(folder, name), root)


def usage(root: Path) -> int:
    """The bytes of every regular file under ``root``."""
    return sum(
        os.lstat(os.path.join(root, path)).st_size
        for path in _files(root)
        if not os.path.islink(os.path.join(root, path))
    )


def _sha256sum(root: Path, paths: list[str]) -> dict[str, str]:
    """One ``sha256sum --zero`` over ``paths`` (relative to ``root``): NUL-ended lines, so
    that no file name is escaped."""
    tool = shutil.which("sha256sum")
    if tool is None:
        raise TransferFailed("sha256sum (coreutils) is not installed on this worker")
    done = subprocess.run(
        [tool, "--zero", "--", *paths], cwd=root, capture_output=True, check=False
    )
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        raise TransferFailed(f"sha256sum under {root} failed: {why[-1]}")
    found = {}
    for line in done.stdout.split(b"\0"):
        if line:
            digest, _, path = line.partition(b"  ")
            found[os.fsdecode(path)] = digest.decode()
    return found


def manifest(root: Path, workers: int | None = None) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    paths = sorted(_files(root))
    links = [p for p in paths if os.path.islink(root / p)]
    files = [p for p in paths if not os.path.islink(root / p)]
    found = {p: "->" + os.readlink(root / p) for p in links}
    batches = [files[i : i + BATCH] for i in range(0, len(files), BATCH)]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for digests in pool.map(lambda batch: _sha256sum(root, batch), batches):
            found.update(digests)
    return found
