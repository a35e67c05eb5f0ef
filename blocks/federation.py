"""``Federation``: which cluster is the host and which are members, by credentials block name."""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl

from fleetflow.admission import PodSecurity
from fleetflow.blocks.docs import DOCS_URL, FEDERATION_EXAMPLE
from fleetflow.blocks.fields import SchemaOnce
from fleetflow.health import HealthPolicy
from fleetflow.migration import RegionMatrix
from fleetflow.models import BootstrapRequest
from fleetflow.settings import settings


class Federation(SchemaOnce, Block):
    """A federation: the host cluster keeping its state, and the member clusters.

    Clusters are named by their ``KubeCluster`` block, so this block holds no secret.
    """

    _block_type_name: ClassVar[str] = "fleetflow Federation"
    _block_type_slug: ClassVar[str] = "fleetflow-federation"
    _description: ClassVar[str] = "A fleetflow federation: host and member clusters."
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(f"{DOCS_URL}#the-federation-block")
    _code_example: ClassVar[str] = FEDERATION_EXAMPLE

    name: str = Field(description="Federation name.")
    host_cluster: str = Field(description="KubeCluster block of the host cluster.")
    host_identity: str | None = Field(
        default=None,
        description="KubeCluster block of the host account day-to-day flows act as (made by "
        "bootstrap: fleetflow's kinds and DNS records only); bootstrap and join use "
        "host_cluster.",
    )
    member_clusters: list[str] = Field(default_factory=list, description="KubeCluster blocks.")
    namespace: str = Field(default="fleetflow-system", description="Namespace in the host.")
    dns_zone: str = Field(default="fleet.local", description="DNS zone for traffic records.")
    dns_server: str | None = Field(
        default=None,
        description="HOST:PORT of a DNS server answering for dns_zone; failovers and drills "
        "check the switch against it (empty: they check the DNSEndpoints only).",
    )
    health: HealthPolicy | None = Field(
        default=None,
        description="How many failed probes, over how many seconds, make a member Unhealthy, "
        "and how many good ones make it Healthy again; empty: the FLEETFLOW_HEALTH__* settings "
        "(2 probes over 10 s, both ways).",
    )

    regions: RegionMatrix | None = Field(
        default=None,
        description="Cost per GB and bandwidth between regions, and residency rules (which "
        "regions a workload's data labelled with a rule may live in), for migration; empty: "
        "0.02 per GB and 100 MB/s between regions, free and 1000 MB/s within one, no rules.",
    )

    pod_security: PodSecurity = Field(
        default=PodSecurity.RESTRICTED,
        title="Pod Security",
        description="Pod Security level of the namespaces fleetflow opens in members "
        "(restricted, baseline or privileged): enforced there, and the only one its account "
        "may give a namespace. Takes effect on members at their next join.",
    )

    def health_policy(self) -> HealthPolicy:
        return self.health or settings().health

    def region_matrix(self) -> RegionMatrix:
        return self.regions or RegionMatrix()

    def with_member(self, block: str) -> Federation:
        """This federation with a member's credentials block listed (a copy)."""
        if block in self.member_clusters:
            return self
        return self.model_copy(update={"member_clusters": [*self.member_clusters, block]})

    def without_member(self, block: str) -> Federation:
        members = [m for m in self.member_clusters if m != block]
        return self.model_copy(update={"member_clusters": members})

    @classmethod
    def bootstrapped(cls, request: BootstrapRequest, existing: Federation | None) -> Federation:
        """The block bootstrap saves: what the request says, keeping the members already
        joined and a health policy already set."""
        return cls(
            name=request.federation,
            host_cluster=request.host_cluster,
            host_identity=existing.host_identity if existing else None,
            member_clusters=list(existing.member_clusters) if existing else [],
            namespace=request.namespace,
            dns_zone=request.dns_zone,
            dns_server=request.dns_server,
            health=existing.health if existing else None,
            regions=existing.regions if existing else None,
            pod_security=existing.pod_security if existing else PodSecurity.RESTRICTED,
        )
