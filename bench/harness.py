"""The set-up most benchmarks share: a test bed of their own on the benchmark ports, a Prefect
server of their own, the test bed's blocks, and a federation bootstrapped with every member
joined. Import it before fleetflow: it points FLEETFLOW_HOME at a fresh directory first.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

os.environ.setdefault("FLEETFLOW_HOME", tempfile.mkdtemp(prefix="fleetflow-bench-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no internet to phone

from kubernetes import client as k8s
from prefect.testing.utilities import prefect_test_harness

from fleetflow.blocks.testbed import save_testbed_blocks
from fleetflow.cli.stack import federate_testbed
from fleetflow.kube import ClusterApiClient, api_client
from fleetflow.settings import settings
from fleetflow.testbed import bed
from fleetflow.testbed.spec import NodeShape, TestbedSpec

ROOMY = NodeShape(cpu="64", memory="256Gi", pods=1000)
"""Nodes with room for every benchmark's replicas: capacity never decides a figure."""


def bench_spec(node: NodeShape = ROOMY) -> TestbedSpec:
    return TestbedSpec(base_port=settings().bench_base_port, node=node)


@contextmanager
def testbed_and_server(spec: TestbedSpec) -> Iterator[TestbedSpec]:
    """The test bed up with a Prefect server and the test bed's blocks saved; both stopped on
    the way out, whatever happens."""
    bed.up(spec, progress=lambda m: None)
    try:
        with prefect_test_harness(server_startup_timeout=120):
            save_testbed_blocks(spec)
            yield spec
    finally:
        bed.down(progress=lambda m: None)


@contextmanager
def federated(
    federation: str, namespace: str | None = None, spec: TestbedSpec | None = None
) -> Iterator[ClusterApiClient]:
    """``testbed_and_server`` with ``federation`` bootstrapped and every member joined;
    yields a client for the host (``namespace`` created in it, when given)."""
    with testbed_and_server(spec or bench_spec()) as up:
        federate_testbed(up, federation)
        host = api_client(bed.credentials(up.host))
        if namespace:
            k8s.CoreV1Api(host).create_namespace({"metadata": {"name": namespace}})
        yield host
