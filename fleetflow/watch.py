"""The health watcher's decisions: probes -> health, registry writes and Prefect events. Pure.

Each round the watcher probes every member (:class:`Probe`), moves each member's health with
the federation's policy (:func:`fleetflow.health.observe`, counts and times), and
:func:`watch_round` says what to write and what to announce:

- a member's registry status is written only when its health changes (or its nodes do), never
  on a quiet round, so the host sees a write per transition and not one per probe;
- each change of health is an event ``fleetflow.member.<what>`` whose resource is
  ``fleetflow.member.<federation>.<member>`` labelled with ``fleetflow.federation``,
  ``fleetflow.member`` and ``fleetflow.region``: ``suspect``, ``unhealthy``, ``recovering``,
  ``recovered`` (Recovering -> Healthy: its replicas may return) and ``healthy`` (a suspicion
  that cleared before it became anything);
- a region whose every member has turned Unhealthy (or is Recovering: still not placeable) is
  ``fleetflow.region.unhealthy``; once every one of them is Healthy again,
  ``fleetflow.region.recovered``. A region is announced down once, and recovered once, however
  its members wander in between.

Which regions are down is remembered in Prefect's own event feed (the last region event of
each), so a watcher that takes over from another continues where it stopped: a recovery that
the previous watcher saw starting is announced by the next.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from fleetflow.autoscaling import Autoscaler
from fleetflow.capacity import Resources
from fleetflow.health import Health, HealthPolicy, HealthState, observe
from fleetflow.lease import Lease
from fleetflow.rebalance import MemberObservation, Observed
from fleetflow.registry import MemberCluster, MemberStatus, with_health, with_nodes

MEMBER_EVENT = "fleetflow.member."
MEMBER_SUSPECT = "fleetflow.member.suspect"
MEMBER_UNHEALTHY = "fleetflow.member.unhealthy"
MEMBER_RECOVERING = "fleetflow.member.recovering"
MEMBER_RECOVERED = "fleetflow.member.recovered"
MEMBER_HEALTHY = "fleetflow.member.healthy"
REGION_UNHEALTHY = "fleetflow.region.unhealthy"
REGION_RECOVERED = "fleetflow.region.recovered"
REGION_EVENTS = (REGION_UNHEALTHY, REGION_RECOVERED)

LABEL_FEDERATION = "fleetflow.federation"
LABEL_MEMBER = "fleetflow.member"
LABEL_REGION = "fleetflow.region"

WATCH_LEASE_PREFIX = "fleetflow-health-"
HEARTBEAT_SECONDS = 60.0
"""How often a watcher logs that it is still probing, when nothing changes."""


class Probe(BaseModel):
    """What one probe of a member saw: the one probe the watcher, rebalance, failover and the
    drill make (``fleetflow.tasks.probe.probe_member``). ``free`` and ``deployments`` are filled
    only by a probe for placement, which also lists the member's pods."""

    name: str
    api_ready: bool = False
    """``/readyz`` answered 200 with the member's own credentials."""
    error: str | None = None
    nodes_ready: int = 0
    nodes_total: int = 0
    allocatable: Resources | None = None  # of the Ready nodes
    workloads: int = 0
    """The federation's Deployments and StatefulSets on the member."""
    workloads_ready: int = 0
    """Of those, how many have every replica Ready."""
    seconds: float = 0.0
    free: Resources | None = None
    deployments: dict[str, Observed] = Field(default_factory=dict)
    autoscalers: dict[str, Autoscaler] = Field(default_factory=dict)
    """The federation's HPAs on the member, by namespace/name (a probe for placement)."""

    @property
    def ok(self) -> bool:
        """A good probe: the API is ready and at least one node is Ready. Our workloads'
        readiness is reported, never judged: a workload that fails everywhere (a bad image)
        must not make every member Unhealthy in turn."""
        return self.api_ready and self.nodes_ready > 0

    @property
    def nodes_share(self) -> float:
        return self.nodes_ready / self.nodes_total if self.nodes_total else 0.0

    def summary(self) -> str:
        if self.error:
            return self.error
        return (
            f"{self.nodes_ready}/{self.nodes_total} nodes Ready, "
            f"{self.workloads_ready}/{self.workloads} workloads Ready"
        )

    def observation(self) -> MemberObservation:
        """What placement reads of this probe."""
        return MemberObservation(
            name=self.name,
            reachable=self.api_ready,
            error=self.error,
            nodes_ready=self.nodes_ready,
            nodes_total=self.nodes_total,
            allocatable=self.allocatable,
            free=self.free,
            deployments=self.deployments,
            autoscalers=self.autoscalers,
        )


