"""The test bed's layout, manifests and build recipe: pure, no processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from fleetflow.controlplane import REGION_LABEL, ZONE_LABEL
from fleetflow.testbed import build, dns, metrics
from fleetflow.testbed.spec import (
    DnsPorts,
    MemberSpec,
    MetricsServer,
    NodeShape,
    TestbedSpec,
    kwokctl_config,
    node_manifests,
)


def test_default_layout_is_a_host_and_three_members_in_two_regions() -> None:
    spec = TestbedSpec()
    assert spec.cluster_names() == ["host", "us-east-1", "us-east-2", "eu-west-1"]
    assert {m.region for m in spec.members} == {"us-east", "eu-west"}
    assert [spec.port(c) for c in spec.cluster_names()] == [23400, 23401, 23402, 23403]


def test_zero_members_is_an_error() -> None:
    with pytest.raises(ValidationError, match="needs at least one member cluster"):
        TestbedSpec(members=[])


def test_duplicate_names_are_an_error() -> None:
    with pytest.raises(ValidationError, match="repeated: a"):
        TestbedSpec(members=[MemberSpec(name="a", region="r"), MemberSpec(name="a", region="s")])
    with pytest.raises(ValidationError, match="repeated: host"):
        TestbedSpec(members=[MemberSpec(name="host", region="r")])


@pytest.mark.parametrize("name", ["Upper", "under_score", "-lead", "trail-", "x" * 64, ""])
def test_names_must_be_dns_labels(name: str) -> None:
    with pytest.raises(ValidationError, match="is not a DNS label"):
        MemberSpec(name=name, region="r")


def test_nodes_carry_region_zones_and_capacity() -> None:
    member = MemberSpec(name="m1", region="r1", nodes=4)
    nodes = node_manifests(member, NodeShape(cpu="4", memory="8Gi", pods=50))
    assert [n["metadata"]["name"] for n in nodes] == [f"m1-node-{i}" for i in range(4)]
    assert {n["metadata"]["labels"][REGION_LABEL] for n in nodes} == {"r1"}
    zones = [n["metadata"]["labels"][ZONE_LABEL] for n in nodes]
    assert zones == ["m1a", "m1b", "m1c", "m1a"]
    assert nodes[0]["status"]["allocatable"] == {"cpu": "4", "memory": "8Gi", "pods": "50"}
    assert nodes[0]["metadata"]["annotations"] == {
        "kwok.x-k8s.io/node": "fake",
        "metrics.k8s.io/resource-metrics-path": "/metrics/nodes/m1-node-0/metrics/resource",
    }


def test_kwokctl_config_binds_loopback_with_rbac_and_fast_heartbeats() -> None:
    member = yaml.safe_load(kwokctl_config(32401, "v1.36.3", member=True))
    options = member["options"]
    assert options["bindAddress"] == "127.0.0.1"
    assert options["kubeApiserverPort"] == 32401
    assert options["kubeAuthorization"] is True
    assert options["kubeControllerManagerNodeMonitorGracePeriodMilliseconds"] == 16000
    assert "disable" not in options
    host = yaml.safe_load(kwokctl_config(32400, "v1.36.3", member=False))
    assert host["options"]["disable"] == ["kube-scheduler", "kwok-controller"]


def test_members_serve_metrics_and_run_a_quick_hpa_controller() -> None:
    spec = TestbedSpec()
    ports = spec.component_ports("us-east-1")
    served = MetricsServer("/bin/metrics-server", "/m/base")
    member = yaml.safe_load(
        kwokctl_config(23401, "v1.36.3", member=True, ports=ports, metrics=served)
    )
    options = member["options"]
    assert options["enableMetricsServer"] is True
    assert options["metricsServerBinary"] == "/bin/metrics-server"
    assert options["metricsServerManifests"] == ["/m/base"]
    assert options["metricsServerPort"] == ports.metrics_server
    kcm, scheduler, metrics_server = member["componentsPatches"]
    assert scheduler == {
        "name": "kube-scheduler",
        "extraArgs": [{"key": "leader-elect", "value": "false"}],
    }
    assert metrics_server == {
        "name": "metrics-server",
        "extraArgs": [
            {"key": "metric-resolution", "value": "10s"},
            {"key": "kubelet-request-timeout", "value": "5s"},
        ],
    }
    args = {a["key"]: a["value"] for a in kcm["extraArgs"]}
    assert args == {
        "leader-elect": "false",
        "enable-hostpath-provisioner": "true",
        "horizontal-pod-autoscaler-sync-period": "3s",
        "horizontal-pod-autoscaler-downscale-stabilization": "20s",
    }
    host = yaml.safe_load(kwokctl_config(23400, "v1.36.3", member=False, metrics=served))
    assert "enableMetricsServer" not in host["options"]
    # The host's controller manager runs alone too; it provisions no volumes, scales nothing.
    assert host["componentsPatches"] == [
        {
            "name": "kube-controller-manager",
            "extraArgs": [{"key": "leader-elect", "value": "false"}],
        }
    ]


def test_kubernetes_module_replaces_every_staging_module(tmp_path: Path) -> None:
    component = build.COMPONENTS[2]
    packages = build._write_module(tmp_path, component, "v1.36.3")
    go_mod = (tmp_path / "go.mod").read_text()
    assert "\tk8s.io/kubernetes v1.36.3\n" in go_mod
    for module in build.KUBE_STAGING:
        assert f"\tk8s.io/{module} => k8s.io/{module} v0.36.3\n" in go_mod
    assert packages == [f"k8s.io/kubernetes/cmd/{b}" for b in build.KUBE_BINARIES]
    assert "//go:build tools" in (tmp_path / "tools.go").read_text()


def test_version_ldflags_make_the_server_report_its_release() -> None:
    flags = build._ldflags(build.COMPONENTS[2], "v1.36.3", "v1.36.3")
    assert "-X 'k8s.io/component-base/version.gitVersion=v1.36.3'" in flags
    assert "-X 'k8s.io/client-go/pkg/version.gitMinor=36'" in flags
    kwok = build._ldflags(build.COMPONENTS[1], "v0.8.0", "v1.36.3")
    assert "consts.KubeVersion=1.36.3" in kwok


def test_cache_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETFLOW_TESTBED_CACHE", "/opt/ff-cache")
    assert build.bin_dir() == Path("/opt/ff-cache/bin")
    monkeypatch.delenv("FLEETFLOW_TESTBED_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/u")
    assert build.bin_dir() == Path("/var/cache/u/fleetflow/testbed/bin")


def test_dns_ports_sit_above_every_cluster_port() -> None:
    spec = TestbedSpec()
    assert spec.dns_ports() == DnsPorts(
        etcd_client=23490, etcd_peer=23491, dns=23492, metrics=23493
    )
    many = TestbedSpec(members=[MemberSpec(name=f"m{i}", region="r") for i in range(89)])
    assert max(many.port(c) for c in many.cluster_names()) < min(many.dns_ports())
    with pytest.raises(ValidationError, match="at most 89 member clusters"):
        TestbedSpec(members=[MemberSpec(name=f"m{i}", region="r") for i in range(90)])


def test_each_member_gets_its_own_loopback_ingress_address() -> None:
    spec = TestbedSpec()
    assert [m.ingress_address for m in spec.members] == ["127.0.10.1", "127.0.10.2", "127.0.10.3"]
    given = MemberSpec(name="b", region="r", ingress_address="127.0.20.7")
    spec = TestbedSpec(members=[MemberSpec(name="a", region="r"), given])
    assert [m.ingress_address for m in spec.members] == ["127.0.10.1", "127.0.20.7"]
    # The layout saved by `up` reads back equal, so a rerun sees the same test bed.
    assert TestbedSpec.model_validate_json(spec.model_dump_json()) == spec
    with pytest.raises(ValidationError, match="ingress addresses must be unique"):
        TestbedSpec(
            members=[
                MemberSpec(name="a", region="r"),
                MemberSpec(name="b", region="r", ingress_address="127.0.10.1"),
            ]
        )
    with pytest.raises(ValidationError):
        MemberSpec(name="a", region="r", ingress_address="not-an-ip")


@pytest.mark.parametrize("zone", ["Fleet.local", "fleet..local", "-fleet.local", "fleet.local."])
def test_dns_zone_must_be_a_domain_name(zone: str) -> None:
    with pytest.raises(ValidationError, match="is not a domain name"):
        TestbedSpec(dns_zone=zone)


def test_corefile_serves_the_zone_on_loopback_from_the_records_etcd() -> None:
    ports = TestbedSpec(base_port=36400, dns_zone="apps.example.com").dns_ports()
    assert dns.corefile("apps.example.com", ports) == (
        "apps.example.com:36492 {\n"
        "    bind 127.0.0.1\n"
        "    etcd {\n"
        "        path /skydns\n"
        "        endpoint http://127.0.0.1:36490\n"
        "    }\n"
        "    errors\n"
        "}\n"
    )


def test_dns_processes_listen_on_loopback_only(tmp_path: Path) -> None:
    spec = TestbedSpec(base_port=36400)
    kubeconfig = tmp_path / "host.yaml"
    cmds = dns.commands(spec, tmp_path, Path("/bin-dir"), kubeconfig)
    assert list(cmds) == ["dns-etcd", "coredns", "external-dns"]
    etcd = cmds["dns-etcd"]
    assert etcd[0] == "/bin-dir/etcd"
    assert "--listen-client-urls=http://127.0.0.1:36490" in etcd
    assert "--listen-peer-urls=http://127.0.0.1:36491" in etcd
    assert f"--data-dir={tmp_path / 'etcd'}" in etcd
    assert cmds["coredns"] == ["/bin-dir/coredns", "-conf", str(tmp_path / "Corefile")]
    external = cmds["external-dns"]
    assert external[1:] == [
        "--source=crd",
        "--crd-source-apiversion=externaldns.k8s.io/v1alpha1",
        "--crd-source-kind=DNSEndpoint",
        "--provider=coredns",
        "--policy=sync",
        "--registry=txt",
        "--txt-owner-id=fleetflow-testbed",
        "--domain-filter=fleet.local",
        "--interval=1s",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        f"--kubeconfig={kubeconfig}",
        "--metrics-address=127.0.0.1:36493",
    ]
    assert dns.environment(spec.dns_ports()) == {"ETCD_URLS": "http://127.0.0.1:36490"}
    listening = dns.process_ports(spec.dns_ports())
    assert listening["coredns"] == [(36492, "tcp"), (36492, "udp")]
    every = sorted(p for pairs in listening.values() for p, _ in pairs)
    assert every == [36490, 36491, 36492, 36492, 36493]


def test_external_dns_module_wraps_its_controller_on_go_1_27(tmp_path: Path) -> None:
    component = next(c for c in build.components() if c.name == "external-dns")
    assert component.toolchain == "go1.27.3"
    packages = build._write_module(tmp_path, component, "v0.23.0")
    assert packages == ["."]
    go_mod = (tmp_path / "go.mod").read_text()
    assert "go 1.27.0\n" in go_mod
    assert "\tsigs.k8s.io/external-dns v0.23.0\n" in go_mod
    assert "\tgithub.com/civo/civogo => github.com/civo/civogo v0.6.4\n" in go_mod
    assert "github.com/exoscale/egoscale/v3 => github.com/exoscale/egoscale/v3 v3.1.40" in go_mod
    assert "github.com/openshift/api v0.0.0-20250602203052-b29811a290c7" in go_mod
    main = (tmp_path / "main.go").read_text()
    assert "controller.Execute()" in main
    assert 'externaldns.Version = "v0.23.0"' in main


def test_coredns_module_builds_its_main_package(tmp_path: Path) -> None:
    component = next(c for c in build.components() if c.name == "coredns")
    assert component.toolchain == ""
    packages = build._write_module(tmp_path, component, "v1.15.0")
    assert packages == ["github.com/coredns/coredns"]
    assert "\tgithub.com/coredns/coredns v1.15.0\n" in (tmp_path / "go.mod").read_text()
    assert '_ "github.com/coredns/coredns"' in (tmp_path / "tools.go").read_text()


def test_a_cache_without_the_dns_or_metrics_binaries_is_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETFLOW_TESTBED_CACHE", str(tmp_path))
    bins = tmp_path / "bin"
    bins.mkdir()
    versions = {"etcd": "v3.6.16", "kwok": "v0.8.0", "kubernetes": "v1.36.3"}
    for component in build.COMPONENTS:
        for binary in component.binaries:
            (bins / binary).touch()
    build.manifest_path().write_text(json.dumps(versions))
    assert build.cached_versions() is None
    assert build._built() == versions
    for binary in ("external-dns", "coredns"):
        (bins / binary).touch()
    versions |= {"external-dns": "v0.23.0", "coredns": "v1.15.0", "metrics-server": "v0.8.0"}
    build.manifest_path().write_text(json.dumps(versions))
    assert build.cached_versions() is None  # metrics-server and its manifests missing
    for component in metrics.COMPONENTS:
        for binary in component.binaries:
            (bins / binary).parent.mkdir(parents=True, exist_ok=True)
            (bins / binary).touch()
    assert build.cached_versions() == versions


def test_every_process_of_every_cluster_has_a_fixed_port_below_the_ephemeral_range() -> None:
    spec = TestbedSpec()
    ports = [spec.port(c) for c in spec.cluster_names()]
    ports += [p for c in spec.cluster_names() for p in spec.component_ports(c)]
    ports += list(spec.dns_ports())
    assert len(ports) == len(set(ports))  # no two processes share a port
    assert max(ports) < 32768  # an outgoing connection never holds one of them
    config = yaml.safe_load(
        kwokctl_config(23401, "v1.36.3", member=True, ports=spec.component_ports("us-east-1"))
    )
    assert config["options"]["etcdPort"] == spec.component_ports("us-east-1").etcd
    assert config["options"]["kwokControllerPort"] == 23514
