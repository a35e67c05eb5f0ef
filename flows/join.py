"""Join a cluster to a federation with its own least-privilege credentials.

Runbook: check the member answers and its version is within skew of the host, and that it is
not a member of another federation; create in the member a namespace, a service account and a
least-privilege role; obtain the service account's token; prove the token works and is
limited; save a credentials block holding that token (never the admin credentials); register the
member in the host; add it to the Federation block.

Nothing is written to the host or to Prefect until the member side is done and verified, so a
join that fails midway leaves the registry and blocks as they were, and a rerun resumes: every
step is idempotent and an existing token is reused, never duplicated.
"""

from __future__ import annotations

from prefect import flow

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.fields import save_if_changed
from fleetflow.errors import MembershipError
from fleetflow.flows.report import publish
from fleetflow.membership import (
    member_block_name,
    member_cluster,
    member_manifests,
    names,
    skew_problem,
)
from fleetflow.models import Action, JoinRequest, Report, Verb
from fleetflow.tasks.clusters import cluster_name, load_cluster, load_federation, server_version
from fleetflow.tasks.host import member_entry, set_member_status
from fleetflow.tasks.manifests import apply_manifests
from fleetflow.tasks.member import (
    endpoint,
    federations_of,
    issue_token,
    token_credentials,
    verify_limited,
    wait_namespace_not_terminating,
)


@flow(name="join-cluster", log_prints=False)
def join_cluster(request: JoinRequest) -> Report:
    """Join ``request.member`` to ``request.federation``."""
    federation = load_federation(request.federation)
    host = load_cluster(federation.host_cluster)
    admin = load_cluster(request.admin_block)
    api_url, ca_data = endpoint(admin)
    member_version = _check(request, federation, host, admin, api_url)

    block_name = member_block_name(federation.name, request.member)
    entry = member_cluster(
        federation.name,
        federation.namespace,
        request.member,
        api_url=api_url,
        credentials_block=block_name,
        region=request.region,
        zone=request.zone,
        labels=request.labels,
        ingress_address=request.ingress_address,
    )
    dry_run = request.dry_run
    if not dry_run:
        wait_namespace_not_terminating(admin, names(federation.name)["namespace"])
    actions = apply_manifests(admin, member_manifests(federation.name), dry_run=dry_run)
    issued = issue_token(admin, federation.name, dry_run=dry_run)
    actions.append(issued.action(cluster_name(admin)))
    if not dry_run:
        verify_limited(token_credentials(block_name, api_url, ca_data, issued.token))
    member_block = KubeCluster(
        api_url=api_url,
        ca_data=ca_data,
        token=issued.token,
        region=request.region,
        zone=request.zone,
        labels=request.labels,
    )
    verb = save_if_changed(member_block, block_name, dry_run=dry_run)
    actions.append(_block_action("KubeCluster block", block_name, verb))
    actions += apply_manifests(host, [entry], dry_run=dry_run)
    if not dry_run:
        set_member_status(host, entry, version=member_version)
    if block_name not in federation.member_clusters:
        federation.member_clusters = [*federation.member_clusters, block_name]
    verb = save_if_changed(federation, request.federation, dry_run=dry_run)
    actions.append(_block_action("Federation block", federation.name, verb))
    report = Report(
        procedure=f"join {request.member}",
        dry_run=dry_run,
        actions=actions,
        notes=[
            f"service account {names(federation.name)['namespace']}/"
            f"{names(federation.name)['service_account']}; credentials block {block_name}"
        ],
    )
    return publish(report, key=f"join-{request.member}")


def _check(
    request: JoinRequest,
    federation: Federation,
    host: KubeCluster,
    admin: KubeCluster,
    api_url: str,
) -> str:
    """Everything that must hold before the first write; each failure says how to fix it.
    Returns the member's version."""
    member_version = server_version(admin)
    problem = skew_problem(server_version(host), member_version)
    if problem:
        raise MembershipError(f"cannot join {request.member!r}: {problem}")
    elsewhere = federations_of(admin) - {federation.name}
    if elsewhere:
        raise MembershipError(
            f"cannot join {request.member!r}: that cluster is already a member of federation "
            f"{', '.join(sorted(elsewhere))}; unjoin it there first"
        )
    entry = member_entry(host, federation.namespace, request.member)
    if entry is not None and (
        entry["spec"]["federation"] != federation.name or entry["spec"]["apiURL"] != api_url
    ):
        raise MembershipError(
            f"cannot join {request.member!r}: the name is already registered for "
            f"{entry['spec']['apiURL']} in federation {entry['spec']['federation']}; "
            "choose another name or unjoin that member first"
        )
    return member_version


def _block_action(kind: str, name: str, verb: str) -> Action:
    return Action(cluster="prefect", kind=kind, name=name, verb=Verb(verb))
