"""FederatedDeployment: its spec as a model, and the Deployment it becomes in one member. Pure."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from fleetflow.autoscaling import AutoscaleRow, AutoscalingSpec, BudgetMove, autoscale_rows
from fleetflow.capacity import Resources, pod_requests
from fleetflow.controlplane import API_VERSION, LABEL_FEDERATION, LABEL_MANAGED, MANAGED_BY
from fleetflow.errors import InvalidRequest
from fleetflow.patches import identity, merge_patch
from fleetflow.scheduling import (
    AffinityGroup,
    ClusterSelector,
    Rules,
    SpreadConstraint,
    Toleration,
)
from fleetflow.wire import Condition, WireModel

LABEL_WORKLOAD = "fleetflow.io/federated-deployment"
ANNOTATION_HASH = "fleetflow.io/spec-hash"
FINALIZER = "fleetflow.io/propagated"
"""Held on a FederatedDeployment while members may run its Deployments, so that deleting it
removes them first (a member unreachable at the time holds the deletion until it is back, or
until it is unjoined)."""
ANNOTATION_ORPHAN = "fleetflow.io/orphan"
"""``"true"`` on a FederatedDeployment: deleting it leaves its Deployments running on the
members."""
ANNOTATION_MIGRATION = "fleetflow.io/migration"
"""Set by a migration, from its plan until the target starts, to the name of its operation
record: rebalance and failover leave the workload as it runs (the migration scales it)."""


def federation_selector(federation: str) -> str:
    """The FederatedDeployments and FederatedObjects a federation acts on: those labelled
    ``fleetflow.io/federation: <federation>``. A host may serve several federations, and each
    holds finalizers and writes statuses on what it propagates, so nothing is shared by
    default: an unlabelled object is propagated by none (the rebalance report counts them)."""
    return f"{LABEL_FEDERATION}={federation}"


UNASSIGNED = f"!{LABEL_FEDERATION}"
"""A label selector for the federated objects and workloads no federation acts on."""


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Placement(_Spec):
    """Where replicas may go and in what proportion."""

    clusters: list[str] | None = None
    cluster_selector: ClusterSelector | None = Field(default=None, alias="clusterSelector")
    weights: dict[str, int] = Field(default_factory=dict)
    min: dict[str, int] = Field(default_factory=dict)
    max: dict[str, int] = Field(default_factory=dict)
    mode: Literal["Weighted", "Capacity"] = "Weighted"
    affinity_groups: list[AffinityGroup] = Field(default_factory=list, alias="affinityGroups")
    """Ordered fallbacks: the first group that holds the workload is used."""
    spread_constraints: list[SpreadConstraint] = Field(
        default_factory=list, alias="spreadConstraints"
    )
    tolerations: list[Toleration] = Field(default_factory=list)

    def rules(self) -> Rules:
        return Rules(self.affinity_groups, self.spread_constraints, self.tolerations)


class Override(_Spec):
    """Per-cluster changes: a container image, or a merge patch of the Deployment."""

    cluster_name: str = Field(alias="clusterName")
    image: str | None = None
    patch: dict[str, Any] | None = None


class Exposure(_Spec):
    """A DNS name that follows the workload: its answer lists the ingress addresses of the
    members running Ready replicas of it."""

    hostname: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        description="Name in the federation's DNS zone, e.g. web for web.<zone>",
    )
    ttl: int = Field(default=30, ge=1, le=3600, description="Seconds; short, for fast switches")

    def name(self, zone: str) -> str:
        """The name the federation's DNS answers for it."""
        return f"{self.hostname}.{zone}"


class Dataset(_Spec):
    """An external dataset the workload reads: where it lives and how big it is."""

    name: str = Field(min_length=1)
    region: str = Field(min_length=1)
    size_gb: float = Field(alias="sizeGB", ge=0)


class DataSpec(_Spec):
    """What a stateful workload's data is, for migration to weigh: its volumes come from the
    StatefulSet's claim templates; ``datasets`` are what it reads elsewhere; ``residency`` names
    a rule of the federation (its block's ``regions.residency``) on where the data may live."""

    residency: str | None = None
    datasets: list[Dataset] = Field(default_factory=list)


