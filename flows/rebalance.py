"""Rebalance replicas of the federated workloads across the members, and propagate the
federated objects (ConfigMaps, Secrets, Services, custom resources...) with them.

Runbook: read the federated workloads and objects and the member registry from the host; probe
every member (nodes, pods, our workloads) and update its health with hysteresis (unless the
health watcher runs: then its health is the registry's, as the watcher wrote it); plan each
workload, then where each federated object goes (its own placement, or following the workloads
that use it) and what each member gets; publish the plan and the dependency graph; make sure
each deletion will clean the members (a finalizer); then, make-before-break, one task per
member writes what the workloads need, creates and scales up the workloads, and writes what
needs them; wait until those members are Ready, and only then, one task per member, scale down
and remove workloads, then the objects no longer needed there; let deleted workloads and
objects go once their members are clean; record health, per-member desired and ready counts,
and each object's state per member in the host. A run that finds nothing to change writes
nothing, and a dry run only says what it would write.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.loading import load_federation, load_host
from fleetflow.errors import PlanOutdated
from fleetflow.failpoints import Runbook
from fleetflow.federated import HostObject
from fleetflow.flows.observe import Blocks, probe
from fleetflow.flows.report import finished, publish_plan
from fleetflow.flows.status_report import publish_autoscale, publish_status
from fleetflow.models import Action, RebalanceRequest, Report
from fleetflow.rebalance_plan import Acted, RebalancePlan, changed_under, decide_rebalance
from fleetflow.settings import settings
from fleetflow.tasks.host import observe_host, read_holds, set_finalizers, write_statuses
from fleetflow.tasks.leases import holding, rebalance_lease, run_identity
from fleetflow.tasks.propagate import Propagated, finish_members, propagate_members
from fleetflow.tasks.rebalance import check_members_autoscalers, wait_members_ready
from fleetflow.tasks.traffic import switch_dns
from fleetflow.traffic import expected_answers, unanswered

STEPS = Runbook(
    "rebalance",
    (
        "finalizers-held",
        "scaled-up",
        "ready",
        "traffic-switched",
        "scaled-down",
        "finalizers-released",
        "recorded",
    ),
)


@flow(
    name="rebalance-replicas",
    task_runner=ThreadPoolTaskRunner[Any](max_workers=settings().parallelism),  # type: ignore[arg-type]
)
def rebalance_replicas(request: RebalanceRequest) -> Report:
    """Plan and apply replica placement for the federated workloads."""
    federation = load_federation(request.federation)
    host = load_host(federation)
    view = observe_host(host, federation.name, federation.namespace, request.namespace)
    seen, blocks = probe(view, federation, trust_watcher=True)
    plan = decide_rebalance(seen, request, federation=federation.name, zone=federation.dns_zone)
    plan = plan.refusing(check_members_autoscalers(blocks, plan.autoscalers()))
    publish_plan(plan.plans, plan.dry_run, plan.placed.graph.markdown())
    current = still_current(host, federation, request, plan)
    with _writing(host, federation, plan, request):
        STEPS.step("finalizers-held")
        protected = _finalizers(host, plan.protect, hold=True, dry_run=plan.dry_run)
        STEPS.step("scaled-up")
        ups = _scale_up(blocks, plan, current)
        STEPS.step("ready")
        ready = wait_members_ready(blocks, plan.applied(), request.wait_timeout, plan.dry_run)
        plan = plan.with_readiness(ready, request.wait_timeout)
        STEPS.step("traffic-switched")
        switched, plan = _switch(host, plan, federation.dns_server, request, current)
        STEPS.step("scaled-down")
        downs = _scale_down(blocks, plan, ups, current)
    STEPS.step("finalizers-released")
    released = _finalizers(host, plan.release(ups, downs), hold=False, dry_run=plan.dry_run)
    STEPS.step("recorded")
    written = _record(host, plan, ups, downs)
    STEPS.end()
    actions = [*protected, *ups.actions, *downs.actions, *released, *switched]
    report = plan.report(actions, ups, downs, written)
    plan.raise_errors()
    return finished(report, report.summary())


def _writing(
    host: KubeCluster, federation: Federation, plan: RebalancePlan, request: RebalanceRequest
) -> AbstractContextManager[object]:
    """The federation's rebalance lease while this run scales members: a run from the command
    line and the scheduled one (or one nested in a failback or a migration) wait for each other
    instead of writing over each other. A run with no replicas to change takes none (it writes
    nothing)."""
    if plan.dry_run or not (plan.writes.ups or plan.writes.downs):
        return nullcontext()
    me = run_identity()
    refusal = (
        f"another rebalance of federation {plan.federation} kept its lease for over "
        f"{request.wait_timeout:g}s; this run changed nothing: the next one plans anew"
    )
    return holding(
        host,
        federation.namespace,
        rebalance_lease(plan.federation),
        me,
        duration=settings().lease_duration,
        refusal=refusal,
        wait=request.wait_timeout,
    )


def still_current(
    host: KubeCluster, federation: Federation, request: RebalanceRequest, plan: RebalancePlan
) -> Callable[[], None]:
    """A check to run before each phase of member writes: the fences, taints and migration
    holds the plan was made with still hold (its counts are absolute)."""

    def check() -> None:
        if plan.dry_run:
            return
        members, workloads = read_holds(
            host, federation.name, federation.namespace, request.namespace
        )
        if changed := changed_under(plan.view, members, workloads):
            raise PlanOutdated(
                f"the federation changed under this run ({'; '.join(changed)}): it stopped "
                "before its next write; the next run plans from what is there now"
            )

    return check


def _scale_up(blocks: Blocks, plan: RebalancePlan, current: Callable[[], None]) -> Acted:
    """First phase, one task per member: what the workloads need, then the workloads
    created and scaled up."""
    work, ups = plan.placed.work, plan.writes.ups
    if ups:
        current()
    return _acted(
        propagate_members(blocks, plan.federation, work, ups, plan.found.members, plan.dry_run)
    )


def _scale_down(
    blocks: Blocks, plan: RebalancePlan, ups: Acted, current: Callable[[], None]
) -> Acted:
    """Second phase, once the first is Ready: scale-downs, removals, then the objects no
    longer needed."""
    downs, removals = plan.downs(ups)
    if downs:
        current()
    return _acted(finish_members(blocks, downs, removals, plan.found.members, plan.dry_run))


def _acted(done: Propagated) -> Acted:
    return Acted(actions=done.actions, failed=done.failed, results=done.results, notes=done.notes())


def _finalizers(
    host: KubeCluster, objects: list[HostObject], *, hold: bool, dry_run: bool
) -> list[Action]:
    """Hold (or release) the finalizers; no request when there are none to change."""
    return set_finalizers(host, objects, hold=hold, dry_run=dry_run) if objects else []


def _record(host: KubeCluster, plan: RebalancePlan, ups: Acted, downs: Acted) -> int:
    """Write the statuses that changed, and publish the federation-status artifact (not on a
    dry run: it would show states that are not so)."""
    changes, rows = plan.statuses(ups, downs)
    written = write_statuses(host, changes, plan.dry_run) if changes else 0
    if not plan.dry_run:
        publish_status(rows)
        publish_autoscale(plan.autoscaled(changes))
    return written


def _switch(
    host: KubeCluster,
    plan: RebalancePlan,
    server: str | None,
    request: RebalanceRequest,
    current: Callable[[], None],
) -> tuple[list[Action], RebalancePlan]:
    """DNS to the members with Ready replicas that keep some, compared with what the run read
    at its start and read anew before it is written: after the scale-ups are Ready and before
    the scale-downs, so traffic leaves a member before its replicas do. With the federation's
    DNS server known, the scale-downs wait until it answers so (held back if it does not)."""
    switch, _ = plan.traffic()
    if not switch:
        return [], plan
    current()  # a region fenced meanwhile must not get its answers back from this run
    timeout = request.wait_timeout
    actions, answers = switch_dns(host, plan.federation, switch, server, timeout, plan.dry_run)
    late = [] if answers is None else unanswered(expected_answers(switch), answers)
    return actions, plan.model_copy(update={"holds": [*plan.holds, *late]}) if late else plan
