"""The test bed's DNS chain: ExternalDNS writes records into a small etcd, CoreDNS serves them.

ExternalDNS watches ``DNSEndpoint`` objects in the host cluster (its CRD source) and writes them,
with the coredns provider, under ``/skydns`` in an etcd of its own; CoreDNS's etcd plugin answers
for the federation's zone from there. All three are local processes bound to 127.0.0.1, built
from their Go modules like the rest of the test bed, tracked by pid files under one directory
(``$FLEETFLOW_HOME/testbed/dns``) with their logs, so that ``down`` leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx

from fleetflow.controlplane import DNS_GROUP
from fleetflow.errors import TestbedError, WaitTimeout
from fleetflow.polling import poll_until
from fleetflow.testbed import build
from fleetflow.testbed.spec import GO_RUNTIME, DnsPorts, TestbedSpec

Progress = Callable[[str], None]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

EXTERNAL_DNS_VERSIONS = ("v0.23.0",)
# v0.23.0's go.mod says go 1.27.0; the go command fetches this toolchain from the module proxy.
EXTERNAL_DNS_TOOLCHAIN = "go1.27.3"
EXTERNAL_DNS_GO = "1.27.0"
# Dependencies whose pinned versions the proxy refuses, moved to versions it serves.
EXTERNAL_DNS_REPLACES = (
    "github.com/civo/civogo => github.com/civo/civogo v0.6.4",
    "github.com/exoscale/egoscale/v3 => github.com/exoscale/egoscale/v3 v3.1.40",
    "github.com/openshift/api => github.com/openshift/api v0.0.0-20250602203052-b29811a290c7",
)
EXTERNAL_DNS_MAIN = """package main

import (
\t"sigs.k8s.io/external-dns/controller"
\t"sigs.k8s.io/external-dns/pkg/apis/externaldns"
)

func main() {
\texternaldns.Version = "{version}" // upstream sets it with -ldflags; --version prints it
\tcontroller.Execute()
}
"""
COREDNS_VERSIONS = ("v1.15.0",)

ETCD = "dns-etcd"
COREDNS = "coredns"
EXTERNAL_DNS = "external-dns"
PROCESSES = (ETCD, COREDNS, EXTERNAL_DNS)  # start order: each needs the one before it
BINARIES = {ETCD: "etcd", COREDNS: "coredns", EXTERNAL_DNS: "external-dns"}
TXT_OWNER = "fleetflow-testbed"
ETCD_PATH = "/skydns"  # where ExternalDNS's coredns provider writes by default
DNS_ENDPOINT_API = f"{DNS_GROUP}/v1alpha1"


def _external_dns_module(workdir: Path, version: str) -> list[str]:
    return build.write_go_module(
        workdir,
        "external-dns",
        [f"sigs.k8s.io/external-dns {version}"],
        replaces=EXTERNAL_DNS_REPLACES,
        main=EXTERNAL_DNS_MAIN.replace("{version}", version),
        go=EXTERNAL_DNS_GO,
    )


def _coredns_module(workdir: Path, version: str) -> list[str]:
    # The root package is CoreDNS's main, with the default plugin set (etcd included).
    module = "github.com/coredns/coredns"
    return build.write_go_module(workdir, "coredns", [f"{module} {version}"], [module])


COMPONENTS = (
    build.Component(
        "external-dns",
        EXTERNAL_DNS_VERSIONS,
        ("external-dns",),
        _external_dns_module,
        EXTERNAL_DNS_TOOLCHAIN,
    ),
    build.Component("coredns", COREDNS_VERSIONS, ("coredns",), _coredns_module),
)


# Pure: what each process is told.


def corefile(zone: str, ports: DnsPorts) -> str:
    """Serve ``zone`` on 127.0.0.1 (UDP and TCP) from the records etcd, and nothing else."""
    return (
        f"{zone}:{ports.dns} {{\n"
        "    bind 127.0.0.1\n"
        "    etcd {\n"
        f"        path {ETCD_PATH}\n"
        f"        endpoint http://127.0.0.1:{ports.etcd_client}\n"
        "    }\n"
        "    errors\n"
        "}\n"
    )


def commands(spec: TestbedSpec, root: Path, bins: Path, kubeconfig: Path) -> dict[str, list[str]]:
    """The command line of each process, by name."""
    ports = spec.dns_ports()
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return {
        ETCD: [
            str(bins / BINARIES[ETCD]),
            f"--name={ETCD}",
            f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={ETCD}={peer}",
            "--log-level=warn",
        ],
        COREDNS: [str(bins / BINARIES[COREDNS]), "-conf", str(root / "Corefile")],
        EXTERNAL_DNS: [
            str(bins / BINARIES[EXTERNAL_DNS]),
            "--source=crd",
            f"--crd-source-apiversion={DNS_ENDPOINT_API}",
            "--crd-source-kind=DNSEndpoint",
            "--provider=coredns",
            "--policy=sync",
            "--registry=txt",
            f"--txt-owner-id={TXT_OWNER}",
            f"--domain-filter={spec.dns_zone}",
            # A reconcile a second (its loop ticks once a second anyway).
            "--interval=1s",
            # Before it plans, the CRD source writes each changed DNSEndpoint's status; at the
            # client's default 5 requests a second, a failover of 50 endpoints waited 8.8 s there.
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            f"--kubeconfig={kubeconfig}",
            f"--metrics-address=127.0.0.1:{ports.metrics}",
        ],
    }


def environment(ports: DnsPorts) -> dict[str, str]:
    """What ExternalDNS's coredns provider reads from the environment: where etcd is."""
    return {"ETCD_URLS": f"http://127.0.0.1:{ports.etcd_client}"}


