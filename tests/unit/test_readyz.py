"""How credentials become the /readyz probe's httpx client; an address nobody answers."""

from __future__ import annotations

import pytest
import yaml
from pydantic import SecretStr

from fleetflow.errors import CredentialsError
from fleetflow.kube import ClusterCredentials
from fleetflow.kube.client import REQUESTS
from fleetflow.kube.probe import http_client, readyz


def test_a_token_block_sends_its_bearer_token_to_its_own_server() -> None:
    creds = ClusterCredentials(name="m1", api_url="https://10.0.0.1:6443", token=SecretStr("tok"))
    with http_client(creds, timeout=1.5) as client:
        assert client.headers["Authorization"] == "Bearer tok"
        assert str(client.base_url) == "https://10.0.0.1:6443"
        assert client.timeout.read == 1.5


def test_a_kubeconfig_may_skip_tls_verification_only_when_allowed_and_carries_no_token() -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": "https://x:1", "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    creds = ClusterCredentials(name="c", kubeconfig=SecretStr(yaml.safe_dump(config)))
    with pytest.raises(CredentialsError, match="skips TLS verification"):
        http_client(creds, timeout=1)
    creds = creds.model_copy(update={"allow_insecure": True})
    with http_client(creds, timeout=1) as client:
        assert "Authorization" not in client.headers
        assert str(client.base_url) == "https://x:1"


def test_an_address_nobody_answers_is_a_failed_probe_not_an_error() -> None:
    creds = ClusterCredentials(name="gone", api_url="https://127.0.0.1:1", token=SecretStr("t"))
    before = REQUESTS[("gone", "GET")]
    answer = readyz(creds, timeout=1)
    assert not answer.ok and answer.detail.startswith("/readyz: cannot connect")
    assert answer.seconds < 1
    assert REQUESTS[("gone", "GET")] == before + 1