class Autoscaling(_Spec):
    """One replica budget across the federation: each member's HPA scales the workload within
    its share of ``minReplicas``..``maxReplicas``, and budget moves to the members that hit
    their max (``fleetflow.autoscaling``). ``metrics`` and ``behavior`` are the HPA's
    (``autoscaling/v2``), the same in every member; no metrics: the HPA's default, 80% CPU."""

    min_replicas: int = Field(default=1, alias="minReplicas", ge=1)
    max_replicas: int = Field(alias="maxReplicas", ge=1)
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    behavior: dict[str, Any] | None = None
    max_budget_move: int | None = Field(default=None, alias="maxBudgetMove", ge=1)
    """Replicas of max budget moved per run; default a tenth of maxReplicas, at least 1."""
    hysteresis: int = Field(default=1, ge=0)
    """Replicas a donor keeps above what it uses, so a wobble does not move budget back."""

    def budget(self) -> AutoscalingSpec:
        step = self.max_budget_move or max(1, self.max_replicas // 10)
        return AutoscalingSpec(
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            max_budget_move=step,
            hysteresis=self.hysteresis,
        )


WorkloadKind = Literal["Deployment", "StatefulSet"]


class FederatedDeploymentSpec(_Spec):
    """``kind`` says what each member runs. One federated kind for both, rather than a
    ``FederatedStatefulSet`` beside it: the planner, placement, overrides, make-before-break,
    DNS and status are the same for both, and a StatefulSet's template is a Deployment's plus
    ``serviceName`` and ``volumeClaimTemplates``. A second CRD would copy all of that, and every
    flow would learn two kinds; this way a flow asks ``kind`` only where they differ (the
    member object's kind, its readiness, claim retention). The kind is fixed once created (the
    CRD refuses a change): turning one into the other would mean deleting every member's copy.
    The default keeps every existing FederatedDeployment what it was."""

    replicas: int = Field(default=1, ge=0)
    kind: WorkloadKind = "Deployment"
    template: dict[str, Any]
    placement: Placement = Field(default_factory=Placement)
    overrides: list[Override] = Field(default_factory=list)
    dns: Exposure | None = None
    data: DataSpec | None = None
    autoscaling: Autoscaling | None = None
    """With it, ``replicas`` is only where members start: each member's HPA owns its count."""


class ClusterPlacement(WireModel):
    """How many replicas one member should run and how many were Ready; for an autoscaled
    workload, also its HPA's share of the budget and the count its HPA wanted."""

    name: str
    desired: int
    ready: int = 0
    min_replicas: int | None = Field(default=None, alias="minReplicas")
    max_replicas: int | None = Field(default=None, alias="maxReplicas")
    autoscaler_desired: int | None = Field(default=None, alias="autoscalerDesired")


class FederatedDeploymentStatus(WireModel):
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    clusters: list[ClusterPlacement] = Field(default_factory=list)
    unplaced: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    last_budget_move: BudgetMove | None = Field(default=None, alias="lastBudgetMove")


class HostObject(BaseModel):
    """What every federated kind in the host has: its name, its deletion, and the finalizer
    that holds the deletion until its members are clean. A kind adds its spec and status."""

    HOST_KIND: ClassVar[str]

    name: str
    namespace: str
    generation: int = 0
    finalizers: list[str] = Field(default_factory=list)
    deleting: bool = False
    orphan: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    migration: str | None = None
    """The migration holding it (its operation record), if one does."""
    status: WireModel

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def protected(self) -> bool:
        """Its deletion waits for fleetflow to clean the members."""
        return FINALIZER in self.finalizers

    @staticmethod
    def fields_of(obj: dict[str, Any]) -> dict[str, Any]:
        """The model's fields from the object as the host returns it (``KeyError`` without a
        name or namespace)."""
        meta = obj.get("metadata") or {}
        return {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "generation": meta.get("generation", 0),
            "spec": obj.get("spec") or {},
            "status": obj.get("status") or {},
            "finalizers": meta.get("finalizers") or [],
            "deleting": bool(meta.get("deletionTimestamp")),
            "orphan": (meta.get("annotations") or {}).get(ANNOTATION_ORPHAN) == "true",
            "migration": (meta.get("annotations") or {}).get(ANNOTATION_MIGRATION),
            "labels": meta.get("labels") or {},
        }

    def status_patch(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.HOST_KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "status": self.status.wire(),
        }

    def finalizer_patch(self, *, hold: bool) -> dict[str, Any]:
        """A server-side apply that adds or drops our finalizer and touches nothing else: this
        field manager owns only that entry of the list, so leaving it out of the apply removes
        it and keeps anyone else's."""
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if hold:
            meta["finalizers"] = [FINALIZER]
        return {"apiVersion": API_VERSION, "kind": self.HOST_KIND, "metadata": meta}


class FederatedDeployment(HostObject):
    """A FederatedDeployment as read from the host."""

    HOST_KIND: ClassVar[str] = "FederatedDeployment"

    spec: FederatedDeploymentSpec
    status: FederatedDeploymentStatus = Field(default_factory=FederatedDeploymentStatus)

    @property
    def kind(self) -> WorkloadKind:
        """What each member runs."""
        return self.spec.kind

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> FederatedDeployment:
        return cls.model_validate(cls.fields_of(obj))

    def claim_templates(self) -> list[dict[str, Any]]:
        """A StatefulSet's volume claim templates (none for a Deployment)."""
        if self.kind != "StatefulSet":
            return []
        return list((self.spec.template.get("spec") or {}).get("volumeClaimTemplates") or [])

    def per_replica(self) -> Resources:
        """What one replica reserves on a node, from the template's pod spec."""
        pod = ((self.spec.template.get("spec") or {}).get("template") or {}).get("spec") or {}
        return pod_requests(pod)


def member_deployment(
    fd: FederatedDeployment, cluster: str, replicas: int | None, federation: str
) -> dict[str, Any]:
    """The Deployment this member runs: template, its overrides, the replicas, our labels and a
    hash of it all, so that a later run can tell from one list call that nothing changed.
    ``replicas`` None: the member's HPA owns the count, and the manifest leaves it out. An
    autoscaled workload's hash never covers the count."""
    template = copy.deepcopy(fd.spec.template)
    meta = template.get("metadata") or {}
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": fd.name,
            "namespace": fd.namespace,
            "labels": {**(meta.get("labels") or {}), **member_labels(fd, federation)},
            "annotations": dict(meta.get("annotations") or {}),
        },
        "spec": {**(template.get("spec") or {})},
    }
    if replicas is not None:
        manifest["spec"]["replicas"] = replicas
    else:
        manifest["spec"].pop("replicas", None)
    for override in fd.spec.overrides:
        if override.cluster_name != cluster:
            continue
        if override.image:
            for container in manifest["spec"]["template"]["spec"]["containers"]:
                container["image"] = override.image
        if override.patch:
            manifest = merge_patch(manifest, override.patch)
    if identity(manifest) != ("apps/v1", "Deployment", fd.name, fd.namespace):
        raise InvalidRequest(
            f"FederatedDeployment {fd.key}: an override for {cluster} changes the workload's "
            "apiVersion, kind, name or namespace: an override may change its spec and labels only"
        )
    meta = manifest["metadata"]
    # No override removes what marks the copy as ours (else it is orphaned, never updated).
    meta["labels"] = {**(meta.get("labels") or {}), **member_labels(fd, federation)}
    meta["annotations"] = dict(meta.get("annotations") or {})
    manifest["metadata"]["annotations"][ANNOTATION_HASH] = spec_hash(
        manifest, count=fd.spec.autoscaling is None
    )
    return manifest


