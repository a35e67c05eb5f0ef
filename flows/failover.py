"""Fail a region over, and back.

Failover runbook (make-before-break; every phase recorded on the FederationOperation named for
the region before the next begins, so a rerun after a crash resumes where it stopped and never
repeats a finished phase):
1. fence the region: no flow places replicas there any more;
2. plan every workload over the survivors, capacity-aware (what does not fit is reported);
3. scale the survivors up, after writing what their new replicas need (the federated
   objects that follow the workloads);
4. wait until their replicas are Ready (bounded by the deadline);
   A resumed run plans anew: it scales up and waits for what its plan gives the survivors
   beyond the run it resumes (a survivor that flapped between them) before anything else;
5. switch traffic: each exposed workload's DNSEndpoint lists only members with Ready replicas
   (and, with the federation's DNS server known, wait until the server answers so: a name it
   does not answer as switched holds the drain back);
6. scale the evacuated members down where they can be reached; report those that could not be,
   the workloads left without replicas and those a migration holds in the region;
7. publish the timeline.

Failback runbook, holding the failover's lease: mark every failover record of the members
Reverted (the fence they record is about to go), lift the fence, then rebalance in rounds of at
most ``max_moves`` replicas per workload, each round's replicas Ready before anything is taken
away elsewhere; traffic follows Ready replicas, so DNS returns to the region only once its
replicas are Ready.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from fleetflow.blocks import KubeCluster
from fleetflow.blocks.loading import load_federation, load_host
from fleetflow.errors import InvalidRequest, PartialFailure, WaitTimeout
from fleetflow.failover import (
    STEPS,
    Evacuation,
    FailoverDecision,
    decide_failover,
    ended_by_failback,
    evacuation,
)
from fleetflow.failpoints import Runbook
from fleetflow.flows.observe import Blocks, probe
from fleetflow.flows.phases import Done, phased
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.flows.report import publish, publish_failover_plan
from fleetflow.models import FailbackRequest, FailoverRequest, RebalanceRequest, Report
from fleetflow.operations import Operation, Phase, finished
from fleetflow.settings import settings
from fleetflow.tasks.host import list_members, observe_host
from fleetflow.tasks.leases import Held, holding, run_identity
from fleetflow.tasks.operations import list_operations, read_operation, save_operation
from fleetflow.tasks.propagate import propagate_members
from fleetflow.tasks.rebalance import wait_members_ready, write_members
from fleetflow.tasks.traffic import apply_endpoints, list_endpoints, set_fenced, switch_dns
from fleetflow.traffic import expected_answers, unanswered
from fleetflow.writes import held_back, ready_keys, with_readiness

RUNNER = ThreadPoolTaskRunner[Any](max_workers=settings().parallelism)
FAILBACK = Runbook("failback", ("ended", "unfenced", "returned"))


@flow(name="regional-failover", task_runner=RUNNER)  # type: ignore[arg-type]
def regional_failover(request: FailoverRequest) -> Report:
    """Evacuate a region (or members): survivors Ready first, then traffic, then drain."""
    federation = load_federation(request.federation)
    host = load_host(federation)
    view = observe_host(host, federation.name, federation.namespace)
    target = evacuation(view.members, request.region, request.members)
    op = read_operation(host, federation.namespace, target.operation_name)
    op = op or _record(target, federation.namespace, federation.name, request.reason)
    report = Report(procedure=f"failover {target.region or ', '.join(target.members)}")
    if op.finished:
        report.notes.append(f"already evacuated at {op.status.finished_at}: nothing to change")
        return publish(report, key=f"failover-{federation.name}")

    # Its own probes, not the watcher's record: a failover acts on what it sees now.
    seen, blocks = probe(view, federation, trust_watcher=False)
    plan = decide_failover(target, seen, federation=federation.name, zone=federation.dns_zone)
    publish_failover_plan(plan.plan, target, request.dry_run, plan.unexposed)
    if plan.unexposed:
        raise InvalidRequest("; ".join(plan.unexposed) + "; nothing was changed")
    if request.dry_run:
        return publish(_said(host, blocks, plan), key=f"failover-{federation.name}")

    lease = f"fleetflow-failover-{federation.name}"
    # A resumed run's plan is made anew: the survivors may differ from the run it resumes.
    resumed, switched = op.done("scaled-up"), op.done("traffic-switched")
    with phased(host, op, STEPS, lease=lease, refusal=_busy(federation.name)) as run:
        run.phase("fenced", lambda: _fence(host, plan))
        run.phase("scaled-up", lambda: _scale_up(blocks, plan))
        run.phase("ready", lambda: _survivors_ready(blocks, plan, request.deadline))
        if resumed:
            _carried(host, blocks, plan, federation.dns_server, request, switched)
        run.phase("traffic-switched", lambda: _switch(host, plan, federation.dns_server, request))
        run.phase("drained", lambda: _drain(blocks, plan))
    report.actions, report.notes = run.actions, [*run.notes, *plan.plan.notes()]
    return publish(report, key=f"failover-{federation.name}")


def _record(target: Evacuation, namespace: str, federation: str, reason: str) -> Operation:
    """A new failover's record: one per target, so a second request finds the first."""
    return Operation(
        name=target.operation_name,
        namespace=namespace,
        procedure="failover",
        federation=federation,
        parameters={"members": target.members, "region": target.region, "reason": reason},
    )


