"""The test bed's volumes as directories: where a workload's claims keep their data on this
machine (kube-controller-manager's hostPath provisioner made them), and sample data to put in."""

from __future__ import annotations

import os
import random
from pathlib import Path

from fleetflow.kube import ClusterApiClient, get, list_objects
from fleetflow.volume_paths import directory_of


def claim_directories(api: ClusterApiClient, namespace: str, workload: str) -> dict[str, Path]:
    """Each bound claim of the StatefulSet ``workload``'s first replica, and its directory."""
    found = {}
    for claim in list_objects(api, "v1", "PersistentVolumeClaim", namespace):
        name = claim["metadata"]["name"]
        if not name.endswith(f"-{workload}-0") or (claim.get("status") or {}).get("phase") != (
            "Bound"
        ):
            continue
        path = directory_of(get(api, "v1", "PersistentVolume", claim["spec"]["volumeName"]))
        if path is not None:
            found[name] = Path(path)
    return found


def seed(dirs: dict[str, Path], *, small: int, small_size: int, large_mb: int) -> int:
    """Write sample data: ``small`` files of ``small_size`` bytes in ten folders of each volume
    but the last, and one file of ``large_mb`` MiB in the last; returns the bytes written."""
    rng = random.Random(7)
    names = sorted(dirs)
    written = 0
    for claim in names[:-1]:
        for i in range(small):
            path = dirs[claim] / f"d{i % 10}" / f"f{i:05}.bin"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(rng.randbytes(small_size))
            written += small_size
    with (dirs[names[-1]] / "large.bin").open("wb") as out:
        for _ in range(large_mb):
            out.write(os.urandom(1 << 20))
    return written + large_mb * (1 << 20)
