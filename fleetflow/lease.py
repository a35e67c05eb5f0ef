"""Mutual exclusion through a ``coordination.k8s.io`` Lease in the host. Pure decisions.

A procedure that must never run twice at once (a failover of one federation) holds a Lease
named for what it guards and renews it while it works. Another run may take it only once the
holder stopped renewing for the lease's duration: a crashed run gives it up by itself, a live one
never. Taking and renewing are conditional writes (the object's resourceVersion), so two runs
starting together cannot both win.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from fleetflow.controlplane import LABEL_MANAGED, MANAGED_BY, Manifest

MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"
LEASE_API = "coordination.k8s.io/v1"


class Lease(BaseModel):
    """What the host's Lease says."""

    holder: str | None = None
    renewed: datetime | None = None
    duration: int = 15
    transitions: int = 0
    resource_version: str | None = None

    @classmethod
    def from_object(cls, obj: Manifest) -> Lease:
        spec = obj.get("spec") or {}
        renewed = spec.get("renewTime")
        return cls(
            holder=spec.get("holderIdentity") or None,
            renewed=datetime.strptime(renewed, MICRO).replace(tzinfo=UTC) if renewed else None,
            duration=spec.get("leaseDurationSeconds") or 15,
            transitions=spec.get("leaseTransitions") or 0,
            resource_version=obj["metadata"].get("resourceVersion"),
        )

    def expired(self, now: datetime) -> bool:
        return self.renewed is None or self.renewed + timedelta(seconds=self.duration) < now


def free_for(lease: Lease | None, me: str, now: datetime) -> bool:
    """Whether ``me`` may hold the lease now: nobody holds it, ``me`` does, or the holder has
    stopped renewing."""
    return lease is None or lease.holder in (None, me) or lease.expired(now)


def manifest(
    name: str, namespace: str, me: str | None, now: datetime, duration: int, current: Lease | None
) -> Manifest:
    """The Lease held by ``me`` (None: released), conditional on the version read."""
    transitions = current.transitions if current else 0
    if current is not None and me is not None and current.holder not in (None, me):
        transitions += 1
    meta: dict[str, object] = {
        "name": name,
        "namespace": namespace,
        "labels": {LABEL_MANAGED: MANAGED_BY},
    }
    if current is not None and current.resource_version:
        meta["resourceVersion"] = current.resource_version
    stamp = now.strftime(MICRO)
    spec: dict[str, object] = {
        "holderIdentity": me or "",
        "leaseDurationSeconds": duration,
        "renewTime": stamp,
        "leaseTransitions": transitions,
    }
    if me is not None and (current is None or current.holder != me):
        spec["acquireTime"] = stamp
    return {"apiVersion": LEASE_API, "kind": "Lease", "metadata": meta, "spec": spec}
