"""Which federation a command acts on, and its host, read without importing Prefect.

``--federation`` may be left out when ``FLEETFLOW_FEDERATION`` names one or exactly one
Federation block is saved; the command then says on stderr which one it used (stdout may be a
JSON document)."""

from __future__ import annotations

import sys

from fleetflow.blockstore import (
    CLUSTER_SLUG,
    FEDERATION_SLUG,
    BlockStore,
    configured_api_url,
    default_federation,
    missing_cluster,
    missing_federation,
)
from fleetflow.errors import StackError
from fleetflow.kube import ClusterApiClient, ClusterCredentials, api_client
from fleetflow.settings import settings
from fleetflow.stack import Stack, healthy

FEDERATION_HELP = " (default: FLEETFLOW_FEDERATION, else the only Federation block saved)"


def block_store() -> BlockStore:
    """The blocks of the Prefect API a flow would run against (``runs.prefect_api``)."""
    if url := configured_api_url():
        return BlockStore(url)
    stack = Stack()
    if not healthy(stack):
        raise StackError(
            "no Prefect API to read the blocks from: start one with `fleetflow up`, "
            "or set PREFECT_API_URL"
        )
    return BlockStore(stack.api_url)


def chosen_federation() -> str:
    configured = settings().federation
    if configured:
        name, why = configured, "FLEETFLOW_FEDERATION"
    else:
        with block_store() as store:
            name, why = default_federation(None, store.names(FEDERATION_SLUG))
    print(f"note: federation {name!r} ({why})", file=sys.stderr, flush=True)
    return name


class HostRead:
    """The federation's name as its block says, and a client for its host cluster."""

    def __init__(self, federation: str, host: ClusterApiClient) -> None:
        self.federation = federation
        self.host = host


def host_of(federation: str) -> HostRead:
    """The federation's host cluster, from its blocks; a missing block is one line."""
    with block_store() as store:
        saved = store.data(FEDERATION_SLUG, federation)
        if saved is None:
            raise missing_federation(federation)
        # The flows' own host account when bootstrap made one: reading needs no admin.
        block = str(saved.get("host_identity") or saved["host_cluster"])
        cluster = store.data(CLUSTER_SLUG, block)
        if cluster is None:
            raise missing_cluster(block)
    fields = {k: v for k, v in cluster.items() if k in ClusterCredentials.model_fields}
    credentials = ClusterCredentials.model_validate({**fields, "name": block})
    return HostRead(str(saved.get("name") or federation), api_client(credentials))
