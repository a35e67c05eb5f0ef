"""Watch the members' health continuously: probe every few seconds, record changes, announce them.

Runbook of one run: load the federation, its members and their credentials; wait for the
federation's watcher lease; then, until this run's time is up, every ``probe_interval`` seconds:
probe every member at once (``/readyz`` with its own credentials, nodes Ready, our Deployments
Ready), move each member's health with the federation's policy (consecutive failures over a
minimum time, consecutive successes over a minimum time), write a member's registry status only
when it changed, and emit a Prefect event for each change (``fleetflow.member.*``, and
``fleetflow.region.*`` when a whole region went down or came back). Release the lease.

Why a chain of bounded runs and a lease, rather than one endless run or a cron job:

- **Always running, without a gap.** The ``health-watch`` deployment runs on a schedule (every 10
  minutes) and each run watches for a bit longer than that (``watch_seconds``, 630 s), counted
  from its *scheduled* start. So the next run is already up, waiting on the lease, when the
  current one reaches its end; the current one releases the lease after its last round and the
  next takes it within half a second and probes at once (it loaded its blocks while waiting).
  The member states survive the handover in the registry (health, counters and when the streak
  began) and the region states in Prefect's event feed, so detection does not restart.
- **Bounded runs stay healthy runs.** A run that lives for ever hides its failures: a worker
  restart, a leaked connection or a stuck thread would silently stop the watching. A run that
  ends every ten minutes is visible in the UI (its rounds, its events, its artifact), its logs
  stay small, a code change is picked up by the next run, and Prefect's own scheduling restarts
  the watching after any crash within one interval, or within ``lease_seconds`` when a successor
  is already waiting.
- **Exactly one watcher probes.** Overlapping runs (the handover, a manual run, two workers)
  would double the probes and, worse, apply two hysteresis to one registry. The
  ``coordination.k8s.io`` Lease ``fleetflow-health-<federation>`` in the host namespace settles it
  with conditional writes: one holder, renewed every third of ``lease_seconds``; a second run
  waits and never probes while the holder is alive; a holder that crashed is replaced once its
  lease lapses. A run scheduled so late that its window has passed (a worker that was down) ends
  without probing.
- **Not a cron job.** A cron rebalance every 5 minutes, needing two failed probes, takes up to 10
  minutes to notice a dead member; this watcher turns a stopped apiserver into an Unhealthy
  event in 10-14 s with the default policy (2 failed probes over at least 10 s), while a member
  that is down for less than that (an apiserver restart) only ever turns Suspect.
- **Rebalance does not fight it.** While the lease is held and fresh, rebalance takes the
  members' health from the registry as the watcher wrote it (no second hysteresis, no member
  status writes). The ``fleetflow.member.unhealthy`` event starts a rebalance at once (a
  deployment trigger in ``deployments/prefect.yaml``): the watcher writes the registry first,
  then emits, so the rebalance it triggers already sees the member Unhealthy.
- **Cost.** A round is one host read and one probe per member, none of them a task run: what
  Prefect records of a quiet run is its start, a heartbeat line a minute (the round count and
  each member's health), its end, and the final message. A change costs a registry write (a
  task run), a log line and an event. (With a task run per probe, a stack left alone for 3.5
  hours had grown Prefect's SQLite by 1.39 GB and locked it 52 times.)
"""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from fleetflow.blocks import KubeCluster
from fleetflow.blocks.loading import load_federation, load_host, member_cluster
from fleetflow.errors import ClusterError, UnknownName
from fleetflow.flows.report import finished
from fleetflow.health import HealthState
from fleetflow.models import WatchRequest
from fleetflow.registry import MemberCluster
from fleetflow.settings import settings
from fleetflow.tasks.health import (
    announce,
    holds_lease,
    last_region_events,
    probe_health,
    wait_for_lease,
)
from fleetflow.tasks.host import list_members, write_statuses
from fleetflow.tasks.leases import holding
from fleetflow.watch import (
    HEARTBEAT_SECONDS,
    WatchReport,
    region_down,
    regions_down_from,
    watch_deadline,
    watch_lease_name,
    watch_round,
)


def _now() -> datetime:
    return datetime.now(UTC)


