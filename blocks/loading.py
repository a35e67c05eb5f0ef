"""Load saved blocks by name; a missing one is one clear line that says how to fix it."""

from __future__ import annotations

from typing import cast

from fleetflow.blocks.federation import Federation
from fleetflow.blocks.kube_cluster import KubeCluster
from fleetflow.errors import UnknownName
from fleetflow.models import BlockKind


def load_cluster(name: str) -> KubeCluster:
    try:
        return cast(KubeCluster, KubeCluster.load(name))
    except ValueError:
        raise UnknownName(
            f"no KubeCluster block named {name!r}: list them with `prefect block ls`, "
            "or save one (see `fleetflow testbed up` for an example)"
        ) from None


def load_federation(name: str) -> Federation:
    try:
        return cast(Federation, Federation.load(name))
    except ValueError:
        raise UnknownName(
            f"no Federation block named {name!r}: bootstrap it first with "
            "`fleetflow bootstrap --federation NAME --host-cluster BLOCK`"
        ) from None


LOADERS = {BlockKind.FEDERATION: load_federation, BlockKind.CLUSTER: load_cluster}
"""By the kind a request's field names (``fleetflow.models.block_refs``)."""
