"""One test bed and one Prefect server per test session; a namespace per test.

The test bed gets its own FLEETFLOW_HOME and ports, so a developer's `fleetflow up` is left
alone. Nothing here skips: without the binaries or the clusters the session fails loudly.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from uuid import UUID

import pytest
from kubernetes import client as k8s
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from prefect.settings import PREFECT_API_URL

from fleetflow.errors import ClusterError, ResourceConflict, ResourceNotFound, TestbedError
from fleetflow.kube import ClusterApiClient, api_client, apply, delete, list_objects
from fleetflow.polling import poll_until
from fleetflow.settings import settings
from fleetflow.stack import Database, Stack, deploy, ensure_work_pool, recording, stop
from fleetflow.testbed import bed, build, memory
from fleetflow.testbed.postgres import postgres
from fleetflow.testbed.spec import TestbedSpec

# Under pytest-xdist (`make test` runs two workers), each worker is a test session of its own:
# its own bed, Prefect server and home, on ports of its own (a bed uses fewer than 300).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw"):
    os.environ["FLEETFLOW_TEST_BASE_PORT"] = str(
        settings().test_base_port + 300 * int(_WORKER.removeprefix("gw"))
    )
POSTGRES_PORT_OFFSET = 74
"""The session server's PostgreSQL: below the ports test_postgres takes (75 on)."""


@pytest.fixture(scope="session")
def _bed_starting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[TestbedSpec]]:
    """The session's test bed, starting in the background: the Prefect server starts beside it
    (one after the other they took about 30 s of every worker's session, side by side 15)."""
    if build.cached_versions() is None:
        pytest.fail(
            "the test-bed binaries are not built: run `make testbed` (or `fleetflow testbed "
            "build`) before the integration tests",
            pytrace=False,
        )
    previous = os.environ.get("FLEETFLOW_HOME")
    os.environ["FLEETFLOW_HOME"] = str(tmp_path_factory.mktemp("fleetflow-home"))
    spec = TestbedSpec(base_port=settings().test_base_port)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="testbed-up")
    # The session's Prefect server, workers, browser and databases run beside its bed.
    starting = pool.submit(bed.up, spec, progress=quiet, beside=memory.suite_parts())
    try:
        yield starting
    finally:
        with contextlib.suppress(Exception):
            starting.result()
        pool.shutdown()
        bed.down(progress=quiet)
        if previous is None:
            os.environ.pop("FLEETFLOW_HOME", None)
        else:
            os.environ["FLEETFLOW_HOME"] = previous


@pytest.fixture(scope="session")
def testbed(_bed_starting: Future[TestbedSpec], prefect_server: None) -> TestbedSpec:
    """The session's test bed, once up. It asks for the Prefect server so that, whichever of
    the two a test names first, the server starts while the bed does."""
    try:
        return _bed_starting.result()
    except TestbedError as exc:
        refused = str(exc)
    pytest.fail(refused, pytrace=False)


