"""The member registry: ``MemberCluster`` objects in the host, as models. Pure.

A registry entry says where a member is and which credentials block reaches it (``spec``, written
by join) and how it is doing (``status``, written by the probes). Flows and tasks pass these
models; only :meth:`MemberCluster.from_object`, :meth:`MemberCluster.manifest` and
:meth:`MemberCluster.status_patch` touch the object's dict form.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from fleetflow.capacity import Resources
from fleetflow.controlplane import (
    API_VERSION,
    LABEL_FEDERATION,
    LABEL_MANAGED,
    MANAGED_BY,
    REGION_LABEL,
    ZONE_LABEL,
    Manifest,
)
from fleetflow.errors import UnknownName
from fleetflow.health import Health, HealthState
from fleetflow.scheduling import Taint
from fleetflow.wire import Condition, WireModel


class MemberSpec(WireModel):
    """Where a member is and how to reach it; never a secret (the block holds that)."""

    federation: str
    credentials_block: str = Field(alias="credentialsBlock")
    api_url: str = Field(alias="apiURL")
    region: str | None = None
    zone: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    ingress_address: str | None = Field(default=None, alias="ingressAddress")
    service_account: str | None = Field(default=None, alias="serviceAccount")
    fenced: bool | None = None
    taints: list[Taint] | None = None
    """Workloads that do not tolerate one stay off the member (``fleetflow.scheduling``)."""
    namespaces: list[str] | None = None
    """Namespaces the member was joined for: the only ones its token may write Secrets in."""


class Allocatable(WireModel):
    cpu: str
    memory: str
    pods: str


class MemberStatus(WireModel):
    """What the probes last recorded."""

    health: Health | None = None
    consecutive_failures: int | None = Field(default=None, alias="consecutiveFailures")
    consecutive_successes: int | None = Field(default=None, alias="consecutiveSuccesses")
    health_since: str | None = Field(default=None, alias="healthSince")
    """Suspect or Recovering: when the streak of failures or successes began (RFC 3339)."""
    kubernetes_version: str | None = Field(default=None, alias="kubernetesVersion")
    nodes_ready: int | None = Field(default=None, alias="nodesReady")
    nodes_total: int | None = Field(default=None, alias="nodesTotal")
    allocatable: Allocatable | None = None
    conditions: list[Condition] = Field(default_factory=list)


class MemberCluster(BaseModel):
    """One registry entry."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str
    labels: dict[str, str] = Field(default_factory=dict)
    spec: MemberSpec
    status: MemberStatus = Field(default_factory=MemberStatus)

    @classmethod
    def new(
        cls,
        federation: str,
        namespace: str,
        member: str,
        *,
        api_url: str,
        credentials_block: str,
        service_account: str,
        region: str | None = None,
        zone: str | None = None,
        labels: dict[str, str] | None = None,
        ingress_address: str | None = None,
        namespaces: list[str] | None = None,
    ) -> MemberCluster:
        """The entry join registers: the member's labels, plus ours and its topology labels, on
        the object, so that label selectors over members work with ``kubectl`` too."""
        labels = dict(labels or {})
        meta_labels = {**labels, LABEL_MANAGED: MANAGED_BY, LABEL_FEDERATION: federation}
        if region:
            meta_labels[REGION_LABEL] = region
        if zone:
            meta_labels[ZONE_LABEL] = zone
        return cls(
            name=member,
            namespace=namespace,
            labels=meta_labels,
            spec=MemberSpec(
                federation=federation,
                credentials_block=credentials_block,
                api_url=api_url,
                region=region,
                zone=zone,
                labels=labels,
                ingress_address=ingress_address,
                service_account=service_account,
                namespaces=sorted(set(namespaces)) if namespaces else None,
            ),
        )

    @classmethod
    def from_object(cls, obj: Manifest) -> MemberCluster:
        meta = obj["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            labels=meta.get("labels") or {},
            spec=MemberSpec.model_validate(obj.get("spec") or {}),
            status=MemberStatus.model_validate(obj.get("status") or {}),
        )

    def manifest(self) -> Manifest:
        """The object join applies (spec only: the status belongs to the probes)."""
        return {
            "apiVersion": API_VERSION,
            "kind": "MemberCluster",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels},
            "spec": self.spec.wire(),
        }

    def spec_patch(self, spec: Manifest) -> Manifest:
        """A server-side apply of some spec fields, by a field manager that owns only them
        (fence, taints); no ``spec``: those fields dropped."""
        patch: Manifest = {
            "apiVersion": API_VERSION,
            "kind": "MemberCluster",
            "metadata": {"name": self.name, "namespace": self.namespace},
        }
        return {**patch, "spec": spec} if spec else patch

    def status_patch(self) -> Manifest:
        """A server-side apply of the whole status: whole, because apply removes the fields its
        field manager owned and left out."""
        return {
            "apiVersion": API_VERSION,
            "kind": "MemberCluster",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "status": self.status.wire(),
        }

    @property
    def health(self) -> HealthState:
        """The health the registry remembers; an entry never probed counts as Healthy."""
        return HealthState(
            health=self.status.health or Health.HEALTHY,
            consecutive_failures=self.status.consecutive_failures or 0,
            consecutive_successes=self.status.consecutive_successes or 0,
            since=_parse_time(self.status.health_since),
        )

    @property
    def fenced(self) -> bool:
        return bool(self.spec.fenced)

    @property
    def taints(self) -> list[Taint]:
        return list(self.spec.taints or [])

    @property
    def namespaces(self) -> list[str]:
        """Namespaces the member was joined for (Secrets may go there only)."""
        return list(self.spec.namespaces or [])

    def registered_elsewhere(self, federation: str, api_url: str) -> str | None:
        """Why this name cannot be joined for ``api_url`` in ``federation``, or None when the
        entry is the same member (a rerun of its join)."""
        if self.spec.federation == federation and self.spec.api_url == api_url:
            return None
        return (
            f"the name is already registered for {self.spec.api_url} in federation "
            f"{self.spec.federation}; choose another name or unjoin that member first"
        )


