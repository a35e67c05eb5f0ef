"""Blocks without a server: masking and the core credentials they produce."""

from __future__ import annotations

from pydantic import SecretStr

from fleetflow.blocks import Federation, KubeCluster


def test_kube_cluster_masks_secrets_in_repr() -> None:
    block = KubeCluster(api_url="https://x:6443", token=SecretStr("tok-999"), region="eu")
    assert "tok-999" not in repr(block) and "tok-999" not in str(block)
    assert "tok-999" not in block.model_dump_json()
    creds = block.credentials()
    assert creds.token is not None and creds.token.get_secret_value() == "tok-999"
    assert creds.name == "https://x:6443"  # an unsaved block is named by its URL


def test_block_types_have_stable_slugs() -> None:
    assert KubeCluster.get_block_type_slug() == "fleetflow-kube-cluster"
    assert Federation.get_block_type_slug() == "fleetflow-federation"
    secret_fields = KubeCluster.model_json_schema()["secret_fields"]
    assert sorted(secret_fields) == ["kubeconfig", "token"]
