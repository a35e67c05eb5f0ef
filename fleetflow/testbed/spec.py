"""The test bed's layout and the manifests derived from it: pure, no processes, no I/O."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, Field, field_validator, model_validator

from fleetflow.controlplane import REGION_LABEL, ZONE_LABEL
from fleetflow.models import DNS_LABEL

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
"""On a kwok node: where kwok serves the node's kubelet resource metrics, for metrics-server."""

# The DNS chain's ports sit this far above base_port, clear of the clusters' API ports (one per
# cluster from base_port up), which caps the members at DNS_PORT_OFFSET - 1.
DNS_PORT_OFFSET = 90
COMPONENT_PORT_OFFSET = 100  # then ten ports a cluster: etcd, its peer port, the controllers


class ComponentPorts(NamedTuple):
    """A cluster's ports besides its apiserver's."""

    etcd: int
    etcd_peer: int
    controller_manager: int
    scheduler: int
    kwok_controller: int
    metrics_server: int


# Members' ingress addresses: 127.0.10.1, 127.0.10.2, ... Loopback, so that nothing has to
# listen there for a DNS answer to name a distinct, routable-looking address per member.
INGRESS_BASE = IPv4Address("127.0.10.0")


class DnsPorts(NamedTuple):
    """The DNS chain's loopback ports."""

    etcd_client: int  # the records' etcd, which ExternalDNS writes and CoreDNS reads
    etcd_peer: int  # unused by a one-member etcd, but it always listens on one
    dns: int  # CoreDNS, UDP and TCP
    metrics: int  # ExternalDNS's metrics and health endpoint


class MemberSpec(BaseModel):
    """One member cluster: a name, its region, and how many kwok nodes it has."""

    name: str
    region: str
    nodes: int = Field(default=3, ge=1, le=100)
    ingress_address: str = Field(
        default="",
        description="Where its traffic lands, for DNS records; the test bed gives each member "
        "its own loopback address when none is given",
    )

    @field_validator("name", "region")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError(
                f"{value!r} is not a DNS label: use lowercase letters, digits and '-', "
                "at most 63 characters, starting and ending with a letter or digit"
            )
        return value

    @field_validator("ingress_address")
    @classmethod
    def _ipv4(cls, value: str) -> str:
        return str(IPv4Address(value)) if value else value

    def zones(self) -> list[str]:
        """Nodes are spread over up to three zones named after the cluster (``<name>a``...)."""
        return [f"{self.name}{suffix}" for suffix in "abc"[: min(3, self.nodes)]]


class NodeShape(BaseModel):
    """Allocatable resources of each kwok node: real numbers the scheduler counts."""

    cpu: str = "8"
    memory: str = "32Gi"
    pods: int = 110


