"""Load blocks and ask clusters who they are."""

from __future__ import annotations

from kubernetes import client as k8s
from prefect import task
from prefect.blocks.core import Block

from fleetflow.blocks import Federation, KubeCluster, loading
from fleetflow.blocks.fields import save_if_changed
from fleetflow.errors import UnknownName
from fleetflow.kube import ClusterApiClient
from fleetflow.models import Action, Verb
from fleetflow.tasks.common import CLUSTER_TASK, PRIVATE


def cluster_name(block: KubeCluster) -> str:
    return block._block_document_name or block.api_url or "unnamed"


@task(**PRIVATE)
def load_cluster(name: str) -> KubeCluster:
    """Load a KubeCluster block; a missing one is a clear error, not a retry."""
    return loading.load_cluster(name)


@task(**PRIVATE)
def find_cluster(name: str) -> KubeCluster | None:
    """Load a KubeCluster block, or None when there is none of that name."""
    try:
        return loading.load_cluster(name)
    except UnknownName:
        return None


@task(**PRIVATE)
def load_federation(name: str) -> Federation:
    return loading.load_federation(name)


@task(**PRIVATE)
def find_federation(name: str) -> Federation | None:
    try:
        return loading.load_federation(name)
    except UnknownName:
        return None


def client(block: KubeCluster) -> ClusterApiClient:
    return block.api_client()


@task(**CLUSTER_TASK)
def server_version(block: KubeCluster) -> str:
    """The cluster's gitVersion; the first request of a procedure, so it proves reachability."""
    return str(k8s.VersionApi(client(block)).get_code().git_version)


@task(**PRIVATE)
def delete_cluster_block(name: str) -> list[Action]:
    """Delete a KubeCluster block; nothing to report when it was already gone."""
    try:
        KubeCluster.delete(name)
    except ValueError:
        return []
    return [Action(cluster="prefect", kind="KubeCluster block", name=name, verb=Verb.DELETE)]


@task(**PRIVATE)
def save_block(block: Block, name: str, dry_run: bool = False) -> Action:
    """Save a block unless the stored one already says the same (with ``dry_run``, only say
    which it would be)."""
    verb = Verb(save_if_changed(block, name, dry_run=dry_run))
    return Action(cluster="prefect", kind=f"{type(block).__name__} block", name=name, verb=verb)
