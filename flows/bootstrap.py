"""Bootstrap a federation's control plane in its host cluster.

Runbook: check the host answers and is recent enough; install the namespace, the CRDs (the
member registry, federated workloads, operation records, and ExternalDNS's DNSEndpoint if the
host has none) and the worker's RBAC; wait until the CRDs serve; save the Federation block.
Every write is a server-side apply, so a second run changes nothing.
"""

from __future__ import annotations

from prefect import flow

from fleetflow.blocks import Federation
from fleetflow.controlplane import DNS_CRD_NAME, MIN_HOST_MINOR, control_plane_manifests
from fleetflow.errors import HostTooOld
from fleetflow.flows.report import publish
from fleetflow.membership import minor
from fleetflow.models import BootstrapRequest, Report
from fleetflow.tasks.clusters import load_cluster, server_version
from fleetflow.tasks.host import crd_exists, save_federation, wait_crds_established
from fleetflow.tasks.manifests import apply_manifests


@flow(name="bootstrap-control-plane", log_prints=False)
def bootstrap_control_plane(request: BootstrapRequest) -> Report:
    """Install (or check) a federation's control plane in its host cluster."""
    host = load_cluster(request.host_cluster)
    version = server_version(host)
    if minor(version) < (1, MIN_HOST_MINOR):
        raise HostTooOld(
            f"host {request.host_cluster!r} runs {version}; fleetflow needs Kubernetes "
            f"1.{MIN_HOST_MINOR} or newer: upgrade it or choose another host"
        )
    manifests = control_plane_manifests(
        request.federation, request.namespace, include_dns_crd=not crd_exists(host, DNS_CRD_NAME)
    )
    actions = apply_manifests(host, manifests, dry_run=request.dry_run)
    crds = [m["metadata"]["name"] for m in manifests if m["kind"] == "CustomResourceDefinition"]
    federation = Federation(
        name=request.federation,
        host_cluster=request.host_cluster,
        member_clusters=_members_of(request.federation),
        namespace=request.namespace,
        dns_zone=request.dns_zone,
    )
    if not request.dry_run:
        wait_crds_established(host, crds)
    actions.append(save_federation(federation, request.federation, dry_run=request.dry_run))
    report = Report(
        procedure=f"bootstrap {request.federation}",
        dry_run=request.dry_run,
        actions=actions,
        notes=[f"host {request.host_cluster} runs {version}"],
    )
    return publish(report, key=f"bootstrap-{request.federation}")


def _members_of(name: str) -> list[str]:
    """Members already joined stay members when bootstrap runs again."""
    try:
        return list(Federation.load(name).member_clusters)  # type: ignore[union-attr]
    except ValueError:
        return []
