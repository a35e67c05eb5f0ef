"""What a workload's pod template references, for every workload kind."""

from __future__ import annotations

from typing import Any

import pytest

from fleetflow.dependencies import Ref, pod_spec_references, references

POD: dict[str, Any] = {
    "serviceAccountName": "web-sa",
    "imagePullSecrets": [{"name": "registry"}, {"name": "registry"}],
    "volumes": [
        {"name": "cfg", "configMap": {"name": "web-config"}},
        {"name": "tls", "secret": {"secretName": "web-tls"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}},
        {
            "name": "all",
            "projected": {
                "sources": [
                    {"configMap": {"name": "projected-cm"}},
                    {"secret": {"name": "projected-secret"}},
                    {"serviceAccountToken": {"path": "token"}},
                    {"downwardAPI": {"items": []}},
                ]
            },
        },
        {"name": "csi", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "csi-creds"}}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
    ],
    "initContainers": [
        {"name": "init", "envFrom": [{"secretRef": {"name": "init-env"}}]},
    ],
    "containers": [
        {
            "name": "web",
            "env": [
                {"name": "A", "value": "plain"},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "b"}}},
                {"name": "C", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "c"}}},
                {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "web-config"}}],
        }
    ],
    "ephemeralContainers": [
        {"name": "debug", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "dbg"}}}]}
    ],
}

EXPECTED = [
    Ref(kind="ConfigMap", name="env-cm"),
    Ref(kind="ConfigMap", name="projected-cm"),
    Ref(kind="ConfigMap", name="web-config"),
    Ref(kind="PersistentVolumeClaim", name="web-data"),
    Ref(kind="Secret", name="csi-creds"),
    Ref(kind="Secret", name="dbg"),
    Ref(kind="Secret", name="env-secret"),
    Ref(kind="Secret", name="init-env"),
    Ref(kind="Secret", name="projected-secret"),
    Ref(kind="Secret", name="registry"),
    Ref(kind="Secret", name="web-tls"),
    Ref(kind="ServiceAccount", name="web-sa"),
]


def wrap(kind: str, pod: dict[str, Any]) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": pod}
    if kind == "CronJob":
        return {"kind": kind, "spec": {"jobTemplate": {"spec": {"template": template}}}}
    if kind == "Pod":
        return {"kind": kind, "spec": pod}
    return {"apiVersion": "apps/v1", "kind": kind, "spec": {"template": template}}


@pytest.mark.parametrize(
    "kind", ["Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob", "Pod"]
)
def test_every_reference_of_every_workload_kind_sorted_and_once(kind: str) -> None:
    assert references(wrap(kind, POD)) == EXPECTED


def test_a_plain_pod_spec_and_a_federated_deployment_template() -> None:
    assert references(POD) == EXPECTED
    assert pod_spec_references(POD) == EXPECTED
    template = {"metadata": {}, "spec": {"template": {"spec": POD}}}  # no kind, as in the CRD
    assert references(template) == EXPECTED
    assert [str(r) for r in EXPECTED[:1]] == ["ConfigMap/env-cm"]


def test_default_service_account_and_empty_names_are_not_dependencies() -> None:
    pod = {
        "serviceAccountName": "default",
        "containers": [{"name": "c", "envFrom": [{"configMapRef": {}}]}],
        "volumes": [{"name": "v", "secret": {}}],
    }
    assert references(pod) == []
    assert references({"serviceAccount": "legacy", "containers": []}) == [
        Ref(kind="ServiceAccount", name="legacy")
    ]


def test_statefulset_claim_templates_are_not_dependencies_its_service_is() -> None:
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "spec": {
            "serviceName": "db",
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}],
            "template": {
                "spec": {
                    "containers": [
                        {"name": "db", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}
                    ],
                    "volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": "s"}}],
                }
            },
        },
    }
    assert references(sts) == [
        Ref(kind="PersistentVolumeClaim", name="s"),
        Ref(kind="Service", name="db"),
    ]


def test_objects_without_a_pod_template_reference_nothing() -> None:
    assert references({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}) == []
    assert references({"apiVersion": "v1", "kind": "Service", "spec": {}}) == []
