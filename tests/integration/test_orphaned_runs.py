"""Runs whose process is gone: a stack stopped (or a machine that went down) while its worker ran
flows leaves them Pending or Running in Prefect for ever. A run that held its deployment's
concurrency slot then holds it for ever too, and no later run of that deployment starts (measured
on a stack restarted with a rebalance in flight: every 5-minute rebalance waited, for good). The
stack marks them Crashed when its worker stops and before a new worker starts."""

from __future__ import annotations

import os
import subprocess
import uuid
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.states import Crashed, Pending, Running

from fleetflow.stack import ORPHANED, Stack, crash_orphans, stop_runs
from tests.integration.conftest import quiet

pytestmark = pytest.mark.integration

# A deployment of concurrency 1, as the stack deploys it; its runs are never started here.
DEPLOYMENT = "bootstrap-control-plane/bootstrap"


def _new_run(client: SyncPrefectClient) -> FlowRun:
    deployment = client.read_deployment_by_name(DEPLOYMENT)
    request = {"federation": f"o{uuid.uuid4().hex[:8]}", "host_cluster": "nowhere", "dry_run": True}
    return client.create_flow_run_from_deployment(deployment.id, parameters={"request": request})


def _state(client: SyncPrefectClient, run: FlowRun) -> StateType | None:
    state = client.read_flow_run(run.id).state
    return state.type if state else None


def _propose(client: SyncPrefectClient, run: FlowRun, state: State[Any]) -> State[Any]:
    """Propose ``state`` through the server's orchestration rules; the state it set."""
    result = client.set_flow_run_state(run.id, state)
    assert result.state is not None, result
    return result.state


def _dead_pid() -> str:
    done = subprocess.Popen(["true"])
    done.wait()
    return str(done.pid)


def test_runs_whose_process_is_gone_are_crashed_and_free_their_concurrency_slot(
    deployed: Stack, client: SyncPrefectClient
) -> None:
    holder, waiting, alive = _new_run(client), _new_run(client), _new_run(client)
    try:
        # The holder takes the deployment's one slot as a worker's submission does...
        assert _propose(client, holder, Pending()).type is StateType.PENDING
        client.update_flow_run(holder.id, infrastructure_pid=_dead_pid())
        # ...so the next run of the deployment waits for it: the wedge.
        refused = _propose(client, waiting, Pending())
        assert (refused.type, refused.name) == (StateType.SCHEDULED, "AwaitingConcurrencySlot")
        # A run whose process is alive (this one's) is left alone.
        client.set_flow_run_state(alive.id, Running(), force=True)
        client.update_flow_run(alive.id, infrastructure_pid=f"localhost:{os.getpid()}")

        crashed = crash_orphans(deployed, progress=quiet)

        assert holder.name in crashed and alive.name not in crashed
        assert _state(client, holder) is StateType.CRASHED
        message = client.read_flow_run(holder.id).state.message  # type: ignore[union-attr]
        assert message == ORPHANED
        assert _state(client, alive) is StateType.RUNNING
        # The slot is free again: the waiting run may start now.
        assert _propose(client, waiting, Pending()).type is StateType.PENDING
        # A second sweep finds the waiting run without a process too (no worker runs here).
        assert waiting.name in crash_orphans(deployed, progress=quiet)
    finally:
        for run in (holder, waiting, alive):  # never left for a later worker to pick up
            if _state(client, run) is not StateType.CRASHED:
                client.set_flow_run_state(run.id, Crashed(), force=True)


def test_down_stops_the_runs_a_stopped_worker_left_running(
    deployed: Stack, client: SyncPrefectClient
) -> None:
    """A process worker starts each run in a session of its own, so stopping the worker left
    them running: a health watcher outlived ``fleetflow down`` by minutes, probed the next
    ``up``'s clusters with the last one's tokens, and ``up`` took it for a live watcher."""
    run, mine = _new_run(client), _new_run(client)
    process = subprocess.Popen(["sleep", "600"], start_new_session=True)  # as the worker starts it
    inside = subprocess.Popen(["sleep", "600"])  # alive, in this process's session
    try:
        client.set_flow_run_state(run.id, Running(), force=True)
        client.update_flow_run(run.id, infrastructure_pid=f"localhost:{process.pid}")
        # A recorded pid that is alive but leads no session of its own is never signalled.
        client.set_flow_run_state(mine.id, Running(), force=True)
        client.update_flow_run(mine.id, infrastructure_pid=f"localhost:{inside.pid}")

        assert stop_runs(deployed, progress=quiet) == [run.name]

        with pytest.raises(ProcessLookupError):
            os.kill(process.pid, 0)
        assert run.name in crash_orphans(deployed, progress=quiet)
        assert _state(client, run) is StateType.CRASHED
        assert _state(client, mine) is StateType.RUNNING and inside.poll() is None
    finally:
        process.kill()
        inside.kill()
        for each in (run, mine):
            if _state(client, each) is not StateType.CRASHED:
                client.set_flow_run_state(each.id, Crashed(), force=True)
