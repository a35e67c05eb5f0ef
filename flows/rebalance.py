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

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from fleetflow.blocks.loading import find_cluster, load_cluster, load_federation
from fleetflow.controlplane import LABEL_FEDERATION
from fleetflow.errors import InvalidRequest, PlacementError, UnknownName
from fleetflow.federated import HostObject
from fleetflow.flows.report import finished, publish_plan
from fleetflow.flows.status_report import publish_status
from fleetflow.health import Health
from fleetflow.models import RebalanceRequest, Report
from fleetflow.objects import InvalidObject
from fleetflow.probes import assess
from fleetflow.rebalance import plan_workload
from fleetflow.registry import MemberCluster
from fleetflow.settings import settings
from fleetflow.status import status_rows
from fleetflow.tasks.host import observe_host, set_finalizers, write_statuses
from fleetflow.tasks.propagate import finish_members, propagate_members
from fleetflow.tasks.rebalance import probe_members, wait_members_ready
from fleetflow.tasks.traffic import apply_endpoints, list_endpoints
from fleetflow.traffic import endpoints, to_write
from fleetflow.watch import watcher_holds
from fleetflow.writes import (
    held_back,
    object_statuses,
    objects_to_protect,
    objects_to_release,
    plan_objects,
    to_protect,
    to_release,
    with_readiness,
    workload_status,
    write_plan,
)


@flow(
    name="rebalance-replicas",
    task_runner=ThreadPoolTaskRunner[Any](max_workers=settings().parallelism),  # type: ignore[arg-type]
)
def rebalance_replicas(request: RebalanceRequest) -> Report:
    """Plan and apply replica placement for the federated workloads."""
    dry_run = request.dry_run
    federation = load_federation(request.federation)
    host = load_cluster(federation.host_cluster)
    view = observe_host(
        host,
        federation.name,
        federation.namespace,
        request.namespace,
        request.name,
        request.labels,
    )
    workloads, objects, registry = view.workloads, view.objects, view.members
    if request.name and not workloads:
        where = f" in namespace {request.namespace}" if request.namespace else ""
        raise UnknownName(f"no FederatedDeployment named {request.name!r}{where}")
    blocks = {m.name: find_cluster(m.spec.credentials_block) for m in registry}
    seen = probe_members(blocks, federation.name)
    watched = watcher_holds(view.watch_lease, datetime.now(UTC))  # the watcher owns health
    found = assess(registry, seen, federation.health_policy(), datetime.now(UTC), watched=watched)
    for line in found.transitions:
        get_run_logger().info(line)

    plans = {fd.key: plan_workload(fd, found.members, request.max_moves) for fd in workloads}
    joined = {m.name: m.namespaces for m in registry}
    invalid = [o.key for o in objects.invalid]
    placed = plan_objects(
        objects.valid, invalid, workloads, plans, found.members, joined, federation.name
    )
    publish_plan(plans, dry_run, placed.graph.markdown())
    writes = write_plan(workloads, plans, found.members, federation.name)
    protect = [*to_protect(workloads), *objects_to_protect(objects.valid)]
    protected = set_finalizers(host, protect, hold=True, dry_run=dry_run) if protect else []
    ups = propagate_members(
        blocks, federation.name, placed.work, writes.ups, found.members, dry_run
    )
    applied = {m: w.applied_keys() for m, w in writes.ups.items()}
    readiness = wait_members_ready(blocks, applied, request.wait_timeout, dry_run)
    plans = with_readiness(plans, readiness)
    holds = held_back(readiness, request.wait_timeout)
    removals = {m: r.removals for m, r in ups.results.items()}
    downs = finish_members(
        blocks, {} if holds else writes.downs, {} if holds else removals, found.members, dry_run
    )
    release = [
        *to_release(workloads, plans, {*ups.failed, *downs.failed}),
        *objects_to_release(
            objects.valid,
            placed,
            cleaned=not holds,
            failed_sources={*ups.failed_sources(), *downs.failed_sources()},
            failed_members={*ups.failed, *downs.failed},
        ),
    ]
    released = set_finalizers(host, release, hold=False, dry_run=dry_run) if release else []
    unreachable = sorted(m for m, v in found.members.items() if not v.reachable)
    object_changes = object_statuses(
        objects.valid,
        placed,
        [*ups.results.values(), *downs.results.values()],
        unreachable=unreachable,
        failed_members=ups.failed,
    )
    reported = [o for o in objects.invalid if not o.reported]
    statuses = [s for fd in workloads if (s := workload_status(fd, plans[fd.key]))]
    changes: list[MemberCluster | HostObject | InvalidObject]
    changes = [*found.changed, *statuses, *object_changes, *reported]
    written = write_statuses(host, changes, dry_run) if changes else 0
    if not dry_run:  # a dry run writes no status: the artifact would show states that are not so
        publish_status(
            status_rows(
                workloads,
                objects.valid,
                unreadable=objects.invalid,
                updated=[*statuses, *object_changes],
            )
        )
    ingress = {m.name: m.spec.ingress_address for m in registry}
    dns, unexposed = endpoints(
        workloads, plans, found.members, ingress, federation.dns_zone, federation.name
    )
    switch = to_write(dns, view.endpoints)  # when the run began; the write reads them anew
    live = list_endpoints(host, federation.name) if switch else {}
    switched = apply_endpoints(host, switch, live, dry_run) if switch else []

    errors = [p.error for p in plans.values() if p.error]
    object_errors = [*(o.error for o in objects.invalid), *placed.errors.values()]
    report = Report(
        procedure=f"rebalance {federation.name}",
        dry_run=dry_run,
        actions=[*protected, *ups.actions, *downs.actions, *released, *switched],
        notes=[
            f"{len(workloads)} workloads and {len(objects.valid)} federated objects over "
            f"{len(found.members)} members",
            *(["members' health as the health watcher recorded it"] if watched else []),
            *(
                f"{m}: {v.health.health.value}"
                for m, v in found.members.items()
                if v.health.health is not Health.HEALTHY
            ),
            *ups.notes(),
            *holds,
            *downs.notes(),
            *(line for r in ups.results.values() for line in r.notes()),
            *(line for r in downs.results.values() for line in r.notes()),
            *(m.line() for m in placed.placements.missing),
            f"{written} status updates in the host",
            *errors,
            *object_errors,
            *unexposed,
            *(
                [
                    f"{len(view.unassigned)} federated workloads and objects name no federation, "
                    f"so none propagates them (label them {LABEL_FEDERATION}=<federation>): "
                    + ", ".join(view.unassigned[:5])
                    + (" ..." if len(view.unassigned) > 5 else "")
                ]
                if view.unassigned
                else []
            ),
        ],
    )
    if object_errors and not dry_run:
        raise InvalidRequest("; ".join([*errors, *object_errors]))
    if errors and not dry_run:
        raise PlacementError("; ".join(errors))
    return finished(report, report.summary())
