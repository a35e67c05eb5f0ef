"""Migration figures.

1. The mover against plain ``rsync -a`` and ``cp -a`` of the same tree, and the verification
   (fleetflow's parallel sha256 manifest) against ``sha256sum`` over the same files: ratios.
2. On the test bed: a StatefulSet with three volumes (many small files and one large one) is
   staged (pre-copied while it serves), 1% of its files change, and it is cut over to the other
   region: the final sync's bytes, the total time and the measured downtime.

Run by hand: .venv/bin/python bench/bench_migrate.py [MB]   (default 300)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import bench_spec, federated

from fleetflow import checksums, rsync
from fleetflow.controlplane import API_VERSION
from fleetflow.flows.migrate import migrate_workload
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import api_client, apply, get
from fleetflow.models import MigrateRequest, RebalanceRequest
from fleetflow.operations import parse_stamp
from fleetflow.polling import poll_until
from fleetflow.testbed import bed
from fleetflow.testbed.demo import federated_statefulset
from fleetflow.testbed.volumes import claim_directories, seed

SMALL = 8192


def sizes(megabytes: int) -> tuple[int, int]:
    """Small files (a third of the bytes, over two volumes) and the large file's MiB."""
    small = max(1, megabytes * (1 << 20) // 3 // SMALL // 2)
    return small, max(1, megabytes * 2 // 3)


def timed(run: object) -> float:
    start = time.monotonic()
    run()  # type: ignore[operator]
    return time.monotonic() - start


def local(megabytes: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    try:
        source = work / "source"
        dirs = {v: source / v for v in ("a-data", "b-logs", "c-blobs")}
        for d in dirs.values():
            d.mkdir(parents=True)
        small, large = sizes(megabytes)
        total = seed(dirs, small=small, small_size=SMALL, large_mb=large)
        files = sum(1 for _ in source.rglob("*.bin"))
        subprocess.run(["cat", *map(str, source.rglob("*.bin"))], stdout=subprocess.DEVNULL)
        print(f"tree: {total / 1e6:.0f} MB in {files} files (page cache warm)")

        def fresh(name: str) -> Path:
            path = work / name
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            return path

        rounds = {}
        for name in ("mover", "rsync -a", "cp -a"):
            seconds = []
            for _ in range(3):
                target = fresh(name.replace(" ", ""))
                if name == "mover":
                    seconds.append(timed(lambda t=target: rsync.sync(source, t)))
                elif name == "rsync -a":
                    seconds.append(
                        timed(
                            lambda t=target: subprocess.run(["rsync", "-a", f"{source}/", f"{t}/"])
                        )
                    )
                else:
                    seconds.append(
                        timed(lambda t=target: subprocess.run(["cp", "-a", f"{source}/.", str(t)]))
                    )
            rounds[name] = min(seconds)
            print(f"  {name:<9} {rounds[name]:6.2f} s  {total / rounds[name] / 1e6:7.0f} MB/s")
        print(
            f"mover throughput: {rounds['rsync -a'] / rounds['mover']:.2f}x rsync -a, "
            f"{rounds['cp -a'] / rounds['mover']:.2f}x cp -a"
        )

        listed = [str(p) for p in source.rglob("*") if p.is_file()]
        ours = min(timed(lambda: checksums.manifest(source)) for _ in range(3))

        def sha256sum() -> None:
            for i in range(0, len(listed), 2000):
                subprocess.run(["sha256sum", *listed[i : i + 2000]], stdout=subprocess.DEVNULL)

        theirs = min(timed(sha256sum) for _ in range(3))
        print(
            f"verification: manifest {ours:.2f} s, sha256sum {theirs:.2f} s: "
            f"{theirs / ours:.2f}x sha256sum ({os.cpu_count()} cores)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def on_testbed(megabytes: int) -> None:
    spec = bench_spec()
    a, c = spec.members[0].name, spec.members[-1].name
    with federated("bench", "bench", spec) as host:
        apply(
            host,
            federated_statefulset("bench", "db", "bench", a, volumes=("data", "logs", "blobs")),
        )
        rebalance_replicas(RebalanceRequest(federation="bench", namespace="bench"))
        source_api = api_client(bed.credentials(a))
        dirs = poll_until(
            lambda: claim_directories(source_api, "bench", "db"),
            lambda d: len(d) == 3,
            timeout=60,
            waiting_for="claims bound",
        )
        small, large = sizes(megabytes)
        total = seed(dirs, small=small, small_size=SMALL, large_mb=large)
        files = sorted(p for d in dirs.values() for p in d.rglob("*.bin"))
        request = MigrateRequest(federation="bench", namespace="bench", name="db", target=c)
        started = time.monotonic()
        migrate_workload(request.model_copy(update={"cutover": False}))
        staged = time.monotonic() - started
        changed = files[: max(1, len(files) // 100)]
        for path in changed:
            path.write_bytes(os.urandom(path.stat().st_size))
        cut = time.monotonic()
        migrate_workload(request)
        ended = time.monotonic()
        op = get(host, API_VERSION, "FederationOperation", "migrate-bench-db", "fleetflow-system")
        result = op["status"]["result"]
        quiesced = parse_stamp(result["quiescedAt"])
        serving = parse_stamp(result.get("switchedAt") or result["servingAt"])
        assert quiesced and serving
        changed_bytes = sum(p.stat().st_size for p in changed)
        print(
            f"test bed: {total / 1e6:.0f} MB in {len(files)} files, {len(changed)} changed "
            f"({changed_bytes / 1e6:.2f} MB) after staging"
        )
        print(f"  staged (pre-copy while serving): {staged:.1f} s, rounds {result['precopy']}")
        print(f"  final sync: {result['finalSync']}")
        print(f"  cutover run: {ended - cut:.1f} s; whole migration {ended - started:.1f} s")
        print(
            f"  downtime (stop -> target Ready and DNS answering): "
            f"{(serving - quiesced).total_seconds():.2f} s"
        )
        for step in op["status"]["steps"]:
            print(f"    {step['name']:<18} {step['at']}  {step['message']}")


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    local(megabytes)
    on_testbed(megabytes)


if __name__ == "__main__":
    main()