class TestbedSpec(BaseModel):
    """A host cluster and the member clusters, with the API port of each."""

    __test__: ClassVar[bool] = False  # not a pytest test class, despite the name

    host: str = "host"
    members: list[MemberSpec] = Field(
        default_factory=lambda: [
            MemberSpec(name="us-east-1", region="us-east"),
            MemberSpec(name="us-east-2", region="us-east"),
            MemberSpec(name="eu-west-1", region="eu-west"),
        ]
    )
    base_port: int = Field(default=23400, ge=1024, le=64000)
    node: NodeShape = Field(default_factory=NodeShape)
    dns_zone: str = Field(default="fleet.local", description="The zone the test bed's DNS serves")

    @field_validator("host")
    @classmethod
    def _host_label(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError(f"host name {value!r} is not a DNS label")
        return value

    @field_validator("dns_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not all(DNS_LABEL.match(label) for label in value.split(".")):
            raise ValueError(
                f"DNS zone {value!r} is not a domain name: DNS labels joined by dots, "
                "e.g. fleet.local"
            )
        return value

    @model_validator(mode="after")
    def _unique(self) -> TestbedSpec:
        if not self.members:
            raise ValueError("the test bed needs at least one member cluster: give --member")
        names = [self.host] + [m.name for m in self.members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"cluster names must be unique; repeated: {', '.join(dupes)}")
        if len(self.members) >= DNS_PORT_OFFSET:
            raise ValueError(f"the test bed takes at most {DNS_PORT_OFFSET - 1} member clusters")
        self.members = [
            m if m.ingress_address else m.model_copy(update={"ingress_address": address})
            for m, address in zip(self.members, ingress_addresses(len(self.members)), strict=True)
        ]
        addresses = [m.ingress_address for m in self.members]
        dupes = sorted({a for a in addresses if addresses.count(a) > 1})
        if dupes:
            raise ValueError(f"ingress addresses must be unique; repeated: {', '.join(dupes)}")
        return self

    def cluster_names(self) -> list[str]:
        return [self.host] + [m.name for m in self.members]

    def port(self, cluster: str) -> int:
        """Host on ``base_port``, members on the ports after it, in order."""
        return self.base_port + self.cluster_names().index(cluster)

    def component_ports(self, cluster: str) -> ComponentPorts:
        """The ports of a cluster's other processes, fixed from ``base_port`` rather than left to
        kwokctl's random pick in the ephemeral range: a cluster stopped by a drill must find them
        free again when it restarts, and an outgoing connection may hold an ephemeral port."""
        first = self.base_port + COMPONENT_PORT_OFFSET + 10 * self.cluster_names().index(cluster)
        return ComponentPorts(first, first + 1, first + 2, first + 3, first + 4, first + 5)

    def dns_ports(self) -> DnsPorts:
        first = self.base_port + DNS_PORT_OFFSET
        return DnsPorts(first, first + 1, first + 2, first + 3)

    def member(self, name: str) -> MemberSpec:
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)


def ingress_addresses(count: int) -> list[str]:
    """The default ingress address of each member, in order."""
    return [str(INGRESS_BASE + i + 1) for i in range(count)]


def node_manifests(member: MemberSpec, shape: NodeShape) -> list[dict[str, Any]]:
    """kwok nodes with region/zone labels and real allocatable capacity."""
    zones = member.zones()
    nodes = []
    for i in range(member.nodes):
        name = f"{member.name}-node-{i}"
        resources = {"cpu": shape.cpu, "memory": shape.memory, "pods": str(shape.pods)}
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        KWOK_NODE_ANNOTATION: "fake",
                        METRICS_PATH_ANNOTATION: f"/metrics/nodes/{name}/metrics/resource",
                    },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        REGION_LABEL: member.region,
                        ZONE_LABEL: zones[i % len(zones)],
                    },
                },
                "status": {
                    "allocatable": resources,
                    "capacity": resources,
                    "addresses": NODE_ADDRESSES,
                },
            }
        )
    return nodes


NODE_ADDRESSES = [
    {"type": "InternalIP", "address": "127.0.0.1"},
    {"type": "Hostname", "address": "localhost"},
]
"""Where metrics-server reaches a node's kubelet endpoint (the member's kwok controller, on
127.0.0.1). Given at creation, not left to kwok: kwok runs with no node IP, and when a node that
was NotReady is initialised again (its kwok controller restarted after an outage), kwok's
``node-initialize`` patch, finding no InternalIP, writes ``addresses:`` empty and erases the
Hostname it set the first time; metrics-server then scrapes nothing ("no address matched
types") and every HPA of the member stops with "no metrics returned". With both addresses
present the patch leaves them alone."""


class MetricsServer(NamedTuple):
    """A member's metrics-server: the binary, and the directory of its base manifests."""

    binary: str
    manifests: str


