"""Steps of the health watcher: probe the members, hold the watcher's lease, read and emit events.

A watcher probes every member every few seconds for weeks. Its probes and lease checks are plain
calls, not task runs: a task run costs Prefect a row, three states, three events and a log line,
which at one per member every two seconds filled a server's database by gigabytes a day and
locked its SQLite. What the watcher tells Prefect is each change of health (a log line, an
event) and a heartbeat line once a minute."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventOrder,
    EventResourceFilter,
)

from fleetflow.blocks import KubeCluster
from fleetflow.errors import ClusterError, ClusterForbidden, ResourceNotFound
from fleetflow.kube import get
from fleetflow.lease import LEASE_API, Lease
from fleetflow.polling import poll_until
from fleetflow.settings import settings
from fleetflow.tasks.clusters import client
from fleetflow.tasks.common import PRIVATE
from fleetflow.tasks.leases import try_acquire
from fleetflow.tasks.probe import probe_member
from fleetflow.watch import REGION_EVENTS, HealthEvent, Probe, watch_lease_name

REGION_MEMORY = timedelta(days=7)
"""How far back the last region events are looked for (Prefect keeps events 7 days)."""


def probe_health(
    blocks: dict[str, KubeCluster | None], federation: str, timeout: float
) -> dict[str, Probe]:
    """Probe every member at once, one thread each (no task runs: see the module's doc)."""
    if not blocks:
        return {}
    with ThreadPoolExecutor(
        max_workers=min(len(blocks), settings().parallelism), thread_name_prefix="probe"
    ) as pool:
        found = pool.map(
            lambda item: probe_member(item[1], item[0], federation, timeout), blocks.items()
        )
        return {p.name: p for p in found}


def read_watch_lease(host: KubeCluster, namespace: str, federation: str) -> Lease | None:
    """The federation's watcher lease, or None when there is none (or the worker may not read
    leases, in which case no watcher can hold one either)."""
    try:
        obj = get(client(host), LEASE_API, "Lease", watch_lease_name(federation), namespace)
    except (ResourceNotFound, ClusterForbidden):
        return None
    return Lease.from_object(obj)


@task(**PRIVATE)
def wait_for_lease(
    host: KubeCluster, namespace: str, name: str, me: str, duration: int, until: datetime
) -> bool:
    """Take the lease as soon as it is free (released, or its holder stopped renewing); False
    when ``until`` comes first. A host that does not answer is asked again."""
    api = client(host)

    def attempt() -> bool:
        try:
            return try_acquire(api, name, namespace, me, duration)
        except ClusterError as exc:
            if not exc.retryable:
                raise
            return False

    left = (until - datetime.now(UTC)).total_seconds()
    if left <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        return poll_until(
            attempt, bool, timeout=left, interval=0.5, waiting_for=f"the lease {name!r}"
        )
    return False


def holds_lease(host: KubeCluster, namespace: str, name: str, me: str) -> bool:
    """Whether ``me`` still holds the lease (it lapses if renewals failed for its duration). A
    host that does not answer is no news: the lease lapses if it stays away, and the first
    check after it answers says so."""
    try:
        obj = get(client(host), LEASE_API, "Lease", name, namespace)
    except ResourceNotFound:
        return False
    except ClusterError:
        return True
    return Lease.from_object(obj).holder == me


@task(**PRIVATE)
def last_region_events(federation: str) -> dict[str, str]:
    """The last region event (unhealthy or recovered) of each region of the federation, from
    Prefect's event feed: the regions a previous watcher announced down."""
    query = EventFilter(
        occurred=EventOccurredFilter(since=datetime.now(UTC) - REGION_MEMORY),
        event=EventNameFilter(name=list(REGION_EVENTS)),
        resource=EventResourceFilter(id_prefix=[f"fleetflow.region.{federation}."], distinct=True),
        order=EventOrder.DESC,
    )
    with get_client(sync_client=True) as prefect:
        page = prefect.read_events(filter=query, limit=50)
    last: dict[str, str] = {}
    for event in page.events:  # newest first
        region = event.resource.get("fleetflow.region")
        if region and region not in last:
            last[region] = event.event
    return last


def announce(events: list[HealthEvent], watcher: str | None) -> None:
    """Emit the events to Prefect, each related to the watcher's flow run."""
    related: list[dict[str, str]] = []
    if watcher:
        related = [
            {
                "prefect.resource.id": f"prefect.flow-run.{watcher}",
                "prefect.resource.role": "flow-run",
            }
        ]
    logger = get_run_logger()
    for e in events:
        emit_event(
            event=e.event,
            resource=e.resource,
            occurred=e.occurred,
            related=related,
            payload=e.payload,
        )
        what = e.resource.get("prefect.resource.name")
        detail: Any = e.payload.get("reason") or e.payload.get("members")
        logger.info(f"{e.event}: {what} ({detail})")
