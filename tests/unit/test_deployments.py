"""deployments/prefect.yaml: a deployment for every flow, entrypoints that load."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import yaml
from prefect import Flow

import fleetflow.flows

ROOT = Path(__file__).resolve().parents[2]


def _deployments() -> list[dict[str, object]]:
    found: list[dict[str, object]] = yaml.safe_load(
        (ROOT / "deployments" / "prefect.yaml").read_text()
    )["deployments"]
    return found


def test_every_flow_has_a_deployment_and_every_entrypoint_is_a_flow() -> None:
    flows = set()
    for info in pkgutil.iter_modules(fleetflow.flows.__path__):
        module = importlib.import_module(f"fleetflow.flows.{info.name}")
        flows |= {
            f"flows/{info.name}.py:{name}"
            for name, value in vars(module).items()
            if isinstance(value, Flow) and value.__module__ == module.__name__
        }
    entrypoints = {str(d["entrypoint"]) for d in _deployments()}
    assert flows - entrypoints == set(), "flows without a deployment"
    assert entrypoints - flows == set(), "deployments of no flow"


def test_automations_that_act_on_their_own_are_off_by_default() -> None:
    triggers = {
        str(d["name"]): [t for t in d.get("triggers") or []]  # type: ignore[attr-defined]
        for d in _deployments()
    }
    assert [t["enabled"] for t in triggers["failover"]] == [False]
    assert [t["enabled"] for t in triggers["failback"]] == [False]
    assert [t["expect"] for t in triggers["failover"]] == [["fleetflow.region.unhealthy"]]


def test_the_automation_for_silent_runs_is_one_prefect_accepts_and_outlasts_their_beats() -> None:
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    from fleetflow.stack import unresponsive_automation

    automation = AutomationCore.model_validate(unresponsive_automation(30))
    trigger = automation.trigger
    assert isinstance(trigger, EventTrigger) and trigger.posture is Posture.Proactive
    assert trigger.after == {"prefect.flow-run.heartbeat"} and trigger.for_each == {
        "prefect.resource.id"
    }
    # A live run beats every 30 s: only three beats missed in a row crash it, never one late.
    assert trigger.within.total_seconds() == 90
    # Every way a run ends stops the clock: a finished run is never marked Crashed.
    assert {"prefect.flow-run.Completed", "prefect.flow-run.Failed"} <= trigger.expect
    [action] = automation.actions
    assert isinstance(action, ChangeFlowRunState) and action.state is StateType.CRASHED
    assert action.message and action.message.startswith("no heartbeat for 90s")
