"""Taint a member, or lift its taints: ``kubectl taint`` for member clusters.

Runbook: find the member in the registry; work out its taints after the change; apply them (a
field manager of their own). The taint acts at the next rebalance: ``NoSchedule`` gives the
member no new replicas, ``NoExecute`` moves its replicas away at ``max_moves`` a run, each new
replica Ready before one is taken away. A workload that tolerates the taint is not moved.
"""

from __future__ import annotations

from prefect import flow

from fleetflow.blocks.loading import load_federation, load_host
from fleetflow.failpoints import Runbook
from fleetflow.flows.report import publish
from fleetflow.models import Report, TaintRequest
from fleetflow.registry import registered
from fleetflow.scheduling import FENCE_TAINT, taints_after
from fleetflow.tasks.host import member_entry, set_taints

STEPS = Runbook("taint", ("tainted",))


@flow(name="taint-member", log_prints=False)
def taint_member(request: TaintRequest) -> Report:
    """Set or lift a member's taints."""
    federation = load_federation(request.federation)
    host = load_host(federation)
    entry = registered(
        member_entry(host, federation.namespace, request.member), request.member, federation.name
    )
    after = taints_after(entry.taints, request.taints(), request.remove)
    STEPS.step("tainted")
    actions = set_taints(host, entry, after, request.dry_run)
    STEPS.end()
    shown = [t.text() for t in after] + ([FENCE_TAINT.text()] if entry.fenced else [])
    notes = [f"taints of {request.member}: {', '.join(shown) or 'none'}"]
    if actions:
        notes.append("the next rebalance acts on it for the workloads that do not tolerate them")
    report = Report(
        procedure=f"taint {request.member}",
        dry_run=request.dry_run,
        actions=actions,
        notes=notes,
    )
    return publish(report, key=f"taint-{request.member}")
