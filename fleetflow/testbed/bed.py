"""Start, inspect, fault and stop the local federation of real clusters.

Each cluster is etcd + kube-apiserver (+ controller-manager, scheduler and a kwok controller on
members) run as local processes by ``kwokctl --runtime binary`` from the binaries that
:mod:`fleetflow.testbed.build` made. Everything lives under ``$FLEETFLOW_HOME/testbed``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml
from kubernetes import client as k8s
from pydantic import SecretStr

from fleetflow.controlplane import DNS_CRD_NAME, dns_endpoint_crd
from fleetflow.errors import ClusterError, TestbedError
from fleetflow.kube import ClusterCredentials, api_client, apply, get, list_objects
from fleetflow.kube.apply import resource_type
from fleetflow.polling import poll_until
from fleetflow.rsync import resolved
from fleetflow.settings import settings
from fleetflow.testbed import build, dns, memory, metrics
from fleetflow.testbed.spec import (
    GO_RUNTIME,
    HOSTPATH_ROOT,
    NODE_ADDRESSES,
    MetricsServer,
    TestbedSpec,
    kwokctl_config,
    node_manifests,
    storage_class,
)
from fleetflow.volume_paths import directory_of, inside

Progress = Callable[[str], None]
READY_TIMEOUT = 120.0


def testbed_dir() -> Path:
    return settings().home / "testbed"


def kubeconfig_path(cluster: str) -> Path:
    return testbed_dir() / "kubeconfigs" / f"{cluster}.yaml"


def _state_path() -> Path:
    return testbed_dir() / "state.json"


def _dns_dir() -> Path:
    return testbed_dir() / "dns"


def load_spec() -> TestbedSpec | None:
    """The layout of the test bed that ``up`` started, if any."""
    try:
        return TestbedSpec.model_validate_json(_state_path().read_text())
    except (OSError, ValueError):
        return None


def _kwokctl(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        **GO_RUNTIME,  # kwokctl passes its environment to the clusters' processes
        KWOK_WORKDIR=str(testbed_dir() / "kwok"),
        KWOK_KUBECTL_BINARY=str(build.bin_dir() / "kubectl"),
    )
    proc = subprocess.run(
        [str(build.bin_dir() / "kwokctl"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise TestbedError(f"kwokctl {' '.join(args)} failed:\n{proc.stderr.strip()[-2000:]}")
    return proc


def _cluster_dir(cluster: str) -> Path:
    return testbed_dir() / "kwok" / "clusters" / cluster


def _existing_clusters() -> set[str]:
    root = testbed_dir() / "kwok" / "clusters"
    return (
        {p.name for p in root.iterdir() if (p / "kwok.yaml").exists()} if root.exists() else set()
    )


def _port_free(port: int, protocol: str = "tcp") -> bool:
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def credentials(cluster: str, timeout: float | None = None) -> ClusterCredentials:
    """Admin credentials for a test-bed cluster, from the kubeconfig ``up`` wrote."""
    path = kubeconfig_path(cluster)
    if not path.exists():
        raise TestbedError(f"no test-bed cluster {cluster!r}: run `fleetflow testbed up` first")
    return ClusterCredentials(
        name=cluster,
        kubeconfig=SecretStr(path.read_text()),
        request_timeout=timeout or settings().request_timeout,
    )


def _write_kubeconfig(cluster: str, port: int) -> None:
    """A self-contained kubeconfig (certificates inlined) so it can live in a secret block."""
    pki = _cluster_dir(cluster) / "pki"

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": f"https://127.0.0.1:{port}",
                    "certificate-authority-data": b64("ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": f"{cluster}-admin",
                "user": {
                    "client-certificate-data": b64("admin.crt"),
                    "client-key-data": b64("admin.key"),
                },
            }
        ],
        "contexts": [
            {"name": cluster, "context": {"cluster": cluster, "user": f"{cluster}-admin"}}
        ],
        "current-context": cluster,
    }
    path = kubeconfig_path(cluster)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(yaml.safe_dump(config))


def _create_cluster(spec: TestbedSpec, cluster: str, kube_version: str) -> None:
    bins = build.bin_dir()
    config = testbed_dir() / "config" / f"{cluster}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    member = cluster != spec.host
    served = MetricsServer(str(bins / "metrics-server"), str(metrics.manifests_dir()))
    config.write_text(
        kwokctl_config(
            spec.port(cluster),
            kube_version,
            member=member,
            ports=spec.component_ports(cluster),
            metrics=served if member else None,
        )
    )
    # kwok's metrics emulation: the nodes' resource metrics, pods' usage from annotations.
    emulation = [a for f in metrics.config_files() for a in ("--config", str(f))] if member else []
    _kwokctl(
        "--name",
        cluster,
        "create",
        "cluster",
        "--config",
        str(config),
        *emulation,
        "--kubeconfig",
        "",
        "--heartbeat-factor",
        "1",
        "--kube-apiserver-binary",
        str(bins / "kube-apiserver"),
        "--kube-controller-manager-binary",
        str(bins / "kube-controller-manager"),
        "--kube-scheduler-binary",
        str(bins / "kube-scheduler"),
        "--kwok-controller-binary",
        str(bins / "kwok"),
        "--etcd-binary",
        str(bins / "etcd"),
        "--wait",
        "2m",
    )
    _write_kubeconfig(cluster, spec.port(cluster))


def _components(spec: TestbedSpec, cluster: str) -> set[str]:
    """The processes a healthy cluster runs."""
    host = {"etcd", "kube-apiserver", "kube-controller-manager"}
    if cluster == spec.host:
        return host
    return host | {"kube-scheduler", "kwok-controller", "metrics-server"}


def _whole(spec: TestbedSpec, cluster: str, running: dict[str, dict[str, int]]) -> bool:
    """Whether every process of the cluster is among ``running`` (:func:`processes`)."""
    return _components(spec, cluster) <= set(running.get(cluster, {}))


def _restart(cluster: str) -> None:
    """Stop then start, so that a cluster with one component killed comes back whole."""
    _kwokctl("--name", cluster, "stop", "cluster", check=False)
    _kwokctl("--name", cluster, "start", "cluster", "--wait", "2m")


def _add_nodes(spec: TestbedSpec, member: str) -> None:
    """Its kwok nodes, and its default StorageClass; a node that lost its addresses (a bed
    restarted by an older version, see ``NODE_ADDRESSES``) gets them back."""
    client = api_client(credentials(member))
    core = k8s.CoreV1Api(client)
    existing = {n.metadata.name: n for n in core.list_node().items}
    for node in node_manifests(spec.member(member), spec.node):
        name = node["metadata"]["name"]
        if name not in existing:
            apply(client, node)
        elif not existing[name].status.addresses:
            core.patch_node_status(name, {"status": {"addresses": NODE_ADDRESSES}})
    apply(client, storage_class())


def _wait_ready(
    spec: TestbedSpec, clusters: list[str] | None = None, timeout: float = READY_TIMEOUT
) -> None:
    """Wait until the clusters answer and each member's nodes are all Ready."""
    names = clusters or spec.cluster_names()

    def not_ready(row: dict[str, ClusterStatus]) -> str:
        return "; ".join(
            f"{c}: {s.problem or 'nodes not Ready'}" for c, s in row.items() if not s.ready
        )

    poll_until(
        lambda: {c: cluster_status(spec, c) for c in names},
        lambda row: all(s.ready for s in row.values()),
        timeout=timeout,
        interval=0.5,
        waiting_for=f"clusters {', '.join(names)} ready",
        describe=not_ready,
        hint="`fleetflow testbed fault start-cluster NAME` restarts one whole",
    )


