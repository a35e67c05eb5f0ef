"""The in-cluster worker of deployments/kubernetes on the test bed's host: its manifests apply,
its service account may run flow-run Jobs in its own namespace and nothing else, the flow-run
service account may do nothing, and a real Prefect Kubernetes worker holding only the worker's
token turns a flow run into a Job there (whose pod the restricted profile admits), and its code
for cancelling a run that never started deletes that Job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL
from prefect_kubernetes.credentials import KubernetesClusterConfig
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

from fleetflow.errors import ClusterError, ClusterForbidden, ResourceNotFound
from fleetflow.kube import ClusterApiClient, ClusterCredentials, api_client, apply, ensure
from fleetflow.polling import poll_until
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import client_for

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parents[2] / "deployments" / "kubernetes"
NAMESPACE = "fleetflow-worker"
WORKER = f"system:serviceaccount:{NAMESPACE}:fleetflow-worker"
FLOW_RUN = f"system:serviceaccount:{NAMESPACE}:fleetflow-flow-run"
Attributes = dict[str, str]


def manifests() -> list[dict[str, Any]]:
    return [m for m in yaml.safe_load_all((HERE / "worker.yaml").read_text()) if m]


def base_job_template() -> dict[str, Any]:
    found: dict[str, Any] = json.loads((HERE / "base-job-template.json").read_text())
    return found


@pytest.fixture(scope="module")
def installed(testbed: TestbedSpec) -> Iterator[list[dict[str, Any]]]:
    """The worker's manifests, server-side applied to the host; its namespace deleted after."""
    host = client_for(testbed.host)
    applied = [apply(host, m) for m in manifests()]
    yield applied
    core = k8s.CoreV1Api(host)
    with contextlib.suppress(ResourceNotFound):
        core.delete_namespace(NAMESPACE)
    poll_until(
        lambda: NAMESPACE in {n.metadata.name for n in core.list_namespace().items},
        lambda present: not present,
        timeout=60,
        interval=0.5,
        waiting_for=f"namespace {NAMESPACE} to be deleted from the host",
    )


def allowed(client: ClusterApiClient, user: str, **attributes: str) -> bool:
    """What the apiserver's authorizer answers for ``user`` with a real token's groups."""
    namespace = user.split(":")[2]
    review = k8s.AuthorizationV1Api(client).create_subject_access_review(
        {
            "spec": {
                "user": user,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": attributes,
            }
        }
    )
    return bool(review.status.allowed)


def job(verb: str, namespace: str = NAMESPACE) -> Attributes:
    return {"group": "batch", "resource": "jobs", "verb": verb, "namespace": namespace}


def pods(verb: str, namespace: str = NAMESPACE, subresource: str = "") -> Attributes:
    found = {"resource": "pods", "verb": verb, "namespace": namespace}
    return {**found, "subresource": subresource} if subresource else found


WHAT_THE_WORKER_NEEDS: list[Attributes] = [
    *(job(verb) for verb in ("create", "get", "list", "watch", "delete")),
    *(pods(verb) for verb in ("get", "list", "watch")),
    pods("get", subresource="log"),
]