class HealthEvent(BaseModel):
    """One Prefect event to emit."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any] = Field(default_factory=dict)
    occurred: datetime

    @property
    def member(self) -> str | None:
        return self.resource.get(LABEL_MEMBER)

    @property
    def region(self) -> str | None:
        return self.resource.get(LABEL_REGION)


class Round(BaseModel):
    """The outcome of one round of probes."""

    at: datetime
    states: dict[str, HealthState] = Field(default_factory=dict)
    changed: list[MemberCluster] = Field(default_factory=list)
    events: list[HealthEvent] = Field(default_factory=list)
    regions_down: set[str] = Field(default_factory=set)


def member_event_name(before: Health, after: Health) -> str:
    """The event of a change of health."""
    if after is Health.HEALTHY:
        return MEMBER_HEALTHY if before is Health.SUSPECT else MEMBER_RECOVERED
    return MEMBER_EVENT + after.value.lower()


def member_resource(federation: str, member: MemberCluster) -> dict[str, str]:
    resource = {
        "prefect.resource.id": f"fleetflow.member.{federation}.{member.name}",
        "prefect.resource.name": member.name,
        LABEL_FEDERATION: federation,
        LABEL_MEMBER: member.name,
    }
    if member.spec.region:
        resource[LABEL_REGION] = member.spec.region
    return resource


def region_resource(federation: str, region: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"fleetflow.region.{federation}.{region}",
        "prefect.resource.name": region,
        LABEL_FEDERATION: federation,
        LABEL_REGION: region,
    }


def watched_status(
    member: MemberCluster, state: HealthState, probe: Probe, now: datetime
) -> MemberStatus:
    """The registry status after a round: the health only when it changed (the counters and
    the streak's start as they were at the change), the nodes when the member answered."""
    status = member.status
    if state.health is not member.health.health or status.health is None:
        status = with_health(status, state, now)
    if probe.api_ready and probe.allocatable is not None:
        status = with_nodes(status, probe.nodes_ready, probe.nodes_total, probe.allocatable)
    return status


def region_down(states: list[HealthState]) -> bool:
    """Every member of the region is out of placement (Unhealthy or Recovering)."""
    return bool(states) and not any(s.placeable for s in states)


def region_back(states: list[HealthState]) -> bool:
    """Every member of the region is Healthy again."""
    return bool(states) and all(s.health is Health.HEALTHY for s in states)


def watch_round(
    federation: str,
    registry: list[MemberCluster],
    states: dict[str, HealthState],
    probes: dict[str, Probe],
    policy: HealthPolicy,
    now: datetime,
    regions_down: set[str],
) -> Round:
    """One round: each member's next health (from ``states``, the watcher's memory, or the
    registry for a member it has not seen yet), the registry entries to write, the events."""
    result = Round(at=now, regions_down=set(regions_down))
    for member in registry:
        before = states.get(member.name, member.health)
        probe = probes.get(member.name) or Probe(name=member.name, error="not probed")
        after = observe(before, probe.ok, policy, now)
        result.states[member.name] = after
        status = watched_status(member, after, probe, now)
        if status != member.status:
            result.changed.append(member.model_copy(update={"status": status}))
        if after.health is not before.health:
            result.events.append(
                HealthEvent(
                    event=member_event_name(before.health, after.health),
                    resource=member_resource(federation, member),
                    occurred=now,
                    payload={
                        "from": before.health.value,
                        "to": after.health.value,
                        "reason": probe.summary(),
                        "since": (before.since or now).isoformat(),
                        "consecutive_failures": after.consecutive_failures,
                        "consecutive_successes": after.consecutive_successes,
                        "nodes_ready": probe.nodes_ready,
                        "nodes_total": probe.nodes_total,
                        "workloads": probe.workloads,
                        "workloads_ready": probe.workloads_ready,
                    },
                )
            )
    regions: dict[str, list[str]] = {}
    for member in registry:
        if member.spec.region:
            regions.setdefault(member.spec.region, []).append(member.name)
    for region, names in sorted(regions.items()):
        now_states = [result.states[n] for n in names]
        health = {n: result.states[n].health.value for n in names}
        if region not in result.regions_down and region_down(now_states):
            result.regions_down.add(region)
            event = REGION_UNHEALTHY
        elif region in result.regions_down and region_back(now_states):
            result.regions_down.discard(region)
            event = REGION_RECOVERED
        else:
            continue
        result.events.append(
            HealthEvent(
                event=event,
                resource=region_resource(federation, region),
                occurred=now,
                payload={"members": health},
            )
        )
    return result


def regions_down_from(last_region_events: dict[str, str]) -> set[str]:
    """The regions announced down and not yet recovered, from the last region event of each."""
    return {r for r, event in last_region_events.items() if event == REGION_UNHEALTHY}


def watch_lease_name(federation: str) -> str:
    """The Lease in the host that the federation's one active watcher holds."""
    return f"{WATCH_LEASE_PREFIX}{federation}"


def watcher_holds(lease: Lease | None, now: datetime) -> bool:
    """A watcher holds the lease and renewed it recently: it owns the members' health."""
    return lease is not None and lease.holder is not None and not lease.expired(now)


def watch_deadline(scheduled_start: datetime, watch_seconds: float) -> datetime:
    """When a run stops watching: counted from when it was scheduled to start, not from when
    it did, so a run started late hands over on time and a run started after its window (a
    worker that was down) does not probe at all."""
    return scheduled_start + timedelta(seconds=watch_seconds)


class WatchReport(BaseModel):
    """What one watcher run did."""

    federation: str
    watcher: str
    held_lease: bool = False
    acquired: datetime | None = None
    released: datetime | None = None
    rounds: list[datetime] = Field(default_factory=list)
    """When each round of probes started."""
    events: list[HealthEvent] = Field(default_factory=list)
    writes: int = 0
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """One line for the run's final state."""
        if not self.held_lease:
            return f"health of {self.federation}: another watcher held the lease; probed nothing"
        return (
            f"health of {self.federation}: {len(self.rounds)} rounds of probes, "
            f"{len(self.events)} health changes, {self.writes} registry writes"
        )

    def heartbeat(self, states: dict[str, HealthState]) -> str:
        """The log line that says the watcher still probes, and what it sees."""
        seen = ", ".join(f"{m} {s.health.value}" for m, s in sorted(states.items()))
        changes = len(self.events)
        return (
            f"round {len(self.rounds)}: {seen or 'no members'}; "
            f"{changes} health change{'s' if changes != 1 else ''} in this run"
        )

    def markdown(self) -> str:
        rows = [
            f"| {e.occurred:%H:%M:%S} | {e.event} | {e.resource.get('prefect.resource.name')} "
            f"| {e.payload.get('reason', '')} |"
            for e in self.events
        ]
        return "\n".join(
            [
                f"## Health of {self.federation} (watcher {self.watcher})",
                "",
                f"- {len(self.rounds)} rounds of probes, {self.writes} registry writes",
                *(f"- {n}" for n in self.notes),
                "",
                "| at | event | resource | reason |",
                "| --- | --- | --- | --- |",
                *rows,
            ]
        )
