"""Fail a region over, and back.

Failover runbook (make-before-break; every phase recorded on the FederationOperation named for
the region before the next begins, so a rerun after a crash resumes where it stopped and never
repeats a finished phase):
1. fence the region: no flow places replicas there any more;
2. plan every workload over the survivors, capacity-aware (what does not fit is reported);
3. scale the survivors up, after writing what their new replicas need (the federated
   objects that follow the workloads);
4. wait until their replicas are Ready (bounded by the deadline);
5. switch traffic: each exposed workload's DNSEndpoint lists only members with Ready replicas
   (and, with the federation's DNS server known, wait until the server answers so);
6. scale the evacuated members down where they can be reached; report those that could not be;
7. publish the timeline.

Failback runbook: lift the fence, then rebalance in rounds of at most ``max_moves`` replicas per
workload, each round's replicas Ready before anything is taken away elsewhere; traffic follows
Ready replicas, so DNS returns to the region only once its replicas are Ready.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from prefect import flow, runtime
from prefect.task_runners import ThreadPoolTaskRunner

from fleetflow.blocks.loading import find_cluster, load_cluster, load_federation
from fleetflow.errors import InvalidRequest, PartialFailure, WaitTimeout
from fleetflow.failover import as_if_ready, evacuation, fence, plan_failover
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.flows.report import publish, publish_failover_plan, publish_timeline
from fleetflow.models import Action, FailbackRequest, FailoverRequest, RebalanceRequest, Report
from fleetflow.operations import Operation, Phase, finished, started, step_done
from fleetflow.probes import assess
from fleetflow.settings import settings
from fleetflow.tasks.host import list_federated_objects, list_members, list_workloads
from fleetflow.tasks.leases import holding
from fleetflow.tasks.operations import read_operation, save_operation
from fleetflow.tasks.propagate import propagate_members
from fleetflow.tasks.rebalance import probe_members, wait_members_ready, write_members
from fleetflow.tasks.traffic import apply_endpoints, list_endpoints, set_fenced, wait_answers
from fleetflow.traffic import endpoints, expected_answers
from fleetflow.writes import held_back, plan_objects, ready_keys, with_readiness, write_plan


def _now() -> datetime:
    return datetime.now(UTC)


RUNNER = ThreadPoolTaskRunner[Any](max_workers=settings().parallelism)


@flow(name="regional-failover", task_runner=RUNNER)  # type: ignore[arg-type]
def regional_failover(request: FailoverRequest) -> Report:
    """Evacuate a region (or members): survivors Ready first, then traffic, then drain."""
    dry_run = request.dry_run
    federation = load_federation(request.federation)
    host = load_cluster(federation.host_cluster)
    registry = list_members(host, federation.namespace, federation.name)
    target = evacuation(registry, request.region, request.members)
    op = read_operation(host, federation.namespace, target.operation_name) or Operation(
        name=target.operation_name,
        namespace=federation.namespace,
        procedure="failover",
        federation=federation.name,
        parameters={"members": target.members, "region": target.region, "reason": request.reason},
    )
    report = Report(procedure=f"failover {target.region or ', '.join(target.members)}")
    if op.finished:
        report.notes.append(f"already evacuated at {op.status.finished_at}: nothing to change")
        return publish(report, key=f"failover-{federation.name}")

    workloads = list_workloads(host, federation.name)
    objects = list_federated_objects(host, federation.name)
    blocks = {m.name: find_cluster(m.spec.credentials_block) for m in registry}
    seen = probe_members(blocks, federation.name)
    members = assess(registry, seen, federation.health_policy(), _now()).members
    plan = plan_failover(workloads, members, target.members)
    views = fence(members, target.members)
    # What the survivors' new replicas need (ConfigMaps, Secrets...) goes with them; what the
    # region no longer needs stays until a rebalance after the failover takes it away.
    joined = {m.name: m.namespaces for m in registry}
    invalid = [o.key for o in objects.invalid]
    needs = plan_objects(
        objects.valid, invalid, workloads, plan.plans, views, joined, federation.name
    ).work
    ingress = {m.name: m.spec.ingress_address for m in registry}
    zone, name = federation.dns_zone, federation.name
    _, unexposed = endpoints(workloads, as_if_ready(plan.plans), views, ingress, zone, name)
    publish_failover_plan(plan, target, dry_run, unexposed)
    if unexposed:
        raise InvalidRequest("; ".join(unexposed) + "; nothing was changed")
    if dry_run:  # every write below, said and not done
        writes = write_plan(workloads, plan.plans, members, federation.name)
        region = [m for m in registry if m.name in target.members]
        dns, _ = endpoints(workloads, as_if_ready(plan.plans), views, ingress, zone, name)
        report.dry_run = True
        report.actions = [
            *set_fenced(host, region, fenced=True, dry_run=True),
            *propagate_members(blocks, name, needs, writes.ups, members, True).actions,
            *apply_endpoints(host, dns, list_endpoints(host, federation.name), True),
            *write_members(blocks, writes.downs, members, True).actions,
        ]
        report.notes = [f"would evacuate {', '.join(target.members)}"]
        return publish(report, key=f"failover-{federation.name}")

    me = str(runtime.flow_run.id or uuid.uuid4())
    with holding(
        host,
        federation.namespace,
        f"fleetflow-failover-{federation.name}",
        me,
        duration=settings().lease_duration,
        refusal=f"another failover of federation {federation.name} is running; two never run "
        f"at once: wait for it (if it crashed, its lease lapses within "
        f"{settings().lease_duration}s and a rerun resumes its work)",
    ):
        op = save_operation(host, started(op, _now(), me))
        writes = write_plan(workloads, plan.plans, members, federation.name)
        actions: list[Action] = []
        if not op.done("fenced"):
            actions += set_fenced(
                host, [m for m in registry if m.name in target.members], fenced=True, dry_run=False
            )
            op = save_operation(host, step_done(op, "fenced", _now()))
        if not op.done("scaled-up"):
            ups = propagate_members(blocks, name, needs, writes.ups, members, False)
            actions += ups.actions
            if ups.failed:
                raise PartialFailure("; ".join(ups.notes()) + "; rerun to resume the failover")
            op = save_operation(host, step_done(op, "scaled-up", _now()))
        if not op.done("ready"):
            keys = ready_keys(plan.plans, target.survivors)
            readiness = wait_members_ready(blocks, keys, request.deadline, False)
            late = held_back(readiness, request.deadline)
            if late:
                raise WaitTimeout(
                    "; ".join(late) + ": traffic and the evacuated members are untouched; "
                    "rerun to keep waiting, or give survivors more room"
                )
            plan.plans = with_readiness(plan.plans, readiness)
            op = save_operation(host, step_done(op, "ready", _now()))
        if not op.done("traffic-switched"):
            dns, _ = endpoints(workloads, plan.plans, views, ingress, zone, name)
            actions += apply_endpoints(host, dns, list_endpoints(host, federation.name), False)
            message = ""
            if federation.dns_server and dns:
                answers = wait_answers(
                    federation.dns_server, expected_answers(dns), request.deadline
                )
                message = "; ".join(f"{n}: {a.summary()}" for n, a in answers.items())
            op = save_operation(host, step_done(op, "traffic-switched", _now(), message))
        if not op.done("drained"):
            downs = write_members(blocks, writes.downs, members, False)
            actions += downs.actions
            gone = [m for m in target.members if not members[m].reachable]
            report.notes += [
                *(f"{m}: unreachable; its replicas stay until it is back, fenced" for m in gone),
                *downs.notes(),
            ]
            op = save_operation(host, step_done(op, "drained", _now()))
        op = save_operation(host, finished(op, Phase.SUCCEEDED, _now()))
    publish_timeline(op)
    report.actions = actions
    report.notes += [f"{k}: {n} replicas could not be placed" for k, n in plan.unplaced.items()]
    return publish(report, key=f"failover-{federation.name}")


@flow(name="regional-failback", task_runner=RUNNER)  # type: ignore[arg-type]
def regional_failback(request: FailbackRequest) -> Report:
    """Lift the fence and return replicas, then traffic, in rate-limited rounds."""
    federation = load_federation(request.federation)
    host = load_cluster(federation.host_cluster)
    registry = list_members(host, federation.namespace, federation.name)
    target = evacuation(registry, request.region, request.members)
    report = Report(
        procedure=f"failback {target.region or ', '.join(target.members)}", dry_run=request.dry_run
    )
    report.actions += set_fenced(
        host,
        [m for m in registry if m.name in target.members],
        fenced=False,
        dry_run=request.dry_run,
    )
    rounds = 0
    while rounds < settings().failback_rounds:
        rounds += 1
        step = rebalance_replicas(
            RebalanceRequest(
                federation=request.federation,
                max_moves=request.max_moves,
                wait_timeout=request.deadline,
                dry_run=request.dry_run,
            )
        )
        report.actions += step.actions
        if request.dry_run or not step.writes():
            break
    op = read_operation(host, federation.namespace, target.operation_name)
    if op is not None and not request.dry_run:
        save_operation(host, finished(op, Phase.REVERTED, datetime.now(UTC), "failed back"))
    report.notes.append(f"{rounds} rebalance round(s)")
    return publish(report, key=f"failback-{federation.name}")
