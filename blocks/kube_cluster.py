"""``KubeCluster``: how a worker reaches one cluster, with the secret parts in secret fields."""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from fleetflow.blocks.docs import DOCS_URL, KUBE_CLUSTER_EXAMPLE
from fleetflow.blocks.fields import SchemaOnce
from fleetflow.kube import ClusterApiClient, ClusterCredentials, api_client
from fleetflow.settings import settings


class KubeCluster(SchemaOnce, Block):
    """Credentials for one Kubernetes cluster, and where it stands (region, zone, labels).

    Give either ``kubeconfig`` (with an optional ``context``), or ``api_url`` + ``ca_data`` +
    ``token``. The token and kubeconfig are secret: masked in the UI, the API, logs and ``repr``.
    """

    _block_type_name: ClassVar[str] = "fleetflow Kube Cluster"
    _block_type_slug: ClassVar[str] = "fleetflow-kube-cluster"
    _description: ClassVar[str] = (
        "Credentials for one member or host cluster of a fleetflow federation."
    )
    _documentation_url: ClassVar[HttpUrl] = HttpUrl(f"{DOCS_URL}#the-kubecluster-block")
    _code_example: ClassVar[str] = KUBE_CLUSTER_EXAMPLE

    api_url: str | None = Field(default=None, description="API server URL, https://host:port.")
    ca_data: str | None = Field(default=None, description="Base64 PEM of the server's CA.")
    token: SecretStr | None = Field(default=None, description="Service account bearer token.")
    kubeconfig: SecretStr | None = Field(default=None, description="Kubeconfig YAML text.")
    context: str | None = Field(default=None, description="Kubeconfig context; default current.")
    region: str | None = Field(default=None, description="Region, e.g. us-east.")
    zone: str | None = Field(default=None, description="Zone, e.g. us-east-1a.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels for placement.")
    volume_roots: dict[str, str] = Field(
        default_factory=dict,
        description="Per StorageClass, the directory on the worker's machine under which this "
        "cluster's hostPath/local volumes lie: the migration mover reads and writes only "
        "volumes strictly inside it (empty: none). Join copies it to the member's block.",
    )
    reported_as: str | None = Field(
        default=None,
        description="The cluster's name in reports and errors (empty: the block's name); "
        "bootstrap sets the host's on the block of its flows' account.",
    )
    joined_as: str | None = Field(
        default=None,
        description="Set by join: FEDERATION/MEMBER this block's token was issued for (join "
        "overwrites no other block). Empty on blocks made by hand.",
    )
    allow_insecure: bool = Field(
        default=False,
        description="Accept a plain-http API URL, a kubeconfig that skips TLS verification, or "
        "one that runs a command (exec) for its credentials. Off: each is refused in one line.",
    )
    request_timeout: float = Field(
        default_factory=lambda: settings().request_timeout,
        gt=0,
        description="Seconds for one request (default FLEETFLOW_REQUEST_TIMEOUT, 10).",
    )

    @property
    def name_in_reports(self) -> str:
        return self.reported_as or self._block_document_name or self.api_url or "unnamed"

    def credentials(self) -> ClusterCredentials:
        """The core's view of these credentials, named after the saved block."""
        return ClusterCredentials(
            name=self.name_in_reports,
            api_url=self.api_url,
            ca_data=self.ca_data,
            token=self.token,
            kubeconfig=self.kubeconfig,
            context=self.context,
            request_timeout=self.request_timeout,
            allow_insecure=self.allow_insecure,
        )

    def token_credentials(self) -> ClusterCredentials | None:
        """The token's credentials alone (no kubeconfig), or None for a block without one."""
        if self.token is None or self.api_url is None:
            return None
        return ClusterCredentials(
            name=self.name_in_reports,
            api_url=self.api_url,
            ca_data=self.ca_data,
            token=self.token,
            request_timeout=self.request_timeout,
            allow_insecure=self.allow_insecure,
        )

    def api_client(self) -> ClusterApiClient:
        """A client for this cluster alone (never the kubernetes client's global default)."""
        return api_client(self.credentials())
