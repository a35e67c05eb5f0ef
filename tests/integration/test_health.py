"""The health watcher on the test bed: real faults, real Prefect events, one watcher at a time.

Each watcher runs in a thread of the test process (as a flow run of the session's Prefect
server), so the request meter ``REQUESTS`` sees its requests: a member's ``/readyz`` is a GET
under the member's block name, a registry status write is a PATCH to the host.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.events import ReceivedEvent, ResourceSpecification

from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import API_VERSION
from fleetflow.errors import ResourceNotFound
from fleetflow.flows.health import watch_health
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.flows.rotate import rotate_credentials
from fleetflow.health import Health
from fleetflow.kube import delete, get, list_objects
from fleetflow.kube.client import REQUESTS
from fleetflow.kube.probe import readyz
from fleetflow.lease import LEASE_API, Lease
from fleetflow.models import RebalanceRequest, RotateRequest, WatchRequest
from fleetflow.polling import poll_until
from fleetflow.registry import MemberCluster
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec
from fleetflow.watch import (
    MEMBER_RECOVERED,
    MEMBER_UNHEALTHY,
    REGION_RECOVERED,
    REGION_UNHEALTHY,
    WatchReport,
    watch_lease_name,
)
from tests.integration.conftest import client_for, recorded_task_runs

pytestmark = pytest.mark.integration

DETECTION_TARGET = 30.0


Start = Callable[..., "Future[WatchReport]"]


@pytest.fixture
def watchers(joined: str, testbed: TestbedSpec) -> Iterator[Start]:
    """Start watchers of the joined federation in threads; afterwards (a test that failed
    included) take their lease away until every one has stopped, rather than wait out their
    windows."""
    pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="watcher")
    started: list[Future[WatchReport]] = []

    def start(seconds: float, interval: float = 2) -> Future[WatchReport]:
        request = WatchRequest(federation=joined, watch_seconds=seconds, probe_interval=interval)
        started.append(pool.submit(watch_health, request))
        return started[-1]

    try:
        yield start
    finally:

        def stop_all() -> bool:
            with contextlib.suppress(ResourceNotFound):
                stop_watching(testbed, joined)
            return all(f.done() for f in started)

        poll_until(stop_all, bool, timeout=120, interval=1, waiting_for="the watchers to stop")
        pool.shutdown(wait=True)


def lease(testbed: TestbedSpec, federation: str) -> Lease | None:
    try:
        obj = get(
            client_for(testbed.host),
            LEASE_API,
            "Lease",
            watch_lease_name(federation),
            f"{federation}-system",
        )
    except ResourceNotFound:
        return None
    return Lease.from_object(obj)


def stop_watching(testbed: TestbedSpec, federation: str) -> None:
    """Take the lease away: the watcher notices within a third of the lease's duration and
    stops (what an operator can do too)."""
    delete(
        client_for(testbed.host),
        LEASE_API,
        "Lease",
        watch_lease_name(federation),
        f"{federation}-system",
    )


def registry(testbed: TestbedSpec, federation: str) -> dict[str, MemberCluster]:
    objs = list_objects(
        client_for(testbed.host), API_VERSION, "MemberCluster", f"{federation}-system"
    )
    return {o["metadata"]["name"]: MemberCluster.from_object(o) for o in objs}


GETS_PER_PROBE = 5
"""The most GETs one probe sends a member: /readyz, discovery of v1 and apps/v1, two lists."""


def gets_to(federation: str, member: str) -> int:
    """GETs the watcher sent to a member (under its block's name)."""
    return REQUESTS[(f"{federation}-{member}", "GET")]


def wait_rounds(federation: str, member: str, rounds: int) -> None:
    """Wait until the watcher has probed ``member``, which answers, ``rounds`` more times."""
    start_count = gets_to(federation, member)
    poll_until(
        lambda: gets_to(federation, member) - start_count,
        lambda n: n >= rounds * GETS_PER_PROBE,
        timeout=rounds * 5 + 20,
        interval=0.2,
        waiting_for=f"{rounds} probe rounds of {member}",
    )


def watching(testbed: TestbedSpec, federation: str) -> str:
    """Wait until a watcher holds the federation's lease; its holder."""
    found = poll_until(
        lambda: lease(testbed, federation),
        lambda got: got is not None and got.holder is not None,
        timeout=60,
        interval=0.2,
        waiting_for="a watcher holding the lease",
    )
    assert found is not None and found.holder is not None
    return found.holder


def events(federation: str, prefix: str = "fleetflow.") -> list[ReceivedEvent]:
    """The federation's fleetflow events from the Prefect API, oldest first."""
    query = EventFilter(
        event=EventNameFilter(prefix=[prefix]),
        resource=EventResourceFilter(
            labels=ResourceSpecification({"fleetflow.federation": federation})
        ),
    )
    with get_client(sync_client=True) as prefect:
        page = prefect.read_events(filter=query, limit=50)
    return sorted(page.events, key=lambda e: e.occurred)


def wait_event(federation: str, name: str, member: str, timeout: float = 60) -> ReceivedEvent:
    def look() -> list[ReceivedEvent]:
        return [
            e
            for e in events(federation)
            if e.event == name and e.resource.get("fleetflow.member") == member
        ]

    found = poll_until(
        look, bool, timeout=timeout, interval=0.5, waiting_for=f"{name} for {member}"
    )
    return found[0]


def host_patches() -> int:
    return REQUESTS[("host", "PATCH")]


def test_readyz_with_the_members_token_and_with_an_admin_kubeconfig(
    joined: str, testbed: TestbedSpec
) -> None:
    member = testbed.members[0].name
    token_block = KubeCluster.load(f"{joined}-{member}")
    admin_block = KubeCluster.load(member)
    assert isinstance(token_block, KubeCluster) and isinstance(admin_block, KubeCluster)
    assert token_block.token is not None and token_block.kubeconfig is None
    assert admin_block.kubeconfig is not None
    for block in (token_block, admin_block):
        answer = readyz(block.credentials(), timeout=2)
        assert answer.ok, answer
        assert answer.seconds < 2
    port_closed = token_block.credentials().model_copy(
        update={"api_url": "https://127.0.0.1:1", "name": "nowhere"}
    )
    answer = readyz(port_closed, timeout=1)
    assert not answer.ok and "cannot connect" in answer.detail


def test_a_flapping_member_or_a_rotated_token_turns_nothing_unhealthy(
    joined: str, testbed: TestbedSpec, watchers: Start
) -> None:
    """A member down for less than the policy's 10 s, and a member whose token was rotated
    under a running watcher (seen on make up: the watcher kept the token it read at its start,
    the rotation revoked it, and the member turned Unhealthy within 10 s; rotating every member
    made every one Unhealthy and a rebalance stopped every replica): neither is Unhealthy."""
    flapper, rotated = testbed.members[1].name, testbed.members[0].name
    run = watchers(300)
    watching(testbed, joined)
    wait_rounds(joined, flapper, 2)
    seen: set[Health] = set()
    try:
        for _ in range(2):  # down for about 4 s each time: less than the 10 s it takes
            bed.fault(flapper, bed.Fault.KILL_APISERVER, progress=lambda m: None)
            bed.fault(flapper, bed.Fault.START_CLUSTER, progress=lambda m: None)

            def health() -> Health | None:
                entry = registry(testbed, joined)[flapper]
                if entry.status.health:
                    seen.add(entry.status.health)
                return entry.status.health

            poll_until(
                health,
                lambda h: h is Health.HEALTHY,
                timeout=30,
                interval=0.2,
                waiting_for=f"{flapper} Healthy again",
            )
            wait_rounds(joined, flapper, 2)
    finally:
        bed.fault(flapper, bed.Fault.START_CLUSTER, progress=lambda m: None)
    rotate_credentials(RotateRequest(federation=joined, member=rotated))  # old token refused
    wait_rounds(joined, rotated, 2)  # the first with the refused token: an event, were it failed
    stop_watching(testbed, joined)
    report = run.result(timeout=30)
    assert report.held_lease
    assert [e.event for e in report.events if e.member == rotated] == []
    assert registry(testbed, joined)[rotated].status.health is Health.HEALTHY
    names = [e.event for e in report.events if e.member == flapper]
    assert MEMBER_UNHEALTHY not in names and names, names  # Suspect, then Healthy again
    assert set(names) <= {"fleetflow.member.suspect", "fleetflow.member.healthy"}
    assert Health.UNHEALTHY not in seen
    assert all(e.event != MEMBER_UNHEALTHY for e in events(joined))
    assert all(not e.event.startswith("fleetflow.region.") for e in events(joined))


def test_a_stopped_member_is_unhealthy_within_30s_writes_only_changes_and_recovers(
    joined: str, testbed: TestbedSpec, watchers: Start
) -> None:
    victim = next(m for m in testbed.members if m.region == "eu-west")  # alone in its region
    run = watchers(300)
    watching(testbed, joined)
    wait_rounds(joined, victim.name, 2)  # settled: nodes and health recorded
    before = host_patches()
    wait_rounds(joined, victim.name, 3)
    assert host_patches() == before  # quiet rounds write nothing

    stopped_at = datetime.now(UTC)
    try:
        bed.fault(victim.name, bed.Fault.STOP_CLUSTER, progress=lambda m: None)
        unhealthy = wait_event(joined, MEMBER_UNHEALTHY, victim.name, timeout=DETECTION_TARGET + 15)
        detected = (unhealthy.occurred - stopped_at).total_seconds()
        print(f"stop -> {MEMBER_UNHEALTHY}: {detected:.1f}s")
        assert detected < DETECTION_TARGET
        assert unhealthy.resource.id == f"fleetflow.member.{joined}.{victim.name}"
        assert unhealthy.resource.get("fleetflow.federation") == joined
        assert unhealthy.resource.get("fleetflow.member") == victim.name
        assert unhealthy.resource.get("fleetflow.region") == victim.region
        entry = registry(testbed, joined)[victim.name]
        assert entry.status.health is Health.UNHEALTHY  # written before the event
        assert host_patches() - before == 2  # Suspect, then Unhealthy: one write each
        region = poll_until(
            lambda: [e for e in events(joined, REGION_UNHEALTHY) if e.event == REGION_UNHEALTHY],
            bool,
            timeout=15,
            interval=0.5,
            waiting_for="the region's unhealthy event",
        )
        assert [e.resource.get("fleetflow.region") for e in region] == [victim.region]

        # With the watcher holding its lease, a rebalance takes this health as it is.
        REQUESTS.clear()
        report = rebalance_replicas(RebalanceRequest(federation=joined, namespace="none"))
        assert "members' health as the health watcher recorded it" in report.notes
        assert f"{victim.name}: Unhealthy" in report.notes
        assert REQUESTS[("host", "PATCH")] == 0
    finally:
        bed.fault(victim.name, bed.Fault.START_CLUSTER, progress=lambda m: None)
    restarted_at = datetime.now(UTC)
    recovered = wait_event(joined, MEMBER_RECOVERED, victim.name, timeout=60)
    print(
        f"start -> {MEMBER_RECOVERED}: {(recovered.occurred - restarted_at).total_seconds():.1f}s"
    )
    assert registry(testbed, joined)[victim.name].status.health is Health.HEALTHY
    poll_until(
        lambda: events(joined, REGION_RECOVERED),
        bool,
        timeout=30,
        interval=0.5,
        waiting_for="the region's recovery event",
    )
    stop_watching(testbed, joined)
    report = run.result(timeout=30)
    assert "the lease was lost (deleted, or renewals failed); stopped" in report.notes
    member_events = [e.event for e in report.events if e.member == victim.name]
    assert member_events == [
        "fleetflow.member.suspect",
        MEMBER_UNHEALTHY,
        "fleetflow.member.recovering",
        MEMBER_RECOVERED,
    ]


def test_two_watchers_only_one_probes_and_the_next_takes_over_without_a_gap(
    joined: str, testbed: TestbedSpec, watchers: Start
) -> None:
    first = watchers(14)
    holder = watching(testbed, joined)
    member = testbed.members[0].name
    wait_rounds(joined, member, 1)
    second = watchers(30)  # waits for the lease
    third = watchers(5)  # its window ends before the first lets go: it never probes
    a, c = first.result(timeout=60), third.result(timeout=60)
    b = second.result(timeout=90)
    assert a.held_lease and a.watcher == holder and b.held_lease
    assert not c.held_lease and c.rounds == []
    assert a.released is not None and b.acquired is not None
    assert all(t < b.rounds[0] for t in a.rounds)  # never both at once
    assert b.acquired >= a.released
    takeover = (b.acquired - a.released).total_seconds()
    gap = (b.rounds[0] - a.rounds[-1]).total_seconds()
    print(f"handover: lease free for {takeover:.2f}s, rounds {gap:.2f}s apart (interval 2s)")
    assert takeover < 1.5
    assert gap < 2 + 2.0  # at most one interval plus the takeover
    after = lease(testbed, joined)
    assert after is not None and after.holder is None  # released at the end


def test_a_quiet_watch_costs_prefect_a_few_task_runs_whatever_its_rounds(
    joined: str, watchers: Start
) -> None:
    """Probes are not task runs: a watch of many rounds leaves Prefect its start (the lease
    wait, the region memory, the first registry read), a registry write per change, and its
    end. With a task run per probe, a stack left alone for 3.5 hours grew Prefect's SQLite by
    1.39 GB."""
    report = watchers(12, interval=1).result(timeout=90)
    assert report.held_lease and len(report.rounds) >= 8, report.summary()
    steps = recorded_task_runs(UUID(report.watcher), at_least=3)
    names = sorted(r.name for r in steps)
    print(f"a watch of {len(report.rounds)} rounds: {len(steps)} task runs: {names}")
    assert {n.rpartition("-")[0] for n in names} <= {
        "wait_for_lease",
        "last_region_events",
        "list_members",
        "write_statuses",
    }, names
    assert len(steps) <= 4 + len(report.events), names  # the first round records each member
    run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(report.watcher)]))
    with get_client(sync_client=True) as prefect:
        lines = prefect.read_logs(run)
    print(f"... and {len(lines)} log lines")
    assert len(lines) < 10 + len(report.events), [line.message[:60] for line in lines]