NOTHING_MORE: list[Attributes] = [
    # Its own rights, anywhere else (including across all namespaces: namespace "").
    *(job(verb, ns) for verb in ("create", "list", "watch", "delete") for ns in ("default", "")),
    *(pods(verb, ns) for verb in ("get", "list") for ns in ("default", "kube-system", "")),
    pods("get", "default", "log"),
    # In its own namespace: no pods of its own making, no Job rewrites, no secrets, no tokens,
    # no RBAC to grant itself more.
    pods("create"),
    pods("create", subresource="exec"),
    job("update"),
    job("patch"),
    *(
        {"resource": "secrets", "verb": verb, "namespace": ns}
        for verb in ("get", "list", "watch", "create")
        for ns in (NAMESPACE, "default", "kube-system", "")
    ),
    {
        "resource": "serviceaccounts",
        "subresource": "token",
        "verb": "create",
        "namespace": NAMESPACE,
    },
    {"resource": "configmaps", "verb": "get", "namespace": NAMESPACE},
    {"resource": "events", "verb": "list", "namespace": NAMESPACE},
    {
        "group": "rbac.authorization.k8s.io",
        "resource": "rolebindings",
        "verb": "create",
        "namespace": NAMESPACE,
    },
    {"group": "apps", "resource": "deployments", "verb": "patch", "namespace": NAMESPACE},
    # The federation's objects, wherever they live: flows reach them through blocks only.
    *(
        {"group": "fleetflow.io", "resource": resource, "verb": verb, "namespace": ns}
        for resource in ("memberclusters", "federateddeployments", "federationoperations")
        for verb in ("get", "list", "update", "delete")
        for ns in (NAMESPACE, "fleetflow-system", "")
    ),
    {
        "group": "coordination.k8s.io",
        "resource": "leases",
        "verb": "create",
        "namespace": NAMESPACE,
    },
    # Nothing cluster-scoped.
    {"resource": "namespaces", "verb": "get", "name": "kube-system"},
    {"resource": "namespaces", "verb": "list"},
    {"resource": "nodes", "verb": "list"},
    {"group": "apiextensions.k8s.io", "resource": "customresourcedefinitions", "verb": "list"},
    {"group": "rbac.authorization.k8s.io", "resource": "clusterrolebindings", "verb": "create"},
    {"resource": "users", "verb": "impersonate"},
    {"resource": "serviceaccounts", "verb": "impersonate", "namespace": NAMESPACE},
]


def test_the_manifests_apply_and_a_second_apply_changes_nothing(
    testbed: TestbedSpec, installed: list[dict[str, Any]]
) -> None:
    kinds = [(m["kind"], m["metadata"]["name"]) for m in installed]
    assert ("Role", "fleetflow-worker") in kinds
    assert ("Deployment", "fleetflow-worker") in kinds
    host = client_for(testbed.host)
    assert [ensure(host, m) for m in manifests()] == ["unchanged"] * len(installed)


def test_the_worker_may_run_jobs_in_its_namespace_and_nothing_more(
    testbed: TestbedSpec, installed: list[dict[str, Any]]
) -> None:
    host = client_for(testbed.host)
    refused = [a for a in WHAT_THE_WORKER_NEEDS if not allowed(host, WORKER, **a)]
    assert refused == []
    granted = [a for a in NOTHING_MORE if allowed(host, WORKER, **a)]
    assert granted == []


def test_the_flow_run_service_account_may_do_nothing(
    testbed: TestbedSpec, installed: list[dict[str, Any]]
) -> None:
    host = client_for(testbed.host)
    granted = [a for a in WHAT_THE_WORKER_NEEDS + NOTHING_MORE if allowed(host, FLOW_RUN, **a)]
    assert granted == []
    account = k8s.CoreV1Api(host).read_namespaced_service_account("fleetflow-flow-run", NAMESPACE)
    assert account.automount_service_account_token is False


def test_the_work_pool_is_created_from_the_template_with_fleetflows_job_variables(
    client: SyncPrefectClient,
) -> None:
    template = base_job_template()
    name = f"fleetflow-kubernetes-{uuid.uuid4().hex[:6]}"
    client.create_work_pool(
        WorkPoolCreate(name=name, type="kubernetes", base_job_template=template)
    )
    try:
        pool = client.read_work_pool(name)
        assert pool.type == "kubernetes"
        variables = pool.base_job_template["variables"]["properties"]
        defaults = {key: variables[key].get("default") for key in variables}
        assert defaults["namespace"] == NAMESPACE
        assert defaults["service_account_name"] == "fleetflow-flow-run"
        assert defaults["image"] == "REPLACE-ME/fleetflow:0.1.0"
        assert defaults["env"] == {"HOME": "/tmp"}
        assert defaults["finished_job_ttl"] == 3600
        assert defaults["cpu_request"] == "100m"
        assert defaults["memory_limit"] == "1Gi"
        assert pool.base_job_template == template
    finally:
        client.delete_work_pool(name)


