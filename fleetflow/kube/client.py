"""One API client per cluster, never the kubernetes client's global default.

Several clusters are used at once in one process (a flow fans out over members), so each client
gets its own ``Configuration``. Every request carries a timeout, and every error is translated
into a :class:`~fleetflow.errors.ClusterError` that names the cluster.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import load_kube_config_from_dict
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from fleetflow import failpoints
from fleetflow.errors import ClusterForbidden, ClusterThrottled, CredentialsError
from fleetflow.kube.translate import translate
from fleetflow.settings import settings

REQUESTS: Counter[tuple[str, str]] = Counter()
"""Requests sent in this process, by (cluster, HTTP method): a cheap meter for benchmarks and for
proving that a run which finds nothing to change sends no write."""


class ClusterCredentials(BaseModel):
    """How to reach one cluster: a bearer token with the server's CA, or a kubeconfig."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Cluster name, used in every error message")
    api_url: str | None = Field(default=None, description="https://host:port of the API server")
    ca_data: str | None = Field(default=None, description="Base64 PEM of the server's CA")
    token: SecretStr | None = Field(default=None, description="Bearer token")
    kubeconfig: SecretStr | None = Field(default=None, description="Kubeconfig YAML text")
    context: str | None = Field(default=None, description="Kubeconfig context; default current")
    request_timeout: float = Field(default_factory=lambda: settings().request_timeout, gt=0)
    allow_insecure: bool = Field(
        default=False,
        description="Accept a plain-http server, a kubeconfig that skips TLS verification or "
        "runs a command (exec) for its credentials; refused otherwise",
    )

    @model_validator(mode="after")
    def _one_way_in(self) -> ClusterCredentials:
        if self.kubeconfig is None and (self.token is None or not self.api_url):
            raise ValueError(
                f"cluster {self.name!r}: give either a kubeconfig, or api_url with a token"
            )
        if self.kubeconfig is not None and self.token is not None:
            raise ValueError(f"cluster {self.name!r}: give a kubeconfig or a token, not both")
        return self

    def kubeconfig_dict(self) -> dict[str, Any]:
        """The credentials as a parsed kubeconfig; errors never quote the secret text."""
        if self.kubeconfig is None:
            cluster: dict[str, Any] = {"server": self.api_url}
            if self.ca_data:
                cluster["certificate-authority-data"] = self.ca_data
            return {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": self.name, "cluster": cluster}],
                "users": [{"name": self.name, "user": {"token": _reveal(self.token)}}],
                "contexts": [
                    {"name": self.name, "context": {"cluster": self.name, "user": self.name}}
                ],
                "current-context": self.name,
            }
        return parse_kubeconfig(self.name, self.kubeconfig.get_secret_value(), self.context)


