"""Prefect blocks: per-cluster credentials and the federation itself.

Register them with ``prefect block register -m blocks``.
"""

from fleetflow.blocks.federation import Federation
from fleetflow.blocks.kube_cluster import KubeCluster

__all__ = ["Federation", "KubeCluster"]
