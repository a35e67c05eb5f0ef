"""Load blocks and probe clusters."""

from __future__ import annotations

from typing import cast

from kubernetes import client as k8s
from prefect import task

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.errors import UnknownName
from fleetflow.kube import ClusterApiClient
from fleetflow.tasks.common import CLUSTER_TASK, PRIVATE


def cluster_name(block: KubeCluster) -> str:
    return block._block_document_name or block.api_url or "unnamed"


@task(**PRIVATE)
def load_cluster(name: str) -> KubeCluster:
    """Load a KubeCluster block; a missing one is a clear error, not a retry."""
    try:
        return cast(KubeCluster, KubeCluster.load(name))
    except ValueError:
        raise UnknownName(
            f"no KubeCluster block named {name!r}: list them with `prefect block ls`, "
            "or save one (see `fleetflow testbed up` for an example)"
        ) from None


@task(**PRIVATE)
def load_federation(name: str) -> Federation:
    try:
        return cast(Federation, Federation.load(name))
    except ValueError:
        raise UnknownName(
            f"no Federation block named {name!r}: bootstrap it first with "
            "`fleetflow bootstrap --federation NAME --host-cluster BLOCK`"
        ) from None


def client(block: KubeCluster) -> ClusterApiClient:
    return block.api_client()


@task(**CLUSTER_TASK)
def server_version(block: KubeCluster) -> str:
    """The cluster's gitVersion; the first request of a procedure, so it proves reachability."""
    return str(k8s.VersionApi(client(block)).get_code().git_version)


@task(**PRIVATE)
def delete_cluster_block(name: str) -> bool:
    """Delete a KubeCluster block; False when it was already gone."""
    try:
        KubeCluster.delete(name)
    except ValueError:
        return False
    return True
