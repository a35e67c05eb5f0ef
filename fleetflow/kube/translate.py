"""Turn the kubernetes client's errors into fleetflow's, which name the cluster and the fix.

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

from fleetflow.errors import (
    ClusterError,
    ClusterTimeout,
    ClusterTLSError,
    ClusterUnreachable,
    for_status,
)


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


def _dropped(exc: BaseException) -> bool:
    """The server went away mid-request (a TLS connection closed without its close message):
    a server that stopped, not a certificate that is wrong."""
    cause = _root_cause(exc)
    return isinstance(cause, ssl.SSLEOFError) or "EOF occurred in violation of protocol" in str(
        getattr(exc, "reason", "") or cause
    )


def translate(cluster: str, exc: BaseException, timeout: float | None = None) -> Exception:
    """Map an error from the kubernetes client to the :class:`ClusterError` that explains it."""
    if isinstance(exc, ClusterError):
        return exc
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        cls = for_status(status)
        if status == 0:  # the client's wrapper around a connection or TLS failure
            if _dropped(exc):
                return ClusterUnreachable(cluster, f"the connection dropped: {exc.reason}")
            if str(exc.reason).startswith("SSLError") or isinstance(
                _root_cause(exc), ssl.SSLError | urllib3.exceptions.SSLError
            ):
                detail = str(exc.reason).removeprefix("SSLError").strip()
                return ClusterTLSError(cluster, f"TLS handshake failed: {detail}")
            return ClusterUnreachable(cluster, f"request failed: {exc.reason}")
        return cls(cluster, _api_message(exc), status=status)
    cause = _root_cause(exc)
    if _dropped(exc):
        return ClusterUnreachable(cluster, f"the connection dropped: {cause}")
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
