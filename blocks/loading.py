"""Load saved blocks by name; a missing one is one clear line that says how to fix it.

Flows call these directly rather than as tasks: a block read is one request to Prefect's API,
and a task run for it would cost more than the read and tell the UI nothing the flow's own
failure does not."""

from __future__ import annotations

from typing import cast

from fleetflow.blocks.federation import Federation
from fleetflow.blocks.kube_cluster import KubeCluster
from fleetflow.blockstore import missing_cluster, missing_federation
from fleetflow.errors import UnknownName
from fleetflow.models import BlockKind


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


LOADERS = {BlockKind.FEDERATION: load_federation, BlockKind.CLUSTER: load_cluster}
"""By the kind a request's field names (``fleetflow.models.block_refs``)."""
