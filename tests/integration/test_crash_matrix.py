"""Killed anywhere, a procedure converges: a sample of the crash matrix (``crashes.py``), each
procedure's riskiest points chosen by name, the host's apiserver restarted under a rebalance,
two rotations at once, and a drill killed with its region down. ``bench/bench_crash_matrix.py``
runs every point, two at once for each procedure, and (``--restarts``) the Prefect server
restarted under a failover and a migration on SQLite and PostgreSQL, and the host away for
longer than a failover's lease."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fleetflow.controlplane import API_VERSION
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import a_federation
from tests.integration.crash_scenarios import scenarios
from tests.integration.crash_state import end_state, listed
from tests.integration.crashes import (
    Case,
    baseline,
    crash_case,
    leases_lapsed,
    overlap_case,
    restart_case,
    restart_host,
    run_command,
)

pytestmark = pytest.mark.integration

SAMPLE = {
    # The member registered in the host, its join not yet recorded on the entry's status (first:
    # the module's federation, once made, holds every member).
    "join": ["join/registered:write@1"],
    # Scaled up and traffic moved off c, c not yet emptied: the rerun must empty it.
    "rebalance": ["rebalance/scaled-down:before"],
    # One survivor scaled up, the other not.
    "failover": ["failover/scaled-up:write@1"],
}


@pytest.fixture(scope="module")
def fleet(admin_blocks: list[str], testbed: TestbedSpec) -> Iterator[str]:
    with a_federation(testbed, join=True, dns=True, prefix="m") as name:
        yield name


@pytest.fixture(scope="module")
def expected() -> Callable[..., tuple[dict[str, Any], list[str]]]:
    """Each scenario's uninterrupted run, once a module: its end state and the points it passed."""
    found: dict[str, tuple[dict[str, Any], list[str]]] = {}

    def of(procedure: str, fleet: str, testbed: TestbedSpec) -> tuple[dict[str, Any], list[str]]:
        if procedure not in found:
            state, points, _ = baseline(scenarios(fleet)[procedure], testbed)
            found[procedure] = (state, points)
        return found[procedure]

    return of


def _table(cases: list[Case]) -> str:
    return "\n".join(
        f"{c.point:45} {'pass' if c.passed else 'FAIL'} {c.seconds:5.1f}s {c.why}" for c in cases
    )


@pytest.mark.parametrize("procedure", list(SAMPLE))
def test_a_run_killed_at_its_riskiest_points_converges_to_an_uninterrupted_runs_end(
    procedure: str,
    testbed: TestbedSpec,
    admin_blocks: list[str],
    request: pytest.FixtureRequest,
    expected: Callable[..., tuple[dict[str, Any], list[str]]],
) -> None:
    fleet = request.getfixturevalue("fleet") if scenarios("any")[procedure].fleet else "none"
    state, points = expected(procedure, fleet, testbed)
    assert set(SAMPLE[procedure]) <= set(points), f"an uninterrupted run passes only {points}"
    scenario = scenarios(fleet)[procedure]
    cases = [crash_case(scenario, testbed, point, state) for point in SAMPLE[procedure]]
    assert all(c.passed for c in cases), "\n" + _table(cases)


def test_the_hosts_apiserver_restarted_under_a_rebalance_it_finishes_or_says_why_and_converges(
    fleet: str, testbed: TestbedSpec, expected: Callable[..., tuple[dict[str, Any], list[str]]]
) -> None:
    state, _ = expected("rebalance", fleet, testbed)
    case = restart_case(
        scenarios(fleet)["rebalance"],
        testbed,
        "rebalance/scaled-down:before",
        state,
        restart_host(testbed),
        label="host apiserver restarted",
    )
    print(_table([case]))
    assert case.passed, "\n" + _table([case])
    # Found here: the host, just restarted, refused the flows' account a list it may make (403
    # until its RBAC had loaded), and the run stopped saying it was forbidden: a user would go
    # and mend roles that were never wrong. A refusal while the host's /readyz says it is still
    # starting is now retried as the restart it is, and said so if it outlasts the retries.
    assert "(finished)" in case.point or "starting" in case.point, case.point


def test_two_rotations_of_one_member_at_once_leave_it_one_working_token(
    fleet: str, testbed: TestbedSpec, expected: Callable[..., tuple[dict[str, Any], list[str]]]
) -> None:
    """Found by the matrix's two-at-once case: each rotation revoked the other's new token, and
    the member was left with none that worked. Now the second refuses while the first runs."""
    state, _ = expected("rotate", fleet, testbed)
    case = overlap_case(scenarios(fleet)["rotate"], testbed, state)
    assert case.passed, "\n" + _table([case])


def test_a_drill_killed_with_its_region_down_and_failed_over_is_brought_back_by_the_next(
    fleet: str, testbed: TestbedSpec
) -> None:
    """A drill whose worker died once its region was stopped and failed over left its record
    Running for ever, the region's clusters stopped and the region fenced. The next drill
    starts the clusters, fails the region back, closes the record with what it found, and then
    drills; the federation ends as the killed drill found it (what a drill promises). Its
    baseline is the start itself: a drill leaves the federation as it found it."""
    scenario = scenarios(fleet)["drill"]
    c = testbed.members[-1].name
    with scenario.world(testbed) as world:
        try:
            scenario.prepare(world)
            before = end_state(world)
            killed = run_command(scenario.argv(world), "drill/failed-over:after")
            assert killed.returncode == -9, killed.stderr[-2000:]
            assert not bed.whole(c)  # the kill left the fault: the region's cluster stopped
            leases_lapsed(world)
            scenario.rerun(world)  # a new drill, as a user starts one: it passes
            assert end_state(world) == before
            records = {
                o["metadata"]["name"]: o["status"]
                for o in listed(world.host(), API_VERSION, "FederationOperation", world.system)
                if o["metadata"]["name"].startswith("drill-")
            }
            phases = sorted(s["phase"] for s in records.values())
            assert phases == ["Failed", "Succeeded"], records
            closed = next(s for s in records.values() if s["phase"] == "Failed")
            said = closed["steps"][-1]["message"]
            assert said.startswith("abandoned: its run "), said
            assert "stopped after detected" in said, said
            assert f"started {c} and failed the region back" in said, said
        finally:
            scenario.restore(world)
