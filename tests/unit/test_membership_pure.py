"""The control plane and membership manifests, version skew and reports: pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from fleetflow.admission import PodSecurity
from fleetflow.blocks import Federation
from fleetflow.blocks.loading import flows_block_name, listed_block, load_member_cluster
from fleetflow.controlplane import (
    DNS_CRD_NAME,
    LABEL_FEDERATION,
    control_plane_manifests,
    member_cluster_crd,
    worker_rbac,
)
from fleetflow.errors import MembershipError
from fleetflow.health import Health, HealthState
from fleetflow.membership import (
    MEMBER_RULES,
    TOKEN_RULES,
    block_problem,
    join_problem,
    member_block_name,
    member_manifests,
    names,
    placements_naming,
    secret_manifests,
    skew_problem,
    token_secret,
    unjoin_problem,
)
from fleetflow.models import Action, BootstrapRequest, JoinRequest, Report, Verb
from fleetflow.registry import MemberCluster, MemberStatus, joined_status, with_health

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 12, 5, tzinfo=UTC)


def test_control_plane_installs_namespace_crds_then_rbac_in_order() -> None:
    manifests = control_plane_manifests("prod", "fleetflow-system", include_dns_crd=True)
    kinds = [m["kind"] for m in manifests]
    assert kinds[0] == "Namespace"
    assert kinds.index("RoleBinding") > kinds.index("Role") > kinds.index("ServiceAccount")
    crds = [m["metadata"]["name"] for m in manifests if m["kind"] == "CustomResourceDefinition"]
    assert crds == [
        "memberclusters.fleetflow.io",
        "federateddeployments.fleetflow.io",
        "federatedobjects.fleetflow.io",
        "federationoperations.fleetflow.io",
        DNS_CRD_NAME,
    ]
    without = control_plane_manifests("prod", "fleetflow-system", include_dns_crd=False)
    assert DNS_CRD_NAME not in [m["metadata"]["name"] for m in without]


def test_member_cluster_crd_has_status_and_printer_columns() -> None:
    version = member_cluster_crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == [
        "Region",
        "Zone",
        "Health",
    ]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "token" not in str(spec).lower()
    assert spec["required"] == ["federation", "credentialsBlock", "apiURL"]


def test_member_role_is_least_privilege() -> None:
    verbs = {v for rule in MEMBER_RULES for v in rule["verbs"]}
    resources = {r for rule in MEMBER_RULES for r in rule["resources"]}
    assert not {"*", "escalate", "bind", "impersonate"} & verbs
    assert "*" not in resources and "secrets" not in resources
    assert not any(r.startswith(("clusterrole", "role")) for r in resources)
    read_only = {"pods", "nodes", "replicasets", "events"}
    for rule in MEMBER_RULES:
        if set(rule["resources"]) & read_only:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}
    # Secrets only in the federation's own namespace, through a Role, never a ClusterRole.
    assert TOKEN_RULES == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "delete"]}
    ]
    role = next(m for m in member_manifests("prod") if m["kind"] == "Role")
    assert role["metadata"]["namespace"] == "fleetflow-prod"
    # Never the token subresource: minting tokens for any service account is owning them.
    assert "serviceaccounts/token" not in resources


def test_secrets_only_through_roles_in_the_joined_namespaces() -> None:
    manifests = secret_manifests("prod", ["shop", "billing", "shop"])
    assert [(m["kind"], m["metadata"]["namespace"]) for m in manifests] == [
        ("Role", "billing"),
        ("RoleBinding", "billing"),
        ("Role", "shop"),
        ("RoleBinding", "shop"),
    ]
    assert all(m["kind"] in ("Role", "RoleBinding") for m in manifests)
    assert manifests[0]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        }
    ]
    assert manifests[1]["subjects"] == [
        {"kind": "ServiceAccount", "name": "fleetflow-prod", "namespace": "fleetflow-prod"}
    ]
    assert secret_manifests("prod", []) == []
    # Custom resources: an aggregated ClusterRole that grants nothing until an admin labels one.
    custom = [m for m in member_manifests("prod") if m["kind"] == "ClusterRole"][1]
    assert "rules" not in custom
    assert custom["aggregationRule"] == {
        "clusterRoleSelectors": [{"matchLabels": {"fleetflow.io/aggregate-to-member-prod": "true"}}]
    }


def test_member_objects_are_labelled_and_named_per_federation() -> None:
    manifests = member_manifests("prod")
    assert [m["kind"] for m in manifests] == [
        "Namespace",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",  # in force before the account has any right
        "ValidatingAdmissionPolicyBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ]
    assert all(m["metadata"]["labels"][LABEL_FEDERATION] == "prod" for m in manifests)
    policy, binding = manifests[2], manifests[3]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["matchConditions"][0]["expression"] == (
        "request.userInfo.username == 'system:serviceaccount:fleetflow-prod:fleetflow-prod'"
    )
    assert manifests[0]["metadata"]["annotations"] == {"fleetflow.io/pod-security": "restricted"}
    baseline = member_manifests("prod", PodSecurity.BASELINE)
    assert "with Pod Security baseline" in str(baseline[2]["spec"]["validations"])
    assert names("prod").namespace != names("staging").namespace
    secret = token_secret("prod", 3)
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["name"] == "fleetflow-prod-token-3"
    assert secret["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "fleetflow-prod"
    }


def test_registry_entry_names_the_block_and_holds_no_secret() -> None:
    entry = MemberCluster.new(
        "prod",
        "fleetflow-system",
        "us-east-1",
        api_url="https://10.0.0.1:6443",
        credentials_block="prod-us-east-1",
        service_account="fleetflow-prod",
        region="us-east",
        zone="us-east-1a",
        labels={"tier": "gold"},
        ingress_address=None,
    ).manifest()
    assert entry["spec"]["credentialsBlock"] == "prod-us-east-1"
    assert MemberCluster.from_object(entry).manifest() == entry  # round trip
    assert "ingressAddress" not in entry["spec"]
    assert entry["metadata"]["labels"]["topology.kubernetes.io/region"] == "us-east"
    assert entry["metadata"]["labels"]["tier"] == "gold"


@pytest.mark.parametrize(
    ("host", "member", "problem"),
    [
        ("v1.36.3", "v1.36.3", None),
        ("v1.36.3", "v1.33.0", None),
        ("v1.36.3", "v1.32.9", "more than 3 minor versions apart"),
        ("v1.36.3", "v1.40.0-gke.2", "more than 3 minor versions apart"),
        ("v1.36.3", "v2.1.0", "different major versions"),
        ("v1.36.3", "v1.35+", None),
    ],
)
def test_version_skew(host: str, member: str, problem: str | None) -> None:
    found = skew_problem(host, member)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_requests_validate_names_and_forbid_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="is not a DNS label"):
        JoinRequest(federation="prod", member="US_EAST", admin_block="x")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        BootstrapRequest(federation="prod", host_cluster="h", token="oops")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        BootstrapRequest(federation="prod", host_cluster="h", dns_zone="Not A Zone")


def test_report_counts_writes_and_renders_markdown() -> None:
    report = Report(
        procedure="join x",
        dry_run=True,
        actions=[
            Action(cluster="m", kind="Namespace", name="ns", verb=Verb.CREATE),
            Action(cluster="m", kind="Role", name="r", namespace="ns", verb=Verb.UNCHANGED),
        ],
    )
    assert [a.line() for a in report.writes()] == ["m: create Namespace ns"]
    text = report.markdown()
    assert text.startswith("## join x (dry run: nothing written)")
    assert "| m | Role | ns/r | unchanged |" in text


def _entry(**status: object) -> MemberCluster:
    return MemberCluster.from_object(
        {
            "metadata": {"name": "m1", "namespace": "fleetflow-system"},
            "spec": {"federation": "prod", "credentialsBlock": "prod-m1", "apiURL": "https://m1"},
            "status": status,
        }
    )


def test_member_status_keeps_other_fields_and_the_transition_time() -> None:
    entry = _entry(kubernetesVersion="v1.36.3", nodesReady=3)
    first = with_health(entry.status, HealthState(), NOW)
    assert first.nodes_ready == 3 and first.kubernetes_version == "v1.36.3"
    assert first.conditions[0].status == "True"
    again = with_health(first, HealthState(), LATER)
    assert again == first  # steady state: nothing to send
    sick = with_health(first, HealthState(health=Health.UNHEALTHY, consecutive_failures=2), LATER)
    assert sick.conditions[0].status == "False" and sick.health is Health.UNHEALTHY
    assert sick.conditions[0].last_transition_time == "2026-11-25T12:05:00Z"
    patch = entry.model_copy(update={"status": sick}).status_patch()
    assert patch["status"]["health"] == "Unhealthy"
    assert patch["status"]["consecutiveFailures"] == 2
    assert patch["status"]["nodesReady"] == 3  # whole: apply would drop what it leaves out
    assert MemberStatus.model_validate(patch["status"]) == sick


def test_health_is_read_back_from_the_registry() -> None:
    assert _entry().health == HealthState()  # never probed: Healthy
    state = _entry(health="Recovering", consecutiveFailures=0, consecutiveSuccesses=1).health
    assert state == HealthState(health=Health.RECOVERING, consecutive_successes=1)
    assert not state.placeable


def test_a_new_entry_starts_healthy_and_a_known_one_keeps_its_health() -> None:
    fresh = joined_status(MemberStatus(), "v1.36.3", NOW)
    assert fresh.health is Health.HEALTHY and fresh.kubernetes_version == "v1.36.3"
    sick = _entry(health="Unhealthy", consecutiveFailures=2).status
    assert joined_status(sick, "v1.36.4", NOW).health is Health.UNHEALTHY
    assert joined_status(fresh, "v1.36.3", LATER) == fresh  # a rerun writes nothing


def test_join_checks_skew_other_federations_and_a_taken_name() -> None:
    ok = {"host_version": "v1.36.3", "member_version": "v1.36.3", "api_url": "https://m1"}
    assert join_problem("m1", "prod", federations=set(), existing=None, **ok) is None
    assert join_problem("m1", "prod", federations={"prod"}, existing=_entry(), **ok) is None
    other = join_problem("m1", "prod", federations={"prod", "staging"}, existing=None, **ok)
    assert other == (
        "cannot join 'm1': that cluster is already a member of federation staging; "
        "unjoin it there first"
    )
    taken = join_problem(
        "m1", "prod", federations=set(), existing=_entry(), **{**ok, "api_url": "https://other"}
    )
    assert taken is not None
    assert "already registered for https://m1 in federation prod" in taken
    old = join_problem(
        "m1", "prod", federations=set(), existing=None, **{**ok, "member_version": "v1.30.0"}
    )
    assert old is not None and "more than 3 minor versions apart" in old
    # One cluster under a second name: two shares of every workload, one account.
    twin = join_problem(
        "m2", "prod", federations={"prod"}, existing=None, registry=[_entry()], **ok
    )
    assert twin == (
        "cannot join 'm2': that cluster (https://m1) is already member 'm1'; rejoin it under "
        "that name"
    )
    again = join_problem(
        "m1", "prod", federations={"prod"}, existing=_entry(), registry=[_entry()], **ok
    )
    assert again is None  # a rerun of its own join


def test_unjoin_needs_a_member_and_force_when_unreachable() -> None:
    known = {"blocks": ["prod-m1"], "block": "prod-m1", "unreachable": None, "force": False}
    assert unjoin_problem("m1", "prod", registered=True, **known) is None
    assert "is not a member of federation prod; members: m1" in (
        unjoin_problem("m2", "prod", registered=False, **{**known, "block": "prod-m2"}) or ""
    )
    down = {**known, "unreachable": "connection refused"}
    assert "Rerun with force" in (unjoin_problem("m1", "prod", registered=True, **down) or "")
    assert unjoin_problem("m1", "prod", registered=True, **{**down, "force": True}) is None
    # Its token refused (an unjoin that stopped after revoking it): said so, and how to finish.
    revoked = unjoin_problem("m1", "prod", registered=True, refused=True, **down) or ""
    assert "an unjoin that stopped after revoking its tokens" in revoked
    assert "Rerun with force" in revoked and "admin_block" in revoked
    # An unjoin killed after deregistering the member and deleting its block (crash point
    # unjoin/forgotten:write@1): only the federation's list names it. The rerun finishes that,
    # with no member left to reach and no force asked for.
    gone = {**known, "unreachable": "no credentials block 'prod-m1'"}
    assert unjoin_problem("m1", "prod", registered=False, **gone) is None
    # The only member a workload can run on: gone, the workload is placed nowhere and its DNS
    # name answers nothing, whether its copy there is kept or not.
    only = {**known, "stranded": ["shop/ledger"]}
    line = unjoin_problem("m1", "prod", registered=True, **only) or ""
    assert line.startswith("cannot unjoin 'm1': it is the only member shop/ledger can run on")
    assert "nothing was changed" in line and "fleetflow migrate" in line
    assert unjoin_problem("m1", "prod", registered=True, **{**only, "force": True}) is None
    named = {**known, "naming": ["shop/web (weights)"]}
    line = unjoin_problem("m1", "prod", registered=True, **named) or ""
    assert line.startswith("cannot unjoin 'm1': the placement of shop/web (weights) names it")
    assert "Take it out of those placements first" in line


def test_placements_that_name_a_member_are_found_with_where() -> None:
    from tests.unit.test_rebalance_pure import fd

    group = [{"name": "home", "clusters": ["us", "us2"]}, {"name": "any"}]
    weighted = fd(6, weights={"us": 2, "eu": 1}, max={"us2": 3}, affinityGroups=group)
    pinned = fd(1, clusters=["eu"])
    # An affinity group or a max naming a member that left no longer applies: no refusal.
    assert placements_naming([weighted], "us2") == []
    assert placements_naming([weighted], "us") == ["shop/web (weights)"]
    assert placements_naming([pinned], "eu") == ["shop/web (clusters)"]
    assert placements_naming([pinned, fd(3)], "us") == []


def test_a_procedure_on_an_unknown_member_names_it_in_one_line() -> None:
    from fleetflow.errors import UnknownName
    from fleetflow.registry import MemberCluster, registered

    entry = MemberCluster.new(
        "demo", "ns", "us-east-1", api_url="https://x", credentials_block="b", service_account="s"
    )
    assert registered(entry, "us-east-1", "demo") is entry
    with pytest.raises(UnknownName, match="'mars' is not a member of federation demo: join it"):
        registered(None, "mars", "demo")


@pytest.mark.parametrize(
    ("exists", "joined_as", "listed", "host", "refused"),
    [
        (False, None, False, False, None),  # a first join
        (True, "prod/us-east-1", True, False, None),  # a rejoin of the same member
        (True, None, True, False, None),  # a block joined before blocks said for whom
        (True, None, False, True, "it is federation prod's host credentials block"),
        (True, "prod/us-east-1", True, True, "host credentials block"),
        (True, None, False, False, "it was made by hand"),  # an admin's block, say
        (True, "other/us-east-1", False, False, "it was made for other/us-east-1"),
        (True, "prod/eu-west-1", True, False, "it was made for prod/eu-west-1"),
    ],
)
def test_join_overwrites_only_the_block_it_made_for_that_member(
    exists: bool, joined_as: str | None, listed: bool, host: bool, refused: str | None
) -> None:
    problem = block_problem(
        "prod-us-east-1",
        "prod",
        "us-east-1",
        exists=exists,
        joined_as=joined_as,
        listed=listed,
        host=host,
    )
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and refused in problem
        assert problem.startswith("cannot join 'us-east-1'") and "nothing was changed" in problem


def test_flows_load_only_the_blocks_the_federation_lists_for_its_members() -> None:
    federation = Federation(name="prod", host_cluster="host", member_clusters=["prod-m1"])

    def entry(block: str) -> MemberCluster:
        return MemberCluster.new(
            "prod", "ns", "m1", api_url="https://x", credentials_block=block, service_account="s"
        )

    assert listed_block(federation, entry("prod-m1")) == "prod-m1"
    assert listed_block(federation, entry("host")) is None  # the host's admin block
    assert listed_block(federation, entry("other-m1")) is None  # another federation's
    with pytest.raises(MembershipError, match="names credentials block 'host', which"):
        load_member_cluster(federation, entry("host"))


def test_the_flows_host_account_writes_fleetflows_kinds_and_dns_records_only() -> None:
    manifests = worker_rbac("prod-system", "prod")
    rules = [r for m in manifests if m["kind"] in ("ClusterRole", "Role") for r in m["rules"]]
    resources = {res for r in rules for res in r["resources"]}
    assert not resources & {"secrets", "deployments", "pods", "roles", "clusterrolebindings", "*"}
    assert all("*" not in r["verbs"] and "escalate" not in r["verbs"] for r in rules)
    writes = {
        res
        for r in rules
        for res in r["resources"]
        if set(r["verbs"]) & {"create", "update", "patch", "delete"}
    }
    kinds = {"memberclusters", "federateddeployments", "federationoperations", "federatedobjects"}
    assert writes == {*kinds, *(f"{k}/status" for k in kinds), "dnsendpoints", "leases", "events"}
    role = next(m for m in manifests if m["kind"] == "Role")
    assert role["metadata"]["namespace"] == "prod-system"  # leases and events: its own only


def test_flows_reach_the_host_as_its_own_account_once_bootstrap_made_one() -> None:
    old = Federation(name="prod", host_cluster="admin")
    assert old.host_identity is None  # bootstrapped before: the admin block, as before
    assert flows_block_name("prod") == "prod--host" != member_block_name("prod", "host")
