"""Publish a procedure's report where people look: the flow run's artifacts and log."""

from __future__ import annotations

from typing import TypeVar, cast

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed

from fleetflow.failover import Evacuation, FailoverPlan
from fleetflow.models import Report
from fleetflow.operations import Operation, parse_stamp
from fleetflow.rebalance import WorkloadPlan

Done = TypeVar("Done")


def finished(result: Done, message: str) -> Done:
    """End a flow with ``result`` and a final state that says what happened in one line, where
    the UI's run list and run page show it. Prefect hands the caller the state's data, so the
    flow's callers still get ``result``; the cast only tells the type checker so."""
    return cast(Done, Completed(message=message, data=result))


def publish(report: Report, key: str, message: str | None = None) -> Report:
    """A markdown artifact of every action, one log line per write, and the report's summary
    (or ``message``) as the final state's message."""
    logger = get_run_logger()
    for action in report.writes():
        logger.info(("would " if report.dry_run else "") + action.line())
    if not report.writes():
        logger.info("nothing to change")
    create_markdown_artifact(markdown=report.markdown(), key=key, description=report.procedure)
    return finished(report, message or report.summary())


def _shares(plan: WorkloadPlan, cluster: str) -> dict[str, int | str]:
    """An autoscaled workload's HPA min and max there, and what its HPA asked for."""
    share = plan.budget.shares.get(cluster) if plan.budget else None
    if share is None:
        return {"hpa min": "", "hpa max": "", "hpa desired": ""}
    return {
        "hpa min": share.min,
        "hpa max": share.max,
        "hpa desired": plan.autoscaler_desired.get(cluster, ""),
    }


def publish_plan(plans: dict[str, WorkloadPlan], dry_run: bool, graph: str = "") -> None:
    """The rebalance plan as a table (workload, cluster, current, desired, ready, reason) and a
    markdown summary, with ``graph``: what each workload needs and who provides it (names
    only, never an object's content)."""
    autoscaled = any(p.budget for p in plans.values())  # no empty columns otherwise
    rows = [
        {
            "workload": key,
            "cluster": cluster,
            "current": plan.current.get(cluster, 0),
            "desired": desired,
            "ready": plan.ready.get(cluster, 0),
            **(_shares(plan, cluster) if autoscaled else {}),
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
    deleting = [p for p in plans.values() if p.deleting]
    lines = [
        f"## Rebalance {'plan (dry run: nothing written)' if dry_run else 'plan'}",
        "",
        f"- workloads: {len(plans)}",
        f"- replica changes: {moved}",
        f"- unplaced replicas: {sum(p.unplaced for p in plans.values())}",
        f"- being deleted: {len(deleting)}",
        *(f"  - {p.key}: waiting for {', '.join(p.blocked_by)}" for p in deleting if p.blocked_by),
        f"- invalid placements: {len(errors)}",
        *(f"  - {e}" for e in errors),
    ]
    decided = [(k, n) for k, p in sorted(plans.items()) for n in p.notes]
    if decided:
        lines += ["", "### Scheduling", "", *(f"- {k}: {n}" for k, n in decided)]
    moves = [(k, m) for k, p in sorted(plans.items()) if p.budget for m in p.budget.moves]
    if moves:
        lines += ["", "### Budget moves", "", *(f"- {k}: {m.line()}" for k, m in moves)]
    if graph:
        lines += ["", "### Dependencies", "", graph]
    create_markdown_artifact(markdown="\n".join(lines), key="rebalance-summary")


def publish_failover_plan(
    plan: FailoverPlan, target: Evacuation, dry_run: bool, problems: list[str]
) -> None:
    """Where each workload's replicas go, its availability floor, and what cannot be placed."""
    rows = [
        {
            "workload": key,
            "cluster": cluster,
            "current": p.current.get(cluster, 0),
            "desired": desired,
            "ready now": p.ready.get(cluster, 0),
            "floor": plan.floors.get(key, 0),
            "reason": p.reasons.get(cluster, ""),
        }
        for key, p in sorted(plan.plans.items())
        for cluster, desired in p.replicas.items()
    ]
    create_table_artifact(
        table=rows, key="failover-plan", description="Replicas per workload over the survivors"
    )
    lines = [
        f"## Failover {'plan (dry run: nothing written)' if dry_run else 'plan'}",
        "",
        f"- evacuate: {', '.join(target.members)}",
        f"- survivors: {', '.join(target.survivors)}",
        f"- workloads: {len(plan.plans)}",
        f"- unplaced replicas: {sum(plan.unplaced.values())}",
        *(f"  - {k}: {n}" for k, n in plan.unplaced.items()),
        *(f"- cannot route: {p}" for p in problems),
    ]
    create_markdown_artifact(markdown="\n".join(lines), key="failover-summary")


def publish_timeline(op: Operation) -> None:
    """The operation's phases with their times, as a table."""
    start = parse_stamp(op.status.started_at)
    rows = [
        {
            "phase": s.name,
            "at": s.at,
            "seconds": round((stamped - start).total_seconds(), 2)
            if start and (stamped := parse_stamp(s.at))
            else "",
            "detail": s.message,
        }
        for s in op.status.steps
    ]
    create_table_artifact(table=rows, key=f"{op.procedure}-timeline", description=op.name)
