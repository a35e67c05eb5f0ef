"""Remove a member from a federation.

Runbook: find the member in the host's registry; refuse, before any write, while a workload
can run on no other member (pinned there, or no room elsewhere: it would be left unserved);
if it answers and its copies are to go, evacuate it first as a failover of that member does
(the others' new replicas Ready and in DNS before any of its own stop), then delete what the
federation propagated to it (PersistentVolumeClaims are always kept); revoke its access: with
admin credentials remove the service account, roles, the Secrets Roles of the namespaces it was
joined for (not those namespaces: they are the application's) and its own namespace, otherwise
delete its token Secrets so the tokens stop working; then remove the registration, end its
failover records (a member of that name joined later is not "already evacuated"), remove the
credentials block and its place in the Federation block. A member that cannot be reached is
only removed with ``force``, and the report lists what was left behind in it. Copies kept in
it run on unmanaged; their replicas are owed to the other members (rebalance acts on that).
"""

from __future__ import annotations

from prefect import flow

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.loading import (
    find_cluster,
    listed_block,
    load_cluster,
    load_federation,
    load_host,
)
from fleetflow.errors import ClusterUnauthorized, MembershipError
from fleetflow.failover import plan_failover
from fleetflow.failpoints import Runbook
from fleetflow.flows.failover import end_failovers, regional_failover
from fleetflow.flows.observe import probe
from fleetflow.flows.report import publish
from fleetflow.membership import (
    left_behind,
    member_block_name,
    member_manifests,
    placements_naming,
    secret_manifests,
    unjoin_problem,
)
from fleetflow.models import Action, FailoverRequest, Report, UnjoinRequest
from fleetflow.rebalance import HostView
from fleetflow.tasks.clusters import delete_cluster_block
from fleetflow.tasks.federation_block import edit_federation
from fleetflow.tasks.host import list_federated_objects, member_entry, observe_host
from fleetflow.tasks.leases import changing_member
from fleetflow.tasks.manifests import delete_manifests
from fleetflow.tasks.member import (
    delete_propagated,
    revoke_tokens,
    unreachable_error,
    unreachable_reason,
)

STEPS = Runbook("unjoin", ("evacuated", "cleared", "revoked", "deregistered", "forgotten"))


@flow(name="unjoin-cluster", log_prints=False)
def unjoin_cluster(request: UnjoinRequest) -> Report:
    """Remove ``request.member`` from ``request.federation``."""
    federation = load_federation(request.federation)
    host = load_host(federation)
    with changing_member(host, federation.namespace, federation.name, request.member):
        return _unjoin(request, federation, host)


def _unjoin(request: UnjoinRequest, federation: Federation, host: KubeCluster) -> Report:
    entry = member_entry(host, federation.namespace, request.member)
    block_name = (entry and listed_block(federation, entry)) or member_block_name(
        federation.name, request.member
    )
    member = find_cluster(block_name)
    error = unreachable_error(member) if member else None
    reason = str(error) if error else None
    reason = f"no credentials block {block_name!r}" if member is None else reason
    admin = load_cluster(request.admin_block) if request.admin_block else None
    if reason and admin is not None and entry is not None and unreachable_reason(admin) is None:
        # Its own token refused (an unjoin that stopped after revoking it: crash point
        # unjoin/revoked:after): the admin's credentials reach what is left in it.
        member, reason = admin, None
    view = observe_host(host, federation.name, federation.namespace)
    checked = entry is not None and not request.force
    problem = unjoin_problem(
        request.member,
        federation.name,
        registered=entry is not None,
        blocks=federation.member_clusters,
        block=block_name,
        unreachable=reason,
        refused=isinstance(error, ClusterUnauthorized),
        force=request.force,
        stranded=_only_there(view, federation, request.member) if checked else [],
        naming=placements_naming(view.workloads, request.member) if checked else [],
    )
    if problem:
        raise MembershipError(problem)

    actions: list[Action] = []
    notes: list[str] = []
    joined_for = entry.namespaces if entry else []
    granted = [
        *member_manifests(federation.name, federation.pod_security),
        *secret_manifests(federation.name, joined_for),
    ]
    if entry is None:  # deregistered by an unjoin that stopped later: the member side was done
        notes.append(
            f"{request.member} was no longer registered (an unjoin stopped after removing its "
            "registration): its block and its place in the federation removed"
        )
    elif member is not None and reason is None:
        if not request.keep_workloads:
            STEPS.step("evacuated")
            if len(view.members) > 1:
                moved = regional_failover(
                    FailoverRequest(
                        federation=request.federation,
                        members=[request.member],
                        reason=f"unjoin {request.member}",
                    )
                )
                actions += moved.actions
                notes += moved.notes
            STEPS.step("cleared")
            kinds = list_federated_objects(host, federation.name).kinds()
            actions += delete_propagated(member, federation.name, joined_for, kinds)
        STEPS.step("revoked")
        if admin is not None:
            actions += delete_manifests(admin, granted)
        else:
            actions += revoke_tokens(member, federation.name, request.member)
            actions += left_behind(request.member, granted)
            notes.append(
                "tokens revoked; give admin_block to remove the service account, "
                "roles and namespace too"
            )
    else:
        actions += left_behind(request.member, granted)
        notes.append(
            f"member unreachable ({reason}): its service account, roles, tokens and "
            "workloads are still in it; unjoin again with admin_block once it is back, "
            "or clean it up by hand"
        )
    STEPS.step("deregistered")
    if entry is not None:
        actions += delete_manifests(host, [entry.manifest()])
    # Also when an earlier unjoin removed the registration and stopped (crash point
    # unjoin/deregistered:write@1): a record left saying the member is evacuated would answer
    # "already evacuated" to a failover of the next cluster joined under its name.
    end_failovers(
        host, federation.namespace, federation.name, [request.member], f"{request.member} unjoined"
    )
    STEPS.step("forgotten")
    actions += delete_cluster_block(block_name)
    actions.append(
        edit_federation(
            host,
            federation.namespace,
            request.federation,
            lambda now: now and now.without_member(block_name),
        )
    )
    STEPS.end()
    report = Report(procedure=f"unjoin {request.member}", actions=actions, notes=notes)
    return publish(report, key=f"unjoin-{request.member}")


def _only_there(view: HostView, federation: Federation, member: str) -> list[str]:
    """The workloads that no other member could run if ``member`` left (its own probe: an
    unreachable member is as good as gone)."""
    if len(view.members) < 2:  # the last member: what it runs goes with the federation's end
        return []
    seen, _ = probe(view, federation, trust_watcher=False)
    return plan_failover(seen.view.workloads, seen.found.members, [member]).stranded
