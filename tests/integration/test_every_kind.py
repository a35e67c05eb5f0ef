"""Every procedure against one federation that holds every kind of workload at once.

The federation holds the demo's samples (what ``fleetflow up`` creates): a weighted front end
reading a FederatedObject, an API spread evenly, a worker and a checkout that tolerate the
taint on the middle member, a StatefulSet with data in its volume, and an autoscaled workload;
checkout has affinity groups and a spread. Rebalance, a drill, failover and failback,
migration, a NoExecute taint and unjoin run in turn (file order), each on what the one before
left, so that one feature's objects cannot break another's procedure unseen. Throughout each,
no workload's Ready replicas fall below what it had (unless the procedure names it as one it
cannot keep), its data stays byte for byte, and DNS answers only where replicas are Ready.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client as k8s

from fleetflow.cli.stack import federate_testbed
from fleetflow.controlplane import API_VERSION
from fleetflow.drill import DrillMode
from fleetflow.errors import MembershipError
from fleetflow.flows.drill import failover_drill
from fleetflow.flows.failover import regional_failback, regional_failover
from fleetflow.flows.migrate import migrate_workload
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.flows.taint import taint_member
from fleetflow.flows.unjoin import unjoin_cluster
from fleetflow.kube import apply, get, list_objects
from fleetflow.kube.client import REQUESTS
from fleetflow.models import (
    DrillRequest,
    FailbackRequest,
    FailoverRequest,
    MigrateRequest,
    RebalanceRequest,
    TaintRequest,
    UnjoinRequest,
)
from fleetflow.polling import poll_until
from fleetflow.resolve import lookup
from fleetflow.testbed.demo import demo_taints, demo_workloads
from fleetflow.testbed.spec import TestbedSpec
from fleetflow.testbed.volumes import claim_directories, seed
from tests.integration.conftest import a_federation, client_for, delete_namespace, made_whole
from tests.integration.test_failover import Sampler, ingress
from tests.integration.test_failover import dns_server as server_of
from tests.integration.test_migrate import digests

pytestmark = pytest.mark.integration

KINDS = ("Deployment", "StatefulSet")
EXPOSED = ("web", "api", "ledger")


@dataclass
class World:
    """The module's federation, its namespace, and what the tests carry from one to the next."""

    federation: str
    namespace: str
    testbed: TestbedSpec
    data: dict[str, str] = field(default_factory=dict)  # the ledger's files, by digest

    def rebalance(self) -> Any:
        return rebalance_replicas(
            RebalanceRequest(federation=self.federation, namespace=self.namespace)
        )

    def converge(self, runs: int = 6) -> list[str]:
        """Rebalance as the schedule does, run after run, until one writes nothing (a run holds
        its scale-downs back until DNS answers as it switched it): each run's notes."""
        notes = []
        for _ in range(runs):
            report = self.rebalance()
            notes += report.notes
            if not report.writes():
                return notes
        raise AssertionError(f"still writing after {runs} rebalances: {notes}")


def ready(testbed: TestbedSpec, namespace: str, members: list[str] | None = None) -> dict:
    """Ready replicas of every workload on each reachable member: ``{workload: {member: n}}``
    (members with none left out)."""
    found: dict[str, dict[str, int]] = {}
    for member in members or [m.name for m in testbed.members]:
        api = client_for(member, timeout=2)
        for kind in KINDS:
            for w in list_objects(api, "apps/v1", kind, namespace):
                n = (w.get("status") or {}).get("readyReplicas") or 0
                if n:
                    found.setdefault(w["metadata"]["name"], {})[member] = n
    return found


def totals(placed: dict[str, dict[str, int]]) -> dict[str, int]:
    return {w: sum(by_member.values()) for w, by_member in placed.items()}


AUTOSCALED = {"search": (2, 6)}
"""The demo's autoscaled workload and its bounds: its members' HPAs set its counts (the HPA
controller may scale it between them at any time), so it is held to its bounds, not a count."""


