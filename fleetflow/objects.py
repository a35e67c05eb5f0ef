"""FederatedObject: any namespaced object, placed on members, with per-cluster patches. Pure.

Why one generic kind and not one federated kind per type (KubeFed's ``FederatedConfigMap``,
``FederatedSecret``... generated from a ``FederatedTypeConfig``):

- **Custom resources work without a new CRD in the host.** A per-type design needs a federated
  CRD (and its RBAC, and a controller restart) for every type anyone wants to federate, and a
  schema for each kept in step with the member's. One ``FederatedObject`` whose template is any
  namespaced object carries a custom resource the day its CRD exists on the members; a member
  without the CRD is reported (``MissingKind``), not a crash. Karmada (resource selectors) and
  OCM (``ManifestWork``) made the same choice for the same reason; KubeFed's per-type API was
  its most cited burden.
- **One code path.** Apply, no-op detection, drift, conflicts and removal are the same for every
  kind, so one propagation engine serves them all and the per-member pass is one task.
- **The cost is schema checking**: the host cannot validate the template's fields, so a bad
  template is refused by the member at apply time (reported per member as ``Failed``). What can
  be checked without the member's schema is checked here: identity, namespace, scope, patches.

Replica-divided kinds (Deployment, StatefulSet) are not carried: a copy of the whole replica
count on every member is never what a federation wants, and two sources writing one Deployment
would fight; they are workloads, spread by the planner.

An object without placement follows the workloads that reference it (see
``fleetflow.propagation.placed_on``). ``spec.adopt`` takes over an existing unmanaged object of
the same name on a member; without it such an object is a conflict and is never overwritten.
"""

from __future__ import annotations

import base64
import copy
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetflow.controlplane import API_VERSION, GROUP, LABEL_FEDERATION, LABEL_MANAGED, MANAGED_BY
from fleetflow.errors import InvalidRequest
from fleetflow.federated import (
    ANNOTATION_HASH,
    ANNOTATION_ORPHAN,
    FINALIZER,
    HostObject,
    Placement,
    spec_hash,
)
from fleetflow.patches import PatchOp, identity, json_patch, merge_patch
from fleetflow.wire import Condition, WireModel

KIND = "FederatedObject"
LABEL_OBJECT = "fleetflow.io/federated-object"
"""On every member object a FederatedObject put there: the FederatedObject's name."""

__all__ = [
    "ANNOTATION_ORPHAN",
    "FINALIZER",
    "KIND",
    "LABEL_OBJECT",
    "FederatedObject",
    "FederatedObjectSpec",
    "FederatedObjectStatus",
    "FederatedObjects",
    "InvalidObject",
    "MemberObjectStatus",
    "MemberState",
    "ObjectOverride",
    "group_of",
    "member_object",
]

CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("", "ComponentStatus"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("networking.k8s.io", "IngressClass"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    }
)
"""Built-in cluster-scoped kinds, by (group, kind). A custom cluster-scoped kind is not known
here: the member's discovery says so, and it is reported there."""

REPLICA_DIVIDED: frozenset[tuple[str, str]] = frozenset(
    {("apps", "Deployment"), ("apps", "StatefulSet")}
)

_SERVER_FIELDS = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "ownerReferences",
)
"""Metadata the API server sets (or that points at objects of the cluster it came from): a
template copied from ``kubectl get -o yaml`` must not carry them to another cluster."""


class MemberState(StrEnum):
    APPLIED = "Applied"  # created, updated or adopted by this run
    UNCHANGED = "Unchanged"  # already as desired: no request sent
    DRIFTED = "Drifted"  # edited by hand on the member; put back by this run
    CONFLICT = "Conflict"  # an object of that name fleetflow does not own: left alone
    FAILED = "Failed"  # the member refused the write
    UNREACHABLE = "Unreachable"  # the member did not answer
    MISSING_KIND = "MissingKind"  # the member does not serve the kind (no CRD)


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class ObjectOverride(_Spec):
    """Changes for one member: a merge patch, then a JSON patch (whose ``test`` operations see
    the merged result)."""

    cluster_name: str = Field(alias="clusterName", min_length=1)
    merge_patch: dict[str, Any] | None = Field(default=None, alias="mergePatch")
    json_patch: list[PatchOp] = Field(default_factory=list, alias="jsonPatch")


class FederatedObjectSpec(_Spec):
    template: dict[str, Any]
    placement: Placement | None = None
    overrides: list[ObjectOverride] = Field(default_factory=list)
    adopt: bool = False


class MemberObjectStatus(WireModel):
    """The object on one member, as the last run left it."""

    name: str
    state: MemberState
    message: str = ""


class FederatedObjectStatus(WireModel):
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    clusters: list[MemberObjectStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)


