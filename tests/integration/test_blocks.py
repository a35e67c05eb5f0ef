"""Credentials blocks against a real Prefect server."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from kubernetes import client as k8s
from prefect.settings import PREFECT_API_URL

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.testbed import save_testbed_blocks
from fleetflow.errors import CredentialsError
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec

pytestmark = pytest.mark.integration


def _document(name: str, slug: str = "fleetflow-kube-cluster") -> dict[str, object]:
    url = f"{PREFECT_API_URL.value()}/block_types/slug/{slug}/block_documents/name/{name}"
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    document: dict[str, object] = response.json()
    return document


def test_block_round_trips_with_secrets_masked(prefect_server: None, testbed: TestbedSpec) -> None:
    member = testbed.members[0].name
    kubeconfig = bed.kubeconfig_path(member).read_text()
    KubeCluster(
        kubeconfig=kubeconfig,
        context=member,
        region="us-east",
        zone="us-east-1a",
        labels={"tier": "gold"},
    ).save("roundtrip", overwrite=True)

    stored = _document("roundtrip")
    data = stored["data"]
    assert isinstance(data, dict)
    assert data["kubeconfig"] == "********"
    assert data["region"] == "us-east" and data["labels"] == {"tier": "gold"}
    assert "client-key-data" not in str(stored)

    loaded = KubeCluster.load("roundtrip")
    assert loaded.kubeconfig is not None
    assert loaded.kubeconfig.get_secret_value() == kubeconfig
    assert "client-key-data" not in repr(loaded) and "**********" in repr(loaded)
    # The loaded block talks to its own cluster, and errors name the block.
    client = loaded.api_client()
    assert client.cluster == "roundtrip"
    nodes = k8s.CoreV1Api(client).list_node().items
    assert {n.metadata.name for n in nodes} == {f"{member}-node-{i}" for i in range(3)}


def test_token_block_masks_the_token(prefect_server: None) -> None:
    KubeCluster(api_url="https://127.0.0.1:1", token="s3cr3t-token-value").save(
        "token-only", overwrite=True
    )
    assert _document("token-only")["data"] == {
        "api_url": "https://127.0.0.1:1",
        "ca_data": None,
        "token": "********",
        "kubeconfig": None,
        "context": None,
        "region": None,
        "zone": None,
        "labels": {},
        "volume_roots": {},
        "reported_as": None,
        "joined_as": None,
        "allow_insecure": False,
        "request_timeout": 10.0,
    }
    assert KubeCluster.load("token-only").credentials().token is not None


def test_block_with_missing_context_is_a_clear_error(
    prefect_server: None, testbed: TestbedSpec
) -> None:
    member = testbed.members[0].name
    KubeCluster(kubeconfig=bed.kubeconfig_path(member).read_text(), context="elsewhere").save(
        "bad-context", overwrite=True
    )
    with pytest.raises(CredentialsError, match="context 'elsewhere' is not in the kubeconfig"):
        KubeCluster.load("bad-context").api_client()


def test_testbed_blocks_are_saved_once(prefect_server: None, testbed: TestbedSpec) -> None:
    for cluster in testbed.cluster_names():  # an earlier module may have saved them already
        with contextlib.suppress(ValueError):
            KubeCluster.delete(cluster)
    assert save_testbed_blocks(testbed) == testbed.cluster_names()
    assert save_testbed_blocks(testbed) == []
    for member in testbed.members:
        block = KubeCluster.load(member.name)
        assert block.region == member.region
        assert k8s.VersionApi(block.api_client()).get_code().git_version.startswith("v1.36.")


def test_federation_block_names_clusters_and_holds_no_secret(prefect_server: None) -> None:
    Federation(name="prod", host_cluster="host", member_clusters=["us-east-1", "eu-west-1"]).save(
        "prod", overwrite=True
    )
    stored = _document("prod", "fleetflow-federation")
    assert stored["data"] == {
        "name": "prod",
        "host_cluster": "host",
        "host_identity": None,
        "member_clusters": ["us-east-1", "eu-west-1"],
        "namespace": "fleetflow-system",
        "dns_zone": "fleet.local",
        "dns_server": None,
        "health": None,
        "regions": None,
        "pod_security": "restricted",
    }
