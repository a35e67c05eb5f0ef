"""A failover drill: prove that a region can fail and come back without losing traffic.

Runbook: note each exposed workload's availability floor; start sampling, every second, the
federation's Ready replicas and the DNS answers; inject the fault (test bed: stop the region's
clusters, or kill their apiservers; real clusters: only fence the region); detect it with the
federation's health policy; fail over (or wait for the auto-failover automation to); heal the
fault; wait for the region to be Healthy; fail back (or wait for the automation); wait for DNS
to list the region again; publish the verdict: the timeline and each objective with its target
and measured value. The run fails when an objective is missed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from fleetflow.blocks import KubeCluster
from fleetflow.blocks.loading import find_cluster, load_cluster, load_federation
from fleetflow.drill import DrillMode, Mark, Targets, Verdict, judge
from fleetflow.errors import PartialFailure, prefect_overloaded
from fleetflow.failover import evacuation
from fleetflow.flows.failover import regional_failback, regional_failover
from fleetflow.flows.report import finished
from fleetflow.health import Health, HealthPolicy, HealthState, observe
from fleetflow.models import DrillRequest, FailbackRequest, FailoverRequest
from fleetflow.operations import Operation, Phase, parse_stamp
from fleetflow.polling import poll_until
from fleetflow.resolve import lookup
from fleetflow.tasks.drill import Sampler, check_injectable, heal, inject
from fleetflow.tasks.health import probe_health
from fleetflow.tasks.host import list_members, list_workloads
from fleetflow.tasks.operations import read_operation
from fleetflow.tasks.rebalance import probe_members
from fleetflow.tasks.traffic import list_endpoints
from fleetflow.traffic import expected_answers


def _now() -> datetime:
    return datetime.now(UTC)


@flow(name="failover-drill")
def failover_drill(request: DrillRequest) -> Verdict:
    """Fault a region, fail it over and back, and judge how it went."""
    federation = load_federation(request.federation)
    host = load_cluster(federation.host_cluster)
    registry = list_members(host, federation.namespace, federation.name)
    target = evacuation(registry, request.region, [])
    check_injectable(request.mode, target.members)
    workloads = [fd for fd in list_workloads(host, federation.name) if not fd.deleting]
    names = sorted(expected_answers(list(list_endpoints(host, federation.name).values())))
    blocks = {m.name: find_cluster(m.spec.credentials_block) for m in registry}
    seen = probe_members(blocks, federation.name)
    floors = {
        fd.key: sum(
            seen[m].deployments[fd.key].ready
            for m in target.survivors
            if fd.key in seen[m].deployments
        )
        for fd in workloads
    }
    region = {a for m in registry if m.name in target.members and (a := m.spec.ingress_address)}
    policy = federation.health_policy()
    marks: dict[Mark, datetime] = {Mark.STARTED: _now()}
    sampler = Sampler(blocks, federation.name, names, federation.dns_server)
    sampler.start()
    failure: Exception | None = None
    try:
        inject(request.mode, target.members)
        marks[Mark.FAULT] = _now()
        region_blocks = {m: blocks[m] for m in target.members}
        if request.mode is not DrillMode.FENCE:
            marks[Mark.DETECTED] = _wait_health(
                region_blocks, federation.name, policy, Health.UNHEALTHY, request.detect_timeout
            )
        marks[Mark.FAILOVER] = _now()
        op: Operation | None
        if request.auto_failover:
            op = _wait_operation(
                host,
                federation.namespace,
                target.operation_name,
                Phase.SUCCEEDED,
                request.recover_timeout,
            )
        else:
            regional_failover(
                FailoverRequest(
                    federation=request.federation,
                    region=request.region,
                    reason="drill",
                    deadline=request.recover_timeout,
                )
            )
            op = read_operation(host, federation.namespace, target.operation_name)
        marks.update(_failover_marks(op))
        heal(request.mode, target.members)
        marks[Mark.HEALED] = _now()
        _wait_health(
            region_blocks, federation.name, policy, Health.HEALTHY, request.recover_timeout
        )
        if request.auto_failover:
            _wait_operation(
                host,
                federation.namespace,
                target.operation_name,
                Phase.REVERTED,
                request.recover_timeout,
            )
        else:
            regional_failback(
                FailbackRequest(
                    federation=request.federation,
                    region=request.region,
                    deadline=request.recover_timeout,
                )
            )
        marks[Mark.FAILED_BACK] = _now()
        if federation.dns_server and names:
            server = federation.dns_server
            poll_until(
                lambda: [lookup(n, server).targets for n in names],
                lambda answers: all(region & set(a) for a in answers),
                timeout=request.recover_timeout,
                waiting_for="DNS to list the region again",
            )
            marks[Mark.DNS_RESTORED] = _now()
    except Exception as exc:  # judged below with what was seen, then the run fails
        failure = exc
    finally:
        samples = sampler.stop()
        if request.mode is not DrillMode.FENCE and Mark.HEALED not in marks:
            heal(request.mode, target.members)  # never leave a region down
    marks[Mark.DONE] = _now()
    verdict = judge(
        request.region,
        request.mode,
        marks,
        samples,
        floors,
        region,
        Targets(detect=request.detect_target, recover=request.recover_target),
        failure=str(prefect_overloaded(failure) or failure) if failure else None,
    )
    create_markdown_artifact(
        markdown=verdict.markdown(), key="drill-verdict", description=f"drill {request.region}"
    )
    if not verdict.passed:
        missed = [
            f"{o.name}: {o.measured} (target {o.target})"
            for o in verdict.objectives
            if not o.passed
        ]
        raise PartialFailure("drill failed: " + "; ".join(missed))
    return finished(verdict, verdict.summary())


def _wait_health(
    blocks: dict[str, KubeCluster | None],
    federation: str,
    policy: HealthPolicy,
    want: Health,
    timeout: float,
) -> datetime:
    """Probe the members every second with the federation's policy until all are ``want``;
    return when they were."""
    states = {
        m: HealthState()
        if want is Health.UNHEALTHY
        else HealthState(health=Health.UNHEALTHY, consecutive_failures=policy.failure_threshold)
        for m in blocks
    }

    def look() -> dict[str, HealthState]:
        now = _now()
        for name, probe in probe_health(blocks, federation, timeout=2.0).items():
            states[name] = observe(states[name], probe.ok, policy, now)
        return dict(states)

    poll_until(
        look,
        lambda seen: all(s.health is want for s in seen.values()),
        timeout=timeout,
        interval=1.0,
        waiting_for=f"members {', '.join(blocks)} {want.value}",
        describe=lambda seen: ", ".join(f"{m}: {s.health.value}" for m, s in seen.items()),
    )
    return _now()


def _wait_operation(
    host: KubeCluster, namespace: str, name: str, phase: Phase, timeout: float
) -> Operation:
    """Wait for the automation's run to bring the operation record to ``phase``."""
    op = poll_until(
        lambda: read_operation.fn(host, namespace, name),  # a read every 0.5 s: no task runs
        lambda found: found is not None and found.status.phase is phase,
        timeout=timeout,
        interval=0.5,
        waiting_for=f"operation {name} {phase.value} (is the automation enabled?)",
    )
    return cast(Operation, op)


def _failover_marks(op: Operation | None) -> dict[Mark, datetime]:
    """When the survivors turned Ready and when DNS answered, as the failover recorded them."""
    found: dict[Mark, datetime] = {}
    for step in op.status.steps if op else []:
        at = parse_stamp(step.at)
        if at and step.name == "ready":
            found[Mark.SURVIVORS_READY] = at
        if at and step.name == "traffic-switched":
            found[Mark.DNS_SWITCHED] = at
    return found
