"""What a workload needs in its namespace before its pods can start. Pure.

Read from the pod template: ConfigMaps and Secrets (volumes, projected sources, env and envFrom,
image pull secrets, volume plugin secret refs) in every container list, the ServiceAccount, and
the PersistentVolumeClaims its volumes name. A StatefulSet's ``volumeClaimTemplates`` are not
dependencies: the StatefulSet controller creates those claims per ordinal on the member itself.
A StatefulSet's governing Service (``serviceName``) is one: its pods get no stable DNS names
without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["Ref", "RefKind", "pod_spec", "pod_spec_references", "references"]

RefKind = Literal["ConfigMap", "PersistentVolumeClaim", "Secret", "Service", "ServiceAccount"]

_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_SECRET_REFS = ("secretRef", "nodePublishSecretRef")
"""Fields of in-tree and CSI volume sources that name a Secret (cephfs, rbd, iscsi, flexVolume,
scaleIO, storageos use ``secretRef``; csi uses ``nodePublishSecretRef``)."""


class Ref(BaseModel):
    """An object of the workload's own namespace (all these kinds are in the core group)."""

    model_config = ConfigDict(frozen=True)

    kind: RefKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def pod_spec(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec of a Deployment, StatefulSet, Job, ReplicaSet or DaemonSet
    (``spec.template.spec``), a CronJob, a Pod, a FederatedDeployment's template (no kind) or
    a plain PodSpec; empty for anything else."""
    if "containers" in workload:
        return workload
    spec = workload.get("spec") or {}
    kind = workload.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec") or {}


def references(workload: Mapping[str, Any]) -> list[Ref]:
    """Every object ``workload`` needs from its namespace, sorted by kind then name, once each."""
    refs = set(_pod_refs(pod_spec(workload)))
    if workload.get("kind") == "StatefulSet":
        service = (workload.get("spec") or {}).get("serviceName")
        if service:
            refs.add(Ref(kind="Service", name=service))
    return sorted(refs, key=lambda r: (r.kind, r.name))


def pod_spec_references(spec: Mapping[str, Any]) -> list[Ref]:
    """What one pod spec needs from its namespace, sorted and once each."""
    return sorted(set(_pod_refs(spec)), key=lambda r: (r.kind, r.name))


def _pod_refs(spec: Mapping[str, Any]) -> Iterable[Ref]:
    account = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if account and account != "default":  # every namespace has "default"; never ours to copy
        yield Ref(kind="ServiceAccount", name=account)
    for secret in spec.get("imagePullSecrets") or []:
        yield from _named("Secret", secret.get("name"))
    for volume in spec.get("volumes") or []:
        yield from _volume_refs(volume)
    for field in _CONTAINER_LISTS:
        for container in spec.get(field) or []:
            yield from _container_refs(container)


def _named(kind: RefKind, name: Any) -> Iterable[Ref]:
    if isinstance(name, str) and name:
        yield Ref(kind=kind, name=name)


def _volume_refs(volume: Mapping[str, Any]) -> Iterable[Ref]:
    yield from _named("ConfigMap", (volume.get("configMap") or {}).get("name"))
    yield from _named("Secret", (volume.get("secret") or {}).get("secretName"))
    yield from _named("Secret", (volume.get("azureFile") or {}).get("secretName"))
    claim = volume.get("persistentVolumeClaim") or {}
    yield from _named("PersistentVolumeClaim", claim.get("claimName"))
    for source in (volume.get("projected") or {}).get("sources") or []:
        yield from _named("ConfigMap", (source.get("configMap") or {}).get("name"))
        yield from _named("Secret", (source.get("secret") or {}).get("name"))
    for plugin in volume.values():
        if isinstance(plugin, Mapping):
            for field in _SECRET_REFS:
                yield from _named("Secret", (plugin.get(field) or {}).get("name"))


def _container_refs(container: Mapping[str, Any]) -> Iterable[Ref]:
    for env in container.get("env") or []:
        source = env.get("valueFrom") or {}
        yield from _named("ConfigMap", (source.get("configMapKeyRef") or {}).get("name"))
        yield from _named("Secret", (source.get("secretKeyRef") or {}).get("name"))
    for env_from in container.get("envFrom") or []:
        yield from _named("ConfigMap", (env_from.get("configMapRef") or {}).get("name"))
        yield from _named("Secret", (env_from.get("secretRef") or {}).get("name"))
