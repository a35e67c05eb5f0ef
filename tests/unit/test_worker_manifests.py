"""deployments/kubernetes: the worker's manifests and its work pool's base job template agree with
each other, grant no more than the worker needs, and mark every value a user must set."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parents[2] / "deployments" / "kubernetes"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def _manifests() -> list[dict[str, Any]]:
    return [m for m in yaml.safe_load_all((HERE / "worker.yaml").read_text()) if m]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [
        m
        for m in _manifests()
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    return found


def _template() -> dict[str, Any]:
    found: dict[str, Any] = json.loads((HERE / "base-job-template.json").read_text())
    return found


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_everything_lives_in_the_workers_namespace_and_nothing_is_cluster_wide() -> None:
    namespace = _one("Namespace")["metadata"]["name"]
    kinds = [m["kind"] for m in _manifests()]
    assert CLUSTER_SCOPED & set(kinds) == {"Namespace"}
    assert {m["metadata"]["namespace"] for m in _manifests() if m["kind"] != "Namespace"} == {
        namespace
    }
    assert sorted(kinds) == sorted(
        ["Namespace", "ServiceAccount", "ServiceAccount", "Role", "RoleBinding", "Deployment"]
    )


def test_the_role_is_what_prefect_kubernetes_calls_and_the_binding_names_only_the_worker() -> None:
    rules = {
        (group, resource): sorted(rule["verbs"])
        for rule in _one("Role")["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("batch", "jobs"): ["create", "delete", "get", "list", "watch"],
        ("", "pods"): ["get", "list", "watch"],
        ("", "pods/log"): ["get"],
    }
    binding = _one("RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": _one("Role")["metadata"]["name"],
    }
    namespace = _one("Namespace")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "fleetflow-worker", "namespace": namespace}
    ]


def test_the_worker_runs_as_its_account_and_its_observer_watches_its_namespace_only() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "fleetflow-worker"
    (container,) = pod["containers"]
    env = _env(container)
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    args = container["args"]
    assert args[:5] == ["prefect", "worker", "start", "--type", "kubernetes"]
    assert args[args.index("--pool") + 1] == "fleetflow-kubernetes"


def test_flow_runs_run_as_an_account_with_no_binding_and_no_token() -> None:
    flow_run = _one("ServiceAccount", "fleetflow-flow-run")
    assert flow_run["automountServiceAccountToken"] is False
    subjects = [s["name"] for s in _one("RoleBinding")["subjects"]]
    assert "fleetflow-flow-run" not in subjects

    variables = _template()["variables"]["properties"]
    assert variables["service_account_name"]["default"] == "fleetflow-flow-run"
    assert variables["namespace"]["default"] == _one("Namespace")["metadata"]["name"]
    pod = _template()["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "{{ service_account_name }}"
    assert pod["automountServiceAccountToken"] is False


def test_every_placeholder_of_the_job_names_a_variable_and_fleetflows_have_defaults() -> None:
    template = _template()
    variables = template["variables"]["properties"]
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used - set(variables) == set()
    for name in ("image", "namespace", "service_account_name", "env", "finished_job_ttl"):
        assert name in used, name
        assert variables[name].get("default") is not None, name
    assert {"cpu_request", "memory_request", "memory_limit"} <= {
        k for k, v in variables.items() if v.get("default") is not None
    }
    job = template["job_configuration"]["job_manifest"]
    assert job["spec"]["completions"] == 1
    assert "completions" not in job["spec"]["template"]["spec"]


def test_both_pods_meet_the_restricted_profile_their_namespace_enforces() -> None:
    labels = _one("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    worker = _one("Deployment")["spec"]["template"]["spec"]
    flow_run = _template()["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    for pod in (worker, flow_run):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def _marked(value: Any, path: str) -> list[str]:
    """Where a value holds REPLACE-ME, as dotted paths."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _marked(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _marked(v, f"{path}[{i}]")]
    return [path] if isinstance(value, str) and "REPLACE-ME" in value else []


def test_the_two_values_to_set_are_marked_replace_me_and_nothing_else_is() -> None:
    marked = [p for m in _manifests() for p in _marked(m, m["kind"])]
    marked += _marked(_template(), "template")
    assert marked == [
        "Deployment.spec.template.spec.containers[0].env[0].value",
        "template.variables.properties.image.default",
        "template.variables.properties.image.description",
    ]
    (container,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["env"][0]["name"] == "PREFECT_API_URL"
