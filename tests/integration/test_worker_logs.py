"""Where a run's log lines go: a run the worker starts sends its INFO lines to the Prefect API (so
the UI shows them), whatever log level the command that started the worker had; a run the CLI
starts keeps its traceback in the API and off the terminal; a mistyped block name starts no run.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, Log
from pydantic import SecretStr

from fleetflow.blocks import KubeCluster
from fleetflow.polling import poll_until
from fleetflow.stack import Stack, start_worker
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import fleetflow, quiet

pytestmark = pytest.mark.integration


def _logs(client: SyncPrefectClient, flow_run: FlowRun) -> list[Log]:
    return client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))


def test_a_run_started_through_the_worker_sends_its_info_lines_to_the_api(
    deployed: Stack, client: SyncPrefectClient, testbed: TestbedSpec
) -> None:
    deployment = client.read_deployment_by_name("bootstrap-control-plane/bootstrap")
    request = {"federation": f"w{uuid.uuid4().hex[:8]}", "host_cluster": testbed.host}
    flow_run = client.create_flow_run_from_deployment(
        deployment.id, parameters={"request": {**request, "dry_run": True}}
    )
    start_worker(deployed, progress=quiet)

    def worker_log() -> str:
        return deployed.log_path("worker").read_text(errors="replace")[-3000:]

    finished = poll_until(
        lambda: client.read_flow_run(flow_run.id),
        lambda run: run.state is not None and run.state.is_final(),
        timeout=180,
        interval=1,
        waiting_for=f"flow run {flow_run.name!r} to finish",
        describe=lambda run: f"{run.state!r}; worker log:\n{worker_log()}",
    )
    assert finished.state is not None
    assert finished.state.is_completed(), f"{finished.state!r}\n{worker_log()}"
    # The run's last lines reach the API shortly after its final state does.
    logs = poll_until(
        lambda: _logs(client, flow_run),
        lambda logs: any(
            log.level == logging.INFO and "Finished in state Completed" in log.message
            for log in logs
        ),
        timeout=30,
        interval=0.5,
        waiting_for=f"the INFO lines of flow run {flow_run.name!r} in the API",
        describe=lambda logs: f"{[(log.level, log.message[:80]) for log in logs]}",
    )
    info = [log.message for log in logs if log.level == logging.INFO]
    assert any("Beginning flow run" in message for message in info), info


def test_a_mistyped_block_name_is_one_line_and_starts_no_run(
    client: SyncPrefectClient, tmp_path: Path
) -> None:
    runs = client.count_flow_runs()
    done = fleetflow("rebalance", "--federation", "nope", "--dry-run", home=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no Federation block named 'nope': ")
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert client.count_flow_runs() == runs


def test_a_failed_run_is_one_error_line_and_its_traceback_stays_in_the_api(
    client: SyncPrefectClient, tmp_path: Path
) -> None:
    name = f"gone-{uuid.uuid4().hex[:6]}"
    # A cluster that refuses connections: the host check fails once its retries are spent.
    KubeCluster(api_url="https://127.0.0.1:9", token=SecretStr("t")).save(name)
    try:
        done = fleetflow(
            "bootstrap", "--federation", "gone", "--host-cluster", name, "--dry-run", home=tmp_path
        )
    finally:
        KubeCluster.delete(name)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "Retry 1/" in done.stderr  # Prefect's own lines still show, one line each
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"error: cluster {name!r}: "), done.stderr
    run_name = last.split("(flow run '")[1].split("'")[0]
    (flow_run,) = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name]))
    )
    assert flow_run.state is not None and flow_run.state.is_failed()
    logs = poll_until(
        lambda: _logs(client, flow_run),
        lambda logs: any("Traceback" in log.message for log in logs),
        timeout=30,
        interval=0.5,
        waiting_for=f"the traceback of flow run {run_name!r} in the API",
        describe=lambda logs: f"{[log.message[:80] for log in logs]}",
    )
    assert any(log.level == logging.INFO for log in logs)


def test_a_successful_command_is_quiet_unless_verbose(federation: str, tmp_path: Path) -> None:
    plain = fleetflow("rebalance", "--federation", federation, "--dry-run", home=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert f"rebalance {federation}: " in plain.stdout.splitlines()[-1]
    assert "Finished in state" not in plain.stdout + plain.stderr
    assert "Beginning flow run" not in plain.stdout + plain.stderr
    loud = fleetflow(
        "rebalance", "--federation", federation, "--dry-run", "--verbose", home=tmp_path
    )
    assert loud.returncode == 0, loud.stderr
    assert "Task run 'observe_host-" in loud.stderr
    assert "Beginning flow run" in loud.stderr