@pytest.fixture(scope="session")
def prefect_server(_bed_starting: Future[TestbedSpec]) -> Iterator[None]:
    """The session's Prefect server, on a PostgreSQL of its own, started while the test bed
    starts. On SQLite (``prefect_test_harness``) a block saved while the server recorded a task
    run was refused ("database is locked") and Prefect's client retried it 2 s later: half of
    every join's time went to that sleep. In memory (one connection) spared those, but tests
    whose workers and CLIs talk to the server at once took twice as long."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.server.database.dependencies import temporary_database_interface
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    # The server phones home unless told not to; this machine has no internet to phone.
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    for name, value in recording().items():  # as `fleetflow up`'s server records task runs
        os.environ.setdefault(name, value)
    with (
        postgres(settings().test_base_port + POSTGRES_PORT_OFFSET) as pg,
        temporary_database_interface(),
        temporary_settings(
            updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: Database(pg.url).prefect_url}
        ),
    ):
        server = SubprocessASGIServer()
        server.start(timeout=120)
        try:
            # A flow run's heartbeat thread sleeps in one-second steps and every flow called
            # here waits for it to end: about a second per call, minutes over the suite.
            # Heartbeats let the server mark a crashed run; the tests that ask that of it run
            # flows in processes of their own.
            with temporary_settings(
                updates={PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
            ):
                yield
                # What the session's runs still send, sent before the server stops.
                APILogWorker.drain_all()
                EventsWorker.drain_all()
        finally:
            server.stop()


def made_whole(testbed: TestbedSpec) -> None:
    """The bed as `up` leaves it, for a test that needs all of it (every member's metrics API
    for HPAs, every process, every node's addresses): a test before it, in whatever order the
    workers took the files, may have stopped a cluster and healed it. On a whole bed this
    changes nothing."""
    bed.up(testbed, progress=quiet)


def client_for(cluster: str, timeout: float | None = None) -> ClusterApiClient:
    return api_client(bed.credentials(cluster, timeout))


@pytest.fixture
def members(testbed: TestbedSpec) -> list[str]:
    return [m.name for m in testbed.members]


@pytest.fixture
def namespace(request: pytest.FixtureRequest, testbed: TestbedSpec) -> Iterator[str]:
    """A fresh namespace on the host, deleted after the test (in every cluster). The members
    get it as users' members do: fleetflow opens it as a room of the federation that first
    writes there, or a test opens it with ``room``."""
    slug = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    k8s.CoreV1Api(client_for(testbed.host)).create_namespace({"metadata": {"name": name}})
    yield name
    delete_namespace(testbed, name)


def is_host(cluster: str) -> bool:
    """Whether requests counted under ``cluster`` went to the host: as its admin (``host``) or
    as a federation's flows account (block ``<federation>--host``)."""
    return cluster == "host" or cluster.endswith("--host")


def room(cluster: str, namespace: str, federation: str) -> None:
    """Open ``namespace`` in ``cluster`` as a room of ``federation``, as join does with admin
    rights (at the default Pod Security level), for a test that writes there itself first."""
    from fleetflow.admission import PodSecurity, room_labels

    labels = room_labels(federation, PodSecurity.RESTRICTED)
    with contextlib.suppress(ResourceConflict):
        k8s.CoreV1Api(client_for(cluster)).create_namespace(
            {"metadata": {"name": namespace, "labels": labels}}
        )


def delete_namespace(testbed: TestbedSpec, name: str) -> None:
    """Delete ``name`` in every cluster of the bed, fleetflow's finalizers released first on the
    host: no rebalance runs after the test to release them, and a namespace left Terminating is
    swept by the host's namespace controller again and again for the rest of the session (two
    requests per resource type a sweep: most of the host's requests, measured)."""
    from fleetflow.controlplane import API_VERSION
    from fleetflow.federated import FederatedDeployment
    from fleetflow.objects import FederatedObject
    from fleetflow.tasks.host import FINALIZER_MANAGER

    with contextlib.suppress(ClusterError):  # a test may have stopped the host
        host = client_for(testbed.host)
        for kind in (FederatedDeployment, FederatedObject):
            for found in list_objects(host, API_VERSION, kind.HOST_KIND, name):
                # Unvalidated: a test may have left an object the models refuse.
                held = kind.model_construct(**kind.fields_of(found))
                if held.protected:
                    with contextlib.suppress(ResourceNotFound):
                        apply(host, held.finalizer_patch(hold=False), manager=FINALIZER_MANAGER)
                # Gone now, not when the namespace controller gets to it: a failover of the
                # federation meanwhile would plan it, and wait for replicas that a member's
                # namespace, Terminating, never lets start.
                meta = found["metadata"]
                delete(host, API_VERSION, kind.HOST_KIND, meta["name"], meta["namespace"])
    for cluster in testbed.cluster_names():
        # A test may have stopped the cluster; the bed is torn down at the end anyway.
        with contextlib.suppress(ClusterError):
            k8s.CoreV1Api(client_for(cluster)).delete_namespace(name)


@pytest.fixture
def fleetflow_home(testbed: TestbedSpec) -> Path:
    return Path(os.environ["FLEETFLOW_HOME"])


@pytest.fixture(scope="session")
def admin_blocks(prefect_server: None, testbed: TestbedSpec) -> list[str]:
    """An admin KubeCluster block per test-bed cluster, named after it (as `fleetflow up` does)."""
    from fleetflow.blocks.testbed import save_testbed_blocks

    save_testbed_blocks(testbed)
    return testbed.cluster_names()


@contextlib.contextmanager
def a_federation(
    testbed: TestbedSpec,
    *,
    join: bool,
    prefix: str = "f",
    namespaces: Sequence[str] = (),
    bootstrap: bool = True,
    dns: bool = False,
) -> Iterator[str]:
    """A bootstrapped federation of its own (host namespace ``<name>-system``), with every
    test-bed member joined in its region when ``join`` (for Secrets in ``namespaces``);
    removed after. With ``dns``, bootstrapped with the test bed's DNS server and joined with
    the members' ingress addresses (``fleetflow up``'s way); without ``bootstrap``, only a
    name, and whatever a test made under it removed after."""
    from fleetflow.blocks import Federation, KubeCluster
    from fleetflow.blocks.loading import flows_block_name
    from fleetflow.cli.stack import federate_testbed
    from fleetflow.controlplane import flows_account
    from fleetflow.flows.bootstrap import bootstrap_control_plane
    from fleetflow.flows.join import join_cluster
    from fleetflow.kube import delete
    from fleetflow.models import BootstrapRequest, JoinRequest

    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    if dns:
        federate_testbed(testbed, name, namespace=f"{name}-system")
    elif bootstrap:
        bootstrap_control_plane(
            BootstrapRequest(federation=name, host_cluster=testbed.host, namespace=f"{name}-system")
        )
    try:
        requests = [
            JoinRequest(
                federation=name,
                member=m.name,
                admin_block=m.name,
                region=m.region,
                namespaces=list(namespaces),
            )
            for m in (testbed.members if join and not dns else [])
        ]
        # Side by side, as joins of different members may run: a few seconds a federation.
        with ThreadPoolExecutor(max_workers=len(requests) or 1) as pool:
            list(pool.map(join_cluster, requests))
        yield name
    finally:
        for member in testbed.members:
            with contextlib.suppress(ClusterError):
                remove_member_objects(member.name, name)
        with contextlib.suppress(ClusterError):
            k8s.CoreV1Api(client_for(testbed.host)).delete_namespace(f"{name}-system")
        for kind in ("ClusterRoleBinding", "ClusterRole"):  # the flows' host account's
            with contextlib.suppress(ClusterError):
                delete(
                    client_for(testbed.host),
                    "rbac.authorization.k8s.io/v1",
                    kind,
                    flows_account(name),
                )
        for block in [*(f"{name}-{m.name}" for m in testbed.members), flows_block_name(name)]:
            with contextlib.suppress(ValueError):
                KubeCluster.delete(block)
        with contextlib.suppress(ValueError):
            Federation.delete(name)


@pytest.fixture
def federation(admin_blocks: list[str], testbed: TestbedSpec) -> Iterator[str]:
    """A bootstrapped federation of its own, no member joined yet."""
    with a_federation(testbed, join=False) as name:
        yield name


@pytest.fixture
def joined(admin_blocks: list[str], testbed: TestbedSpec) -> Iterator[str]:
    """A federation of its own with every test-bed member joined, each in its region: for a
    test that stops clusters, fences members or otherwise changes what the next test sees."""
    with a_federation(testbed, join=True) as name:
        yield name


@pytest.fixture(scope="module")
def calm(admin_blocks: list[str], testbed: TestbedSpec) -> Iterator[str]:
    """One joined federation shared by a module's tests that only place workloads, each in a
    namespace of its own (bootstrap and three joins take about 12 s, a test's own work less)."""
    with a_federation(testbed, join=True) as name:
        yield name


def remove_member_objects(cluster: str, federation: str) -> None:
    """What join put in a member, removed with admin rights (test clean-up)."""
    from fleetflow.controlplane import LABEL_FEDERATION
    from fleetflow.kube import delete
    from fleetflow.membership import member_manifests

    client = client_for(cluster)
    for m in reversed(member_manifests(federation)):
        meta = m["metadata"]
        delete(client, m["apiVersion"], m["kind"], meta["name"], meta.get("namespace"))
    apps = k8s.AppsV1Api(client)
    selector = f"{LABEL_FEDERATION}={federation}"
    for d in apps.list_deployment_for_all_namespaces(label_selector=selector).items:
        delete(client, "apps/v1", "Deployment", d.metadata.name, d.metadata.namespace)


def quiet(message: str) -> None:
    pass


@pytest.fixture
def client(prefect_server: None) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        yield client


@pytest.fixture(scope="session")
def deployments(admin_blocks: list[str]) -> Stack:
    """The work pool and deployments as `fleetflow up` applies them, on the session's server:
    applied once (`prefect deploy` took seconds of CPU a test), since no test changes them."""
    # The worker shares the test bed's home: a drill it runs injects faults there.
    stack = Stack(api_url=str(PREFECT_API_URL.value()), home=Path(os.environ["FLEETFLOW_HOME"]))
    ensure_work_pool(stack, progress=quiet)
    deploy(stack, progress=quiet)
    return stack


@pytest.fixture
def deployed(deployments: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The session's deployments, in a process whose own Prefect log level is WARNING (as
    `fleetflow up` used to set it). The worker is started by the test and stopped here."""
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    yield deployments
    # A Prefect worker that has run flows takes over 20 s to exit on SIGTERM; its runs are
    # over by now, so the suite does not wait for it.
    stop(deployments, "worker", progress=quiet, timeout=2)


def recorded_task_runs(flow_run_id: UUID | None, at_least: int) -> list[TaskRun]:
    """The task runs Prefect recorded for a finished flow run. They reach the server as events,
    after the run returns: wait for ``at_least`` of them, each in a final state, and for two
    reads in a row to agree."""
    assert flow_run_id is not None
    query = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    last: list[int] = []

    def read() -> list[TaskRun]:
        with get_client(sync_client=True) as client:
            found = client.read_task_runs(flow_run_filter=query)
        last.append(len(found))
        return found

    return poll_until(
        read,
        lambda runs: (
            len(runs) >= at_least
            and all(r.state is not None and r.state.is_final() for r in runs)
            and last[-2:] == [len(runs)] * 2
        ),
        timeout=30,
        interval=0.5,
        waiting_for=f"the task runs of flow run {flow_run_id} to be recorded",
        describe=lambda runs: ", ".join(sorted(r.name for r in runs)),
    )


def fleetflow(*argv: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The ``fleetflow`` command as a user runs it, against the session's Prefect server."""
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_HOME=str(home))
    command = [str(Path(sys.executable).with_name("fleetflow")), *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