def _busy(federation: str) -> str:
    return (
        f"another failover of federation {federation} is running; two never run at once: "
        f"wait for it (if it crashed, its lease lapses within {settings().lease_duration}s "
        "and a rerun resumes its work)"
    )


def _said(host: KubeCluster, blocks: Blocks, plan: FailoverDecision) -> Report:
    """Every write the failover would make, said and not done."""
    name = plan.federation
    ups = propagate_members(blocks, name, plan.needs, plan.writes.ups, plan.members, True)
    return Report(
        procedure=f"failover {plan.target.region or ', '.join(plan.target.members)}",
        dry_run=True,
        actions=[
            *set_fenced(host, plan.fence, fenced=True, dry_run=True),
            *ups.actions,
            *apply_endpoints(host, plan.planned_traffic(), list_endpoints(host, name), True),
            *write_members(blocks, plan.writes.downs, plan.members, True).actions,
        ],
        notes=[f"would evacuate {', '.join(plan.target.members)}"],
    )


def _fence(host: KubeCluster, plan: FailoverDecision) -> Done:
    return Done(actions=set_fenced(host, plan.fence, fenced=True, dry_run=False))


def _scale_up(blocks: Blocks, plan: FailoverDecision) -> Done:
    ups = propagate_members(
        blocks, plan.federation, plan.needs, plan.writes.ups, plan.members, False
    )
    if ups.failed:
        raise PartialFailure("; ".join(ups.notes()) + "; rerun to resume the failover")
    return Done(actions=ups.actions)


def _survivors_ready(blocks: Blocks, plan: FailoverDecision, deadline: float) -> Done:
    readiness = wait_members_ready(
        blocks, ready_keys(plan.plan.plans, plan.target.survivors), deadline, False
    )
    if late := held_back(readiness, deadline):
        raise WaitTimeout(
            "; ".join(late) + ": traffic and the evacuated members are untouched; "
            "rerun to keep waiting, or give survivors more room"
        )
    plan.plan.plans = with_readiness(plan.plan.plans, readiness)
    return Done()


def _carried(
    host: KubeCluster,
    blocks: Blocks,
    plan: FailoverDecision,
    server: str | None,
    request: FailoverRequest,
    switched: bool,
) -> None:
    """A resumed run skips the recorded scale-up and readiness, but its plan is made anew: a
    survivor that flapped between the runs leaves its share to one never scaled up. Before
    any traffic moves or anything is drained, the survivors carry this plan Ready (a plan
    unchanged writes nothing here), and DNS follows it again."""
    _scale_up(blocks, plan)
    _survivors_ready(blocks, plan, request.deadline)
    if switched:  # recorded by the run it resumes: written again where this plan differs
        _switch(host, plan, server, request)


