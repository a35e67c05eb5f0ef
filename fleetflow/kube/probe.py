"""Is a cluster's API server ready? ``GET /readyz`` with httpx, the cluster's own credentials and
a short timeout.

The health watcher asks this every few seconds, so it must never hang on a dead member and never
raise: a member that does not answer is an answer. The client is built from the same
configuration as :func:`fleetflow.kube.api_client` (a kubeconfig's CA and client certificate, or
an API URL, CA data and a bearer token), so both kinds of ``KubeCluster`` block work. ``/readyz``
is open to every authenticated user (``system:public-info-viewer``), so a member's
least-privilege token can ask it.
"""

from __future__ import annotations

import ssl
import time

import httpx
from pydantic import BaseModel

from fleetflow.kube.client import REQUESTS, ClusterCredentials, configuration


class Readyz(BaseModel):
    """What ``/readyz`` said."""

    ok: bool
    detail: str = ""
    seconds: float = 0.0


def http_client(credentials: ClusterCredentials, timeout: float) -> httpx.Client:
    """An httpx client for this cluster alone: its CA, its client certificate or token."""
    config = configuration(credentials)
    verify: ssl.SSLContext | bool = False
    if config.verify_ssl:
        verify = ssl.create_default_context(cafile=config.ssl_ca_cert)
        if config.cert_file and config.key_file:
            verify.load_cert_chain(config.cert_file, config.key_file)
    headers = {}
    bearer = config.auth_settings().get("BearerToken")
    if bearer and bearer.get("value"):
        headers["Authorization"] = bearer["value"]
    return httpx.Client(
        base_url=config.host, verify=verify, headers=headers, timeout=timeout, trust_env=False
    )


def readyz(credentials: ClusterCredentials, timeout: float) -> Readyz:
    """Ask ``/readyz``; any failure (refused, timed out, TLS, 401, not ready) is ``ok=False``
    with a one-line reason."""
    REQUESTS[(credentials.name, "GET")] += 1
    started = time.monotonic()

    def done(ok: bool, detail: str) -> Readyz:
        return Readyz(ok=ok, detail=detail, seconds=round(time.monotonic() - started, 3))

    try:
        with http_client(credentials, timeout) as client:
            response = client.get("/readyz")
    except httpx.TimeoutException:
        return done(False, f"/readyz: no answer in {timeout:g}s")
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        return done(False, f"/readyz: cannot connect: {type(exc).__name__}: {exc}"[:300])
    if response.status_code == 200:
        return done(True, "ready")
    failing = [line for line in response.text.splitlines() if line.startswith("[-]")]
    reason = "; ".join(failing[:3]) or response.text.strip()[:200]
    return done(False, f"/readyz: HTTP {response.status_code}: {reason}")
