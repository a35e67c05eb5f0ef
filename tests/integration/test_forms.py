"""The forms the UI renders from the deployments: block pickers whose choice the server accepts
and the flow turns back into the block's name, validation the server enforces before a run
exists, and a final state that says what the run did."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.exceptions import PrefectHTTPStatusError

from fleetflow.blocks import Federation
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.stack import Stack

pytestmark = pytest.mark.integration


def _form(client: SyncPrefectClient, deployment: str, model: str) -> dict[str, Any]:
    schema = client.read_deployment_by_name(deployment).parameter_openapi_schema or {}
    properties: dict[str, Any] = schema["definitions"][model]["properties"]
    return properties


def test_block_fields_render_as_pickers_of_saved_blocks(
    deployed: Stack, client: SyncPrefectClient
) -> None:
    rebalance = _form(client, "rebalance-replicas/rebalance", "RebalanceRequest")
    assert rebalance["federation"]["block_type_slug"] == "fleetflow-federation"
    join = _form(client, "join-cluster/join", "JoinRequest")
    assert join["federation"]["block_type_slug"] == "fleetflow-federation"
    assert join["admin_block"]["block_type_slug"] == "fleetflow-kube-cluster"
    bootstrap = _form(client, "bootstrap-control-plane/bootstrap", "BootstrapRequest")
    assert bootstrap["host_cluster"]["block_type_slug"] == "fleetflow-kube-cluster"
    taint = _form(client, "taint-member/taint", "TaintRequest")
    assert taint["federation"]["block_type_slug"] == "fleetflow-federation"
    assert taint["add"]["type"] == "array" and taint["add"]["items"]["type"] == "string"
    assert "NoExecute" in taint["add"]["description"]
    # A name that is not a block stays a plain, validated text field.
    assert "block_type_slug" not in join["member"] and join["member"]["type"] == "string"


def test_a_picked_block_runs_by_its_name_and_bad_input_creates_no_run(
    deployed: Stack, client: SyncPrefectClient, federation: str
) -> None:
    block = Federation.load(federation)
    picked = {"$ref": {"block_document_id": str(block._block_document_id)}}
    deployment = client.read_deployment_by_name("rebalance-replicas/rebalance")

    # The server checks the parameters against the form's schema before it creates a run.
    runs = client.count_flow_runs()
    for bad in (
        {"max_moves": 0},
        {"wait_timeout": -1},
        {"surprise": True},
        # A namespace or name is one segment of an API path, never a path of its own.
        {"namespace": "shop/federateddeployments?labelSelector=#"},
        {"namespace": ".."},
        {"name": "../../../api/v1/secrets"},
    ):
        with pytest.raises(PrefectHTTPStatusError) as refused:
            client.create_flow_run_from_deployment(
                deployment.id, parameters={"request": {"federation": picked, **bad}}
            )
        assert refused.value.response.status_code in (409, 422), refused.value.response.text
    assert client.count_flow_runs() == runs

    # What the UI sends when a block is picked is accepted as is (no secret in it)...
    parameters = {"request": {"federation": picked, "dry_run": True}}
    run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    assert run.parameters == parameters
    client.delete_flow_run(run.id)

    # ...and the flow loads the picked block and works on the federation it names.
    validated = rebalance_replicas.validate_parameters(parameters)
    assert validated["request"].federation == federation
    state = rebalance_replicas(**validated, return_state=True)
    assert state.is_completed(), state
    assert state.message == f"rebalance {federation}: nothing to change (dry run)"


def test_the_taint_form_refuses_a_malformed_taint_before_a_run_exists(
    deployed: Stack, client: SyncPrefectClient, federation: str
) -> None:
    deployment = client.read_deployment_by_name("taint-member/taint")
    runs = client.count_flow_runs()
    request = {"federation": federation, "member": "us-east-1", "add": ["maintenance"]}
    with pytest.raises(PrefectHTTPStatusError) as refused:
        client.create_flow_run_from_deployment(deployment.id, parameters={"request": request})
    assert refused.value.response.status_code in (409, 422), refused.value.response.text
    assert client.count_flow_runs() == runs