def _switch(
    host: KubeCluster, plan: FailoverDecision, server: str | None, request: FailoverRequest
) -> Done:
    """Each exposed workload's DNS to the members with Ready replicas; with the federation's
    DNS server known, wait until it answers so: the region is drained only once it does (a
    name answered late holds the drain back, as rebalance holds its scale-downs)."""
    dns = plan.traffic(plan.plan.plans)
    actions, answers = switch_dns(host, plan.federation, dns, server, request.deadline)
    held = "the region is not drained"
    if answers is not None and (late := unanswered(expected_answers(dns), answers, held)):
        raise WaitTimeout("; ".join(late) + f" after {request.deadline:g}s; rerun to keep waiting")
    seen = "; ".join(f"{n}: {a.summary()}" for n, a in answers.items()) if answers else ""
    return Done(actions=actions, message=seen)


def _drain(blocks: Blocks, plan: FailoverDecision) -> Done:
    downs = write_members(blocks, plan.writes.downs, plan.members, False)
    gone = [m for m in plan.target.members if not plan.members[m].reachable]
    return Done(
        actions=downs.actions,
        result=plan.plan.outcome().model_dump(),
        notes=[
            *(f"{m}: unreachable; its replicas stay until it is back, fenced" for m in gone),
            *downs.notes(),
        ],
    )


@flow(name="regional-failback", task_runner=RUNNER)  # type: ignore[arg-type]
def regional_failback(request: FailbackRequest) -> Report:
    """Lift the fence and return replicas, then traffic, in rate-limited rounds."""
    federation = load_federation(request.federation)
    host = load_host(federation)
    registry = list_members(host, federation.namespace, federation.name)
    target = evacuation(registry, request.region, request.members)
    report = Report(
        procedure=f"failback {target.region or ', '.join(target.members)}", dry_run=request.dry_run
    )
    # The failover's own lease: a failover never drains what a failback is returning to.
    with _failover_lease(host, federation.namespace, federation.name, request.dry_run):
        FAILBACK.step("ended")
        if not request.dry_run:  # before the fence is lifted: no record says evacuated after
            message = f"fence lifted on {', '.join(target.members)}: failing back"
            end_failovers(host, federation.namespace, federation.name, target.members, message)
        FAILBACK.step("unfenced")
        report.actions += set_fenced(
            host,
            [m for m in registry if m.name in target.members],
            fenced=False,
            dry_run=request.dry_run,
        )
        FAILBACK.step("returned")
        rounds = _return_replicas(request, report)
        FAILBACK.end()
    report.notes.append(f"{rounds} rebalance round(s)")
    return publish(report, key=f"failback-{federation.name}")


def _failover_lease(
    host: KubeCluster, namespace: str, federation: str, dry_run: bool
) -> contextlib.AbstractContextManager[Held | None]:
    if dry_run:
        return contextlib.nullcontext()
    me = run_identity()
    refusal = (
        f"a failover of federation {federation} is running; a failback never runs beside it: "
        f"rerun once it ends (if it crashed, its lease lapses within "
        f"{settings().lease_duration}s)"
    )
    lease = f"fleetflow-failover-{federation}"
    return holding(host, namespace, lease, me, duration=settings().lease_duration, refusal=refusal)


def end_failovers(
    host: KubeCluster, namespace: str, federation: str, members: list[str], message: str
) -> None:
    """Every failover record of the members about to be unfenced (or unjoined) says Reverted,
    whatever it was named for."""
    for op in ended_by_failback(list_operations(host, namespace, federation), members):
        save_operation(host, finished(op, Phase.REVERTED, datetime.now(UTC), message))


def _return_replicas(request: FailbackRequest, report: Report) -> int:
    """Rebalance rounds, each at most ``max_moves`` a workload, until one writes nothing."""
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
    return rounds
