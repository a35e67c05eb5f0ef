"""The test bed's layout, manifests and build recipe: pure, no processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from fleetflow.controlplane import REGION_LABEL, ZONE_LABEL
from fleetflow.testbed import build
from fleetflow.testbed.spec import (
    MemberSpec,
    NodeShape,
    TestbedSpec,
    kwokctl_config,
    node_manifests,
)


def test_default_layout_is_a_host_and_three_members_in_two_regions() -> None:
    spec = TestbedSpec()
    assert spec.cluster_names() == ["host", "us-east-1", "us-east-2", "eu-west-1"]
    assert {m.region for m in spec.members} == {"us-east", "eu-west"}
    assert [spec.port(c) for c in spec.cluster_names()] == [32400, 32401, 32402, 32403]


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
    assert nodes[0]["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}


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