def registered(entry: MemberCluster | None, member: str, federation: str) -> MemberCluster:
    """The registry entry a procedure on one member needs, or a one-line error naming it."""
    if entry is None:
        raise UnknownName(
            f"{member!r} is not a member of federation {federation}: join it first "
            "(`fleetflow status` lists the members)"
        )
    return entry


def with_health(status: MemberStatus, health: HealthState, now: datetime) -> MemberStatus:
    """``status`` with a new health and its Ready condition. The condition's
    lastTransitionTime moves only when Ready flips, so an unchanged member's status is equal to
    what the host holds and need not be written."""
    ready = "True" if health.placeable else "False"
    old = next((c for c in status.conditions if c.type == "Ready"), None)
    since = (
        old.last_transition_time
        if old is not None and old.status == ready
        else now.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    condition = Condition(
        type="Ready",
        status=ready,
        reason=health.health.value,
        message="",
        last_transition_time=since,
    )
    return status.model_copy(
        update={
            "health": health.health,
            "consecutive_failures": health.consecutive_failures,
            "consecutive_successes": health.consecutive_successes,
            "health_since": _format_time(health.since),
            "conditions": [condition],
        }
    )


def _format_time(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text).astimezone(UTC)


def joined_status(status: MemberStatus, kubernetes_version: str, now: datetime) -> MemberStatus:
    """After a join: the member's version recorded; a new entry starts Healthy (the probes own
    its health from then on)."""
    status = status.model_copy(update={"kubernetes_version": kubernetes_version})
    if status.health is None:
        status = with_health(status, HealthState(), now)
    return status


def with_nodes(
    status: MemberStatus, ready: int, total: int, allocatable: Resources
) -> MemberStatus:
    """``status`` with the nodes a probe counted and their allocatable capacity."""
    return status.model_copy(
        update={
            "nodes_ready": ready,
            "nodes_total": total,
            "allocatable": Allocatable(
                cpu=f"{allocatable.cpu}m",
                memory=str(allocatable.memory),
                pods=str(allocatable.pods),
            ),
        }
    )
