"""Join a cluster to a federation with its own least-privilege credentials.

Runbook: check the member answers and its version is within skew of the host, and that it is
not a member of another federation; create in the member a namespace, a service account and a
least-privilege role, and a Role on Secrets in each namespace it is joined for (creating those
namespaces if absent; moving the Roles when a rejoin names other namespaces); obtain the
service account's token; prove the token works and is limited; save a credentials block
holding that token (never the admin credentials); register the member (and the namespaces it
is joined for) in the host; add it to the Federation block.

Nothing is written to the host or to Prefect until the member side is done and verified, so a
join that fails midway leaves the registry and blocks as they were, and a rerun resumes: every
step is idempotent and an existing token is reused, never duplicated.
"""

from __future__ import annotations

from prefect import flow

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.loading import find_cluster, load_cluster, load_federation
from fleetflow.errors import MembershipError
from fleetflow.failpoints import Runbook
from fleetflow.flows.report import publish
from fleetflow.membership import (
    block_problem,
    join_problem,
    joined_name,
    member_block_name,
    member_manifests,
    names,
    secret_manifests,
)
from fleetflow.models import Action, JoinRequest, Report
from fleetflow.registry import MemberCluster
from fleetflow.tasks.clusters import cluster_name, save_block, server_version
from fleetflow.tasks.federation_block import edit_federation
from fleetflow.tasks.host import list_members, member_entry, record_joined
from fleetflow.tasks.leases import changing_member
from fleetflow.tasks.manifests import apply_manifests, delete_manifests
from fleetflow.tasks.member import (
    endpoint,
    ensure_namespaces,
    federations_of,
    issue_token,
    verify_limited,
    wait_namespace_not_terminating,
)

STEPS = Runbook(
    "join", ("granted", "token-issued", "verified", "block-saved", "registered", "listed")
)


@flow(name="join-cluster", log_prints=False)
def join_cluster(request: JoinRequest) -> Report:
    """Join ``request.member`` to ``request.federation``."""
    federation = load_federation(request.federation)
    host = load_cluster(federation.host_cluster)
    with changing_member(
        host, federation.namespace, federation.name, request.member, dry_run=request.dry_run
    ):
        return _join(request, federation, host)


def _join(request: JoinRequest, federation: Federation, host: KubeCluster) -> Report:
    dry_run = request.dry_run
    admin = load_cluster(request.admin_block)
    api_url, ca_data = endpoint(admin)
    member_version = server_version(admin)
    existing = member_entry(host, federation.namespace, request.member)
    problem = join_problem(
        request.member,
        federation.name,
        host_version=server_version(host),
        member_version=member_version,
        federations=federations_of(admin),
        existing=existing,
        api_url=api_url,
        registry=list_members(host, federation.namespace, federation.name),
    )
    block_name = member_block_name(federation.name, request.member)
    present = find_cluster(block_name)
    problem = problem or block_problem(
        block_name,
        federation.name,
        request.member,
        exists=present is not None,
        joined_as=present.joined_as if present else None,
        listed=block_name in federation.member_clusters,
        host=block_name == federation.host_cluster,
    )
    if problem:
        raise MembershipError(problem)

    STEPS.step("granted")
    where = names(federation.name)
    wait_namespace_not_terminating(admin, where.namespace)
    level = federation.pod_security
    actions: list[Action] = apply_manifests(
        admin, member_manifests(federation.name, level), dry_run
    )
    namespaces = sorted(set(request.namespaces))
    actions += ensure_namespaces(admin, namespaces, federation.name, level, dry_run)
    actions += apply_manifests(admin, secret_manifests(federation.name, namespaces), dry_run)
    dropped = sorted(set(existing.namespaces if existing else []) - set(namespaces))
    if dropped and not dry_run:
        actions += delete_manifests(admin, secret_manifests(federation.name, dropped))
    STEPS.step("token-issued")
    issued = issue_token(admin, federation.name, dry_run=dry_run)
    actions.append(issued.action(cluster_name(admin)))
    STEPS.step("verified")
    verify_limited(
        issued.credentials(block_name, api_url, ca_data, allow_insecure=admin.allow_insecure),
        namespaces,
    )
    member_block = KubeCluster(
        api_url=api_url,
        ca_data=ca_data,
        token=issued.token,
        region=request.region,
        zone=request.zone,
        labels=request.labels,
        volume_roots=admin.volume_roots,
        joined_as=joined_name(federation.name, request.member),
        allow_insecure=admin.allow_insecure,  # reached the way the admin's block reaches it
    )
    STEPS.step("block-saved")
    actions.append(save_block(member_block, block_name, dry_run))
    STEPS.step("registered")
    entry = MemberCluster.new(
        federation.name,
        federation.namespace,
        request.member,
        api_url=api_url,
        credentials_block=block_name,
        service_account=where.service_account,
        region=request.region,
        zone=request.zone,
        labels=request.labels,
        ingress_address=request.ingress_address,
        namespaces=namespaces,
    )
    actions += apply_manifests(host, [entry.manifest()], dry_run)
    record_joined(host, entry, member_version, dry_run)
    STEPS.step("listed")
    # Read again when saved (another join may have listed its member since this one started).
    listed = edit_federation(
        host,
        federation.namespace,
        request.federation,
        lambda now: now and now.with_member(block_name),
        dry_run,
    )
    actions.append(listed)
    STEPS.end()
    report = Report(
        procedure=f"join {request.member}",
        dry_run=dry_run,
        actions=actions,
        notes=[
            f"service account {where.namespace}/{where.service_account}; "
            f"credentials block {block_name}"
        ],
    )
    return publish(report, key=f"join-{request.member}")
