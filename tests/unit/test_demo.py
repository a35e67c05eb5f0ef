"""The demo federation's samples: every one is the demo federation's, and what web reads is
federated beside it, so a newcomer sees a dependency follow its workload."""

from __future__ import annotations

from fleetflow.controlplane import LABEL_FEDERATION
from fleetflow.dependencies import Ref, references
from fleetflow.federated import FederatedDeployment
from fleetflow.objects import FederatedObject, member_object
from fleetflow.scheduling import Taint
from fleetflow.testbed.demo import demo_taints, demo_workloads

MEMBERS = ["us-east-1", "us-east-2", "eu-west-1"]


def test_every_sample_names_the_federation_and_reads_as_its_kind() -> None:
    samples = demo_workloads(MEMBERS, "demo")
    assert all(s["metadata"]["labels"][LABEL_FEDERATION] == "demo" for s in samples)
    kinds = sorted(s["kind"] for s in samples)
    assert kinds == ["FederatedDeployment"] * 6 + ["FederatedObject"] * 2
    for s in samples:
        reader = FederatedObject if s["kind"] == "FederatedObject" else FederatedDeployment
        reader.from_object(s)


def test_the_samples_hold_every_kind_the_federation_places() -> None:
    """A procedure run against the demo meets a StatefulSet with a volume, an autoscaled
    workload, affinity groups with a spread, tolerations of a tainted member and a
    FederatedObject, so one feature's objects cannot break another's procedure unseen."""
    samples = {s["metadata"]["name"]: s["spec"] for s in demo_workloads(MEMBERS, "demo")}
    assert samples["ledger"]["kind"] == "StatefulSet"
    service = next(
        s
        for s in demo_workloads(MEMBERS, "demo")
        if s["kind"] == "FederatedObject" and s["spec"]["template"]["kind"] == "Service"
    )
    # The headless Service its serviceName names, following it wherever it runs.
    assert service["metadata"]["name"] == samples["ledger"]["template"]["spec"]["serviceName"]
    assert "placement" not in service["spec"]
    assert samples["ledger"]["template"]["spec"]["volumeClaimTemplates"]
    assert samples["search"]["autoscaling"]["maxReplicas"] > samples["search"]["replicas"]
    checkout = samples["checkout"]["placement"]
    assert checkout["affinityGroups"] and checkout["spreadConstraints"]
    tainted, (taint,) = next(iter(demo_taints(MEMBERS).items()))
    assert tainted == "us-east-2" and Taint.parse(taint).effect == "NoSchedule"
    tolerant = {n for n, s in samples.items() if s.get("placement", {}).get("tolerations")}
    assert tolerant == {"worker", "checkout"}
    assert demo_taints(MEMBERS[:2]) == {}  # two members: none tainted, both stay usable


def test_a_dns_suffix_keeps_two_federations_apart_in_one_zone() -> None:
    names = {
        s["spec"]["dns"]["hostname"]
        for s in demo_workloads(MEMBERS, "demo", namespace="t1", dns_suffix="-t1")
        if "dns" in s.get("spec", {})
    }
    assert names == {"web-t1", "api-t1", "ledger-t1"}


def test_web_reads_a_config_map_that_follows_it_with_another_value_on_the_last_member() -> None:
    samples = {s["metadata"]["name"]: s for s in demo_workloads(MEMBERS, "demo")}
    web = FederatedDeployment.from_object(samples["web"])
    assert Ref(kind="ConfigMap", name="web-config") in references(web.spec.template)
    config = FederatedObject.from_object(samples["web-config"])
    assert config.spec.placement is None  # it follows web
    first = member_object(config, MEMBERS[0], "demo")["data"]["greeting"]
    last = member_object(config, MEMBERS[-1], "demo")["data"]["greeting"]
    assert (first, last) == ("hello", "hej")
