"""Rebalance replicas of the federated workloads across the members.

Runbook: read the federated workloads and the member registry from the host; probe every member
(nodes, pods, our Deployments) and update its health with hysteresis (unless the health watcher
runs: then its health is the registry's, as the watcher wrote it); plan each workload; publish
the plan; make sure each workload's deletion will clean its members (a finalizer); then,
make-before-break, create and scale up first, wait until those members are Ready, and only then
scale down and remove; let deleted workloads go once their members are clean; record health and
per-member desired and ready counts in the host. A run that finds nothing to change writes
nothing, and a dry run only says what it would write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from fleetflow.errors import PlacementError, UnknownName
from fleetflow.flows.report import finished, publish_plan
from fleetflow.health import Health
from fleetflow.models import RebalanceRequest, Report
from fleetflow.probes import assess
from fleetflow.rebalance import plan_workload
from fleetflow.settings import settings
from fleetflow.tasks.clusters import find_cluster, load_cluster, load_federation
from fleetflow.tasks.health import read_watch_lease
from fleetflow.tasks.host import list_members, list_workloads, set_finalizers, write_statuses
from fleetflow.tasks.rebalance import probe_members, wait_members_ready, write_members
from fleetflow.tasks.traffic import apply_endpoints, list_endpoints
from fleetflow.traffic import endpoints
from fleetflow.watch import watcher_holds
from fleetflow.writes import (
    held_back,
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
    workloads = list_workloads(host, request.namespace, request.name, request.labels)
    if request.name and not workloads:
        where = f" in namespace {request.namespace}" if request.namespace else ""
        raise UnknownName(f"no FederatedDeployment named {request.name!r}{where}")
    registry = list_members(host, federation.namespace, federation.name)
    blocks = {m.name: find_cluster(m.spec.credentials_block) for m in registry}
    seen = probe_members(blocks, federation.name)
    lease = read_watch_lease(host, federation.namespace, federation.name)
    watched = watcher_holds(lease, datetime.now(UTC))  # then the watcher owns members' health
    found = assess(registry, seen, federation.health_policy(), datetime.now(UTC), watched=watched)
    for line in found.transitions:
        get_run_logger().info(line)

    plans = {fd.key: plan_workload(fd, found.members, request.max_moves) for fd in workloads}
    publish_plan(plans, dry_run)
    writes = write_plan(workloads, plans, found.members, federation.name)
    protected = set_finalizers(host, to_protect(workloads), hold=True, dry_run=dry_run)
    ups = write_members(blocks, writes.ups, found.members, dry_run)
    applied = {m: w.applied_keys() for m, w in writes.ups.items()}
    readiness = wait_members_ready(blocks, applied, request.wait_timeout, dry_run)
    plans = with_readiness(plans, readiness)
    holds = held_back(readiness, request.wait_timeout)
    downs = write_members(blocks, {} if holds else writes.downs, found.members, dry_run)
    released = set_finalizers(
        host,
        to_release(workloads, plans, {*ups.failed, *downs.failed}),
        hold=False,
        dry_run=dry_run,
    )
    statuses = [s for fd in workloads if (s := workload_status(fd, plans[fd.key]))]
    written = write_statuses(host, [*found.changed, *statuses], dry_run)
    ingress = {m.name: m.spec.ingress_address for m in registry}
    dns, unexposed = endpoints(
        workloads, plans, found.members, ingress, federation.dns_zone, federation.name
    )
    switched = apply_endpoints(host, dns, list_endpoints(host, federation.name), dry_run)

    errors = [p.error for p in plans.values() if p.error]
    report = Report(
        procedure=f"rebalance {federation.name}",
        dry_run=dry_run,
        actions=[*protected, *ups.actions, *downs.actions, *released, *switched],
        notes=[
            f"{len(workloads)} workloads over {len(found.members)} members",
            *(["members' health as the health watcher recorded it"] if watched else []),
            *(
                f"{m}: {v.health.health.value}"
                for m, v in found.members.items()
                if v.health.health is not Health.HEALTHY
            ),
            *ups.notes(),
            *holds,
            *downs.notes(),
            f"{written} status updates in the host",
            *errors,
            *unexposed,
        ],
    )
    if errors and not dry_run:
        raise PlacementError("; ".join(errors))
    return finished(report, report.summary())
