"""The control plane and membership manifests, version skew and reports: pure."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleetflow.controlplane import (
    DNS_CRD_NAME,
    LABEL_FEDERATION,
    control_plane_manifests,
    member_cluster_crd,
)
from fleetflow.health import Health, HealthState
from fleetflow.membership import (
    MEMBER_RULES,
    TOKEN_RULES,
    member_cluster,
    member_manifests,
    member_status,
    names,
    skew_problem,
    token_secret,
)
from fleetflow.models import Action, BootstrapRequest, JoinRequest, Report, Verb


def test_control_plane_installs_namespace_crds_then_rbac_in_order() -> None:
    manifests = control_plane_manifests("prod", "fleetflow-system", include_dns_crd=True)
    kinds = [m["kind"] for m in manifests]
    assert kinds[0] == "Namespace"
    assert kinds.index("RoleBinding") > kinds.index("Role") > kinds.index("ServiceAccount")
    crds = [m["metadata"]["name"] for m in manifests if m["kind"] == "CustomResourceDefinition"]
    assert crds == [
        "memberclusters.fleetflow.io",
        "federateddeployments.fleetflow.io",
        "federationoperations.fleetflow.io",
        DNS_CRD_NAME,
    ]
    without = control_plane_manifests("prod", "fleetflow-system", include_dns_crd=False)
    assert DNS_CRD_NAME not in [m["metadata"]["name"] for m in without]


def test_member_cluster_crd_has_status_and_printer_columns() -> None:
    version = member_cluster_crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == [
        "Region",
        "Zone",
        "Health",
    ]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "token" not in str(spec).lower()
    assert spec["required"] == ["federation", "credentialsBlock", "apiURL"]


def test_member_role_is_least_privilege() -> None:
    verbs = {v for rule in MEMBER_RULES for v in rule["verbs"]}
    resources = {r for rule in MEMBER_RULES for r in rule["resources"]}
    assert not {"*", "escalate", "bind", "impersonate"} & verbs
    assert "*" not in resources and "secrets" not in resources
    assert not any(r.startswith(("clusterrole", "role")) for r in resources)
    read_only = {"pods", "nodes", "replicasets", "events"}
    for rule in MEMBER_RULES:
        if set(rule["resources"]) & read_only:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}
    # Secrets only in the federation's own namespace, through a Role, never a ClusterRole.
    assert TOKEN_RULES == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "delete"]}
    ]
    role = next(m for m in member_manifests("prod") if m["kind"] == "Role")
    assert role["metadata"]["namespace"] == "fleetflow-prod"


def test_member_objects_are_labelled_and_named_per_federation() -> None:
    manifests = member_manifests("prod")
    assert [m["kind"] for m in manifests] == [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ]
    assert all(m["metadata"]["labels"][LABEL_FEDERATION] == "prod" for m in manifests)
    assert names("prod")["namespace"] != names("staging")["namespace"]
    secret = token_secret("prod", 3)
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["name"] == "fleetflow-prod-token-3"
    assert secret["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "fleetflow-prod"
    }


def test_registry_entry_names_the_block_and_holds_no_secret() -> None:
    entry = member_cluster(
        "prod",
        "fleetflow-system",
        "us-east-1",
        api_url="https://10.0.0.1:6443",
        credentials_block="prod-us-east-1",
        region="us-east",
        zone="us-east-1a",
        labels={"tier": "gold"},
        ingress_address=None,
    )
    assert entry["spec"]["credentialsBlock"] == "prod-us-east-1"
    assert "ingressAddress" not in entry["spec"]
    assert entry["metadata"]["labels"]["topology.kubernetes.io/region"] == "us-east"
    assert entry["metadata"]["labels"]["tier"] == "gold"


@pytest.mark.parametrize(
    ("host", "member", "problem"),
    [
        ("v1.36.3", "v1.36.3", None),
        ("v1.36.3", "v1.33.0", None),
        ("v1.36.3", "v1.32.9", "more than 3 minor versions apart"),
        ("v1.36.3", "v1.40.0-gke.2", "more than 3 minor versions apart"),
        ("v1.36.3", "v2.1.0", "different major versions"),
        ("v1.36.3", "v1.35+", None),
    ],
)
def test_version_skew(host: str, member: str, problem: str | None) -> None:
    found = skew_problem(host, member)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_requests_validate_names_and_forbid_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="is not a DNS label"):
        JoinRequest(federation="prod", member="US_EAST", admin_block="x")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        BootstrapRequest(federation="prod", host_cluster="h", token="oops")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        BootstrapRequest(federation="prod", host_cluster="h", dns_zone="Not A Zone")


def test_report_counts_writes_and_renders_markdown() -> None:
    report = Report(
        procedure="join x",
        dry_run=True,
        actions=[
            Action(cluster="m", kind="Namespace", name="ns", verb=Verb.CREATE),
            Action(cluster="m", kind="Role", name="r", namespace="ns", verb=Verb.UNCHANGED),
        ],
    )
    assert [a.line() for a in report.writes()] == ["m: create Namespace ns"]
    text = report.markdown()
    assert text.startswith("## join x (dry run: nothing written)")
    assert "| m | Role | ns/r | unchanged |" in text


def test_member_status_keeps_other_fields_and_the_transition_time() -> None:
    entry = {
        "metadata": {"name": "m1", "namespace": "fleetflow-system"},
        "status": {"kubernetesVersion": "v1.36.3", "nodesReady": 3},
    }
    first = member_status(entry, HealthState())["status"]
    assert first["nodesReady"] == 3 and first["kubernetesVersion"] == "v1.36.3"
    assert first["conditions"][0]["status"] == "True"
    again = member_status({**entry, "status": first}, HealthState())["status"]
    assert again == first  # steady state: nothing to send
    sick = member_status(
        {**entry, "status": first}, HealthState(health=Health.UNHEALTHY, consecutive_failures=2)
    )["status"]
    assert sick["conditions"][0]["status"] == "False" and sick["health"] == "Unhealthy"
    assert (
        member_status({**entry, "status": first}, None, nodesReady=2)["status"]["conditions"]
        == first["conditions"]
    )