METRICS_API = "v1beta1.metrics.k8s.io"
METRICS_LOG = Path("logs") / "metrics-server.log"


def _metrics_available(member: str) -> str:
    """Empty when the member serves the metrics API; else why not."""
    try:
        service = get(
            api_client(credentials(member, 3)),
            "apiregistration.k8s.io/v1",
            "APIService",
            METRICS_API,
        )
    except (ClusterError, TestbedError) as exc:
        return str(exc)
    for condition in (service.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Available":
            return "" if condition.get("status") == "True" else condition.get("message", "")
    return "not Available yet"


def _wait_metrics(spec: TestbedSpec, members: list[str], timeout: float = READY_TIMEOUT) -> None:
    """Wait until each member's metrics-server answers, so that its HPAs can scale."""
    poll_until(
        lambda: {m: _metrics_available(m) for m in members},
        lambda row: not any(row.values()),
        timeout=timeout,
        interval=1.0,
        waiting_for=f"the metrics API ({METRICS_API}) served in {', '.join(members)}",
        # The log's last line is in the error: a suite's bed is gone before anyone reads it.
        describe=lambda row: "; ".join(
            f"{m}: {why} (its log ends: {_last_line(_cluster_dir(m) / METRICS_LOG)})"
            for m, why in row.items()
            if why
        ),
    )


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError as exc:
        return f"unreadable: {exc}"
    return lines[-1][-300:] if lines else "empty"


def _dns_ports_taken(spec: TestbedSpec) -> list[str]:
    """Ports of the DNS chain's stopped processes that something else holds."""
    alive = dns.running(_dns_dir(), build.bin_dir())
    return [
        f"{name} ({port}/{protocol})"
        for name, pairs in dns.process_ports(spec.dns_ports()).items()
        if name not in alive
        for port, protocol in pairs
        if not _port_free(port, protocol)
    ]


def _start_dns(spec: TestbedSpec, progress: Progress) -> list[str]:
    """ExternalDNS's CRD in the host, then whichever DNS processes are not running."""
    client = api_client(credentials(spec.host))
    apply(client, dns_endpoint_crd())

    def served() -> bool:
        try:
            resource_type(client, dns.DNS_ENDPOINT_API, "DNSEndpoint")
        except ClusterError:
            return False
        return True

    # ExternalDNS exits at start if its source's kind is not served yet.
    poll_until(
        served,
        bool,
        timeout=READY_TIMEOUT,
        waiting_for=f"the host serving {dns.DNS_ENDPOINT_API} DNSEndpoint",
        describe=lambda _: "not served",
        hint=f"check `kubectl get crd {DNS_CRD_NAME}` there",
    )
    return dns.start(spec, _dns_dir(), build.bin_dir(), kubeconfig_path(spec.host), progress)


def check_memory(spec: TestbedSpec, beside: Sequence[memory.Part] = ()) -> None:
    """Refuse, before any process starts, what this machine's memory cannot hold: the clusters
    and DNS processes of ``spec`` that are not running yet, and what will run ``beside`` them."""
    running = processes()
    clusters = [c for c in spec.cluster_names() if not _whole(spec, c, running)]
    dns_down = not set(dns.PROCESSES) <= set(dns.running(_dns_dir(), build.bin_dir()))
    need = [*memory.bed_parts(spec, clusters, dns=dns_down), *beside]
    available, reserve = memory.available_mib(), settings().memory_reserve
    if not any(p.mib for p in need) or memory.refusal(need, available, reserve) is None:
        return
    # Only a refusal reads the other beds and the size that fits, for its line.
    fits = memory.members_that_fit(spec, available - reserve, beside)
    line = memory.refusal(
        need,
        available,
        reserve,
        others=[b for b in memory.beds_running() if b.directory != testbed_dir()],
        fitting_members=fits if fits < len(spec.members) else None,
    )
    if line:
        raise TestbedError(line)


def up(
    spec: TestbedSpec | None = None,
    progress: Progress = print,
    beside: Sequence[memory.Part] = (),
) -> TestbedSpec:
    """Start the test bed; on a running test bed with the same layout, change nothing. Refuse
    what the machine's memory cannot hold, with what runs ``beside`` the bed counted in."""
    spec = spec or load_spec() or TestbedSpec()
    running = load_spec()
    if running is not None and running != spec:
        raise TestbedError(
            "a test bed with a different layout is already running: "
            "run `fleetflow testbed down` first, or `up` with the same options"
        )
    versions = build.cached_versions()
    if versions is None:
        raise TestbedError("the test-bed binaries are not built: run `fleetflow testbed build`")
    check_memory(spec, beside)
    existing = _existing_clusters()
    to_create = [c for c in spec.cluster_names() if c not in existing]
    taken = [f"{c} ({spec.port(c)})" for c in to_create if not _port_free(spec.port(c))]
    if taken:
        raise TestbedError(
            f"API ports already in use: {', '.join(taken)}; stop what holds them "
            f"or pass another --base-port (now {spec.base_port})"
        )
    taken = _dns_ports_taken(spec)
    if taken:
        raise TestbedError(
            f"DNS ports already in use: {', '.join(taken)}; stop what holds them "
            f"or pass another --base-port (now {spec.base_port})"
        )
    _state_path().parent.mkdir(parents=True, exist_ok=True)
    _state_path().write_text(spec.model_dump_json(indent=2))
    started = time.monotonic()
    created: list[str] = []
    running_now = processes()
    stopped = [
        c for c in spec.cluster_names() if c in existing and not _whole(spec, c, running_now)
    ]
    try:
        for cluster in stopped:
            progress(f"restarting cluster {cluster}: some of its processes are not running")
            _restart(cluster)
        # The clusters start side by side: each spends most of its start waiting for its own
        # processes to answer (a bed of four took 16.6 s one after the other, 10.8 s so).
        for cluster in to_create:
            progress(f"starting cluster {cluster} on 127.0.0.1:{spec.port(cluster)}")
        with ThreadPoolExecutor(max_workers=len(to_create) or 1) as pool:
            starts = {
                c: pool.submit(_create_cluster, spec, c, versions["kubernetes"]) for c in to_create
            }
        # What did start is deleted below if another did not.
        created += [c for c, start in starts.items() if start.exception() is None]
        for start in starts.values():
            start.result()
        for member in spec.members:
            _add_nodes(spec, member.name)
        _wait_ready(spec)
        _wait_metrics(spec, [m.name for m in spec.members])
        dns_started = _start_dns(spec, progress)
    except BaseException:
        for cluster in created:
            _kwokctl("--name", cluster, "delete", "cluster", check=False)
            kubeconfig_path(cluster).unlink(missing_ok=True)
        if not existing:
            dns.remove(_dns_dir(), build.bin_dir())
            _state_path().unlink(missing_ok=True)
        raise
    if to_create or stopped or dns_started:
        progress(f"test bed ready in {time.monotonic() - started:.1f}s")
    else:
        progress("test bed already running; nothing changed")
    return spec


def _remove_volumes(cluster: str) -> None:
    """The directories of the cluster's hostPath volumes (its provisioner made them under
    /tmp/hostpath_pv, beside other beds' own): they would outlive the cluster. A cluster that
    does not answer keeps them."""
    try:
        volumes = list_objects(api_client(credentials(cluster, 5)), "v1", "PersistentVolume")
    except (ClusterError, TestbedError):
        return
    root = resolved(HOSTPATH_ROOT)[0]
    for volume in volumes:
        # Resolved, whole components: a volume written as the root followed by ``/../..``, or
        # a link out of it, is left alone (the mover's own rule, ``volume_paths``).
        directory = directory_of(volume)
        real, link = resolved(directory) if directory else ("", True)
        if not link and inside(real, root):
            shutil.rmtree(real, ignore_errors=True)


def down(progress: Progress = print) -> None:
    """Stop the DNS chain, stop and delete every test-bed cluster; leave no process behind."""
    if dns.running(_dns_dir(), build.bin_dir()):
        progress("stopping the DNS chain (ExternalDNS, CoreDNS, the records' etcd)")
    dns.remove(_dns_dir(), build.bin_dir())
    if not (build.bin_dir() / "kwokctl").exists():
        return
    running = processes()
    for cluster in sorted(_existing_clusters()):
        progress(f"deleting cluster {cluster}")
        _remove_volumes(cluster)
        _kwokctl("--name", cluster, "delete", "cluster", check=False)
        kubeconfig_path(cluster).unlink(missing_ok=True)
    for pid in (pid for pids in running.values() for pid in pids.values()):
        _wait_gone(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _state_path().unlink(missing_ok=True)


@dataclass
class ClusterStatus:
    cluster: str
    region: str
    api_url: str
    version: str = ""
    nodes_ready: int = 0
    nodes_total: int = 0
    reachable: bool = False
    problem: str = ""
    is_member: bool = True

    @property
    def ready(self) -> bool:
        if not self.reachable:
            return False
        return not self.is_member or (self.nodes_total > 0 and self.nodes_ready == self.nodes_total)


def cluster_status(spec: TestbedSpec, cluster: str, timeout: float = 3.0) -> ClusterStatus:
    member = cluster != spec.host
    status = ClusterStatus(
        cluster=cluster,
        region=spec.member(cluster).region if member else "-",
        api_url=f"https://127.0.0.1:{spec.port(cluster)}",
        is_member=member,
    )
    try:
        client = api_client(credentials(cluster, timeout))
        status.version = k8s.VersionApi(client).get_code().git_version
        status.reachable = True
        nodes = k8s.CoreV1Api(client).list_node().items
    except (ClusterError, TestbedError) as exc:
        status.problem = str(exc)
        return status
    status.nodes_total = len(nodes)
    status.nodes_ready = sum(
        1
        for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    )
    return status


def status() -> list[ClusterStatus]:
    spec = load_spec()
    if spec is None:
        return []
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda c: cluster_status(spec, c), spec.cluster_names()))


