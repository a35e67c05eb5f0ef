"""Bootstrap a federation's control plane in its host cluster.

Runbook: check the host answers and is recent enough; install the namespace, the CRDs (the
member registry, federated workloads, operation records, and ExternalDNS's DNSEndpoint if the
host has none) and the account day-to-day flows act as (fleetflow's kinds and DNS records, no
more); wait until the CRDs serve; save that account's token in a block of its own
(``<federation>--host``), and the Federation block naming it. Every write is a server-side
apply or kept when present, so a second run changes nothing.
"""

from __future__ import annotations

from prefect import flow

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.loading import (
    find_cluster,
    find_federation,
    flows_block_name,
    flows_identity,
    load_cluster,
)
from fleetflow.controlplane import DNS_CRD_NAME, control_plane_manifests, crd_names, host_problem
from fleetflow.errors import HostTooOld, InvalidRequest
from fleetflow.failpoints import Runbook
from fleetflow.flows.report import publish
from fleetflow.models import BootstrapRequest, Report
from fleetflow.tasks.clusters import cluster_name, save_block, server_version
from fleetflow.tasks.federation_block import edit_federation
from fleetflow.tasks.host import crd_exists, flows_token, wait_crds_established
from fleetflow.tasks.manifests import apply_manifests
from fleetflow.tasks.member import endpoint

STEPS = Runbook("bootstrap", ("installed", "established", "token-issued", "blocks-saved"))


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
    identity = flows_block_name(request.federation)
    present = find_cluster(identity)
    if present is not None and present.joined_as != flows_identity(request.federation):
        raise InvalidRequest(
            f"a KubeCluster block {identity!r} exists that bootstrap did not make for "
            f"federation {request.federation}'s flows: bootstrap never overwrites it; rename "
            "that block; nothing was changed"
        )
    host = load_cluster(request.host_cluster)
    version = server_version(host)
    problem = host_problem(request.host_cluster, version)
    if problem:
        raise HostTooOld(problem)
    manifests = control_plane_manifests(
        request.federation, request.namespace, include_dns_crd=not crd_exists(host, DNS_CRD_NAME)
    )
    STEPS.step("installed")
    actions = apply_manifests(host, manifests, dry_run)
    STEPS.step("established")
    wait_crds_established(host, crd_names(manifests), dry_run)
    # Day-to-day flows act as the host account made above, not as the admin: its own block.
    STEPS.step("token-issued")
    issued = flows_token(host, request.namespace, request.federation, dry_run)
    STEPS.step("blocks-saved")
    actions.append(issued.action(cluster_name(host)))
    api_url, ca_data = endpoint(host)
    if issued.token is not None:
        flows = KubeCluster(
            api_url=api_url,
            ca_data=ca_data,
            token=issued.token,
            joined_as=flows_identity(request.federation),
            reported_as=cluster_name(host),  # the host, as reports have always named it
            allow_insecure=host.allow_insecure,
        )
        actions.append(save_block(flows, identity, dry_run))
    # From the block as it is when saved: a join that ran meanwhile listed its member.
    actions.append(
        edit_federation(
            host,
            request.namespace,
            request.federation,
            lambda now: Federation.bootstrapped(request, now).model_copy(
                update={"host_identity": identity}
            ),
            dry_run,
        )
    )
    STEPS.end()
    report = Report(
        procedure=f"bootstrap {request.federation}",
        dry_run=dry_run,
        actions=actions,
        notes=[f"host {request.host_cluster} runs {version}"],
    )
    return publish(report, key=f"bootstrap-{request.federation}")
