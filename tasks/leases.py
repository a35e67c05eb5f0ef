"""Hold a Lease in the host while a procedure runs, renewed in the background."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from kubernetes import client as k8s

from fleetflow.blocks import KubeCluster
from fleetflow.errors import ClusterError, InvalidRequest, ResourceConflict, ResourceNotFound
from fleetflow.kube import ClusterApiClient, get
from fleetflow.lease import LEASE_API, Lease, free_for, manifest
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


@contextlib.contextmanager
def holding(
    host: KubeCluster, namespace: str, name: str, me: str, *, duration: int, refusal: str
) -> Iterator[None]:
    """Hold the lease for the body of the ``with``; raise ``InvalidRequest(refusal)`` when a
    live holder has it. Renewed every third of its duration; released on the way out, whatever
    happens in the body."""
    api = client(host)
    if not try_acquire(api, name, namespace, me, duration):
        raise InvalidRequest(refusal)
    done = threading.Event()

    def renew() -> None:
        leases = k8s.CoordinationV1Api(client(host))
        while not done.wait(duration / 3):
            with contextlib.suppress(ClusterError):  # a missed renewal is retried next time
                current = _read(leases, name, namespace)
                if current is not None and current.holder == me:
                    _write(leases, name, namespace, me, duration, current)

    renewer = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()
        with contextlib.suppress(ClusterError):
            leases = k8s.CoordinationV1Api(api)
            current = _read(leases, name, namespace)
            if current is not None and current.holder == me:
                _write(leases, name, namespace, None, duration, current)
