"""Errors that name the cluster and say what to do.

The kubernetes client raises urllib3 and ``ApiException`` errors whose text is a wall of
headers. Every request made through :class:`fleetflow.kube.client.ClusterApiClient` is translated
into one of these, so a flow run's log says which member failed and how to fix it.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from fleetflow.errors import FleetflowError


class ClusterError(FleetflowError):
    """A request to one cluster failed."""

    hint = "check the cluster and retry"

    def __init__(self, cluster: str, detail: str, *, status: int | None = None) -> None:
        self.cluster = cluster
        self.detail = detail
        self.status = status
        super().__init__(f"cluster {cluster!r}: {detail}; {self.hint}")


class ClusterUnreachable(ClusterError):
    hint = "check that its API server is running and its address is right"


class ClusterTLSError(ClusterError):
    hint = "check the CA data in its credentials block (it must be the CA that signed the server)"


class ClusterTimeout(ClusterError):
    hint = "the API server is overloaded or unreachable; retry, or raise request_timeout"


class ClusterUnauthorized(ClusterError):
    hint = "its token or client certificate is wrong or expired: rotate the credentials block"


class ClusterForbidden(ClusterError):
    hint = "the credentials lack the RBAC permission for this request"


class ResourceNotFound(ClusterError):
    hint = "check the name and namespace"


class ResourceConflict(ClusterError):
    hint = "the object changed meanwhile or another field manager owns the field; re-read and retry"


class InvalidResource(ClusterError):
    hint = "fix the manifest"


class CredentialsError(FleetflowError, ValueError):
    """Credentials that cannot be turned into a client (bad kubeconfig, missing context...)."""


class WaitTimeout(FleetflowError, TimeoutError):
    """A wait-until-ready ran past its deadline; carries what was last seen."""


_BY_STATUS: dict[int, type[ClusterError]] = {
    401: ClusterUnauthorized,
    403: ClusterForbidden,
    404: ResourceNotFound,
    409: ResourceConflict,
    422: InvalidResource,
    504: ClusterTimeout,
}


def _api_message(exc: ApiException) -> str:
    try:
        body: Any = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return f"HTTP {exc.status} {exc.reason}"
    if isinstance(body, dict) and body.get("message"):
        return f"HTTP {exc.status}: {body['message']}"
    return f"HTTP {exc.status} {exc.reason}"


def _root_cause(exc: BaseException) -> BaseException:
    """Unwrap urllib3's MaxRetryError/ProtocolError to the error that really happened."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if isinstance(inner, BaseException):
            exc = inner
            continue
        nested = exc.__cause__ or exc.__context__
        if nested is not None:
            exc = nested
            continue
        break
    return exc


def translate(cluster: str, exc: BaseException, timeout: float | None = None) -> Exception:
    """Map an error from the kubernetes client to the :class:`ClusterError` that explains it."""
    if isinstance(exc, ClusterError):
        return exc
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        cls = _BY_STATUS.get(status, ClusterError)
        if status == 0:  # the client's wrapper around a connection or TLS failure
            if str(exc.reason).startswith("SSLError") or isinstance(
                _root_cause(exc), ssl.SSLError | urllib3.exceptions.SSLError
            ):
                detail = str(exc.reason).removeprefix("SSLError").strip()
                return ClusterTLSError(cluster, f"TLS handshake failed: {detail}")
            return ClusterUnreachable(cluster, f"request failed: {exc.reason}")
        return cls(cluster, _api_message(exc), status=status)
    cause = _root_cause(exc)
    if isinstance(cause, ssl.SSLError | urllib3.exceptions.SSLError):
        return ClusterTLSError(cluster, f"TLS handshake failed: {cause}")
    if isinstance(cause, urllib3.exceptions.NewConnectionError | ConnectionError):
        return ClusterUnreachable(cluster, f"cannot connect: {cause}")
    if isinstance(
        cause,
        urllib3.exceptions.TimeoutError | TimeoutError | urllib3.exceptions.ReadTimeoutError,
    ):
        after = f" after {timeout:g}s" if timeout else ""
        return ClusterTimeout(cluster, f"request timed out{after}")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return ClusterUnreachable(cluster, f"cannot connect: {cause}")
    return exc if isinstance(exc, Exception) else ClusterError(cluster, repr(exc))
