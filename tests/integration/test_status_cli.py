"""``fleetflow status`` as a user runs it: the host's federated workloads and objects, with the
states their statuses record, as a table and as JSON; bad input is one line."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from pydantic import SecretStr

from fleetflow.controlplane import API_VERSION, federated_deployment_crd
from fleetflow.errors import ResourceNotFound
from fleetflow.federated import ClusterPlacement, FederatedDeployment, FederatedDeploymentStatus
from fleetflow.flows.status_report import publish_status
from fleetflow.kube import ClusterApiClient, apply, delete, get, list_objects
from fleetflow.objects import FederatedObject, FederatedObjectStatus, MemberObjectStatus
from fleetflow.objects import MemberState as M
from fleetflow.polling import poll_until
from fleetflow.status import markdown, status_rows, summary
from fleetflow.testbed.demo import federated_deployment, federated_object
from fleetflow.testbed.spec import TestbedSpec
from fleetflow.wire import Condition
from tests.integration.conftest import client_for, fleetflow

pytestmark = pytest.mark.integration

OBJECT_CRD = "federatedobjects.fleetflow.io"
CRD_API = "apiextensions.k8s.io/v1"


def has_object_kind(host: ClusterApiClient) -> bool:
    try:
        get(host, CRD_API, "CustomResourceDefinition", OBJECT_CRD)
    except ResourceNotFound:
        return False
    return True


def put_workloads(
    host: ClusterApiClient, federation: str, namespace: str, members: list[str]
) -> None:
    """``web`` with a status as a rebalance leaves it (one replica unplaced), ``api`` with
    none yet."""
    a, b, c = members
    apply(host, federated_deployment(federation, "web", namespace, 6))
    apply(host, federated_deployment(federation, "api", namespace, 1))
    web = FederatedDeployment.from_object(
        get(host, API_VERSION, "FederatedDeployment", "web", namespace)
    )
    status = FederatedDeploymentStatus(
        observed_generation=web.generation,
        clusters=[
            ClusterPlacement(name=a, desired=3, ready=3),
            ClusterPlacement(name=b, desired=2, ready=1),
            ClusterPlacement(name=c, desired=0, ready=0),
        ],
        unplaced=1,
        conditions=[Condition(type="Planned", status="True", reason="Placed")],
    )
    apply(host, web.model_copy(update={"status": status}).status_patch(), subresource="status")


def put_objects(
    host: ClusterApiClient, federation: str, namespace: str, members: list[str]
) -> None:
    """A ConfigMap in three states, a Secret (whose data must never be shown) and a template
    the host accepts but fleetflow cannot federate (a cluster-scoped kind)."""
    a, b, c = members
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"}}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "stringData": {"password": "hunter2-do-not-print"},
    }
    cluster_scoped = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "nope"}}
    apply(host, federated_object(federation, namespace, config, name="web-config"))
    apply(host, federated_object(federation, namespace, secret, name="db"))
    apply(host, federated_object(federation, namespace, cluster_scoped, name="wrong"))
    fo = FederatedObject.from_object(
        get(host, API_VERSION, "FederatedObject", "web-config", namespace)
    )
    status = FederatedObjectStatus(
        observed_generation=fo.generation,
        clusters=[
            MemberObjectStatus(name=a, state=M.APPLIED),
            MemberObjectStatus(
                name=b, state=M.CONFLICT, message="a ConfigMap web-config not managed by us"
            ),
            MemberObjectStatus(name=c, state=M.UNREACHABLE, message=f"{c} did not answer"),
        ],
    )
    apply(host, fo.model_copy(update={"status": status}).status_patch(), subresource="status")


def test_status_shows_each_workload_and_object_on_each_member(
    federation: str, testbed: TestbedSpec, members: list[str], namespace: str, tmp_path: Path
) -> None:
    a, b, c = members
    assert sorted(members) == [c, a, b]  # the order rows come in: members by name
    host = client_for(testbed.host)
    objects = has_object_kind(host)
    put_workloads(host, federation, namespace, members)
    if objects:
        put_objects(host, federation, namespace, members)

    shown = fleetflow("status", "--federation", federation, "--json", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    rows = [r for r in json.loads(shown.stdout) if r["namespace"] == namespace]
    got = [(r["kind"], r["name"], r["member"], r["state"], r["ready"], r["desired"]) for r in rows]
    expected = [
        ("FederatedDeployment", "api", None, "Pending", None, None),
        ("FederatedDeployment", "web", None, "Unplaced", None, None),
        ("FederatedDeployment", "web", c, "Idle", 0, 0),
        ("FederatedDeployment", "web", a, "Ready", 3, 3),
        ("FederatedDeployment", "web", b, "Progressing", 1, 2),
    ]
    if objects:
        expected += [
            ("FederatedObject", "db", None, "Pending", None, None),
            ("FederatedObject", "web-config", c, "Unreachable", None, None),
            ("FederatedObject", "web-config", a, "Applied", None, None),
            ("FederatedObject", "web-config", b, "Conflict", None, None),
            ("FederatedObject", "wrong", None, "Invalid", None, None),
        ]
        (wrong,) = [r for r in rows if r["name"] == "wrong"]
        assert wrong["template_kind"] == "Namespace"
        assert "cluster-scoped" in wrong["message"]
        assert shown.stderr == ""
    else:
        assert shown.stderr.startswith("note: the host ") and "no FederatedObject kind" in (
            shown.stderr
        )
    assert got == expected

    table = fleetflow("status", "--federation", federation, "--namespace", namespace, home=tmp_path)
    assert table.returncode == 0, table.stderr
    out = table.stdout
    assert max(len(line) for line in out.splitlines()) <= 100, out
    for line in (
        rf"{namespace}\s+api\s+Deployment\s+-\s+Pending\s+not propagated yet: the next run "
        "places it",
        rf"{namespace}\s+web\s+Deployment\s+-\s+Unplaced\s+1 replica fits on no member",
        rf"{namespace}\s+web\s+Deployment\s+{a}\s+Ready\s+3/3",
        rf"{namespace}\s+web\s+Deployment\s+{b}\s+Progressing\s+1/2",
        rf"{namespace}\s+web\s+Deployment\s+{c}\s+Idle\s+0/0",
    ):
        assert re.search(f"^{line}$", out, re.MULTILINE), (line, out)
    if objects:
        for line in (
            rf"{namespace}\s+web-config\s+ConfigMap\s+{b}\s+Conflict\s+a ConfigMap web-config "
            "not managed by us",
            rf"{namespace}\s+db\s+Secret\s+-\s+Pending\s+.*",
        ):
            assert re.search(f"^{line}$", out, re.MULTILINE), (line, out)
        assert "\n2 workloads, 3 objects; 5 not settled: " in out
        assert "hunter2" not in out + shown.stdout
    else:
        assert out.splitlines()[-1].startswith("note: the host ")


def test_an_empty_namespace_shows_nothing_federated(
    federation: str, tmp_path: Path, namespace: str
) -> None:
    shown = fleetflow(
        "status", "--federation", federation, "--namespace", namespace, "--json", home=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == []


def test_an_unknown_federation_is_one_line_and_exit_2(
    admin_blocks: list[str], tmp_path: Path
) -> None:
    name = f"nope-{uuid.uuid4().hex[:6]}"
    shown = fleetflow("status", "--federation", name, home=tmp_path)
    assert shown.returncode == 2
    assert shown.stdout == ""
    assert shown.stderr.startswith(f"error: no Federation block named {name!r}: ")
    assert len(shown.stderr.splitlines()) == 1, shown.stderr


def test_an_unreachable_host_is_one_line_without_its_token(
    admin_blocks: list[str], tmp_path: Path
) -> None:
    from fleetflow.blocks import Federation, KubeCluster

    name = f"gone-{uuid.uuid4().hex[:6]}"
    token = f"secret-token-{uuid.uuid4().hex}"
    # Port 9 refuses connections: the host cannot be listed.
    KubeCluster(api_url="https://127.0.0.1:9", token=SecretStr(token)).save(name)
    Federation(name=name, host_cluster=name).save(name)
    try:
        shown = fleetflow("status", "--federation", name, home=tmp_path)
    finally:
        Federation.delete(name)
        KubeCluster.delete(name)
    assert shown.returncode == 2
    assert shown.stderr.startswith(f"error: cluster {name!r}: "), shown.stderr
    assert len(shown.stderr.splitlines()) == 1, shown.stderr
    assert token not in shown.stdout + shown.stderr


def test_a_host_bootstrapped_before_federated_objects_shows_its_workloads_and_a_note(
    admin_blocks: list[str], members: list[str], tmp_path: Path
) -> None:
    """A member cluster of the test bed stands in for an old host: first with no fleetflow
    kind at all, then with the FederatedDeployment kind alone (as bootstrap installed it
    before FederatedObject existed)."""
    from fleetflow.blocks import Federation

    old_host = members[-1]
    api = client_for(old_host)
    name = f"old-{uuid.uuid4().hex[:6]}"
    crd = federated_deployment_crd()
    Federation(name=name, host_cluster=old_host).save(name)
    try:
        bare = fleetflow("status", "--federation", name, home=tmp_path)
        assert bare.returncode == 2
        assert bare.stderr == (
            f"error: the host {old_host!r} has no FederatedDeployment kind: install the "
            "federation's control plane first (`fleetflow bootstrap`)\n"
        )

        apply(api, crd)
        poll_until(
            lambda: get(api, CRD_API, "CustomResourceDefinition", crd["metadata"]["name"]),
            lambda found: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (found.get("status") or {}).get("conditions") or []
            ),
            timeout=60,
            waiting_for=f"the FederatedDeployment CRD Established in {old_host}",
        )
        apply(api, federated_deployment(name, "web", "default", 2))
        shown = fleetflow("status", "--federation", name, home=tmp_path)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[:3] == [
            "WORKLOADS (FederatedDeployment)",
            "NAMESPACE  NAME  KIND        MEMBER  STATE    READY  MESSAGE",
            "default    web   Deployment  -       Pending         not propagated yet: the next run "
            "places it",
        ]
        assert "OBJECTS" not in shown.stdout
        assert lines[-1] == (
            f"note: the host {old_host!r} has no FederatedObject kind yet (bootstrapped by an "
            "older fleetflow): workloads only; run `fleetflow bootstrap` again to add it"
        )
    finally:
        Federation.delete(name)
        delete(api, CRD_API, "CustomResourceDefinition", crd["metadata"]["name"])


def test_a_run_publishes_the_same_tables_as_the_federation_status_artifact(
    federation: str,
    testbed: TestbedSpec,
    members: list[str],
    namespace: str,
    client: SyncPrefectClient,
) -> None:
    host = client_for(testbed.host)
    put_workloads(host, federation, namespace, members)
    workloads = [
        FederatedDeployment.from_object(o)
        for o in list_objects(host, API_VERSION, "FederatedDeployment", namespace)
    ]
    rows = status_rows(workloads)

    @flow
    def report_status() -> None:
        publish_status(rows)

    state = report_status(return_state=True)
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    (artifact,) = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["federation-status"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
        )
    )
    assert artifact.type == "markdown"
    assert artifact.data == markdown(rows)
    line = f"| {namespace} | web | Deployment | {members[1]} | Progressing | 1/2 |  |"
    assert line in str(artifact.data)
    assert artifact.description == summary(rows)


def test_federation_may_be_left_out_when_fleetflow_federation_names_one(
    federation: str, tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETFLOW_FEDERATION", federation)
    shown = fleetflow("status", "--namespace", namespace, "--json", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == []
    assert f"note: federation {federation!r} (FLEETFLOW_FEDERATION)" in shown.stderr


def test_leaving_federation_out_among_several_is_one_line(
    federation: str, admin_blocks: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetflow.blocks import Federation

    other = f"other-{uuid.uuid4().hex[:6]}"
    Federation(name=other, host_cluster=admin_blocks[0]).save(other)
    monkeypatch.delenv("FLEETFLOW_FEDERATION", raising=False)
    try:
        shown = fleetflow("status", home=tmp_path)
    finally:
        Federation.delete(other)
    assert shown.returncode == 2
    assert re.match(r"error: \d+ Federation blocks are saved \(.*\): choose one", shown.stderr)
    assert other in shown.stderr and federation in shown.stderr
    assert len(shown.stderr.splitlines()) == 1, shown.stderr
