"""Rotate a member's credentials with no window where the block holds a token that fails.

Runbook: with the current token, mint a new token Secret for the member's service account; prove
the new token works and is still limited; save it in the credentials block and read it back;
only then delete the old token Secrets, which revokes them; confirm the old token is refused.
Admin credentials are not needed: the service account may manage token Secrets in its own
namespace and nowhere else.
"""

from __future__ import annotations

import time

from kubernetes import client as k8s
from prefect import flow
from pydantic import SecretStr

from fleetflow.blocks.fields import save_if_changed
from fleetflow.errors import ClusterUnauthorized, MembershipError
from fleetflow.flows.report import publish
from fleetflow.kube import api_client
from fleetflow.models import Action, Report, RotateRequest, Verb
from fleetflow.tasks.clusters import cluster_name, load_cluster, load_federation
from fleetflow.tasks.host import member_entry
from fleetflow.tasks.member import (
    issue_token,
    revoke_tokens,
    token_credentials,
    verify_limited,
)

REVOCATION_TIMEOUT = 30.0


@flow(name="rotate-credentials", log_prints=False)
def rotate_credentials(request: RotateRequest) -> Report:
    """Replace the member's token with a new one, then revoke the old."""
    federation = load_federation(request.federation)
    host = load_cluster(federation.host_cluster)
    entry = member_entry(host, federation.namespace, request.member)
    if entry is None:
        raise MembershipError(
            f"{request.member!r} is not registered in federation {federation.name}: join it first"
        )
    block_name = entry["spec"]["credentialsBlock"]
    block = load_cluster(block_name)
    if block.token is None or block.api_url is None:
        raise MembershipError(f"block {block_name!r} holds no token: it was not made by join")
    old = block.token
    issued = issue_token(block, federation.name, rotate=True)
    verify_limited(token_credentials(block_name, block.api_url, block.ca_data, issued.token))
    block.token = issued.token
    actions = [
        issued.action(request.member),
        Action(
            cluster="prefect",
            kind="KubeCluster block",
            name=block_name,
            verb=Verb(save_if_changed(block, block_name)),
        ),
    ]
    reloaded = load_cluster(block_name)
    verify_limited(reloaded.credentials())
    revoked = revoke_tokens(reloaded, federation.name, keep=issued.token)
    actions += [
        Action(
            cluster=request.member,
            kind="Secret",
            name=name,
            namespace=issued.namespace,
            verb=Verb.DELETE,
        )
        for name in revoked
    ]
    _wait_refused(block_name, block.api_url, block.ca_data, old)
    report = Report(
        procedure=f"rotate {request.member}",
        actions=actions,
        notes=[f"old token refused by {cluster_name(reloaded)}"],
    )
    return publish(report, key=f"rotate-{request.member}")


def _wait_refused(name: str, api_url: str, ca_data: str | None, token: SecretStr) -> None:
    """The apiserver drops a deleted token Secret from its cache within moments."""
    auth = k8s.AuthorizationV1Api(api_client(token_credentials(name, api_url, ca_data, token)))
    deadline = time.monotonic() + REVOCATION_TIMEOUT
    while time.monotonic() < deadline:
        try:
            auth.create_self_subject_access_review(
                {"spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}}
            )
        except ClusterUnauthorized:
            return
        time.sleep(0.2)
    raise MembershipError(
        f"the old token of {name!r} still works {REVOCATION_TIMEOUT:g}s after "
        "its Secret was deleted"
    )
