"""Bootstrap a federation's control plane in its host cluster.

Runbook: check the host answers and is recent enough; install the namespace, the CRDs (the
member registry, federated workloads, operation records, and ExternalDNS's DNSEndpoint if the
host has none) and the worker's RBAC; wait until the CRDs serve; save the Federation block.
Every write is a server-side apply, so a second run changes nothing.
"""

from __future__ import annotations

from prefect import flow

from fleetflow.blocks import Federation
from fleetflow.blocks.loading import find_federation, load_cluster
from fleetflow.controlplane import DNS_CRD_NAME, control_plane_manifests, crd_names, host_problem
from fleetflow.errors import HostTooOld, InvalidRequest
from fleetflow.flows.report import publish
from fleetflow.models import BootstrapRequest, Report
from fleetflow.tasks.clusters import save_block, server_version
from fleetflow.tasks.host import crd_exists, wait_crds_established
from fleetflow.tasks.manifests import apply_manifests


@flow(name="bootstrap-control-plane", log_prints=False)
def bootstrap_control_plane(request: BootstrapRequest) -> Report:
    """Install (or check) a federation's control plane in its host cluster."""
    dry_run = request.dry_run
    existing = find_federation(request.federation)
    if existing and existing.host_cluster != request.host_cluster and not request.move_host:
        raise InvalidRequest(
            f"federation {request.federation} is hosted by {existing.host_cluster!r}, not "
            f"{request.host_cluster!r}: its members, operations and workloads are there; "
            "rerun naming that host, or with move_host (--move-host) once they are moved; "
            "nothing was changed"
        )
    host = load_cluster(request.host_cluster)
    version = server_version(host)
    problem = host_problem(request.host_cluster, version)
    if problem:
        raise HostTooOld(problem)
    manifests = control_plane_manifests(
        request.federation, request.namespace, include_dns_crd=not crd_exists(host, DNS_CRD_NAME)
    )
    actions = apply_manifests(host, manifests, dry_run)
    wait_crds_established(host, crd_names(manifests), dry_run)
    federation = Federation.bootstrapped(request, existing)
    actions.append(save_block(federation, request.federation, dry_run))
    report = Report(
        procedure=f"bootstrap {request.federation}",
        dry_run=dry_run,
        actions=actions,
        notes=[f"host {request.host_cluster} runs {version}"],
    )
    return publish(report, key=f"bootstrap-{request.federation}")
