"""Steps for traffic and fencing in the host: DNSEndpoints, fenced members, DNS answers."""

from __future__ import annotations

from prefect import task

from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import LABEL_FEDERATION, Manifest
from fleetflow.errors import WaitTimeout
from fleetflow.kube import apply, list_objects
from fleetflow.models import Action, Verb
from fleetflow.polling import poll_until
from fleetflow.registry import MemberCluster
from fleetflow.resolve import Answer, lookup
from fleetflow.tasks.clusters import client, cluster_name
from fleetflow.tasks.common import CLUSTER_TASK, PRIVATE
from fleetflow.traffic import DNS_API_VERSION, endpoint_key, expected_answers, to_write

FENCE_MANAGER = "fleetflow-fence"
"""Fencing is applied by a field manager of its own: it owns ``spec.fenced`` and nothing else,
so unfencing (dropping the field) cannot touch what join wrote."""


@task(**CLUSTER_TASK)
def list_endpoints(host: KubeCluster, federation: str) -> dict[str, Manifest]:
    """The federation's DNSEndpoints in the host, by namespace/name."""
    found = list_objects(
        client(host), DNS_API_VERSION, "DNSEndpoint", None, f"{LABEL_FEDERATION}={federation}"
    )
    return {endpoint_key(e): e for e in found}


@task(**CLUSTER_TASK)
def apply_endpoints(
    host: KubeCluster, wanted: list[Manifest], live: dict[str, Manifest], dry_run: bool
) -> list[Action]:
    """Write the endpoints that differ from what the host holds; nothing else is sent."""
    api, actions = client(host), []
    for manifest in to_write(wanted, live):
        if not dry_run:
            apply(api, manifest)
        actions.append(
            Action.of(
                cluster_name(host),
                manifest,
                Verb.UPDATE if endpoint_key(manifest) in live else Verb.CREATE,
            )
        )
    return actions


@task(**CLUSTER_TASK)
def set_fenced(
    host: KubeCluster, members: list[MemberCluster], *, fenced: bool, dry_run: bool
) -> list[Action]:
    """Fence members (no flow places replicas there) or lift the fence; members already so
    are left alone."""
    api, actions = client(host), []
    for member in members:
        if member.fenced == fenced:
            continue
        if not dry_run:
            apply(api, member.spec_patch({"fenced": True} if fenced else {}), manager=FENCE_MANAGER)
        actions.append(
            Action(
                cluster=cluster_name(host),
                kind="MemberCluster fence",
                name=member.name,
                namespace=member.namespace,
                verb=Verb.CREATE if fenced else Verb.DELETE,
            )
        )
    return actions


@task(**PRIVATE)
def wait_answers(server: str, expected: dict[str, list[str]], timeout: float) -> dict[str, Answer]:
    """Ask the DNS server until every name answers exactly its expected targets, or the
    deadline; return the last answers either way (the caller reports a mismatch)."""

    def look() -> dict[str, Answer]:
        return {name: lookup(name, server) for name in expected}

    try:
        return poll_until(
            look,
            lambda seen: all(seen[n].targets == sorted(t) for n, t in expected.items()),
            timeout=timeout,
            interval=0.25,
            waiting_for=f"DNS answers from {server}",
        )
    except WaitTimeout as exc:
        last = exc.last
        return last if isinstance(last, dict) else {}


def switch_dns(
    host: KubeCluster,
    federation: str,
    wanted: list[Manifest],
    server: str | None,
    timeout: float,
    dry_run: bool = False,
) -> tuple[list[Action], dict[str, Answer] | None]:
    """Write the endpoints that differ from what the host holds now; then, with the
    federation's DNS server known, wait until it answers them (the last answers either way).
    None: nothing was waited for (no server, nothing wanted, or a dry run)."""
    actions = apply_endpoints(host, wanted, list_endpoints(host, federation), dry_run)
    if dry_run or not server or not wanted:
        return actions, None
    return actions, wait_answers(server, expected_answers(wanted), timeout)
