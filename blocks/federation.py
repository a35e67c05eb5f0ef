"""``Federation``: which cluster is the host and which are members, by credentials block name."""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field


class Federation(Block):
    """A federation: the host cluster keeping its state, and the member clusters.

    Clusters are named by their ``KubeCluster`` block, so this block holds no secret.
    """

    _block_type_name: ClassVar[str] = "fleetflow Federation"
    _block_type_slug: ClassVar[str] = "fleetflow-federation"
    _description: ClassVar[str] = "A fleetflow federation: host and member clusters."

    name: str = Field(description="Federation name")
    host_cluster: str = Field(description="KubeCluster block of the host cluster")
    member_clusters: list[str] = Field(default_factory=list, description="KubeCluster blocks")
    namespace: str = Field(default="fleetflow-system", description="Namespace in the host")
    dns_zone: str = Field(default="fleet.local", description="DNS zone for traffic records")