def override_problem(fd: FederatedDeployment) -> str | None:
    """Why an override of this workload cannot be applied (None: each can)."""
    for override in fd.spec.overrides:
        try:
            member_deployment(fd, override.cluster_name, 1, "")
        except InvalidRequest as exc:
            return str(exc)
    return None


def member_labels(fd: FederatedDeployment, federation: str) -> dict[str, str]:
    """What marks a member object as this workload's, for this federation."""
    return {LABEL_MANAGED: MANAGED_BY, LABEL_FEDERATION: federation, LABEL_WORKLOAD: fd.name}


HPA_API_VERSION = "autoscaling/v2"


def member_autoscaler(
    fd: FederatedDeployment, min_replicas: int, max_replicas: int, federation: str
) -> dict[str, Any]:
    """The HorizontalPodAutoscaler a member runs for its copy of the workload, with the
    member's share of the budget; hashed like the workload."""
    auto = fd.spec.autoscaling
    assert auto is not None, "only an autoscaled workload has member autoscalers"
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": fd.kind, "name": fd.name},
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
    }
    if auto.metrics:
        spec["metrics"] = copy.deepcopy(auto.metrics)
    if auto.behavior:
        spec["behavior"] = copy.deepcopy(auto.behavior)
    manifest: dict[str, Any] = {
        "apiVersion": HPA_API_VERSION,
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": fd.name,
            "namespace": fd.namespace,
            "labels": member_labels(fd, federation),
            "annotations": {},
        },
        "spec": spec,
    }
    manifest["metadata"]["annotations"][ANNOTATION_HASH] = spec_hash(manifest)
    return manifest


def spec_hash(manifest: dict[str, Any], *, count: bool = True) -> str:
    """A short digest of the manifest; without ``count``, of all but its replica count."""
    body = copy.deepcopy(manifest)
    body["metadata"].get("annotations", {}).pop(ANNOTATION_HASH, None)
    if not count:
        body.get("spec", {}).pop("replicas", None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def budget_rows(fd: FederatedDeployment) -> list[AutoscaleRow]:
    """An autoscaled workload's rows for ``fleetflow autoscale status`` (none otherwise)."""
    auto = fd.spec.autoscaling
    if auto is None:
        return []
    status = fd.status
    return autoscale_rows(
        fd.key, auto.min_replicas, auto.max_replicas, status.clusters, status.last_budget_move
    )
