"""Failover figures on the test bed: three members in two regions, 50 exposed workloads.

A drill stops the eu-west region's clusters for real, detects it with the federation's health
policy, fails it over, heals it and fails it back; the figures are the drill's timeline. Run by
hand: .venv/bin/python bench/bench_failover.py
"""

from __future__ import annotations

import time

from harness import federated

from fleetflow.controlplane import API_VERSION
from fleetflow.drill import DrillMode, Mark
from fleetflow.flows.drill import failover_drill
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import ClusterApiClient, apply, get
from fleetflow.models import DrillRequest, RebalanceRequest
from fleetflow.operations import Operation, parse_stamp
from fleetflow.testbed.demo import federated_deployment
from fleetflow.testbed.spec import TestbedSpec

WORKLOADS = 50
REGION = TestbedSpec().members[-1].region


def workload(i: int) -> dict[str, object]:
    return federated_deployment("bench", f"w{i}", "bench", 3, hostname=f"w{i}", cpu="10m")


def phases(host: ClusterApiClient, region: str) -> None:
    """Each failover phase's end, from the run's start, as its operation record has them."""
    op = Operation.from_object(
        get(host, API_VERSION, "FederationOperation", f"failover-{region}", "fleetflow-system")
    )
    begun = parse_stamp(op.status.started_at)
    for step in op.status.steps:
        at = parse_stamp(step.at)
        if begun and at:
            print(f"  failover phase {step.name:<22} {(at - begun).total_seconds():6.2f} s")


def main() -> None:
    with federated("bench", "bench") as host:
        for i in range(WORKLOADS):
            apply(host, workload(i))
        rebalance_replicas(RebalanceRequest(federation="bench", namespace="bench"))
        region = REGION
        print(f"{WORKLOADS} exposed workloads; drill {region}")
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
            print(f"  {o.name}: {o.measured} (target {o.target}) {'pass' if o.passed else 'FAIL'}")
        phases(host, region)


if __name__ == "__main__":
    main()
