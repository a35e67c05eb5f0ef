"""Failover figures on the test bed: three members in two regions, 50 exposed workloads.

A drill stops the eu-west region's clusters for real, detects it with the federation's health
policy, fails it over, heals it and fails it back; the figures are the drill's timeline. Run by
hand: .venv/bin/python bench/bench_failover.py
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ["FLEETFLOW_HOME"] = tempfile.mkdtemp(prefix="fleetflow-bench-")

from kubernetes import client as k8s
from prefect.testing.utilities import prefect_test_harness

from fleetflow.blocks.testbed import save_testbed_blocks
from fleetflow.cli.stack import federate_testbed
from fleetflow.drill import DrillMode, Mark
from fleetflow.flows.drill import failover_drill
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import api_client, apply
from fleetflow.models import DrillRequest, RebalanceRequest
from fleetflow.settings import settings
from fleetflow.testbed import bed
from fleetflow.testbed.demo import federated_deployment
from fleetflow.testbed.spec import NodeShape, TestbedSpec

WORKLOADS = 50


def workload(i: int) -> dict[str, object]:
    return federated_deployment("bench", f"w{i}", "bench", 3, hostname=f"w{i}", cpu="10m")


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
            federate_testbed(spec, "bench")
            host = api_client(bed.credentials(spec.host))
            k8s.CoreV1Api(host).create_namespace({"metadata": {"name": "bench"}})
            for i in range(WORKLOADS):
                apply(host, workload(i))
            rebalance_replicas(RebalanceRequest(federation="bench", namespace="bench"))
            region = spec.members[-1].region
            print(f"{WORKLOADS} exposed workloads over {len(spec.members)} members; drill {region}")
            started = time.monotonic()
            verdict = failover_drill(
                DrillRequest(federation="bench", region=region, mode=DrillMode.STOP_CLUSTERS)
            )
            print(f"drill took {time.monotonic() - started:.1f}s; {verdict.samples} samples")
            for mark in verdict.timeline:
                seconds = verdict.seconds(mark)
                print(f"  {mark.value:<32} {seconds:7.2f} s" if seconds is not None else mark)
            spans = [
                ("fault -> detected", Mark.FAULT, Mark.DETECTED),
                ("failover start -> survivors Ready", Mark.FAILOVER, Mark.SURVIVORS_READY),
                ("failover start -> DNS answering survivors", Mark.FAILOVER, Mark.DNS_SWITCHED),
                ("fault -> DNS answering survivors", Mark.FAULT, Mark.DNS_SWITCHED),
            ]
            for label, a, b in spans:
                x, y = verdict.timeline.get(a), verdict.timeline.get(b)
                if x and y:
                    print(f"  {label:<44} {(y - x).total_seconds():6.2f} s")
            for o in verdict.objectives:
                print(
                    f"  {o.name}: {o.measured} (target {o.target}) {'pass' if o.passed else 'FAIL'}"
                )
    finally:
        bed.down(progress=lambda m: None)


if __name__ == "__main__":
    main()