@flow(
    name="watch-health",
    task_runner=ThreadPoolTaskRunner[Any](max_workers=settings().parallelism),  # type: ignore[arg-type]
)
def watch_health(request: WatchRequest) -> WatchReport:
    """Probe every member every few seconds for a bounded time, holding the federation's
    watcher lease; record and announce each change of health."""
    logger = get_run_logger()
    run_id = flow_run.get_id()
    me = run_id or f"watcher-{uuid.uuid4().hex[:12]}"
    deadline = watch_deadline(flow_run.get_scheduled_start_time(), request.watch_seconds)
    federation = load_federation(request.federation)
    host = load_host(federation)
    namespace, policy = federation.namespace, federation.health_policy()
    lease = watch_lease_name(federation.name)
    report = WatchReport(federation=federation.name, watcher=me)

    # Everything that can be ready before the lease is: a takeover then probes at once.
    registry = list_members(host, namespace, federation.name)
    blocks: dict[str, KubeCluster | None] = {
        m.name: member_cluster(federation, m) for m in registry
    }
    if not wait_for_lease(host, namespace, lease, me, request.lease_seconds, deadline):
        report.notes.append(
            "another watcher held the lease for all of this run's window; this run probed nothing"
        )
        logger.info(report.notes[-1])
        return finished(report, report.summary())
    report.held_lease, report.acquired = True, _now()
    logger.info(f"watching {federation.name} until {deadline:%H:%M:%S} as {me}")

    with holding(
        host,
        namespace,
        lease,
        me,
        duration=request.lease_seconds,
        refusal=f"the health watcher lease {lease!r} was taken meanwhile",
    ):
        states: dict[str, HealthState] = {}  # the members' health as this watcher saw it
        reloaded: dict[str, float] = {}  # when each member's block was last read again
        regions_down: set[str] | None = None
        checked = tick = beat = time.monotonic()
        while (now := _now()) < deadline:
            with contextlib.suppress(ClusterError):  # the host is down: keep the last registry
                registry = list_members.fn(host, namespace, federation.name)  # no task run a round
            if regions_down is None:  # as the last holder left them
                regions_down = _regions_down(federation.name, registry)
            for m in registry:
                if m.name not in blocks:
                    blocks[m.name] = member_cluster(federation, m)
            probes = probe_health(
                {m.name: blocks[m.name] for m in registry}, federation.name, request.probe_timeout
            )
            failed = [m for m in registry if not probes[m.name].ok]
            if failed and (renewed := _renewed_blocks(federation.name, failed, blocks, reloaded)):
                # A rotation or a rejoin replaced those credentials since they were read: the
                # old token is refused by design, which says nothing of the member's health.
                blocks.update(renewed)
                probes |= probe_health(renewed, federation.name, request.probe_timeout)
            found = watch_round(
                federation.name, registry, states, probes, policy, now, regions_down
            )
            report.rounds.append(now)
            try:  # the registry first: what an event triggers must see the new health
                if found.changed:
                    report.writes += write_statuses(host, list(found.changed), False)
            except ClusterError as exc:  # this round did not happen; the next one redoes it
                logger.warning(f"registry not written, the round is repeated: {exc}")
            else:
                states, regions_down = found.states, found.regions_down
                announce(found.events, run_id)
                report.events += found.events
            if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                beat = time.monotonic()
                logger.info(report.heartbeat(states))
            if time.monotonic() - checked >= request.lease_seconds / 3:
                checked = time.monotonic()
                if not holds_lease(host, namespace, lease, me):
                    report.notes.append("the lease was lost (deleted, or renewals failed); stopped")
                    logger.warning(report.notes[-1])
                    break
            tick += request.probe_interval
            pause = min(tick - time.monotonic(), (deadline - _now()).total_seconds())
            if pause > 0:
                time.sleep(pause)
            else:
                tick = time.monotonic()  # a slow round: the next one starts now
    report.released = _now()
    report.notes.append(
        f"held the lease from {report.acquired:%H:%M:%S.%f} to {report.released:%H:%M:%S.%f}"
    )
    create_markdown_artifact(
        key=f"health-{federation.name}", markdown=report.markdown(), description="Health watch"
    )
    return finished(report, report.summary())


RELOAD_SECONDS = 10.0
"""How often, at most, the watcher reads a failing member's blocks again (a member down for
hours costs Prefect a read every 10 s, not one a round)."""


def _renewed_blocks(
    federation: str,
    failed: list[MemberCluster],
    blocks: dict[str, KubeCluster | None],
    reloaded: dict[str, float],
) -> dict[str, KubeCluster | None]:
    """Of the members whose probe failed, those whose credentials block changed since the
    watcher read it (rotated, rejoined, or listed since), read again now."""
    due = [
        m
        for m in failed
        if time.monotonic() - reloaded.get(m.name, -RELOAD_SECONDS) >= RELOAD_SECONDS
    ]
    if not due:
        return {}
    try:
        current = load_federation(federation)
        fresh = {m.name: member_cluster(current, m) for m in due}
    except (UnknownName, ValueError, httpx.HTTPError):  # Prefect away: the next due round
        return {}
    finally:
        reloaded.update({m.name: time.monotonic() for m in due})
    return {name: block for name, block in fresh.items() if block != blocks.get(name)}


def _regions_down(federation: str, registry: list[MemberCluster]) -> set[str]:
    """The regions announced down by a previous watcher; without Prefect's event feed, the
    regions whose members are all out of placement now (not announced again)."""
    try:
        return regions_down_from(last_region_events(federation))
    except httpx.HTTPError:  # the feed is a memory aid: the registry is the fallback
        regions: dict[str, list[HealthState]] = {}
        for m in registry:
            if m.spec.region:
                regions.setdefault(m.spec.region, []).append(m.health)
        return {r for r, states in regions.items() if region_down(states)}
