"""FederatedObject: reading and checking one, and the object each member gets."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from fleetflow.errors import InvalidRequest
from fleetflow.federated import ANNOTATION_HASH, ANNOTATION_ORPHAN, FINALIZER, spec_hash
from fleetflow.objects import (
    LABEL_OBJECT,
    FederatedObject,
    FederatedObjectStatus,
    MemberObjectStatus,
    MemberState,
)
from fleetflow.objects import member_object as build

CONFIG: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "web-config", "labels": {"app": "web"}},
    "data": {"mode": "prod", "level": "info"},
}


def obj(
    template: dict[str, Any] | None = None,
    *,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "cfg", "namespace": "shop", "generation": 2}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": {"template": template or CONFIG, **spec}}


def fo(template: dict[str, Any] | None = None, **spec: Any) -> FederatedObject:
    return FederatedObject.from_object(obj(template, **spec))


def test_reads_spec_placement_overrides_adopt_orphan_and_finalizer() -> None:
    raw = obj(
        placement={"clusters": ["eu"], "clusterSelector": {"matchLabels": {"tier": "a"}}},
        overrides=[
            {
                "clusterName": "eu",
                "mergePatch": {"data": {"mode": "eu"}},
                "jsonPatch": [{"op": "add", "path": "/data/x", "value": "1"}],
            }
        ],
        adopt=True,
        annotations={ANNOTATION_ORPHAN: "true"},
    )
    raw["metadata"]["finalizers"] = [FINALIZER]
    raw["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    read = FederatedObject.from_object(raw)
    assert read.key == "shop/cfg"
    assert (read.api_version, read.kind, read.target) == ("v1", "ConfigMap", "web-config")
    assert read.spec.placement is not None
    assert read.spec.placement.clusters == ["eu"]
    assert read.spec.adopt and read.orphan and read.deleting and read.protected
    assert read.spec.overrides[0].json_patch[0].path == "/data/x"
    assert fo().spec.placement is None  # follows its workloads
    assert not fo().spec.adopt and not fo().orphan and not fo().protected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({**CONFIG, "apiVersion": ""}, "spec.template has no apiVersion"),
        ({k: v for k, v in CONFIG.items() if k != "kind"}, "spec.template has no kind"),
        ({**CONFIG, "metadata": {"generateName": "cfg-"}}, "has no metadata.name"),
        ({**CONFIG, "metadata": {"name": "x", "namespace": "other"}}, "names namespace 'other'"),
        ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, "cluster-scoped"),
        (
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "x"},
            },
            "ClusterRole, which is cluster-scoped",
        ),
        (
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}},
            "as a workload",
        ),
        (
            {
                "apiVersion": "fleetflow.io/v1alpha1",
                "kind": "FederatedObject",
                "metadata": {"name": "x"},
            },
            "fleetflow's own",
        ),
    ],
)
def test_a_bad_template_is_one_line(template: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as caught:
        fo(template)
    text = str(caught.value)
    assert text.startswith("FederatedObject shop/cfg: ") and "\n" not in text


def test_bad_spec_fields_are_one_line_too() -> None:
    with pytest.raises(InvalidRequest, match=r"shop/cfg: spec\.overrides\.0\.jsonPatch\.0\.op"):
        fo(overrides=[{"clusterName": "eu", "jsonPatch": [{"op": "nope", "path": "/a"}]}])
    with pytest.raises(InvalidRequest, match="add needs a value"):
        fo(overrides=[{"clusterName": "eu", "jsonPatch": [{"op": "add", "path": "/a"}]}])
    with pytest.raises(
        InvalidRequest, match=r"^FederatedObject shop/cfg: spec\.template: Field required$"
    ):
        FederatedObject.from_object({"metadata": {"name": "cfg", "namespace": "shop"}, "spec": {}})
    with pytest.raises(InvalidRequest, match=r"metadata\.namespace is missing"):
        FederatedObject.from_object({"metadata": {"name": "cfg"}, "spec": {"template": CONFIG}})
    with pytest.raises(InvalidRequest, match="placemnt"):
        fo(placemnt={"clusters": ["eu"]})  # a typo is not silently ignored
    # a custom resource of a group fleetflow knows nothing about is fine
    custom = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert fo(custom).kind == "Widget"
    # the same namespace spelled out is fine
    assert fo({**CONFIG, "metadata": {"name": "c", "namespace": "shop"}}).target == "c"


def test_member_object_labels_namespace_hash_and_nothing_else_changed() -> None:
    manifest = build(fo(), "us", "prod")
    assert manifest["metadata"]["namespace"] == "shop"
    assert manifest["metadata"]["name"] == "web-config"
    assert manifest["metadata"]["labels"] == {
        "app": "web",
        "app.kubernetes.io/managed-by": "fleetflow",
        "fleetflow.io/federation": "prod",
        LABEL_OBJECT: "cfg",
    }
    assert manifest["data"] == CONFIG["data"]
    assert manifest["metadata"]["annotations"][ANNOTATION_HASH] == spec_hash(manifest)
    assert build(fo(), "us", "prod") == manifest  # deterministic
    assert CONFIG["metadata"] == {"name": "web-config", "labels": {"app": "web"}}  # untouched


def test_overrides_apply_to_their_member_only_merge_then_json_patch() -> None:
    spec_overrides = [
        {
            "clusterName": "eu",
            "mergePatch": {"data": {"mode": "eu", "level": None}},
            "jsonPatch": [
                {"op": "test", "path": "/data/mode", "value": "eu"},
                {"op": "add", "path": "/data/region", "value": "eu-west"},
            ],
        }
    ]
    federated = fo(overrides=spec_overrides)
    eu, us = build(federated, "eu", "prod"), build(federated, "us", "prod")
    assert eu["data"] == {"mode": "eu", "region": "eu-west"}
    assert us["data"] == CONFIG["data"]
    assert (
        eu["metadata"]["annotations"][ANNOTATION_HASH]
        != us["metadata"]["annotations"][ANNOTATION_HASH]
    )


def test_an_override_that_does_not_apply_names_object_member_operation_and_path() -> None:
    bad = fo(
        overrides=[{"clusterName": "eu", "jsonPatch": [{"op": "remove", "path": "/data/nope"}]}]
    )
    assert build(bad, "us", "prod")["data"] == CONFIG["data"]  # other members are fine
    with pytest.raises(
        InvalidRequest,
        match=r"^FederatedObject shop/cfg: override for eu: JSON patch operation 0 "
        r"\(remove /data/nope\) does not apply: no member 'nope'$",
    ):
        build(bad, "eu", "prod")


def test_overrides_cannot_change_identity_nor_drop_our_labels() -> None:
    renamed = fo(overrides=[{"clusterName": "eu", "mergePatch": {"metadata": {"name": "other"}}}])
    with pytest.raises(InvalidRequest, match="may not change the object's apiVersion, kind, name"):
        build(renamed, "eu", "prod")
    moved = fo(
        overrides=[
            {
                "clusterName": "eu",
                "jsonPatch": [{"op": "replace", "path": "/kind", "value": "Secret"}],
            }
        ]
    )
    with pytest.raises(InvalidRequest, match="may not change"):
        build(moved, "eu", "prod")
    unlabelled = fo(overrides=[{"clusterName": "eu", "mergePatch": {"metadata": {"labels": None}}}])
    labels = build(unlabelled, "eu", "prod")["metadata"]["labels"]
    assert labels[LABEL_OBJECT] == "cfg" and "app" not in labels


def test_server_fields_and_status_of_a_copied_object_are_dropped() -> None:
    copied = {
        **CONFIG,
        "metadata": {
            "name": "web-config",
            "uid": "1234",
            "resourceVersion": "99",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "ownerReferences": [{"kind": "Deployment", "name": "x", "uid": "9"}],
            "annotations": {"note": "kept"},
        },
        "status": {"phase": "Bound"},
    }
    manifest = build(fo(copied), "eu", "prod")
    assert set(manifest["metadata"]) == {"name", "namespace", "labels", "annotations"}
    assert "status" not in manifest
    assert manifest["metadata"]["annotations"]["note"] == "kept"


def test_secret_string_data_becomes_data_as_the_api_server_stores_it() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "data": {
            "user": base64.b64encode(b"old").decode(),
            "host": base64.b64encode(b"h").decode(),
        },
        "stringData": {"user": "admin", "password": "s3cret"},
    }
    manifest = build(fo(secret), "eu", "prod")
    assert "stringData" not in manifest
    decoded = {k: base64.b64decode(v).decode() for k, v in manifest["data"].items()}
    assert decoded == {"user": "admin", "host": "h", "password": "s3cret"}


def test_status_and_finalizer_patches_are_the_api_form() -> None:
    status = FederatedObjectStatus(
        observed_generation=2,
        clusters=[
            MemberObjectStatus(name="eu", state=MemberState.APPLIED),
            MemberObjectStatus(name="us", state=MemberState.MISSING_KIND, message="no CRD"),
        ],
    )
    patch = fo().model_copy(update={"status": status}).status_patch()
    assert patch["kind"] == "FederatedObject"
    assert patch["status"] == {
        "observedGeneration": 2,
        "clusters": [
            {"name": "eu", "state": "Applied", "message": ""},
            {"name": "us", "state": "MissingKind", "message": "no CRD"},
        ],
        "conditions": [],
    }
    assert fo().finalizer_patch(hold=True)["metadata"]["finalizers"] == [FINALIZER]
    assert "finalizers" not in fo().finalizer_patch(hold=False)["metadata"]
    assert {s.value for s in MemberState} == {
        "Applied",
        "Unchanged",
        "Drifted",
        "Conflict",
        "Failed",
        "Unreachable",
        "MissingKind",
    }
