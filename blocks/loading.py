"""Load saved blocks by name; a missing one is one clear line that says how to fix it.

Flows call these directly rather than as tasks: a block read is one request to Prefect's API,
and a task run for it would cost more than the read and tell the UI nothing the flow's own
failure does not."""

from __future__ import annotations

from typing import cast

from fleetflow.blocks.federation import Federation
from fleetflow.blocks.kube_cluster import KubeCluster
from fleetflow.blockstore import missing_cluster, missing_federation
from fleetflow.errors import MembershipError, UnknownName
from fleetflow.models import BlockKind
from fleetflow.registry import MemberCluster


def load_cluster(name: str) -> KubeCluster:
    try:
        return cast(KubeCluster, KubeCluster.load(name))
    except ValueError:
        raise missing_cluster(name) from None


def load_federation(name: str) -> Federation:
    try:
        return cast(Federation, Federation.load(name))
    except ValueError:
        raise missing_federation(name) from None


def find_cluster(name: str) -> KubeCluster | None:
    """The KubeCluster block of that name, or None when there is none."""
    try:
        return load_cluster(name)
    except UnknownName:
        return None


def find_federation(name: str) -> Federation | None:
    try:
        return load_federation(name)
    except UnknownName:
        return None


def listed_block(federation: Federation, entry: MemberCluster) -> str | None:
    """The credentials block a member's registration names, when the Federation block lists it
    as a member's; else None. A registration is an object on the host: it never points a flow
    at a block the federation did not list (the host's admin block, another federation's)."""
    name = entry.spec.credentials_block
    listed = name in federation.member_clusters and name != federation.host_cluster
    return name if listed else None


def member_cluster(federation: Federation, entry: MemberCluster) -> KubeCluster | None:
    """The member's listed credentials block, or None (not listed, or not saved)."""
    name = listed_block(federation, entry)
    return find_cluster(name) if name else None


def load_member_cluster(federation: Federation, entry: MemberCluster) -> KubeCluster:
    """The member's listed credentials block; one clear line when it is not listed."""
    name = listed_block(federation, entry)
    if name is None:
        raise MembershipError(
            f"member {entry.name}'s registration names credentials block "
            f"{entry.spec.credentials_block!r}, which federation {federation.name}'s block does "
            f"not list as a member's: nothing was done; rejoin it (fleetflow join) to set both"
        )
    return load_cluster(name)


def flows_block_name(federation: str) -> str:
    """The block of the host account day-to-day flows act as. The double dash keeps it apart
    from every member's ``<federation>-<member>`` (a member name never starts with a dash)."""
    return f"{federation}--host"


def flows_identity(federation: str) -> str:
    """What that block says it holds (``KubeCluster.joined_as``)."""
    return f"{federation}/(host flows)"


def load_host(federation: Federation) -> KubeCluster:
    """The host as day-to-day flows reach it: the federation's own host account when bootstrap
    made one, else (a federation bootstrapped before it did) the host's admin block."""
    return load_cluster(federation.host_identity or federation.host_cluster)


LOADERS = {BlockKind.FEDERATION: load_federation, BlockKind.CLUSTER: load_cluster}
"""By the kind a request's field names (``fleetflow.models.block_refs``)."""
