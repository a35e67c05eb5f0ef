"""Remove a member from a federation.

Runbook: find the member in the host's registry; if it answers, delete what the federation
propagated to it (unless asked to keep it; PersistentVolumeClaims are always kept) and revoke
its access: with admin credentials remove the service account, roles, the Secrets Roles of the
namespaces it was joined for (not those namespaces: they are the application's) and its own
namespace, otherwise delete its token Secrets so the tokens stop
working; then remove the registration, the credentials block and its place in the Federation
block. A member that cannot be reached is only removed with ``force``, and the report lists what
was left behind in it. Its replicas are then owed to the other members (rebalance acts on that).
"""

from __future__ import annotations

from prefect import flow

from fleetflow.blocks.loading import find_cluster, load_cluster, load_federation
from fleetflow.errors import MembershipError
from fleetflow.flows.report import publish
from fleetflow.membership import (
    left_behind,
    member_block_name,
    member_manifests,
    secret_manifests,
    unjoin_problem,
)
from fleetflow.models import Action, Report, UnjoinRequest
from fleetflow.tasks.clusters import delete_cluster_block, save_block
from fleetflow.tasks.host import list_federated_objects, member_entry
from fleetflow.tasks.manifests import delete_manifests
from fleetflow.tasks.member import delete_propagated, revoke_tokens, unreachable_reason


@flow(name="unjoin-cluster", log_prints=False)
def unjoin_cluster(request: UnjoinRequest) -> Report:
    """Remove ``request.member`` from ``request.federation``."""
    federation = load_federation(request.federation)
    host = load_cluster(federation.host_cluster)
    entry = member_entry(host, federation.namespace, request.member)
    block_name = (
        entry.spec.credentials_block
        if entry
        else member_block_name(federation.name, request.member)
    )
    member = find_cluster(block_name)
    reason = unreachable_reason(member) if member else f"no credentials block {block_name!r}"
    problem = unjoin_problem(
        request.member,
        federation.name,
        registered=entry is not None,
        blocks=federation.member_clusters,
        block=block_name,
        unreachable=reason,
        force=request.force,
    )
    if problem:
        raise MembershipError(problem)

    actions: list[Action] = []
    notes: list[str] = []
    joined_for = entry.namespaces if entry else []
    granted = [*member_manifests(federation.name), *secret_manifests(federation.name, joined_for)]
    if member is not None and reason is None:
        if not request.keep_workloads:
            kinds = list_federated_objects(host, federation.name).kinds()
            actions += delete_propagated(member, federation.name, joined_for, kinds)
        if request.admin_block:
            admin = load_cluster(request.admin_block)
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
    if entry is not None:
        actions += delete_manifests(host, [entry.manifest()])
    actions += delete_cluster_block(block_name)
    actions.append(save_block(federation.without_member(block_name), request.federation))
    report = Report(procedure=f"unjoin {request.member}", actions=actions, notes=notes)
    return publish(report, key=f"unjoin-{request.member}")
