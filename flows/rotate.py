"""Rotate a member's credentials with no window where the block holds a token that fails.

Runbook: with the current token, mint a new token Secret for the member's service account; prove
the new token works and is still limited; save it in the credentials block and read it back;
only then delete the old token Secrets, which revokes them; confirm the old token is refused.
Admin credentials are not needed: the service account may manage token Secrets in its own
namespace and nowhere else.
"""

from __future__ import annotations

from prefect import flow

from fleetflow.blocks import Federation
from fleetflow.blocks.loading import load_cluster, load_federation, load_host, load_member_cluster
from fleetflow.errors import MembershipError
from fleetflow.failpoints import Runbook
from fleetflow.flows.report import publish
from fleetflow.models import Action, Report, RotateRequest
from fleetflow.registry import MemberCluster, registered
from fleetflow.tasks.clusters import cluster_name, save_block
from fleetflow.tasks.host import member_entry
from fleetflow.tasks.leases import changing_member
from fleetflow.tasks.member import issue_token, revoke_tokens, verify_limited, wait_token_refused

STEPS = Runbook("rotate", ("token-issued", "saved", "revoked", "refused"))


@flow(name="rotate-credentials", log_prints=False)
def rotate_credentials(request: RotateRequest) -> Report:
    """Replace the member's token with a new one, then revoke the old."""
    federation = load_federation(request.federation)
    host = load_host(federation)
    entry = registered(
        member_entry(host, federation.namespace, request.member), request.member, federation.name
    )
    # The block is read once the lease is held: a rotation that ran meanwhile changed it.
    with changing_member(host, federation.namespace, federation.name, request.member):
        actions, checked_by = _rotate(federation, entry)
    report = Report(
        procedure=f"rotate {request.member}",
        actions=actions,
        notes=[f"old token refused by {checked_by}"],
    )
    return publish(report, key=f"rotate-{request.member}")


def _rotate(federation: Federation, entry: MemberCluster) -> tuple[list[Action], str]:
    """Mint, prove, save, revoke the old, and wait until it is refused; the writes, and the
    cluster that refused the old token."""
    block = load_member_cluster(federation, entry)
    block_name = entry.spec.credentials_block
    old = block.token_credentials()
    if old is None:
        raise MembershipError(f"block {block_name!r} holds no token: it was not made by join")
    STEPS.step("token-issued")
    issued = issue_token(block, federation.name, rotate=True)
    verify_limited(
        issued.credentials(
            block_name, old.api_url or "", old.ca_data, allow_insecure=block.allow_insecure
        )
    )
    STEPS.step("saved")
    actions = [
        issued.action(entry.name),
        save_block(block.model_copy(update={"token": issued.token}), block_name),
    ]
    reloaded = load_cluster(block_name)
    verify_limited(reloaded.credentials())
    STEPS.step("revoked")
    actions += revoke_tokens(reloaded, federation.name, entry.name, keep=issued.token)
    STEPS.step("refused")
    wait_token_refused(old)
    STEPS.end()
    return actions, cluster_name(reloaded)