def process_ports(ports: DnsPorts) -> dict[str, list[tuple[int, str]]]:
    """The (port, protocol) pairs each process listens on."""
    return {
        ETCD: [(ports.etcd_client, "tcp"), (ports.etcd_peer, "tcp")],
        COREDNS: [(ports.dns, "tcp"), (ports.dns, "udp")],
        EXTERNAL_DNS: [(ports.metrics, "tcp")],
    }


# Processes.


def _pidfile(root: Path, name: str) -> Path:
    return root / "pids" / f"{name}.pid"


def log_path(root: Path, name: str) -> Path:
    return root / "logs" / f"{name}.log"


def _alive(pid: int, binary: Path) -> bool:
    """Whether ``pid`` is still the ``binary`` we started (a pid file can outlive its process)."""
    with contextlib.suppress(ChildProcessError):
        # Reap it if this process started it and it exited: a zombie would look alive.
        os.waitpid(pid, os.WNOHANG)
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return argv0 == os.fsencode(binary)


def _exited(pid: int) -> bool:
    """Whether a child this process just started has exited. Not :func:`_alive`: until the
    child has exec'd, its command line still names Python."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not Path(f"/proc/{pid}").exists()
    return done == pid


def running(root: Path, bins: Path) -> dict[str, int]:
    """The DNS chain's live processes by name."""
    found = {}
    for name in PROCESSES:
        try:
            pid = int(_pidfile(root, name).read_text())
        except (OSError, ValueError):
            continue
        if _alive(pid, bins / BINARIES[name]):
            found[name] = pid
    return found


