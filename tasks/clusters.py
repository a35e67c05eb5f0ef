"""Save and delete blocks, and ask clusters who they are."""

from __future__ import annotations

from kubernetes import client as k8s
from prefect import task
from prefect.blocks.core import Block

from fleetflow import failpoints
from fleetflow.blocks import KubeCluster
from fleetflow.blocks.fields import save_if_changed
from fleetflow.kube import ClusterApiClient
from fleetflow.models import Action, Verb
from fleetflow.tasks.common import CLUSTER_TASK, PRIVATE


def cluster_name(block: KubeCluster) -> str:
    return block.name_in_reports


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
    failpoints.wrote()
    return [Action(cluster="prefect", kind="KubeCluster block", name=name, verb=Verb.DELETE)]


@task(**PRIVATE)
def save_block(block: Block, name: str, dry_run: bool = False) -> Action:
    """Save a block unless the stored one already says the same (with ``dry_run``, only say
    which it would be)."""
    verb = Verb(save_if_changed(block, name, dry_run=dry_run))
    if verb is not Verb.UNCHANGED and not dry_run:
        failpoints.wrote()  # a block is state a rerun reads, as a cluster's objects are
    return Action(cluster="prefect", kind=f"{type(block).__name__} block", name=name, verb=verb)
