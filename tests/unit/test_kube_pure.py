"""Pure parts of the access layer: credentials, kubeconfig checks, error translation."""

from __future__ import annotations

import json
import re
import ssl

import httpx
import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from pydantic import SecretStr, ValidationError

from fleetflow.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterServerError,
    ClusterThrottled,
    ClusterTimeout,
    ClusterTLSError,
    ClusterUnauthorized,
    ClusterUnreachable,
    CredentialsError,
    InvalidRequest,
    InvalidResource,
    PrefectOverloaded,
    ResourceConflict,
    ResourceNotFound,
    prefect_overloaded,
)
from fleetflow.kube import ClusterCredentials
from fleetflow.kube.apply import ResourceType, api_path, segment
from fleetflow.kube.client import api_client, configuration, insecure, parse_kubeconfig
from fleetflow.kube.translate import translate
from fleetflow.kube.workloads import deployment_ready
from fleetflow.models import RebalanceRequest

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: Y2E=}
users:
- name: u1
  user: {token: "the-secret-token"}
contexts:
- name: ctx-a
  context: {cluster: c1, user: u1}
- name: ctx-b
  context: {cluster: c1, user: u1}
current-context: ctx-a
"""


def test_credentials_need_one_way_in() -> None:
    with pytest.raises(ValidationError, match="give either a kubeconfig, or api_url with a token"):
        ClusterCredentials(name="m1", api_url="https://x")
    with pytest.raises(ValidationError, match="a kubeconfig or a token, not both"):
        ClusterCredentials(
            name="m1", api_url="https://x", token=SecretStr("t"), kubeconfig=SecretStr("k")
        )


def test_secrets_are_masked_in_repr_and_dump() -> None:
    creds = ClusterCredentials(name="m1", api_url="https://x", token=SecretStr("tok-123"))
    assert "tok-123" not in repr(creds)
    assert "tok-123" not in creds.model_dump_json()
    assert "tok-123" not in str(creds.model_dump())


def test_token_credentials_become_a_kubeconfig() -> None:
    creds = ClusterCredentials(
        name="m1", api_url="https://10.0.0.1:6443", ca_data="Y2E=", token=SecretStr("tok")
    )
    config = creds.kubeconfig_dict()
    assert config["clusters"][0]["cluster"] == {
        "server": "https://10.0.0.1:6443",
        "certificate-authority-data": "Y2E=",
    }
    assert config["users"][0]["user"] == {"token": "tok"}
    client = api_client(creds)
    assert client.configuration.host == "https://10.0.0.1:6443"
    assert client.configuration.api_key == {"BearerToken": "Bearer tok"}
    assert client.configuration.retries is False
    assert client.cluster == "m1" and client.timeout == 10.0


def test_one_client_is_kept_per_credentials_and_other_credentials_get_their_own() -> None:
    def creds(token: str = "tok", timeout: float = 10.0) -> ClusterCredentials:
        return ClusterCredentials(
            name="m1",
            api_url="https://10.0.0.1:6443",
            token=SecretStr(token),
            request_timeout=timeout,
        )

    kept = api_client(creds())
    assert api_client(creds()) is kept  # equal credentials, built anew: the same client
    rotated = api_client(creds(token="tok-2"))
    assert rotated is not kept and rotated.configuration.api_key == {"BearerToken": "Bearer tok-2"}
    quick = api_client(creds(timeout=2.0))
    assert quick is not kept and quick.timeout == 2.0 and api_client(creds()).timeout == 10.0
    # Never more than the bound: the least recently used go first.
    for n in range(100):
        api_client(creds(token=f"other-{n}"))
    assert api_client(creds(token="other-99")) is api_client(creds(token="other-99"))
    assert api_client(creds()) is not kept


def test_kubeconfig_context_selection() -> None:
    assert parse_kubeconfig("m1", KUBECONFIG, None)["current-context"] == "ctx-a"
    assert parse_kubeconfig("m1", KUBECONFIG, "ctx-b")
    with pytest.raises(CredentialsError) as info:
        parse_kubeconfig("m1", KUBECONFIG, "ctx-z")
    assert "context 'ctx-z' is not in the kubeconfig; it has ['ctx-a', 'ctx-b']" in str(info.value)


def test_malformed_kubeconfig_error_never_echoes_it() -> None:
    broken = KUBECONFIG.replace("current-context: ctx-a", "current-context: [ctx-a")
    with pytest.raises(CredentialsError) as info:
        parse_kubeconfig("m1", broken, None)
    message = str(info.value)
    assert message.startswith("cluster 'm1': the kubeconfig is not valid YAML at line")
    assert "kubectl config view --raw" in message
    assert "the-secret-token" not in message and "ctx-a" not in message
    with pytest.raises(CredentialsError, match="has no contexts"):
        parse_kubeconfig("m1", "just a string", None)
    no_current = KUBECONFIG.replace("current-context: ctx-a", "")
    with pytest.raises(CredentialsError, match="sets no current-context"):
        parse_kubeconfig("m1", no_current, None)


def _api_error(status: int, message: str) -> ApiException:
    error = ApiException(status=status, reason="Reason")
    error.body = json.dumps({"kind": "Status", "message": message})
    return error


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, ClusterUnauthorized),
        (403, ClusterForbidden),
        (404, ResourceNotFound),
        (422, InvalidResource),
        (409, ResourceConflict),
        (429, ClusterThrottled),
        (500, ClusterServerError),
        (503, ClusterServerError),
        (504, ClusterTimeout),
        (418, ClusterError),
    ],
)
def test_api_errors_map_by_status(status: int, cls: type[ClusterError]) -> None:
    error = translate("m1", _api_error(status, "nope"))
    assert type(error) is cls
    assert error.retryable is (status in (409, 429, 500, 503, 504))
    assert str(error).startswith(f"cluster 'm1': HTTP {status}: nope; ")
    assert isinstance(error, ClusterError) and error.status == status


def test_connection_errors_map_to_unreachable_tls_and_timeout() -> None:
    refused = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    assert isinstance(translate("m1", refused), ClusterUnreachable)
    wrapped = urllib3.exceptions.MaxRetryError(None, "/api", refused)  # type: ignore[arg-type]
    assert isinstance(translate("m1", wrapped), ClusterUnreachable)
    tls = urllib3.exceptions.SSLError(ssl.SSLCertVerificationError("certificate verify failed"))
    assert isinstance(translate("m1", tls), ClusterTLSError)
    slow = urllib3.exceptions.ReadTimeoutError(None, "/api", "read timed out")  # type: ignore[arg-type]
    error = translate("m1", slow, timeout=2.5)
    assert isinstance(error, ClusterTimeout)
    assert "timed out after 2.5s" in str(error)
    client_ssl = ApiException(status=0, reason="SSLError\n[SSL] certificate verify failed")
    assert isinstance(translate("m1", client_ssl), ClusterTLSError)
    # A server killed mid-request closes its TLS connection unannounced: unreachable (and
    # retried), not a certificate to check.
    dropped = urllib3.exceptions.SSLError(
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    )
    assert isinstance(translate("m1", dropped), ClusterUnreachable)
    wrapped_eof = ApiException(status=0, reason="SSLError\nEOF occurred in violation of protocol")
    assert isinstance(translate("m1", wrapped_eof), ClusterUnreachable)


def test_deployment_ready_needs_observed_generation_and_all_replicas() -> None:
    obj = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 3},
        "status": {
            "observedGeneration": 2,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
        },
    }
    assert deployment_ready(obj)
    assert not deployment_ready({**obj, "metadata": {"generation": 3}})
    assert not deployment_ready({**obj, "status": {**obj["status"], "readyReplicas": 2}})
    assert not deployment_ready({**obj, "status": {**obj["status"], "replicas": 4}})
    assert not deployment_ready({**obj, "status": None})


def test_every_error_is_in_one_tree_and_pickles() -> None:
    """Errors cross threads and processes (Prefect pickles task exceptions): the cluster, the
    detail and the status survive, and so does retryable."""
    import pickle

    error = ClusterThrottled("m1", "HTTP 429: slow down", status=429)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ClusterThrottled
    assert (again.cluster, again.detail, again.status, str(again)) == (
        "m1",
        "HTTP 429: slow down",
        429,
        str(error),
    )
    assert again.retryable


@pytest.mark.parametrize("status", [503, 429])
def test_a_busy_prefect_server_is_one_line_that_names_the_request_and_the_fix(status: int) -> None:
    request = httpx.Request("POST", "http://127.0.0.1:4200/api/task_runs/")
    response = httpx.Response(status, request=request)
    exc = httpx.HTTPStatusError("Server error", request=request, response=response)
    busy = prefect_overloaded(exc)
    assert isinstance(busy, PrefectOverloaded) and busy.retryable
    assert str(busy).startswith(
        f"the Prefect server is overloaded: it answered HTTP {status} to POST /api/task_runs/"
    )
    assert "fleetflow up --database postgresql://" in str(busy) and "\n" not in str(busy)
    import pickle

    assert str(pickle.loads(pickle.dumps(busy))) == str(busy)


def test_other_failures_are_not_called_overloaded() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:4200/api/flow_runs/x")
    for status in (404, 500, 502):
        response = httpx.Response(status, request=request)
        assert (
            prefect_overloaded(httpx.HTTPStatusError("e", request=request, response=response))
            is None
        )
    assert prefect_overloaded(httpx.ConnectError("refused", request=request)) is None
    assert prefect_overloaded(ValueError("no response at all")) is None


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("shop/federateddeployments?labelSelector=", None),  # drops the federation's selector
        ("..", "x"),  # climbs to any GET path on the host
        ("shop", "../../../api/v1/secrets"),
        (".", "x"),
    ],
)
def test_a_name_never_adds_a_segment_a_query_or_a_climb_to_a_request_path(
    namespace: str, name: str | None
) -> None:
    rtype = ResourceType("apps/v1", "Deployment", "deployments", True)
    with pytest.raises(InvalidRequest, match="cannot name a Kubernetes object or namespace"):
        rtype.path(name, namespace)


def test_what_a_path_may_hold_is_quoted_and_an_api_version_is_one() -> None:
    rtype = ResourceType("apps/v1", "Deployment", "deployments", True)
    assert rtype.path("web.v2", "shop") == "/apis/apps/v1/namespaces/shop/deployments/web.v2"
    assert segment("a?b#c") == "a%3Fb%23c"
    assert api_path("v1") == "/api/v1" and api_path("fleetflow.io/v1alpha1").endswith("v1alpha1")
    for bad in ("v1/../..", "../v1", "apps/v1?x=1", "apps", ""):
        with pytest.raises(InvalidRequest, match="is not an apiVersion"):
            api_path(bad)


@pytest.mark.parametrize(
    "value", ["shop/federateddeployments?labelSelector=#", "..", "Shop", "a" * 64, ""]
)
def test_a_namespace_parameter_that_is_no_dns_label_is_refused_at_the_form_and_the_cli(
    value: str,
) -> None:
    with pytest.raises(ValidationError, match="is not a DNS label"):
        RebalanceRequest(federation="demo", namespace=value)
    pattern = RebalanceRequest.model_json_schema()["properties"]["namespace"]["anyOf"][0]
    assert not re.match(pattern["pattern"], value) or len(value) > pattern["maxLength"]


@pytest.mark.parametrize("value", ["../x", "a/b", "a..b", "-a", "", "web?x", "Web"])
def test_a_name_parameter_that_is_no_object_name_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="is not a Kubernetes object name"):
        RebalanceRequest(federation="demo", name=value)
    assert RebalanceRequest(federation="demo", name="web.v2").name == "web.v2"


def _config(cluster: dict[str, object], user: dict[str, object]) -> str:
    return json.dumps(
        {
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


SAFE = {"server": "https://10.0.0.1:6443", "certificate-authority-data": "Y2E="}


@pytest.mark.parametrize(
    ("cluster", "user", "refused"),
    [
        ({"server": "http://10.0.0.1:8080"}, {"token": "t"}, "plain http://"),
        ({**SAFE, "insecure-skip-tls-verify": True}, {"token": "t"}, "skips TLS verification"),
        (SAFE, {"exec": {"command": "sh", "args": ["-c", "id"]}}, "runs a command"),
        (SAFE, {"auth-provider": {"name": "oidc"}}, "runs a command"),
    ],
)
def test_credentials_that_would_leak_or_run_a_command_are_refused_unless_allowed(
    cluster: dict[str, object], user: dict[str, object], refused: str
) -> None:
    credentials = ClusterCredentials(name="m1", kubeconfig=SecretStr(_config(cluster, user)))
    with pytest.raises(
        CredentialsError, match=f"cluster 'm1': refused: .*{refused}.*allow_insecure"
    ):
        configuration(credentials)
    allowed = credentials.model_copy(update={"allow_insecure": True})
    if "exec" not in user and "auth-provider" not in user:  # loading would run the command
        assert configuration(allowed).host.startswith(str(cluster["server"]))


def test_a_token_to_an_http_url_is_refused_and_https_with_a_ca_is_not() -> None:
    plain = ClusterCredentials(name="m1", api_url="http://10.0.0.1", token=SecretStr("t"))
    with pytest.raises(CredentialsError, match="plain http://"):
        configuration(plain)
    assert insecure(json.loads(_config(SAFE, {"token": "t"})), None) is None
