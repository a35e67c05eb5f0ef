"""Propagation figures on the test bed: 1,000 federated objects of mixed kinds over three members.

ConfigMaps, Secrets and Services, some placed on every member and some following the few
workloads whose pods reference them. Prints the first propagation's time and write count, the
no-op run's (whose writes must be 0), and the Prefect task runs per propagation. Run by hand:
.venv/bin/python bench/bench_propagation.py (FLEETFLOW_BENCH_BASE_PORT moves its test bed).
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

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
from fleetflow.testbed import bed, demo
from fleetflow.testbed.demo import federated_deployment
from fleetflow.testbed.spec import NodeShape, TestbedSpec

OBJECTS = int(os.environ.get("FLEETFLOW_BENCH_OBJECTS", "1000"))
WORKLOADS = 20
"""Each reads one ConfigMap and one Secret that follow it; the other objects are placed on
every member."""
NAMESPACE = "bench"


def federated_object(template: dict[str, Any], follow: bool) -> dict[str, Any]:
    return demo.federated_object("bench", NAMESPACE, template, placement=None if follow else {})


def objects() -> list[dict[str, Any]]:
    """OBJECTS FederatedObjects: per workload a ConfigMap and a Secret that follow it, then
    ConfigMaps, Secrets and Services in turn, placed on every member."""
    found = []
    for i in range(WORKLOADS):
        found.append(
            federated_object(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"w{i}-config"},
                    "data": {"i": str(i)},
                },
                follow=True,
            )
        )
        found.append(
            federated_object(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": f"w{i}-secret"},
                    "stringData": {"password": f"p{i}"},
                },
                follow=True,
            )
        )
    i = 0
    while len(found) < OBJECTS:
        meta = {"name": f"o{i}"}
        template: dict[str, Any]
        if i % 3 == 0:
            template = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {}}
            template["data"] = {"value": str(i)}
        elif i % 3 == 1:
            template = {"apiVersion": "v1", "kind": "Secret", "metadata": meta}
            template["stringData"] = {"key": f"k{i}"}
        else:
            template = {"apiVersion": "v1", "kind": "Service", "metadata": meta}
            # Headless: the test bed's service IP range (a /24) holds fewer than 334 Services.
            template["spec"] = {
                "clusterIP": "None",
                "selector": {"app": f"o{i}"},
                "ports": [{"port": 80}],
            }
        found.append(federated_object(template, follow=False))
        i += 1
    return found


def workload(i: int) -> dict[str, Any]:
    fd = federated_deployment("bench", f"w{i}", NAMESPACE, 3, cpu="10m")
    pod = fd["spec"]["template"]["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "config", "configMap": {"name": f"w{i}-config"}}]
    pod["containers"][0]["envFrom"] = [{"secretRef": {"name": f"w{i}-secret"}}]
    return fd


def task_runs_since(started: str) -> int:
    response = httpx.post(
        f"{PREFECT_API_URL.value()}/task_runs/count",
        timeout=30,
        json={"task_runs": {"start_time": {"after_": started}}},
    )
    response.raise_for_status()
    return int(response.json())


def run(label: str) -> int:
    REQUESTS.clear()
    since = datetime.now(UTC).isoformat()
    started = time.monotonic()
    rebalance_replicas(RebalanceRequest(federation="bench", namespace=NAMESPACE))
    elapsed = time.monotonic() - started
    members = sum(n for (c, m), n in REQUESTS.items() if m != "GET" and c != "host")
    host = sum(n for (c, m), n in REQUESTS.items() if m != "GET" and c == "host")
    reads = sum(n for (_, method), n in REQUESTS.items() if method == "GET")
    print(
        f"{label:<22} {elapsed:7.2f} s   {members:5d} member writes   {host:5d} host writes   "
        f"{reads:5d} reads   {task_runs_since(since):3d} task runs"
    )
    return members + host


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
                member = api_client(bed.credentials(m.name))
                k8s.CoreV1Api(member).create_namespace({"metadata": {"name": NAMESPACE}})
                join_cluster(
                    JoinRequest(
                        federation="bench",
                        member=m.name,
                        admin_block=m.name,
                        namespaces=[NAMESPACE],
                    )
                )
            host = api_client(bed.credentials(spec.host))
            k8s.CoreV1Api(host).create_namespace({"metadata": {"name": NAMESPACE}})
            for fo in objects():
                apply(host, fo)
            for i in range(WORKLOADS):
                apply(host, workload(i))
            print(
                f"{OBJECTS} federated objects and {WORKLOADS} workloads over "
                f"{len(spec.members)} members"
            )
            run("first propagation")
            run("second run")
            writes = run("no-op run")
            if writes:
                raise SystemExit(f"the no-op run wrote {writes} times")
    finally:
        bed.down(progress=lambda m: None)


if __name__ == "__main__":
    main()
