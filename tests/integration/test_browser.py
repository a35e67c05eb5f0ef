"""The Prefect UI as fleetflow's console, in a real browser: a person finds the rebalance
deployment, starts a custom run through its parameter form (the federation picked by name, the
namespace and max moves changed), and sees the run complete, its log lines and its plan.

A screenshot of every step is the test's output: under the test's tmp dir and copied to
``<basetemp>/test-artifacts/browser/`` with the measured times in ``timings.txt``; the test
prints where. A missing Chromium or Playwright fails the test; it never skips.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.settings import PREFECT_API_URL

from fleetflow.kube import apply, get
from fleetflow.stack import Stack, start_worker
from fleetflow.testbed.demo import federated_deployment
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.browser import (
    WORKER_LOGGER,
    CustomRun,
    Outcome,
    Screens,
    chromium,
    describe,
    missing,
    run_logs,
    start_and_follow,
    timings,
    ui_for,
)
from tests.integration.conftest import client_for, quiet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def browser_ready() -> None:
    """Checked before the test bed starts: no clusters are built for a browser that is not
    there."""
    reason = missing()
    if reason:
        pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def ui(
    browser_ready: None, prefect_server: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The UI of the session's Prefect server, whose test harness serves the API only."""
    log = tmp_path_factory.getbasetemp() / "prefect-ui.log"
    with ui_for(str(PREFECT_API_URL.value()), log) as url:
        yield url


def test_a_rebalance_started_from_the_ui_form_completes_with_its_logs_and_plan(
    ui: str,
    deployed: Stack,
    joined: str,
    namespace: str,
    testbed: TestbedSpec,
    client: SyncPrefectClient,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b, c = (m.name for m in testbed.members)
    apply(
        client_for(testbed.host),
        federated_deployment(
            joined, "web", namespace, 4, placement={"weights": {a: 2, b: 1, c: 1}}
        ),
    )
    # As under `fleetflow up`, a worker is already waiting when the person clicks.
    start_worker(deployed, progress=quiet)
    run = CustomRun(
        flow="rebalance-replicas",
        deployment="rebalance",
        block_fields={"Federation": joined},
        text_fields={"Namespace": namespace},
        number_fields={"Max Moves": 3},
    )
    workload = f"{namespace}/web"
    outcome = Outcome(
        # The flow's own last line, naming the federation picked in the form.
        log_line=f"Finished in state Completed('rebalance {joined}",
        artifacts=["rebalance-plan", "rebalance-summary"],
        table="rebalance-plan",
        # workload, cluster, current, desired
        rows=[(workload, a, "0", "2"), (workload, b, "0", "1"), (workload, c, "0", "1")],
    )

    screens = Screens(tmp_path / "browser")
    output = tmp_path_factory.getbasetemp() / "test-artifacts" / "browser"
    blocked: list[str] = []
    try:
        with chromium(tmp_path / "profile", blocked) as context:
            page = context.new_page()
            try:
                journey = start_and_follow(
                    page, ui, str(PREFECT_API_URL.value()), run, outcome, screens
                )
            except Exception:
                # Where it stopped; a page too broken to photograph must not hide why.
                with contextlib.suppress(Exception):
                    screens.take(page, "failed")
                raise
    finally:
        screens.copy_to(output)
        with capsys.disabled():
            print(f"\nscreenshots of each step: {output}")

    flow_run = client.read_flow_run(UUID(journey.flow_run_id))
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    request = flow_run.parameters["request"]
    assert (request["namespace"], request["max_moves"]) == (namespace, 3), request
    picked = request["federation"]
    if isinstance(picked, dict):  # a picker sends a reference to the saved block
        picked = client.read_block_document(UUID(picked["$ref"]["block_document_id"])).name
    assert picked == joined, request
    # The run did what its plan said: the workload's Deployments are in the members, 2:1:1.
    spread = {
        m: get(client_for(m), "apps/v1", "Deployment", "web", namespace)["spec"]["replicas"]
        for m in (a, b, c)
    }
    assert spread == {a: 2, b: 1, c: 1}

    logs = run_logs(client, journey.flow_run_id)
    names = {log.name for log in logs}
    assert WORKER_LOGGER in names and names - {WORKER_LOGGER}, "the worker's lines and the run's"
    figures = describe(timings(journey, logs))
    (output / "timings.txt").write_text(figures)
    with capsys.disabled():
        print(figures, end="")
        if blocked:
            print(f"requests refused (they would leave the machine): {len(blocked)}, {blocked[0]}")
