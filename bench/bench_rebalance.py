"""Rebalance figures on the test bed: 300 federated workloads over three members.

Prints the first rebalance time, the no-op rebalance time and its write count, and the Prefect
task runs per rebalance. Run by hand: .venv/bin/python bench/bench_rebalance.py
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime

os.environ["FLEETFLOW_HOME"] = tempfile.mkdtemp(prefix="fleetflow-bench-")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import httpx
from kubernetes import client as k8s
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from fleetflow.blocks.testbed import save_testbed_blocks
from fleetflow.flows.bootstrap import bootstrap_control_plane
from fleetflow.flows.join import join_cluster
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import api_client, apply
from fleetflow.kube.client import REQUESTS
from fleetflow.models import BootstrapRequest, JoinRequest, RebalanceRequest
from fleetflow.settings import settings
from fleetflow.testbed import bed
from fleetflow.testbed.demo import federated_deployment
from fleetflow.testbed.spec import NodeShape, TestbedSpec

WORKLOADS = int(os.environ.get("FLEETFLOW_BENCH_WORKLOADS", "300"))


def workload(i: int) -> dict[str, object]:
    return federated_deployment("bench", f"w{i}", "bench", 3 + i % 4, cpu="10m")


def task_runs_since(started: str) -> int:
    response = httpx.post(
        f"{PREFECT_API_URL.value()}/task_runs/count",
        timeout=30,
        json={"task_runs": {"start_time": {"after_": started}}},
    )
    response.raise_for_status()
    return int(response.json())


def run(label: str) -> None:
    REQUESTS.clear()
    since = datetime.now(UTC).isoformat()
    started = time.monotonic()
    rebalance_replicas(RebalanceRequest(federation="bench", namespace="bench"))
    elapsed = time.monotonic() - started
    writes = sum(n for (_, method), n in REQUESTS.items() if method != "GET")
    reads = sum(n for (_, method), n in REQUESTS.items() if method == "GET")
    print(
        f"{label:<28} {elapsed:7.2f} s   {writes:5d} write requests   {reads:4d} reads   "
        f"{task_runs_since(since):3d} task runs"
    )


def main() -> None:
    spec = TestbedSpec(
        base_port=settings().bench_base_port,
        node=NodeShape(cpu="64", memory="256Gi", pods=1000),
    )
    bed.up(spec, progress=lambda m: None)
    try:
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no internet to phone
        with prefect_test_harness(server_startup_timeout=120):
            save_testbed_blocks(spec)
            bootstrap_control_plane(BootstrapRequest(federation="bench", host_cluster=spec.host))
            for m in spec.members:
                join_cluster(JoinRequest(federation="bench", member=m.name, admin_block=m.name))
            host = api_client(bed.credentials(spec.host))
            k8s.CoreV1Api(host).create_namespace({"metadata": {"name": "bench"}})
            for i in range(WORKLOADS):
                apply(host, workload(i))
            print(f"{WORKLOADS} federated workloads over {len(spec.members)} members")
            run("first rebalance")
            run("second (records ready)")
            run("no-op rebalance")
    finally:
        bed.down(progress=lambda m: None)


if __name__ == "__main__":
    main()
