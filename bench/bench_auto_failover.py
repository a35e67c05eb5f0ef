"""Auto-failover end to end on this machine: a real Prefect server and worker, the health watcher
running from its deployment, the failover automation switched on, three members in two regions
and 50 exposed workloads. The eu-west region's clusters are stopped; the figures are the time
from the stop to each phase, ending with the real DNS server answering only survivors.

Run by hand: .venv/bin/python bench/bench_auto_failover.py (about 3 minutes).
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime

os.environ["FLEETFLOW_HOME"] = tempfile.mkdtemp(prefix="fleetflow-bench-")
os.environ["PREFECT_API_URL"] = "http://127.0.0.1:4370/api"
os.environ["PREFECT_HOME"] = os.path.join(os.environ["FLEETFLOW_HOME"], "prefect")
# The worker polls as `fleetflow up` has it poll (FLEETFLOW_WORKER_POLL_SECONDS, 2 s).

import httpx
from kubernetes import client as k8s
from prefect.client.orchestration import get_client

from fleetflow.blocks.testbed import save_testbed_blocks
from fleetflow.cli.stack import federate_testbed
from fleetflow.controlplane import API_VERSION
from fleetflow.errors import ResourceNotFound
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import ClusterApiClient, api_client, apply, get
from fleetflow.lease import LEASE_API, Lease
from fleetflow.models import RebalanceRequest
from fleetflow.polling import poll_until
from fleetflow.resolve import lookup
from fleetflow.settings import settings
from fleetflow.stack import Stack, start, stop
from fleetflow.testbed import bed
from fleetflow.testbed.demo import federated_deployment
from fleetflow.testbed.spec import NodeShape, TestbedSpec

FEDERATION = "demo"  # the deployments' default parameters name it
WORKLOADS = 50
AUTOMATION = "auto-failover when every member of a region is Unhealthy"


def quiet(message: str) -> None:
    pass


def enable_automation(api: str) -> None:
    found = httpx.post(f"{api}/automations/filter", json={}, timeout=30).json()
    (automation,) = [a for a in found if a["name"] == AUTOMATION]
    httpx.patch(
        f"{api}/automations/{automation['id']}", json={"enabled": True}, timeout=30
    ).raise_for_status()


def main() -> None:
    stack = Stack.local(4370)
    spec = TestbedSpec(
        base_port=settings().bench_base_port, node=NodeShape(cpu="64", memory="256Gi", pods=1000)
    )
    started_processes = start(stack, progress=quiet)
    bed.up(spec, progress=quiet)
    try:
        save_testbed_blocks(spec)
        dns = f"127.0.0.1:{spec.dns_ports().dns}"
        federate_testbed(spec, FEDERATION)
        host = api_client(bed.credentials(spec.host))
        k8s.CoreV1Api(host).create_namespace({"metadata": {"name": "bench"}})
        for i in range(WORKLOADS):
            apply(
                host,
                federated_deployment(FEDERATION, f"w{i}", "bench", 3, hostname=f"w{i}", cpu="10m"),
            )
        rebalance_replicas(RebalanceRequest(federation=FEDERATION, namespace="bench"))
        enable_automation(stack.api_url)
        with get_client(sync_client=True) as client:
            watch = client.read_deployment_by_name("watch-health/health-watch")
            client.create_flow_run_from_deployment(watch.id)
        poll_until(
            lambda: watcher(host), bool, timeout=120, interval=0.5, waiting_for="the watcher"
        )
        region = spec.members[-1]
        names = [f"w{i}.{spec.dns_zone}" for i in range(WORKLOADS)]
        print(f"{WORKLOADS} exposed workloads; stopping region {region.region} ({region.name})")
        t0 = datetime.now(UTC)
        clock = time.monotonic()
        bed.fault(region.name, bed.Fault.STOP_CLUSTER, progress=quiet)
        poll_until(
            lambda: member_health(host, region.name),
            lambda health: health == "Unhealthy",
            timeout=120,
            interval=0.2,
            waiting_for="the watcher to record the region Unhealthy",
        )
        detected = time.monotonic() - clock
        poll_until(
            lambda: [lookup(n, dns).targets for n in names],
            lambda answers: all(a and region.ingress_address not in a for a in answers),
            timeout=300,
            interval=0.5,
            waiting_for="DNS answering survivors only",
        )
        switched = time.monotonic() - clock
        op = get(
            host,
            API_VERSION,
            "FederationOperation",
            f"failover-{region.region}",
            "fleetflow-system",
        )
        print(f"  fault -> the watcher records it Unhealthy {detected:9.2f} s")
        print(f"  fault -> DNS answering survivors only (all {WORKLOADS} names): {switched:6.2f} s")
        for step in op["status"]["steps"]:
            at = datetime.strptime(step["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            print(f"  fault -> failover {step['name']:<18} {(at - t0).total_seconds():6.2f} s")
        began = datetime.strptime(op["status"]["startedAt"], "%Y-%m-%dT%H:%M:%S.%fZ")
        began_s = (began.replace(tzinfo=UTC) - t0).total_seconds()
        print(f"  fault -> failover started {began_s:9.2f} s")
        bed.fault(region.name, bed.Fault.START_CLUSTER, progress=quiet)
    finally:
        bed.down(progress=quiet)
        for name in reversed(started_processes):
            stop(stack, name, progress=quiet)


def member_health(host: ClusterApiClient, member: str) -> str | None:
    """The member's health as the registry has it."""
    found = get(host, API_VERSION, "MemberCluster", member, "fleetflow-system")
    return (found.get("status") or {}).get("health")


def watcher(host: ClusterApiClient) -> str | None:
    """Who holds the health watcher's lease, if anyone."""
    try:
        lease = get(host, LEASE_API, "Lease", f"fleetflow-health-{FEDERATION}", "fleetflow-system")
    except ResourceNotFound:
        return None
    return Lease.from_object(lease).holder


if __name__ == "__main__":
    main()
