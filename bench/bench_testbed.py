"""Test-bed figures: warm `testbed build`, `testbed up` to all clusters Ready, memory per cluster.

Run by hand: .venv/bin/python bench/bench_testbed.py  (uses its own FLEETFLOW_HOME and ports)
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ["FLEETFLOW_HOME"] = tempfile.mkdtemp(prefix="fleetflow-bench-")

from fleetflow.settings import settings
from fleetflow.testbed import bed, build
from fleetflow.testbed.spec import TestbedSpec


def main() -> None:
    started = time.monotonic()
    build.build(progress=lambda m: None)
    print(f"testbed build (warm):           {time.monotonic() - started:6.2f} s")
    spec = TestbedSpec(base_port=settings().bench_base_port)
    try:
        started = time.monotonic()
        bed.up(spec, progress=lambda m: None)
        print(
            f"testbed up to all Ready (warm): {time.monotonic() - started:6.2f} s "
            f"({len(spec.cluster_names())} clusters, "
            f"{sum(m.nodes for m in spec.members)} kwok nodes)"
        )
        time.sleep(10)  # let the controllers settle before reading resident memory
        for cluster, mib in sorted(bed.memory_mib().items()):
            role = "host" if cluster == spec.host else "member"
            print(f"memory {cluster:<10} ({role}):     {mib:6.0f} MiB resident")
        started = time.monotonic()
        bed.up(spec, progress=lambda m: None)
        print(f"testbed up again (no change):   {time.monotonic() - started:6.2f} s")
    finally:
        started = time.monotonic()
        bed.down(progress=lambda m: None)
        print(f"testbed down:                   {time.monotonic() - started:6.2f} s")


if __name__ == "__main__":
    main()
