"""The test bed's layout and the manifests derived from it: pure, no processes, no I/O."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator, model_validator

from fleetflow.controlplane import REGION_LABEL, ZONE_LABEL
from fleetflow.models import DNS_LABEL

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


class MemberSpec(BaseModel):
    """One member cluster: a name, its region, and how many kwok nodes it has."""

    name: str
    region: str
    nodes: int = Field(default=3, ge=1, le=100)

    @field_validator("name", "region")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError(
                f"{value!r} is not a DNS label: use lowercase letters, digits and '-', "
                "at most 63 characters, starting and ending with a letter or digit"
            )
        return value

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
    base_port: int = Field(default=32400, ge=1024, le=65000)
    node: NodeShape = Field(default_factory=NodeShape)

    @field_validator("host")
    @classmethod
    def _host_label(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError(f"host name {value!r} is not a DNS label")
        return value

    @model_validator(mode="after")
    def _unique(self) -> TestbedSpec:
        if not self.members:
            raise ValueError("the test bed needs at least one member cluster: give --member")
        names = [self.host] + [m.name for m in self.members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"cluster names must be unique; repeated: {', '.join(dupes)}")
        return self

    def cluster_names(self) -> list[str]:
        return [self.host] + [m.name for m in self.members]

    def port(self, cluster: str) -> int:
        """Host on ``base_port``, members on the ports after it, in order."""
        return self.base_port + self.cluster_names().index(cluster)

    def member(self, name: str) -> MemberSpec:
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)


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
                    "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        REGION_LABEL: member.region,
                        ZONE_LABEL: zones[i % len(zones)],
                    },
                },
                "status": {"allocatable": resources, "capacity": resources},
            }
        )
    return nodes


def kwokctl_config(port: int, kube_version: str, *, member: bool) -> str:
    """kwokctl's configuration: loopback only, RBAC on, fast node heartbeats for drills.

    Client QPS limits are off, so controllers create pods as fast as the machine allows (the
    default 20 QPS would make a 1,000-pod rollout take a minute). Nodes turn NotReady about 16-20 s
    after their kwok controller stops, instead of the default 40+.
    """
    disabled = "" if member else "  disable: [kube-scheduler, kwok-controller]\n"
    return (
        "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
        "kind: KwokctlConfiguration\n"
        "options:\n"
        "  runtime: binary\n"
        f"  kubeVersion: {kube_version}\n"
        "  bindAddress: 127.0.0.1\n"
        f"  kubeApiserverPort: {port}\n"
        "  securePort: true\n"
        "  kubeAuthorization: true\n"
        "  disableQPSLimits: true\n"
        "  heartbeatFactor: 1\n"
        "  nodeLeaseDurationSeconds: 10\n"
        "  nodeStatusUpdateFrequencyMilliseconds: 4000\n"
        "  kubeControllerManagerNodeMonitorPeriodMilliseconds: 2000\n"
        "  kubeControllerManagerNodeMonitorGracePeriodMilliseconds: 16000\n"
        f"{disabled}"
    )