def floors(placed: dict[str, dict[str, int]]) -> dict[str, int]:
    """What each workload must never fall below while a procedure runs: what it ran, or an
    autoscaled one's minReplicas (its HPAs may scale it down to that on their own)."""
    return {
        w: min(n, AUTOSCALED[w][0]) if w in AUTOSCALED else n for w, n in totals(placed).items()
    }


def comparable(placed: dict[str, dict[str, int]]) -> dict[str, Any]:
    """What a procedure must leave as it was: each count, but an autoscaled workload's, whose
    members and bounds are compared instead."""
    return {
        w: (sorted(by), AUTOSCALED[w][0] <= sum(by.values()) <= AUTOSCALED[w][1])
        if w in AUTOSCALED
        else by
        for w, by in placed.items()
    }


def answers(world: World) -> dict[str, list[str]]:
    zone, server = world.testbed.dns_zone, server_of(world.testbed)
    return {name: lookup(f"{name}-{world.namespace}.{zone}", server).targets for name in EXPOSED}


def services(world: World) -> set[str]:
    """The members that have the ledger's Service."""
    return {
        m.name
        for m in world.testbed.members
        for s in list_objects(client_for(m.name), "v1", "Service", world.namespace)
        if s["metadata"]["name"] == "ledger"
    }


def ledger_files(world: World, member: str) -> dict[str, str]:
    """sha256 of each of the ledger's files on ``member``, by claim and path: read here."""
    return digests(claim_directories(client_for(member), world.namespace, "ledger"))


class Floors(Sampler):
    """Samples every workload's Ready total over the members while a procedure runs."""

    def __init__(self, world: World) -> None:
        super().__init__(world.testbed, world.namespace, [m.name for m in world.testbed.members])

    def sample(self) -> dict[str, int]:
        testbed, namespace, members = self.args_
        return totals(ready(testbed, namespace, members))

    def dips(self, floors: dict[str, int], *, but: tuple[str, ...] = ()) -> list[str]:
        """Each workload (``but`` those) that ever had fewer Ready than its floor."""
        assert self.samples, "nothing was sampled"
        return sorted(
            {
                f"{w} {s.get(w, 0)} < {n}"
                for s in self.samples
                for w, n in floors.items()
                if w not in but and s.get(w, 0) < n
            }
        )


@contextlib.contextmanager
def sampled(world: World) -> Iterator[Floors]:
    floors = Floors(world)
    floors.start()
    try:
        yield floors
    finally:
        floors.stop.set()
        floors.join()