def _flow_run_job(template: dict[str, Any]) -> dict[str, Any]:
    """The Job prefect-kubernetes's own code makes of the template for a flow run."""

    async def render() -> dict[str, Any]:
        config = await KubernetesWorkerJobConfiguration.from_template_and_values(template, {})
        config.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="probe"))
        manifest: dict[str, Any] = config.job_manifest
        return manifest

    return asyncio.run(render())


def _token_client(
    testbed: TestbedSpec, account: str, ttl: int = 900
) -> tuple[ClusterApiClient, str]:
    """A client holding a fresh token of ``account`` (the worker's identity, as in its pod)."""
    host = testbed.host
    token = (
        k8s.CoreV1Api(client_for(host))
        .create_namespaced_service_account_token(
            account, NAMESPACE, {"spec": {"expirationSeconds": ttl}}
        )
        .status.token
    )
    ca = bed.credentials(host).kubeconfig_dict()["clusters"][0]["cluster"][
        "certificate-authority-data"
    ]
    credentials = ClusterCredentials(
        name=host, api_url=f"https://127.0.0.1:{testbed.port(host)}", ca_data=ca, token=token
    )
    return api_client(credentials), yaml.safe_dump(credentials.kubeconfig_dict())


def test_the_template_renders_a_job_the_worker_may_create_and_a_pod_the_namespace_admits(
    testbed: TestbedSpec, installed: list[dict[str, Any]], prefect_server: None
) -> None:
    job_manifest = _flow_run_job(base_job_template())
    job_manifest["metadata"]["name"] = f"probe-{uuid.uuid4().hex[:6]}"
    pod_spec = job_manifest["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "fleetflow-flow-run"
    assert pod_spec["automountServiceAccountToken"] is False

    # Created as the worker creates it (POST), in a dry run that refuses fields a Job lacks.
    worker, _ = _token_client(testbed, "fleetflow-worker")
    created = k8s.BatchV1Api(worker).create_namespaced_job(
        NAMESPACE, job_manifest, dry_run="All", field_validation="Strict"
    )
    assert created.spec.template.spec.service_account_name == "fleetflow-flow-run"
    assert created.spec.ttl_seconds_after_finished == 3600

    # The restricted profile is enforced on pods: the flow run's and the worker's pass, a bare
    # one does not.
    host = client_for(testbed.host)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": NAMESPACE},
        "spec": pod_spec,
    }
    apply(host, pod, dry_run=True)
    (deployment,) = [m for m in manifests() if m["kind"] == "Deployment"]
    apply(host, {**pod, "spec": deployment["spec"]["template"]["spec"]}, dry_run=True)
    bare = {**pod, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    with pytest.raises(ClusterForbidden, match="violates PodSecurity"):
        apply(host, bare, dry_run=True)


def _env_of_the_worker_pod() -> dict[str, str]:
    """The worker pod's literal settings (its API URL aside: this one talks to the test server)."""
    (deployment,) = [m for m in manifests() if m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {
        e["name"]: e["value"]
        for e in container["env"]
        if "value" in e and e["name"] not in ("PREFECT_API_URL", "HOME")
    }


@pytest.fixture
def worker_process(
    testbed: TestbedSpec, installed: list[dict[str, Any]], tmp_path: Path, prefect_server: None
) -> Iterator[tuple[str, Path]]:
    """``prefect worker start --type kubernetes`` holding only the worker's token, as its pod does;
    yields its pool's name and its log."""
    pool = f"fleetflow-kubernetes-{uuid.uuid4().hex[:6]}"
    _, kubeconfig = _token_client(testbed, "fleetflow-worker", ttl=3600)
    (tmp_path / "kubeconfig").write_text(kubeconfig)
    (tmp_path / "template.json").write_text(json.dumps(base_job_template()))
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "KUBECONFIG": str(tmp_path / "kubeconfig"),
        "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES": NAMESPACE,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        **_env_of_the_worker_pod(),
    }
    log = tmp_path / "worker.log"
    prefect = str(Path(sys.executable).with_name("prefect"))
    command = [prefect, "worker", "start", "--type", "kubernetes", "--pool", pool]
    command += ["--base-job-template", str(tmp_path / "template.json"), "--install-policy", "never"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield pool, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:  # a worker that has worked takes over 20 s to exit; its run is over by now
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_real_worker_with_only_its_token_runs_a_flow_run_as_a_job_and_can_delete_it(
    testbed: TestbedSpec,
    client: SyncPrefectClient,
    worker_process: tuple[str, Path],
) -> None:
    pool, log = worker_process
    host = client_for(testbed.host)
    batch, core = k8s.BatchV1Api(host), k8s.CoreV1Api(host)

    def worker_log() -> str:
        return log.read_text(errors="replace")[-3000:]

    def pool_status() -> str | None:
        # The worker creates its pool (from the template) once it has started.
        with contextlib.suppress(ObjectNotFound):
            status = client.read_work_pool(pool).status
            return status.value if status else None
        return None

    poll_until(
        pool_status,
        lambda status: status == "READY",
        timeout=60,
        interval=0.5,
        waiting_for=f"a worker polling pool {pool!r}",
        describe=lambda status: f"{status!r}; worker log:\n{worker_log()}",
    )
    flow_id = client.create_flow_from_name("in-cluster-probe")
    deployment_id = client.create_deployment(
        flow_id=flow_id,
        name="probe",
        work_pool_name=pool,
        entrypoint="flows/bootstrap.py:bootstrap_control_plane",
    )
    run = client.create_flow_run_from_deployment(deployment_id)
    selector = f"prefect.io/flow-run-id={run.id}"

    jobs = poll_until(
        lambda: batch.list_namespaced_job(NAMESPACE, label_selector=selector).items,
        lambda found: len(found) == 1,
        timeout=90,
        interval=0.5,
        waiting_for=f"the worker to create a Job for flow run {run.name!r}",
        describe=lambda found: f"{len(found)} jobs; worker log:\n{worker_log()}",
    )
    spec = jobs[0].spec.template.spec
    assert spec.service_account_name == "fleetflow-flow-run"
    assert spec.automount_service_account_token is False
    assert jobs[0].spec.ttl_seconds_after_finished == 3600

    # The host's Job controller makes its pod: the namespace's restricted profile admitted it.
    # (The host schedules nothing, so the pod stays Pending.)
    poll_until(
        lambda: core.list_namespaced_pod(NAMESPACE, label_selector=selector).items,
        lambda found: len(found) == 1,
        timeout=60,
        interval=0.5,
        waiting_for=f"the Job controller to create the pod of flow run {run.name!r}",
        describe=lambda found: f"{len(found)} pods; events: {_events(core)}",
    )

    # Cancelling a run whose pod never started deletes its Job: the worker's own code for it,
    # holding the worker's token alone, on the pid the worker recorded on the run.
    pid = poll_until(
        lambda: client.read_flow_run(run.id).infrastructure_pid,
        lambda found: found is not None,
        timeout=30,
        interval=0.5,
        waiting_for=f"the worker to record the Job of flow run {run.name!r} on the run",
    )
    assert pid == f"{NAMESPACE}:{jobs[0].metadata.name}"
    asyncio.run(_kill(pool, pid, yaml.safe_load(log.with_name("kubeconfig").read_text())))
    poll_until(
        lambda: batch.list_namespaced_job(NAMESPACE, label_selector=selector).items,
        lambda found: found == [],
        timeout=60,
        interval=0.5,
        waiting_for=f"the Job of flow run {run.name!r} to be deleted",
        describe=lambda found: f"{len(found)} jobs",
    )
    assert "Forbidden" not in log.read_text(errors="replace"), worker_log()


async def _kill(pool: str, pid: str, kubeconfig: dict[str, Any]) -> None:
    config = await KubernetesWorkerJobConfiguration.from_template_and_values(
        base_job_template(), {}
    )
    # In its pod the worker reads the same token from the in-cluster config.
    config.cluster_config = KubernetesClusterConfig(
        config=kubeconfig, context_name=kubeconfig["current-context"]
    )
    await KubernetesWorker(work_pool_name=pool).kill_infrastructure(pid, config, grace_seconds=0)


def _events(core: k8s.CoreV1Api) -> list[str]:
    with contextlib.suppress(ClusterError):
        return [e.message for e in core.list_namespaced_event(NAMESPACE).items]
    return []