def kwokctl_config(
    port: int,
    kube_version: str,
    *,
    member: bool,
    ports: ComponentPorts | None = None,
    metrics: MetricsServer | None = None,
) -> str:
    """kwokctl's configuration: loopback only, RBAC on, fast node heartbeats for drills.

    Client QPS limits are off, so controllers create pods as fast as the machine allows (the
    default 20 QPS would make a 1,000-pod rollout take a minute). Nodes turn NotReady about 16-20 s
    after their kwok controller stops, instead of the default 40+. A member with ``metrics``
    runs metrics-server, and its HPA controller syncs faster than upstream's.
    """
    disabled = "" if member else "  disable: [kube-scheduler, kwok-controller]\n"
    served = (
        "  enableMetricsServer: true\n"
        f"  metricsServerBinary: {metrics.binary}\n"
        f"  metricsServerManifests: [{metrics.manifests}]\n"
        + (f"  metricsServerPort: {ports.metrics_server}\n" if ports else "")
        if member and metrics
        else ""
    )
    return (
        "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
        "kind: KwokctlConfiguration\n"
        "options:\n"
        "  runtime: binary\n"
        f"  kubeVersion: {kube_version}\n"
        "  bindAddress: 127.0.0.1\n"
        f"  kubeApiserverPort: {port}\n"
        + (
            f"  etcdPort: {ports.etcd}\n"
            f"  etcdPeerPort: {ports.etcd_peer}\n"
            f"  kubeControllerManagerPort: {ports.controller_manager}\n"
            f"  kubeSchedulerPort: {ports.scheduler}\n"
            f"  kwokControllerPort: {ports.kwok_controller}\n"
            if ports
            else ""
        )
        + "  securePort: true\n"
        "  kubeAuthorization: true\n"
        "  disableQPSLimits: true\n"
        "  heartbeatFactor: 1\n"
        # Not longer: a restarted kwok controller takes over a node only once the lease of the
        # one before has expired, and past the 16 s grace the node would turn NotReady, its pods
        # NotReady for good (tried: 20 s, renewals every 5 s, and a member restarted within
        # seconds kept its new replicas unready for minutes).
        "  nodeLeaseDurationSeconds: 10\n"
        "  nodeStatusUpdateFrequencyMilliseconds: 4000\n"
        "  kubeControllerManagerNodeMonitorPeriodMilliseconds: 2000\n"
        "  kubeControllerManagerNodeMonitorGracePeriodMilliseconds: 16000\n"
        f"{disabled}{served}" + _components_patch(member, member and metrics is not None)
    )


STORAGE_CLASS = "fleetflow-local"
"""The members' default StorageClass: kube-controller-manager's own hostPath provisioner makes
each claim's volume a real directory on this machine (under /tmp/hostpath_pv), which
migration's rsync mover copies. Upstream code, for tests and development only."""

HOSTPATH_ROOT = "/tmp/hostpath_pv/"
"""Where kube-controller-manager's hostPath provisioner makes volumes (fixed upstream)."""

GO_RUNTIME = {"GOMAXPROCS": "1"}
"""Every Go process of the test bed runs one scheduler thread. A bed is two dozen Go processes,
mostly idle between a test's writes; with a thread per core each one's runtime spun and woke
its threads for every timer, and an idle bed took about a fifth of this machine's two cores
(measured: 25 s of CPU a minute; with one thread and no leader election, 16). One core is as
much as any of them gets while the others run."""

HPA_SYNC_PERIOD = "3s"
"""The members' HPA controller syncs every 3 s (upstream: 15 s), so that tests see it react
fast."""
HPA_DOWNSCALE_STABILIZATION = "20s"
"""And scales down after 20 s of lower load (upstream: 5 min)."""


METRIC_RESOLUTION = "10s"
"""metrics-server scrapes every 10 s, its floor (kwokctl's default: 15 s)."""


def _components_patch(member: bool, autoscaling: bool) -> str:
    """The controller manager and scheduler run alone, so without leader election (each
    renewed its lease every 2 s: nearly half of an idle member's writes). A member's controller
    manager: the hostPath provisioner, and a quick HPA; its metrics-server, scraping as often
    as it may."""
    alone = ("leader-elect", "false")
    patches = {"kube-controller-manager": [alone]}
    if member:
        patches["kube-controller-manager"].append(("enable-hostpath-provisioner", "true"))
        patches["kube-scheduler"] = [alone]
    if autoscaling:
        patches["kube-controller-manager"] += [
            ("horizontal-pod-autoscaler-sync-period", HPA_SYNC_PERIOD),
            ("horizontal-pod-autoscaler-downscale-stabilization", HPA_DOWNSCALE_STABILIZATION),
        ]
        patches["metrics-server"] = [
            ("metric-resolution", METRIC_RESOLUTION),
            ("kubelet-request-timeout", "5s"),  # below 0.9 x the resolution, as it requires
        ]
    out = "componentsPatches:\n"
    for name, args in patches.items():
        out += f"- name: {name}\n  extraArgs:\n"
        out += "".join(f"  - key: {k}\n    value: {json.dumps(v)}\n" for k, v in args)
    return out


def storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/host-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }
