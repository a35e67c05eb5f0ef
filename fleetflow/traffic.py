"""Traffic follows placement: a ``DNSEndpoint`` per exposed workload. Pure.

Each federated workload with ``spec.dns`` gets an ExternalDNS ``DNSEndpoint`` in the host (in
its own namespace) whose A record lists the ingress addresses of the members that run Ready
replicas of it and may serve (not fenced, not Unhealthy), with the workload's short TTL.
ExternalDNS turns it into the DNS provider's records. A plain A record carries no weights, so
every listed member gets an equal share of lookups; a member leaves the answer as soon as it has
no Ready replica or stops being placeable.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from fleetflow.controlplane import DNS_GROUP, LABEL_FEDERATION, LABEL_MANAGED, MANAGED_BY, Manifest
from fleetflow.errors import InvalidRequest
from fleetflow.federated import LABEL_WORKLOAD, FederatedDeployment
from fleetflow.rebalance import MemberView, WorkloadPlan
from fleetflow.resolve import Answer

DNS_API_VERSION = f"{DNS_GROUP}/v1alpha1"


class Record(BaseModel):
    """One workload's DNS record as fleetflow wants it."""

    key: str
    name: str
    ttl: int
    targets: list[str] = Field(default_factory=list)


def exposed(workloads: list[FederatedDeployment]) -> list[FederatedDeployment]:
    return [fd for fd in workloads if fd.spec.dns is not None and not fd.deleting]


def serving(
    plan: WorkloadPlan, members: dict[str, MemberView], ready: dict[str, int] | None = None
) -> list[str]:
    """Members that should receive this workload's traffic: Ready replicas there, and the member
    placeable (neither fenced nor Unhealthy).

    A held workload (a migration holds it where it runs) is the exception: a fence moves
    replicas away, and these may not move, so while no other member serves it, the fenced
    member that still runs it Ready keeps its answer (dropping it would cut all its traffic
    while its replicas run)."""
    counts = plan.ready if ready is None else ready
    running = [m for m, n in counts.items() if n > 0 and m in members]
    healthy = [m for m in running if members[m].health.placeable]
    unfenced = sorted(m for m in healthy if not members[m].fenced)
    return unfenced if unfenced or not plan.held else sorted(healthy)


def record(
    fd: FederatedDeployment, zone: str, targets: list[str], ingress: dict[str, str | None]
) -> Record:
    """The record for ``fd`` pointing at ``targets`` (member names). A member without an ingress
    address cannot receive traffic: that is an error to fix at join, not a silent omission."""
    dns = fd.spec.dns
    if dns is None:
        raise InvalidRequest(f"{fd.key} has no spec.dns: it is not exposed")
    name = dns.name(zone)
    missing = sorted(m for m in targets if not ingress.get(m))
    if missing:
        raise InvalidRequest(
            f"{fd.key} is exposed as {name} but member(s) {', '.join(missing)} have no ingress "
            "address: join them again with --ingress-address"
        )
    return Record(
        key=fd.key,
        name=name,
        ttl=dns.ttl,
        targets=sorted({a for m in targets if (a := ingress.get(m))}),
    )


def endpoint(fd: FederatedDeployment, rec: Record, federation: str) -> Manifest:
    """The ``DNSEndpoint`` for a record. No targets: the name answers nothing rather than
    pointing at members that cannot serve."""
    return {
        "apiVersion": DNS_API_VERSION,
        "kind": "DNSEndpoint",
        "metadata": {
            "name": fd.name,
            "namespace": fd.namespace,
            "labels": {
                LABEL_MANAGED: MANAGED_BY,
                LABEL_FEDERATION: federation,
                LABEL_WORKLOAD: fd.name,
            },
        },
        "spec": {
            "endpoints": [
                {
                    "dnsName": rec.name,
                    "recordType": "A",
                    "recordTTL": rec.ttl,
                    "targets": rec.targets,
                }
            ]
            if rec.targets
            else []
        },
    }


def unchanged(desired: Manifest, live: Manifest | None) -> bool:
    """The host already holds this endpoint as wanted: nothing to send."""
    return live is not None and (live.get("spec") or {}) == desired["spec"]


def endpoint_key(manifest: Manifest) -> str:
    """namespace/name: how endpoints read from the host are keyed."""
    return f"{manifest['metadata']['namespace']}/{manifest['metadata']['name']}"


def to_write(wanted: list[Manifest], live: dict[str, Manifest]) -> list[Manifest]:
    """The endpoints of ``wanted`` that the host (``live``, by :func:`endpoint_key`) does not
    hold as wanted."""
    return [m for m in wanted if not unchanged(m, live.get(endpoint_key(m)))]


def endpoints(
    workloads: list[FederatedDeployment],
    plans: dict[str, WorkloadPlan],
    members: dict[str, MemberView],
    ingress: dict[str, str | None],
    zone: str,
    federation: str,
) -> tuple[list[Manifest], list[str]]:
    """The endpoint every exposed workload should have now, and why some cannot have one."""
    wanted, errors = [], []
    for fd in exposed(workloads):
        plan = plans.get(fd.key)
        if plan is None or plan.error:
            continue
        try:
            wanted.append(
                endpoint(fd, record(fd, zone, serving(plan, members), ingress), federation)
            )
        except InvalidRequest as exc:
            errors.append(str(exc))
    return wanted, errors


def expected_answers(wanted: list[Manifest]) -> dict[str, list[str]]:
    """What a DNS server should answer for each endpoint's name once it has synced."""
    out: dict[str, list[str]] = {}
    for manifest in wanted:
        for e in manifest["spec"]["endpoints"]:
            out[e["dnsName"]] = sorted(e["targets"])
    return out


def unanswered(
    expected: dict[str, list[str]],
    answers: Mapping[str, Answer],
    held: str = "scale-downs held back",
) -> list[str]:
    """One line per name the DNS server does not answer as expected yet: what it answers, and
    what waits for it (``held``)."""
    return [
        f"DNS {name}: answers {answers[name].summary() if name in answers else 'nothing'}, "
        f"not yet {', '.join(targets) or 'nothing'}; {held}"
        for name, targets in sorted(expected.items())
        if name not in answers or answers[name].targets != sorted(targets)
    ]
