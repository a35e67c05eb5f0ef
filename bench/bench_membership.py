"""Join figures on the test bed: time to join one and three members, API requests per join,
and the RBAC rules a member's role grants.

Run by hand: .venv/bin/python bench/bench_membership.py  (its own test bed and Prefect server)
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import Counter

os.environ["FLEETFLOW_HOME"] = tempfile.mkdtemp(prefix="fleetflow-bench-")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect.testing.utilities import prefect_test_harness

from fleetflow.blocks.testbed import save_testbed_blocks
from fleetflow.flows.bootstrap import bootstrap_control_plane
from fleetflow.flows.join import join_cluster
from fleetflow.flows.unjoin import unjoin_cluster
from fleetflow.kube.client import REQUESTS
from fleetflow.membership import MEMBER_RULES, TOKEN_RULES
from fleetflow.models import BootstrapRequest, JoinRequest, UnjoinRequest
from fleetflow.settings import settings
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec


def join(federation: str, member: str) -> float:
    started = time.monotonic()
    join_cluster(JoinRequest(federation=federation, member=member, admin_block=member))
    return time.monotonic() - started


def unjoin_all(federation: str, members: list[str]) -> None:
    for member in members:
        unjoin_cluster(UnjoinRequest(federation=federation, member=member, admin_block=member))


def main() -> None:
    spec = TestbedSpec(base_port=settings().bench_base_port)
    members = [m.name for m in spec.members]
    bed.up(spec, progress=lambda m: None)
    logging.getLogger("prefect").setLevel(logging.WARNING)
    try:
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no internet to phone
        with prefect_test_harness(server_startup_timeout=120):
            save_testbed_blocks(spec)
            started = time.monotonic()
            bootstrap_control_plane(BootstrapRequest(federation="bench", host_cluster=spec.host))
            print(f"bootstrap (first run):          {time.monotonic() - started:6.2f} s")
            join("bench", members[0])  # warm imports and the server's caches
            unjoin_all("bench", members[:1])

            REQUESTS.clear()
            one = join("bench", members[0])
            per_join: Counter[str] = Counter()
            for (_, method), n in REQUESTS.items():
                per_join[method] += n
            print(f"join one member:                {one:6.2f} s")
            print(
                f"API requests per join:          {sum(per_join.values())} "
                f"({', '.join(f'{m} {n}' for m, n in sorted(per_join.items()))})"
            )
            by_cluster: Counter[str] = Counter()
            for (cluster, _), n in REQUESTS.items():
                by_cluster["host" if cluster == spec.host else "member"] += n
            print(
                f"  of which to the host:         {by_cluster['host']}, "
                f"to the member: {by_cluster['member']}"
            )
            unjoin_all("bench", members[:1])

            started = time.monotonic()
            for member in members:
                join("bench", member)
            print(f"join three members:             {time.monotonic() - started:6.2f} s")
            REQUESTS.clear()
            started = time.monotonic()
            for member in members:
                join("bench", member)
            writes = sum(n for (_, m), n in REQUESTS.items() if m != "GET")
            print(
                f"rejoin three (no change):       {time.monotonic() - started:6.2f} s, "
                f"{writes} non-GET requests (server-side applies that change nothing)"
            )
            unjoin_all("bench", members)
    finally:
        bed.down(progress=lambda m: None)
    print("member ClusterRole rules:")
    for rule in MEMBER_RULES:
        print(
            f"  {','.join(g or 'core' for g in rule['apiGroups']):<20} "
            f"{','.join(rule['resources']):<55} "
            f"{','.join(rule['verbs'])}"
        )
    print("member Role rules (own namespace only):")
    for rule in TOKEN_RULES:
        print(f"  {'core':<20} {','.join(rule['resources']):<55} {','.join(rule['verbs'])}")


if __name__ == "__main__":
    main()