class FederatedObject(HostObject):
    """A FederatedObject as read from the host, its template checked."""

    HOST_KIND: ClassVar[str] = KIND

    spec: FederatedObjectSpec
    status: FederatedObjectStatus = Field(default_factory=FederatedObjectStatus)

    @property
    def api_version(self) -> str:
        return str(self.spec.template["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.spec.template["kind"])

    @property
    def target(self) -> str:
        """The member object's name (the template's, not necessarily this object's)."""
        return str(self.spec.template["metadata"]["name"])

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> FederatedObject:
        """Read and check one; anything wrong is ``InvalidRequest`` in one line."""
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        try:
            fo = cls.model_validate(cls.fields_of(obj))
        except KeyError as exc:
            raise InvalidRequest(f"{KIND} {key}: metadata.{exc.args[0]} is missing") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            detail = first["msg"].removeprefix("Value error, ")
            raise InvalidRequest(f"{KIND} {key}: {where}: {detail}") from None
        problem = template_problem(fo.spec.template, fo.namespace)
        if problem:
            raise InvalidRequest(f"{KIND} {key}: spec.template {problem}")
        return fo


class InvalidObject(BaseModel):
    """A FederatedObject the host holds but fleetflow cannot use: why, in one line. Its member
    objects stay as they are until it is fixed."""

    name: str
    namespace: str
    generation: int = 0
    error: str
    reported: bool = False
    """Its status already says so (no need to write it again)."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def status_patch(self) -> dict[str, Any]:
        """The condition that says why, and nothing about the members: what they hold is not
        known for an object fleetflow cannot read."""
        condition = Condition(type="Planned", status="False", reason="Invalid", message=self.error)
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "status": {"observedGeneration": self.generation, "conditions": [condition.wire()]},
        }


class FederatedObjects(BaseModel):
    """The host's FederatedObjects: those fleetflow can use, and the invalid ones, each with
    its reason (one bad object never hides the others)."""

    valid: list[FederatedObject] = Field(default_factory=list)
    invalid: list[InvalidObject] = Field(default_factory=list)

    @classmethod
    def read(cls, found: list[dict[str, Any]]) -> FederatedObjects:
        result = cls()
        for obj in found:
            try:
                result.valid.append(FederatedObject.from_object(obj))
            except InvalidRequest as exc:
                meta = obj.get("metadata") or {}
                generation = int(meta.get("generation") or 0)
                status = obj.get("status") or {}
                said = [
                    c
                    for c in status.get("conditions") or []
                    if c.get("type") == "Planned" and c.get("message") == str(exc)
                ]
                result.invalid.append(
                    InvalidObject(
                        name=str(meta.get("name")),
                        namespace=str(meta.get("namespace")),
                        generation=generation,
                        error=str(exc),
                        reported=bool(said) and status.get("observedGeneration") == generation,
                    )
                )
        return result

    def kinds(self) -> list[tuple[str, str]]:
        """(apiVersion, kind) of every valid template, sorted, once each."""
        return sorted({(fo.api_version, fo.kind) for fo in self.valid})


def group_of(api_version: str) -> str:
    """``apps/v1`` -> ``apps``; ``v1`` (the core group) -> ``""``."""
    return api_version.rpartition("/")[0]


def template_problem(template: dict[str, Any], namespace: str) -> str | None:
    """What makes ``template`` unusable in ``namespace``, as the end of a sentence, or None."""
    for field in ("apiVersion", "kind"):
        if not isinstance(template.get(field), str) or not template[field]:
            return f"has no {field}"
    meta = template.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        return "has no metadata.name (generateName cannot be federated: each member would differ)"
    kind, group = template["kind"], group_of(template["apiVersion"])
    if (group, kind) in CLUSTER_SCOPED:
        return f"is a {kind}, which is cluster-scoped: only namespaced kinds can be federated"
    if (group, kind) in REPLICA_DIVIDED:
        return f"is a {kind}: federate it as a workload, whose replicas the planner spreads"
    if group == GROUP:
        return f"is fleetflow's own {kind}: it cannot be propagated to members"
    if meta.get("namespace") not in (None, "", namespace):
        return (
            f"names namespace {meta['namespace']!r}: a {KIND} propagates into its own "
            f"namespace {namespace!r} only; leave the namespace out or create it there"
        )
    return None


def member_object(fo: FederatedObject, cluster: str, federation: str) -> dict[str, Any]:
    """The object this member gets: the template, this member's overrides, our labels (which
    no override can remove) and a hash of it all, so that a later run can tell from one list
    call that nothing changed. An override that does not apply, or that changes the object's
    identity, is ``InvalidRequest``."""
    manifest = copy.deepcopy(fo.spec.template)
    manifest.pop("status", None)  # the member's controllers write it, never a template
    meta = manifest["metadata"]
    for field in _SERVER_FIELDS:
        meta.pop(field, None)
    meta["namespace"] = fo.namespace
    named = identity(manifest)
    for override in fo.spec.overrides:
        if override.cluster_name != cluster:
            continue
        where = f"{KIND} {fo.key}: override for {cluster}"
        if override.merge_patch:
            manifest = merge_patch(manifest, override.merge_patch)
        try:
            manifest = json_patch(manifest, override.json_patch)
        except InvalidRequest as exc:
            raise InvalidRequest(f"{where}: {exc}") from None
        if not isinstance(manifest, dict) or identity(manifest) != named:
            raise InvalidRequest(
                f"{where}: an override may not change the object's apiVersion, kind, name or "
                "namespace"
            )
    meta = manifest["metadata"]
    meta["labels"] = {
        **(meta.get("labels") or {}),
        LABEL_MANAGED: MANAGED_BY,
        LABEL_FEDERATION: federation,
        LABEL_OBJECT: fo.name,
    }
    meta["annotations"] = dict(meta.get("annotations") or {})
    if group_of(manifest["apiVersion"]) == "" and manifest["kind"] == "Secret":
        manifest = _string_data_folded(manifest)
    manifest["metadata"]["annotations"][ANNOTATION_HASH] = spec_hash(manifest)
    return manifest


def _string_data_folded(secret: dict[str, Any]) -> dict[str, Any]:
    """A Secret's ``stringData`` as base64 ``data``, as the API server stores it (stringData
    wins over data for a key): the member never returns ``stringData``, so a desired object
    that kept it could never be seen as unchanged, and would be written on every run."""
    plain = secret.pop("stringData", None)
    if plain:
        data = dict(secret.get("data") or {})
        for key, value in plain.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        secret["data"] = data
    return secret
