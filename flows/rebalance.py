"""Rebalance replicas of the federated workloads across the members.

Runbook: read the federated workloads and the member registry from the host; probe every member
(nodes, pods, our Deployments) and update its health with hysteresis; plan each workload (pure);
publish the plan; then, make-before-break, scale up and create first, wait until those members
are ready, and only then scale down and remove; finally record per-member desired and ready
counts on each workload's status. A run that finds nothing to change writes nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from fleetflow.blocks import KubeCluster
from fleetflow.errors import PlacementError, UnknownName
from fleetflow.federated import FederatedDeployment, member_deployment
from fleetflow.health import Health, HealthState, observe
from fleetflow.membership import member_status
from fleetflow.models import Action, RebalanceRequest, Report
from fleetflow.rebalance import MemberView, WorkloadPlan, plan_workload
from fleetflow.settings import settings
from fleetflow.tasks.clusters import load_cluster, load_federation
from fleetflow.tasks.rebalance import (
    MemberObservation,
    Readiness,
    list_members,
    list_workloads,
    observe_member,
    wait_member_ready,
    workload_status,
    write_member,
    write_statuses,
)

MAX_PARALLEL_MEMBERS = 8


@flow(
    name="rebalance-replicas",
    task_runner=ThreadPoolTaskRunner[Any](max_workers=MAX_PARALLEL_MEMBERS),  # type: ignore[arg-type]
)
def rebalance_replicas(request: RebalanceRequest) -> Report:
    """Plan and apply replica placement for the federated workloads."""
    federation = load_federation(request.federation)
    host = load_cluster(federation.host_cluster)
    workloads = list_workloads(host, request.namespace, request.name, request.labels)
    if request.name and not workloads:
        where = f" in namespace {request.namespace}" if request.namespace else ""
        raise UnknownName(f"no FederatedDeployment named {request.name!r}{where}")
    entries = {
        e["metadata"]["name"]: e for e in list_members(host, federation.namespace, federation.name)
    }
    blocks = {name: _block(e["spec"]["credentialsBlock"]) for name, e in entries.items()}
    members, status_updates = _probe_members(entries, blocks, federation.name)

    plans = {fd.key: plan_workload(fd, members, request.max_moves) for fd in workloads}
    _publish(plans, request.dry_run)
    errors = [p.error for p in plans.values() if p.error]
    report = Report(
        procedure=f"rebalance {federation.name}",
        dry_run=request.dry_run,
        notes=[
            f"{len(workloads)} workloads over {len(members)} members",
            *(
                f"{m}: {v.health.health.value}"
                for m, v in members.items()
                if v.health.health is not Health.HEALTHY
            ),
        ],
    )
    if request.dry_run:
        report.notes += errors
        return report

    ups, downs = _writes(workloads, plans, members, federation.name)
    report.actions += _write_all(blocks, ups, members, report)
    if _wait_for_scale_ups(blocks, ups, plans, request.wait_timeout, report):
        report.actions += _write_all(blocks, downs, members, report)

    status_updates += [s for fd in workloads if (s := workload_status(fd, plans[fd.key]))]
    if status_updates:
        write_statuses(host, status_updates)
    report.notes.append(f"{len(status_updates)} status updates in the host")
    if errors:
        raise PlacementError("; ".join(errors))
    return report


def _probe_members(
    entries: dict[str, dict[str, Any]], blocks: dict[str, KubeCluster | None], federation: str
) -> tuple[dict[str, MemberView], list[dict[str, Any]]]:
    """Probe every member at once; turn what was seen into health (with hysteresis) and the
    registry status updates that differ from what the host holds."""
    logger = get_run_logger()
    futures = observe_member.map(list(blocks.values()), list(blocks), unmapped(federation))
    seen: dict[str, MemberObservation] = {o.name: o for o in futures.result()}
    members, updates = {}, []
    for name, entry in entries.items():
        obs, before = seen[name], _health(entry)
        after = observe(before, obs.reachable and obs.nodes_ready > 0, settings().health)
        update = _member_status(entry, after, obs)
        if update["status"] != (entry.get("status") or {}):
            updates.append(update)
        if after != before:
            logger.info(
                "member %s: %s -> %s (%s)",
                name,
                before.health.value,
                after.health.value,
                obs.error or f"{obs.nodes_ready} nodes Ready",
            )
        members[name] = MemberView(
            name=name,
            labels=entry["metadata"].get("labels") or {},
            fenced=bool(entry["spec"].get("fenced")),
            health=after,
            reachable=obs.reachable,
            free=obs.free,
            deployments=obs.deployments,
        )
    return members, updates


def _wait_for_scale_ups(
    blocks: dict[str, KubeCluster | None],
    ups: Writes,
    plans: dict[str, WorkloadPlan],
    timeout: float,
    report: Report,
) -> bool:
    """Make-before-break: wait until what was scaled up is ready and record its ready counts.
    False if something is not ready in time: then nothing is taken away this run."""
    all_ready = True
    for member, readiness in _wait_all(blocks, ups, timeout).items():
        for plan in plans.values():
            if plan.key in readiness.ready and member in plan.replicas:
                plan.ready[member] = readiness.ready[plan.key]
        if readiness.pending:
            all_ready = False
            report.notes.append(
                f"{member}: not ready after {timeout:g}s: "
                f"{', '.join(readiness.pending)}; scale-downs held back"
            )
    return all_ready


def _block(name: str) -> KubeCluster | None:
    try:
        return load_cluster(name)
    except UnknownName:
        return None


def _health(entry: dict[str, Any]) -> HealthState:
    status = entry.get("status") or {}
    return HealthState(
        health=Health(status.get("health", "Healthy")),
        consecutive_failures=status.get("consecutiveFailures", 0),
        consecutive_successes=status.get("consecutiveSuccesses", 0),
    )


def _member_status(
    entry: dict[str, Any], state: HealthState, seen: MemberObservation
) -> dict[str, Any]:
    """The new health and, when the member answered, its nodes and allocatable capacity."""
    fields: dict[str, Any] = {}
    if seen.reachable and seen.allocatable is not None:
        fields = {
            "nodesReady": seen.nodes_ready,
            "nodesTotal": seen.nodes_total,
            "allocatable": {
                "cpu": f"{seen.allocatable.cpu}m",
                "memory": str(seen.allocatable.memory),
                "pods": str(seen.allocatable.pods),
            },
        }
    return member_status(entry, state, **fields)


Writes = dict[str, tuple[list[dict[str, Any]], list[str]]]


def _writes(
    workloads: list[FederatedDeployment],
    plans: dict[str, WorkloadPlan],
    members: dict[str, MemberView],
    federation: str,
) -> tuple[Writes, Writes]:
    """Per reachable member: what to apply first (growth, new, changed) and what after
    (shrink, removal). Deployments already as planned are left alone: no request at all."""
    ups: Writes = {m: ([], []) for m, v in members.items() if v.reachable}
    downs: Writes = {m: ([], []) for m in ups}
    for fd in workloads:
        plan = plans[fd.key]
        if plan.error:
            continue
        for member, replicas in plan.replicas.items():
            if member not in ups:
                continue
            manifest = member_deployment(fd, member, replicas, federation)
            live = members[member].deployments.get(fd.key)
            digest = manifest["metadata"]["annotations"]["fleetflow.io/spec-hash"]
            if live is not None and live.spec_hash == digest and live.replicas == replicas:
                continue
            shrink = live is not None and replicas < live.replicas
            (downs if shrink else ups)[member][0].append(manifest)
        for member in plan.remove_from:
            if member in downs:
                downs[member][1].append(fd.key)
    return ups, downs


def _write_all(
    blocks: dict[str, KubeCluster | None],
    writes: Writes,
    members: dict[str, MemberView],
    report: Report,
) -> list[Action]:
    """One task per member with something to write; a failing member does not stop the rest."""
    todo = [m for m, (manifests, removals) in writes.items() if manifests or removals]
    futures = write_member.map(
        [blocks[m] for m in todo],
        todo,
        [writes[m][0] for m in todo],
        [writes[m][1] for m in todo],
        [list(members[m].deployments) for m in todo],
    )
    actions: list[Action] = []
    for member, future in zip(todo, futures, strict=True):
        result = future.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            report.notes.append(f"{member}: writes failed, retried next run: {result}")
        else:
            actions += result
    return actions


def _wait_all(
    blocks: dict[str, KubeCluster | None], ups: Writes, timeout: float
) -> dict[str, Readiness]:
    todo = [m for m, (manifests, _) in ups.items() if manifests]
    keys = [
        [f"{x['metadata']['namespace']}/{x['metadata']['name']}" for x in ups[m][0]] for m in todo
    ]
    results = wait_member_ready.map([blocks[m] for m in todo], keys, unmapped(timeout)).result()
    return dict(zip(todo, results, strict=True))


def _publish(plans: dict[str, WorkloadPlan], dry_run: bool) -> None:
    rows = [
        {
            "workload": key,
            "cluster": cluster,
            "current": plan.current.get(cluster, 0),
            "desired": desired,
            "ready": plan.ready.get(cluster, 0),
            "reason": plan.reasons.get(cluster, ""),
        }
        for key, plan in sorted(plans.items())
        for cluster, desired in plan.replicas.items()
    ]
    create_table_artifact(
        table=rows, key="rebalance-plan", description="Replica plan per workload and cluster"
    )
    moved = sum(
        abs(p.replicas.get(c, 0) - p.current.get(c, 0))
        for p in plans.values()
        for c in set(p.replicas) | set(p.current)
    )
    errors = [p.error for p in plans.values() if p.error]
    unplaced = sum(p.unplaced for p in plans.values())
    lines = [
        f"## Rebalance {'plan (dry run: nothing written)' if dry_run else 'plan'}",
        "",
        f"- workloads: {len(plans)}",
        f"- replica changes: {moved}",
        f"- unplaced replicas: {unplaced}",
        f"- invalid placements: {len(errors)}",
        *(f"  - {e}" for e in errors),
    ]
    create_markdown_artifact(markdown="\n".join(lines), key="rebalance-summary")
