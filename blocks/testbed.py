"""Save a credentials block for each test-bed cluster (used by ``fleetflow up``)."""

from __future__ import annotations

from typing import cast

from pydantic import SecretStr

from blocks.kube_cluster import KubeCluster
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec


def save_testbed_blocks(spec: TestbedSpec) -> list[str]:
    """One ``KubeCluster`` block per cluster, named after it; identical blocks are not rewritten."""
    saved = []
    for cluster in spec.cluster_names():
        member = cluster != spec.host
        block = KubeCluster(
            api_url=f"https://127.0.0.1:{spec.port(cluster)}",
            kubeconfig=SecretStr(bed.kubeconfig_path(cluster).read_text()),
            context=cluster,
            region=spec.member(cluster).region if member else None,
            labels={
                "fleetflow.io/testbed": "true",
                "fleetflow.io/role": "member" if member else "host",
            },
        )
        current: KubeCluster | None
        try:
            current = cast(KubeCluster, KubeCluster.load(cluster, validate=False))
        except ValueError:
            current = None
        if current is None or _fields(current) != _fields(block):
            block.save(cluster, overwrite=True)
            saved.append(cluster)
    return saved


def _fields(block: KubeCluster) -> dict[str, object]:
    """The declared fields, secrets revealed, for comparing a block with the stored one."""
    data = {}
    for key in KubeCluster.model_fields:
        value = getattr(block, key)
        data[key] = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    return data
