"""Save a credentials block for each test-bed cluster (used by ``fleetflow up``)."""

from __future__ import annotations

from pydantic import SecretStr

from fleetflow.blocks.fields import save_if_changed
from fleetflow.blocks.kube_cluster import KubeCluster
from fleetflow.testbed import bed
from fleetflow.testbed.spec import HOSTPATH_ROOT, STORAGE_CLASS, TestbedSpec


def save_testbed_blocks(spec: TestbedSpec) -> list[str]:
    """One ``KubeCluster`` block per cluster, named after it; identical blocks are not rewritten."""
    saved = []
    for cluster in spec.cluster_names():
        member = cluster != spec.host
        block = KubeCluster(
            api_url=f"https://127.0.0.1:{spec.port(cluster)}",
            kubeconfig=SecretStr(bed.kubeconfig_path(cluster).read_text()),
            context=cluster,
            volume_roots={STORAGE_CLASS: HOSTPATH_ROOT},
            region=spec.member(cluster).region if member else None,
            labels={
                "fleetflow.io/testbed": "true",
                "fleetflow.io/role": "member" if member else "host",
            },
        )
        if save_if_changed(block, cluster) != "unchanged":
            saved.append(cluster)
    return saved