def _spawn(root: Path, name: str, cmd: list[str], env: dict[str, str]) -> int:
    log = log_path(root, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    _pidfile(root, name).parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # Its own session, so that stopping its process group stops anything it forks.
        proc = subprocess.Popen(
            cmd,
            env=dict(os.environ, **GO_RUNTIME, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=root,
        )
    _pidfile(root, name).write_text(str(proc.pid))
    return proc.pid


def answers(zone: str, port: int, timeout: float = 1.0) -> bool:
    """Whether CoreDNS answers for ``zone``: its SOA, synthesized by the etcd plugin."""
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return False
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


def _etcd_healthy(ports: DnsPorts) -> bool:
    try:
        reply = httpx.get(f"http://127.0.0.1:{ports.etcd_client}/health", timeout=1)
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and reply.json().get("health") == "true"


def _external_dns_synced(ports: DnsPorts) -> bool:
    """One sync done: it read the DNSEndpoints and wrote etcd (not just serving /healthz)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{ports.metrics}/metrics", timeout=1).text
    except httpx.HTTPError:
        return False
    for line in text.splitlines():
        if line.startswith("external_dns_controller_last_sync_timestamp_seconds "):
            return float(line.split()[1]) > 0
    return False


def _ready(name: str, spec: TestbedSpec) -> bool:
    ports = spec.dns_ports()
    if name == ETCD:
        return _etcd_healthy(ports)
    if name == COREDNS:
        return answers(spec.dns_zone, ports.dns)
    return _external_dns_synced(ports)


def _wait_ready(name: str, pid: int, spec: TestbedSpec, root: Path, bins: Path) -> None:
    def ready() -> bool:
        if _ready(name, spec):
            return True
        if _exited(pid):
            raise TestbedError(f"{name} exited while starting: see {log_path(root, name)}")
        return False

    poll_until(
        ready,
        bool,
        timeout=START_TIMEOUT,
        waiting_for=f"{name} ready",
        describe=lambda _: "not answering",
        hint=f"see {log_path(root, name)}",
    )


def start(
    spec: TestbedSpec, root: Path, bins: Path, kubeconfig: Path, progress: Progress
) -> list[str]:
    """Start the processes that are not running, each once the one before it is ready.

    Return the names started now; on failure, stop them again and raise.
    """
    alive = running(root, bins)
    if len(alive) == len(PROCESSES):
        return []
    root.mkdir(parents=True, exist_ok=True)
    (root / "Corefile").write_text(corefile(spec.dns_zone, spec.dns_ports()))
    cmds = commands(spec, root, bins, kubeconfig)
    env = environment(spec.dns_ports())
    started: list[str] = []
    try:
        for name in PROCESSES:
            if name in alive:
                continue
            progress(f"starting {name} ({log_path(root, name)})")
            pid = _spawn(root, name, cmds[name], env if name == EXTERNAL_DNS else {})
            started.append(name)
            _wait_ready(name, pid, spec, root, bins)
    except BaseException:
        stop(root, bins, started)
        raise
    return started


def stop(root: Path, bins: Path, names: tuple[str, ...] | list[str] = PROCESSES) -> None:
    """Stop the named processes, last started first: SIGTERM, then SIGKILL if they linger."""
    alive = running(root, bins)
    for name in reversed(PROCESSES):
        pid = alive.get(name)
        if name not in names or pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        with contextlib.suppress(WaitTimeout):  # lingering: killed below
            poll_until(
                functools.partial(_alive, pid, bins / BINARIES[name]),
                lambda up: not up,
                timeout=STOP_TIMEOUT,
                interval=0.05,
                waiting_for=f"{name} stopped",
            )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _pidfile(root, name).unlink(missing_ok=True)


def remove(root: Path, bins: Path) -> None:
    """Stop everything and drop the records; the logs stay for a post-mortem."""
    stop(root, bins)
    shutil.rmtree(root / "etcd", ignore_errors=True)
    shutil.rmtree(root / "pids", ignore_errors=True)
    (root / "Corefile").unlink(missing_ok=True)


@dataclass
class DnsStatus:
    """What a status line needs: where to ask, for which zone, and whether it answers."""

    zone: str
    server: str
    port: int
    answering: bool = False
    processes: dict[str, int] = field(default_factory=dict)  # running ones, name -> pid
    missing: list[str] = field(default_factory=list)
    logs: str = ""

    @property
    def ready(self) -> bool:
        return self.answering and not self.missing


def status(spec: TestbedSpec, root: Path, bins: Path) -> DnsStatus:
    ports = spec.dns_ports()
    alive = running(root, bins)
    return DnsStatus(
        zone=spec.dns_zone,
        server="127.0.0.1",
        port=ports.dns,
        answering=answers(spec.dns_zone, ports.dns),
        processes=alive,
        missing=[n for n in PROCESSES if n not in alive],
        logs=str(root / "logs"),
    )