def _reveal(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""


def parse_kubeconfig(cluster: str, text: str, context: str | None) -> dict[str, Any]:
    """Parse and check a kubeconfig; the error says where it is wrong without echoing it."""
    fix = "paste the output of `kubectl config view --raw --minify --flatten`"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CredentialsError(
            f"cluster {cluster!r}: the kubeconfig is not valid YAML{where}; {fix}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("contexts"), list):
        raise CredentialsError(f"cluster {cluster!r}: the kubeconfig has no contexts; {fix}")
    names = [c.get("name") for c in data["contexts"] if isinstance(c, dict)]
    wanted = context or data.get("current-context")
    if not wanted:
        raise CredentialsError(
            f"cluster {cluster!r}: the kubeconfig sets no current-context; "
            f"set the block's context to one of {names}"
        )
    if wanted not in names:
        raise CredentialsError(
            f"cluster {cluster!r}: context {wanted!r} is not in the kubeconfig; "
            f"it has {names}: set the block's context to one of them"
        )
    return data


def insecure(config: dict[str, Any], context: str | None) -> str | None:
    """What makes these credentials unsafe to use as they are, or None: a server reached without
    TLS or without checking its certificate (whoever is in between takes the token), or a
    user whose credentials come from a command the kubeconfig names (the worker would run it).
    Decided on the kubeconfig before it is loaded: loading runs the command."""

    def named(section: str, name: Any) -> dict[str, Any]:
        for item in config.get(section) or []:
            if isinstance(item, dict) and item.get("name") == name:
                found = item.get(section[:-1])
                return found if isinstance(found, dict) else {}
        return {}

    entry = named("contexts", context or config.get("current-context"))
    cluster, user = named("clusters", entry.get("cluster")), named("users", entry.get("user"))
    if str(cluster.get("server") or "").lower().startswith("http://"):
        return "its server is plain http://: the token would cross the network unencrypted"
    if cluster.get("insecure-skip-tls-verify"):
        return "it skips TLS verification (insecure-skip-tls-verify): anyone in between gets in"
    if user.get("exec") or user.get("auth-provider"):
        return "its user runs a command for its credentials (exec): the worker would run it"
    return None


class ClusterApiClient(k8s.ApiClient):  # type: ignore[misc]
    """An ``ApiClient`` bound to one cluster: default timeout and translated errors."""

    def __init__(self, configuration: k8s.Configuration, cluster: str, timeout: float) -> None:
        super().__init__(configuration)
        self.cluster = cluster
        self.timeout = timeout

    def request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        REQUESTS[(self.cluster, method)] += 1
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = (self.timeout, self.timeout)
        try:
            answer = super().request(method, *args, **kwargs)
        except Exception as exc:
            error = translate(self.cluster, exc, self.timeout)
            if isinstance(error, ClusterForbidden) and (
                starting := self._starting(kwargs.get("headers") or {})
            ):
                detail = f"{error.detail}, while it is still starting ({starting})"
                raise ClusterThrottled(self.cluster, detail, status=error.status) from exc
            raise error from exc
        if method in _WRITES and _persisted(
            str(args[0] if args else kwargs.get("url", "")), kwargs
        ):
            failpoints.wrote()
        return answer

    def _starting(self, headers: dict[str, str]) -> str | None:
        """Why the apiserver is not ready yet, or None when it is. An apiserver that has just
        (re)started answers 403 until its RBAC has loaded (measured: a host restarted under a
        rebalance refused the flows' account a list it may make); its ``/readyz``, which every
        client may read once RBAC is loaded, says whether that is so. A refusal from a ready
        server is the real thing, and is not retried; so is a 401 (a token refused is the
        answer a rotation waits for, and ``/readyz`` refuses that token too)."""
        auth = {k: v for k, v in headers.items() if k.lower() == "authorization"}
        try:
            super().request(
                "GET", f"{self.configuration.host}/readyz", headers=auth, _request_timeout=(2, 2)
            )
        except k8s.ApiException as exc:
            return None if exc.status == 401 else f"its /readyz answers {exc.status}"
        except Exception:  # any failure to answer means not ready
            return "its /readyz does not answer"
        return None


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ASKED = ("reviews", "/token")  # access reviews and token requests: answers, nothing stored


def _persisted(url: str, kwargs: dict[str, Any]) -> bool:
    """Whether a write request changed what the server stores: not a dry run, not a question
    put as a POST (an access review, a token request)."""
    if ("dryRun", "All") in (kwargs.get("query_params") or []):
        return False
    return not url.split("?", 1)[0].endswith(_ASKED)


@functools.lru_cache(maxsize=64)  # a federation's members, at two or three timeouts each
def api_client(credentials: ClusterCredentials) -> ClusterApiClient:
    """A client for this cluster alone; the global default configuration is untouched.

    One client per credentials in a process, kept: a new one parses the kubeconfig, builds a TLS
    context and opens a new connection (on the test bed, 14 ms of CPU per request against 2 ms
    with a kept client, and a TLS handshake the apiserver pays for too). Its connections are
    pooled and safe to share between threads; a connection the server closed is replaced on the
    next request. Other credentials (a rotated token, another timeout) get a client of their own.
    """
    return ClusterApiClient(
        configuration(credentials), credentials.name, credentials.request_timeout
    )


def configuration(credentials: ClusterCredentials) -> k8s.Configuration:
    """The kubernetes client's configuration for this cluster alone: server, CA, client
    certificate (as files the loader writes) and bearer token, whichever the credentials hold."""
    configuration = k8s.Configuration()
    config = credentials.kubeconfig_dict()
    if not credentials.allow_insecure and (why := insecure(config, credentials.context)):
        raise CredentialsError(
            f"cluster {credentials.name!r}: refused: {why}; give the server's https URL and CA "
            "(and a token or client certificate), or set allow_insecure on its block to accept it"
        )
    try:
        load_kube_config_from_dict(
            config,
            context=credentials.context,
            client_configuration=configuration,
            persist_config=False,
        )
    except ConfigException as exc:
        raise CredentialsError(
            f"cluster {credentials.name!r}: the kubeconfig is incomplete ({_redact(exc)})"
        ) from None
    configuration.retries = False  # one attempt per request: task retries decide the rest
    return configuration


def _redact(exc: Exception) -> str:
    """The loader's messages name fields, but keep only the first line to be safe."""
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
