"""The demo federation's samples: every one is the demo federation's, and what web reads is
federated beside it, so a newcomer sees a dependency follow its workload."""

from __future__ import annotations

from fleetflow.controlplane import LABEL_FEDERATION
from fleetflow.dependencies import Ref, references
from fleetflow.federated import FederatedDeployment
from fleetflow.objects import FederatedObject, member_object
from fleetflow.testbed.demo import demo_workloads

MEMBERS = ["us-east-1", "us-east-2", "eu-west-1"]


def test_every_sample_names_the_federation_and_reads_as_its_kind() -> None:
    samples = demo_workloads(MEMBERS, "demo")
    assert all(s["metadata"]["labels"][LABEL_FEDERATION] == "demo" for s in samples)
    kinds = sorted(s["kind"] for s in samples)
    assert kinds == ["FederatedDeployment"] * 3 + ["FederatedObject"]
    for s in samples:
        reader = FederatedObject if s["kind"] == "FederatedObject" else FederatedDeployment
        reader.from_object(s)


def test_web_reads_a_config_map_that_follows_it_with_another_value_on_the_last_member() -> None:
    samples = {s["metadata"]["name"]: s for s in demo_workloads(MEMBERS, "demo")}
    web = FederatedDeployment.from_object(samples["web"])
    assert Ref(kind="ConfigMap", name="web-config") in references(web.spec.template)
    config = FederatedObject.from_object(samples["web-config"])
    assert config.spec.placement is None  # it follows web
    first = member_object(config, MEMBERS[0], "demo")["data"]["greeting"]
    last = member_object(config, MEMBERS[-1], "demo")["data"]["greeting"]
    assert (first, last) == ("hello", "hej")