def settled(world: World, expected: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return poll_until(
        lambda: ready(world.testbed, world.namespace),
        lambda r: comparable(r) == comparable(expected),
        timeout=60,
        waiting_for=f"Ready replicas {expected}",
    )


def dns_settled(world: World, expected: dict[str, list[str]]) -> None:
    poll_until(lambda: answers(world), lambda a: a == expected, timeout=30, waiting_for="DNS")


@pytest.fixture(scope="module")
def world(admin_blocks: list[str], testbed: TestbedSpec) -> Iterator[World]:
    """The demo's samples on a federation of the module's own, with the test bed's DNS, the
    middle member tainted, placed by a rebalance, and data in the ledger's volume."""
    made_whole(testbed)  # search's HPAs need the members' metrics API
    members = [m.name for m in testbed.members]
    namespace = f"every-{uuid.uuid4().hex[:6]}"
    with a_federation(testbed, join=False, prefix="e") as name:
        federate_testbed(testbed, name, namespace=f"{name}-system")
        # On the host; the members' are opened as rooms by the first rebalance.
        k8s.CoreV1Api(client_for(testbed.host)).create_namespace({"metadata": {"name": namespace}})
        try:
            for member, taints in demo_taints(members).items():
                taint_member(TaintRequest(federation=name, member=member, add=taints))
            host = client_for(testbed.host)
            for workload in demo_workloads(members, name, namespace, dns_suffix=f"-{namespace}"):
                apply(host, workload)
            world = World(name, namespace, testbed)
            world.rebalance()
            first = members[0]
            dirs = poll_until(
                lambda: claim_directories(client_for(first), namespace, "ledger"),
                lambda d: len(d) == 1,
                timeout=60,
                waiting_for="the ledger's claim bound",
            )
            seed(dirs, small=200, small_size=4096, large_mb=4)
            world.data = ledger_files(world, first)
            yield world
        finally:
            delete_namespace(testbed, namespace)


def test_every_kind_is_placed_by_its_rules_and_a_second_rebalance_writes_nothing(
    world: World,
) -> None:
    a, b, c = (m.name for m in world.testbed.members)  # a, b in us-east; c in eu-west
    assert demo_taints([a, b, c]) == {b: ["dedicated=batch:NoSchedule"]}
    # Tainted b runs only what tolerates its taint; checkout's home group is a and b, at most
    # two clusters; search starts at its HPAs' minimum; the ledger stays where its data is.
    placed = settled(
        world,
        {
            "web": {a: 4, c: 2},
            "api": {a: 2, c: 2},
            "worker": {a: 1, b: 1, c: 1},
            "checkout": {a: 2, b: 2},
            "search": {a: 1, c: 1},
            "ledger": {a: 1},
        },
    )
    print(placed)
    # web's ConfigMap follows it, with the last member's own value.
    greeting = {
        m: get(client_for(m), "v1", "ConfigMap", "web-config", world.namespace)["data"]["greeting"]
        for m in (a, c)
    }
    assert greeting == {a: "hello", c: "hej"}
    assert services(world) == {a}  # the ledger's headless Service, where the ledger runs
    hpas = {
        m
        for m in (a, b, c)
        for _ in list_objects(
            client_for(m), "autoscaling/v2", "HorizontalPodAutoscaler", world.namespace
        )
    }
    assert hpas == {a, c}
    dns_settled(
        world,
        {
            "web": ingress(world.testbed, a, c),
            "api": ingress(world.testbed, a, c),
            "ledger": ingress(world.testbed, a),
        },
    )
    REQUESTS.clear()
    world.rebalance()
    assert {k: n for k, n in REQUESTS.items() if k[1] != "GET"} == {}


def test_a_drill_of_a_region_passes_and_leaves_every_kind_as_it_was(world: World) -> None:
    a = world.testbed.members[0].name
    before, dns = ready(world.testbed, world.namespace), answers(world)
    verdict = failover_drill(
        DrillRequest(federation=world.federation, region="eu-west", mode=DrillMode.STOP_CLUSTERS)
    )
    assert verdict.passed, verdict.summary()
    assert "every workload keeps replicas while the region is away none left" in verdict.summary()
    settled(world, before)
    dns_settled(world, dns)
    assert ledger_files(world, a) == world.data


def test_failover_and_failback_move_every_kind_make_before_break(world: World) -> None:
    a, b, c = (m.name for m in world.testbed.members)
    before, dns = ready(world.testbed, world.namespace), answers(world)
    least = floors(before)
    with sampled(world) as sampler:
        report = regional_failover(
            FailoverRequest(federation=world.federation, region="us-east", reason="every kind")
        )
    # Only the ledger, pinned to a member of the region, is left without: and the report says so.
    assert sampler.dips(least, but=("ledger",)) == []
    notes = "\n".join(report.notes)
    assert f"{world.namespace}/ledger: 1 replicas could not be placed" in notes, notes
    # The drain is written; the members' controllers take the pods away a moment later.
    away = poll_until(
        lambda: ready(world.testbed, world.namespace),
        lambda r: (
            {w: set(m) for w, m in r.items()}
            == {w: {c} for w in ("web", "api", "worker", "checkout", "search")}
        ),
        timeout=30,
        waiting_for="every workload on the survivor alone",
    )
    assert floors(away) == {w: n for w, n in least.items() if w != "ledger"}

    with sampled(world) as sampler:
        regional_failback(FailbackRequest(federation=world.federation, region="us-east"))
    assert sampler.dips(least, but=("ledger",)) == []
    settled(world, before)
    dns_settled(world, dns)
    assert ledger_files(world, a) == world.data
    assert b in before["checkout"]


def test_the_ledger_migrates_with_its_data_and_nothing_else_moves(world: World) -> None:
    a, c = world.testbed.members[0].name, world.testbed.members[-1].name
    before, dns = ready(world.testbed, world.namespace), answers(world)
    with sampled(world) as sampler:
        migrate_workload(
            MigrateRequest(
                federation=world.federation, namespace=world.namespace, name="ledger", target=c
            )
        )
    assert sampler.dips(floors(before), but=("ledger",)) == []
    assert ledger_files(world, c) == world.data
    assert ledger_files(world, a) == world.data  # kept until migrate-cleanup
    settled(world, {**before, "ledger": {c: 1}})
    assert poll_until(
        lambda: services(world), lambda on: on == {c}, timeout=30, waiting_for="the Service moved"
    )
    dns_settled(world, {**dns, "ledger": ingress(world.testbed, c)})


def test_a_no_execute_taint_moves_what_does_not_tolerate_it_make_before_break(
    world: World,
) -> None:
    a, b = (m.name for m in world.testbed.members[:2])
    before, dns = ready(world.testbed, world.namespace), answers(world)
    request = TaintRequest(federation=world.federation, member=a, add=["maintenance:NoExecute"])
    taint_member(request)
    try:
        with sampled(world) as sampler:
            notes = world.converge()
        assert sampler.dips(floors(before)) == []
        away = ready(world.testbed, world.namespace, [a])
        assert away == {}, f"still on the tainted member: {away}; {notes}"
        assert ingress(world.testbed, a)[0] not in answers(world)["web"]
    finally:
        taint_member(TaintRequest(federation=world.federation, member=a, remove=["maintenance"]))
    world.converge()
    settled(world, before)
    dns_settled(world, dns)
    assert b in before["worker"]


def test_unjoin_moves_the_members_replicas_away_before_it_deletes_them(world: World) -> None:
    b = world.testbed.members[1].name
    host = client_for(world.testbed.host)
    before = ready(world.testbed, world.namespace)
    request = UnjoinRequest(
        federation=world.federation, member=b, keep_workloads=False, admin_block=b
    )
    # web's weights name b: gone, a rebalance would refuse web's placement. Said first.
    with pytest.raises(MembershipError, match=rf"{world.namespace}/web \(weights\) names it"):
        unjoin_cluster(request)
    # search's HPAs may scale it meanwhile (seen: 2 to 1 on one member): held to its bounds.
    assert comparable(ready(world.testbed, world.namespace)) == comparable(before)
    members = [m.name for m in world.testbed.members]
    samples = demo_workloads(members, world.federation, world.namespace, f"-{world.namespace}")
    web = next(w for w in samples if w["metadata"]["name"] == "web")
    web["spec"]["placement"]["weights"].pop(b)
    apply(host, web)  # as the user applied it, without b

    with sampled(world) as sampler:
        unjoin_cluster(request)
    assert sampler.dips(floors(before)) == []
    assert ready(world.testbed, world.namespace, [b]) == {}
    world.converge()
    after = ready(world.testbed, world.namespace)
    assert floors(after) == floors(before)
    assert all(b not in m for m in after.values())
    entries = list_objects(host, API_VERSION, "MemberCluster", f"{world.federation}-system")
    assert b not in {e["metadata"]["name"] for e in entries}


def test_unjoin_of_the_only_member_a_workload_may_run_on_is_refused_and_changes_nothing(
    world: World,
) -> None:
    c = world.testbed.members[-1].name  # where the ledger lives now
    before = ready(world.testbed, world.namespace)
    with pytest.raises(MembershipError, match="ledger"):
        unjoin_cluster(
            UnjoinRequest(
                federation=world.federation, member=c, keep_workloads=False, admin_block=c
            )
        )
    assert comparable(ready(world.testbed, world.namespace)) == comparable(before)
    assert ledger_files(world, c) == world.data
