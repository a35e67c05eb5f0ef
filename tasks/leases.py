"""Hold a Lease in the host while a procedure runs, renewed in the background."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from kubernetes import client as k8s
from prefect import runtime

from fleetflow.blocks import KubeCluster
from fleetflow.errors import (
    ClusterError,
    InvalidRequest,
    LeaseLost,
    ResourceConflict,
    ResourceNotFound,
)
from fleetflow.kube import ClusterApiClient, get
from fleetflow.lease import LEASE_API, Lease, free_for, manifest
from fleetflow.settings import settings
from fleetflow.tasks.clusters import client


def _read(api: k8s.CoordinationV1Api, name: str, namespace: str) -> Lease | None:
    try:
        return Lease.from_object(get(api.api_client, LEASE_API, "Lease", name, namespace))
    except ResourceNotFound:
        return None


def _write(
    api: k8s.CoordinationV1Api,
    name: str,
    namespace: str,
    me: str | None,
    duration: int,
    current: Lease | None,
) -> bool:
    """Write the lease as ``me`` holds it (None: released); False when another writer won."""
    body = manifest(name, namespace, me, datetime.now(UTC), duration, current)
    try:
        if current is None:
            api.create_namespaced_lease(namespace, body)
        else:
            api.replace_namespaced_lease(name, namespace, body)
    except ResourceConflict:
        return False
    return True


def try_acquire(api: ClusterApiClient, name: str, namespace: str, me: str, duration: int) -> bool:
    leases = k8s.CoordinationV1Api(api)
    current = _read(leases, name, namespace)
    if not free_for(current, me, datetime.now(UTC)):
        return False
    return _write(leases, name, namespace, me, duration, current)


def run_identity() -> str:
    """Who holds a lease: this flow run (a process outside any run: a fresh identity)."""
    return str(runtime.flow_run.id or uuid.uuid4())


def rebalance_lease(federation: str) -> str:
    """The lease a run holds while it scales a federation's members (rebalance, and a
    migration's quiesce): two never write replica counts at once."""
    return f"fleetflow-rebalance-{federation}"


def member_lease(federation: str, member: str) -> str:
    """The lease a run holds while it changes one member's membership (join, unjoin, rotate):
    two never run at once (one would overwrite or revoke the token the other issued)."""
    return f"fleetflow-member-{federation}-{member}"


@contextlib.contextmanager
def changing_member(
    host: KubeCluster, namespace: str, federation: str, member: str, *, dry_run: bool = False
) -> Iterator[None]:
    """Hold the member's lease for the body (a dry run writes nothing, not even a lease);
    refuse at once while another run of a membership procedure holds it."""
    if dry_run:
        yield
        return
    duration = settings().lease_duration
    refusal = (
        f"another join, unjoin or rotation of {member} in federation {federation} is running; "
        "two never run at once (one would overwrite or revoke the token the other issued): run "
        f"again once it ends (if it crashed, its lease lapses within {duration}s)"
    )
    name = member_lease(federation, member)
    with holding(host, namespace, name, run_identity(), duration=duration, refusal=refusal):
        yield


class Held:
    """A lease as its holder knows it: when it was last renewed, and whether another run took
    it. A run checks it before each write that another run's would collide with: once it may
    have lapsed (two renewals missed: the host did not answer), another run may hold it, so
    this one stops writing (fencing by the lease's own clock)."""

    def __init__(self, name: str, duration: int) -> None:
        self.name, self.duration = name, duration
        self.renewed = time.monotonic()
        self.lost: str | None = None

    def check(self) -> None:
        """Raise :class:`LeaseLost` when this run may no longer hold the lease."""
        age = time.monotonic() - self.renewed
        if self.lost is None and age > self.duration * 2 / 3:
            self.lost = (
                f"not renewed for {age:.0f}s of its {self.duration}s (the host did not answer)"
            )
        if self.lost is not None:
            raise LeaseLost(
                f"this run lost the lease {self.name}: {self.lost}; it stopped before its next "
                "write, and a rerun resumes from the record"
            )


@contextlib.contextmanager
def holding(
    host: KubeCluster,
    namespace: str,
    name: str,
    me: str,
    *,
    duration: int,
    refusal: str,
    wait: float = 0,
) -> Iterator[Held]:
    """Hold the lease for the body of the ``with``; raise ``InvalidRequest(refusal)`` when a
    live holder has it (after waiting up to ``wait`` seconds for it to let go). Renewed every
    third of its duration; released on the way out, whatever happens in the body. The body
    checks the :class:`Held` it gets before its writes."""
    api = client(host)
    deadline = time.monotonic() + wait
    while not try_acquire(api, name, namespace, me, duration):
        if time.monotonic() >= deadline:
            raise InvalidRequest(refusal)
        time.sleep(0.5)
    done = threading.Event()
    held = Held(name, duration)

    def renew() -> None:
        leases = k8s.CoordinationV1Api(client(host))
        while not done.wait(duration / 3):
            with contextlib.suppress(ClusterError):  # a missed renewal is retried next time
                current = _read(leases, name, namespace)
                if current is None or current.holder != me:
                    holder = current.holder if current else None
                    held.lost = f"held by {holder or 'nobody'} now"
                    return
                if _write(leases, name, namespace, me, duration, current):
                    held.renewed = time.monotonic()

    renewer = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
    renewer.start()
    try:
        yield held
    finally:
        done.set()
        renewer.join()
        with contextlib.suppress(ClusterError):
            leases = k8s.CoordinationV1Api(api)
            current = _read(leases, name, namespace)
            if current is not None and current.holder == me:
                _write(leases, name, namespace, None, duration, current)
