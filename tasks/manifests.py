"""Apply and delete sets of objects in one cluster."""

from __future__ import annotations

from typing import Any

from prefect import task

from fleetflow.blocks import KubeCluster
from fleetflow.kube import ensure
from fleetflow.kube.apply import delete
from fleetflow.models import Action
from fleetflow.tasks.clusters import client, cluster_name
from fleetflow.tasks.common import CLUSTER_TASK


@task(**CLUSTER_TASK)
def apply_manifests(
    block: KubeCluster, manifests: list[dict[str, Any]], dry_run: bool = False
) -> list[Action]:
    """Server-side apply each manifest in order; objects already as wanted are not written."""
    api, name = client(block), cluster_name(block)
    return [Action.of(name, m, ensure(api, m, dry_run=dry_run)) for m in manifests]


@task(**CLUSTER_TASK)
def delete_manifests(block: KubeCluster, manifests: list[dict[str, Any]]) -> list[Action]:
    """Delete each object, in reverse order; one already gone counts as done."""
    api, name = client(block), cluster_name(block)
    actions = []
    for m in reversed(manifests):
        meta = m["metadata"]
        gone = delete(api, m["apiVersion"], m["kind"], meta["name"], meta.get("namespace"))
        actions.append(Action.of(name, m, "delete" if gone else "absent"))
    return actions
