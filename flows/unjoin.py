"""Remove a member from a federation.

Runbook: find the member in the host's registry; if it answers, delete what the federation
propagated to it (unless asked to keep it) and revoke its access: with admin credentials remove
the service account, roles and namespace, otherwise delete its token Secrets so the tokens stop
working; then remove the registration, the credentials block and its place in the Federation
block. A member that cannot be reached is only removed with ``force``, and the report lists what
was left behind in it. Its replicas are then owed to the other members (rebalance acts on that).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from fleetflow.blocks import KubeCluster
from fleetflow.blocks.fields import save_if_changed
from fleetflow.errors import MembershipError, UnknownName
from fleetflow.flows.report import publish
from fleetflow.membership import member_block_name, member_manifests, names
from fleetflow.models import Action, Report, UnjoinRequest, Verb
from fleetflow.tasks.clusters import (
    delete_cluster_block,
    load_cluster,
    load_federation,
)
from fleetflow.tasks.host import member_entry
from fleetflow.tasks.manifests import delete_manifests
from fleetflow.tasks.member import (
    delete_propagated,
    revoke_tokens,
    unreachable_reason,
)


@flow(name="unjoin-cluster", log_prints=False)
def unjoin_cluster(request: UnjoinRequest) -> Report:
    """Remove ``request.member`` from ``request.federation``."""
    federation = load_federation(request.federation)
    host = load_cluster(federation.host_cluster)
    entry = member_entry(host, federation.namespace, request.member)
    block_name = (
        entry["spec"]["credentialsBlock"]
        if entry
        else member_block_name(federation.name, request.member)
    )
    if entry is None and block_name not in federation.member_clusters:
        raise MembershipError(
            f"{request.member!r} is not a member of federation {federation.name}; members: "
            f"{', '.join(federation.member_clusters) or 'none'}"
        )
    member = _load_or_none(block_name)
    reason = unreachable_reason(member) if member else f"no credentials block {block_name!r}"
    if reason and not request.force:
        raise MembershipError(
            f"cannot reach member {request.member!r} ({reason}); nothing was changed. Rerun "
            "with force to remove its registration and credentials anyway"
        )
    actions: list[Action] = []
    notes: list[str] = []
    if member is not None and reason is None:
        if not request.keep_workloads:
            actions += delete_propagated(member, federation.name)
        if request.admin_block:
            admin = load_cluster(request.admin_block)
            actions += delete_manifests(admin, member_manifests(federation.name))
        else:
            revoked = revoke_tokens(member, federation.name)
            actions += [
                _action(
                    request.member, "Secret", name, Verb.DELETE, names(federation.name)["namespace"]
                )
                for name in revoked
            ]
            actions += _left_behind(request.member, member_manifests(federation.name))
            notes.append(
                "tokens revoked; give admin_block to remove the service account, "
                "roles and namespace too"
            )
    else:
        actions += _left_behind(request.member, member_manifests(federation.name))
        notes.append(
            f"member unreachable ({reason}): its service account, roles, tokens and "
            "workloads are still in it; unjoin again with admin_block once it is back, "
            "or clean it up by hand"
        )
    if entry is not None:
        actions += delete_manifests(host, [entry])
    if delete_cluster_block(block_name):
        actions.append(_action("prefect", "KubeCluster block", block_name, Verb.DELETE))
    federation.member_clusters = [m for m in federation.member_clusters if m != block_name]
    verb = Verb(save_if_changed(federation, request.federation))
    actions.append(_action("prefect", "Federation block", request.federation, verb))
    report = Report(procedure=f"unjoin {request.member}", actions=actions, notes=notes)
    return publish(report, key=f"unjoin-{request.member}")


def _load_or_none(name: str) -> KubeCluster | None:
    try:
        return load_cluster(name)
    except UnknownName:
        return None


def _action(cluster: str, kind: str, name: str, verb: Verb, ns: str | None = None) -> Action:
    return Action(cluster=cluster, kind=kind, name=name, namespace=ns, verb=verb)


def _left_behind(cluster: str, manifests: list[dict[str, Any]]) -> list[Action]:
    return [
        _action(
            cluster,
            m["kind"],
            m["metadata"]["name"],
            Verb.LEFT_BEHIND,
            m["metadata"].get("namespace"),
        )
        for m in manifests
    ]