def dns_status() -> dns.DnsStatus | None:
    """The DNS chain's server, zone and health, or None when the test bed is down."""
    spec = load_spec()
    return None if spec is None else dns.status(spec, _dns_dir(), build.bin_dir())


class Fault(StrEnum):
    """Faults that drills inject."""

    STOP_CLUSTER = "stop-cluster"
    START_CLUSTER = "start-cluster"
    KILL_APISERVER = "kill-apiserver"
    STOP_KWOK = "stop-kwok"


def _pid(cluster: str, component: str) -> int | None:
    try:
        return int((_cluster_dir(cluster) / "pids" / f"{component}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _kill(cluster: str, component: str) -> None:
    pid = _pid(cluster, component)
    if pid is None:
        raise TestbedError(f"{component} of {cluster!r} is not running")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _wait_gone(pid)


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    poll_until(
        alive, lambda up: not up, timeout=timeout, interval=0.05, waiting_for=f"pid {pid} gone"
    )


def fault(cluster: str, kind: Fault, progress: Progress = print) -> None:
    """Inject a fault into one cluster; ``start-cluster`` heals every fault."""
    spec = load_spec()
    if spec is None or cluster not in spec.cluster_names():
        known = ", ".join(spec.cluster_names()) if spec else "none: the test bed is down"
        raise TestbedError(f"unknown test-bed cluster {cluster!r}; clusters: {known}")
    if kind is Fault.STOP_CLUSTER:
        _kwokctl("--name", cluster, "stop", "cluster")
    elif kind is Fault.START_CLUSTER:
        _start_whole(spec, cluster)
    elif kind is Fault.KILL_APISERVER:
        _kill(cluster, "kube-apiserver")
    elif kind is Fault.STOP_KWOK:
        if cluster == spec.host:
            raise TestbedError("the host cluster runs no kwok controller")
        _kill(cluster, "kwok-controller")
    progress(f"{kind.value}: done on {cluster}")


def _start_whole(spec: TestbedSpec, cluster: str) -> None:
    """Restart the cluster and wait until it answers with every process running and, for a
    member, its metrics API served. Once more when a component exited while the others
    started (seen in a suite under load: a member back without its metrics-server, which the
    next ``up`` found and restarted)."""
    for _ in range(2):
        _restart(cluster)
        _wait_ready(spec, [cluster])
        if _whole(spec, cluster, processes()):
            break
    if cluster != spec.host:
        _wait_metrics(spec, [cluster])


def processes() -> dict[str, dict[str, int]]:
    """Running test-bed processes by cluster and component, from kwokctl's pid files."""
    found: dict[str, dict[str, int]] = {}
    for cluster in _existing_clusters():
        for pidfile in (_cluster_dir(cluster) / "pids").glob("*.pid"):
            pid = _pid(cluster, pidfile.stem)
            if pid is not None and Path(f"/proc/{pid}").exists():
                found.setdefault(cluster, {})[pidfile.stem] = pid
    return found


def whole(cluster: str) -> bool:
    """Whether every process of the cluster runs: a stopped cluster, or one with a component
    killed, is not (and ``start-cluster`` makes it whole again)."""
    spec = load_spec()
    if spec is None or cluster not in spec.cluster_names():
        return False
    return _whole(spec, cluster, processes())


def memory_mib() -> dict[str, float]:
    """Resident memory of each cluster's processes, in MiB."""
    return {
        cluster: sum(memory.rss_kib(str(pid)) for pid in pids.values()) / 1024
        for cluster, pids in processes().items()
    }


def as_json(rows: list[ClusterStatus]) -> str:
    return json.dumps([row.__dict__ for row in rows], indent=2)
