"""``fleetflow status``: rows from the host's objects, the text table, markdown and JSON."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from fleetflow import cli, objects
from fleetflow.federated import ANNOTATION_ORPHAN, FederatedDeployment
from fleetflow.objects import FederatedObject, FederatedObjects, MemberState
from fleetflow.status import (
    OBJECT,
    STATE_HELP,
    WORKLOAD,
    State,
    StatusRow,
    host_rows,
    markdown,
    rows_json,
    status_rows,
    summary,
    text_table,
)

PLACED = {"type": "Planned", "status": "True", "reason": "Placed"}


def fd_obj(
    name: str = "web",
    *,
    namespace: str = "shop",
    generation: int = 1,
    status: dict[str, Any] | None = None,
    deleting: bool = False,
    orphan: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if orphan:
        meta["annotations"] = {ANNOTATION_ORPHAN: "true"}
    body: dict[str, Any] = {"metadata": meta, "spec": {"replicas": 3, "template": {}, **spec}}
    if status is not None:
        body["status"] = status
    return body


def placed(
    *clusters: tuple[str, int, int], unplaced: int = 0, generation: int = 1
) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "clusters": [{"name": n, "desired": d, "ready": r} for n, d, r in clusters],
        "unplaced": unplaced,
        "conditions": [PLACED],
    }


def fo_obj(
    name: str = "web-config",
    *,
    namespace: str = "shop",
    template: dict[str, Any] | None = None,
    clusters: list[dict[str, str]] | None = None,
    generation: int = 1,
    observed: int | None = 1,
    **spec: Any,
) -> dict[str, Any]:
    template = template or {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    status: dict[str, Any] = {"clusters": clusters or []}
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": {"template": template, **spec},
        "status": status,
    }


def states(rows: list[StatusRow]) -> list[tuple[str | None, str]]:
    return [(r.member, r.state.value) for r in rows]


def test_a_workload_is_ready_progressing_or_idle_on_each_member() -> None:
    status = placed(("us-east-2", 2, 1), ("us-east-1", 3, 3), ("eu-west-1", 0, 0), ("x", 1, 2))
    rows = host_rows([fd_obj(status=status)], [])
    assert states(rows) == [
        ("eu-west-1", "Idle"),
        ("us-east-1", "Ready"),
        ("us-east-2", "Progressing"),
        ("x", "Progressing"),  # more Ready than placed: still scaling down
    ]
    assert [(r.desired, r.ready) for r in rows] == [(0, 0), (3, 3), (2, 1), (1, 2)]
    assert {(r.kind, r.template_kind, r.key) for r in rows} == {
        (WORKLOAD, "Deployment", "shop/web")
    }


def test_replicas_that_fit_nowhere_are_one_unplaced_row_before_the_members() -> None:
    one = host_rows([fd_obj(status=placed(("a", 2, 2), unplaced=1))], [])
    assert states(one) == [(None, "Unplaced"), ("a", "Ready")]
    assert one[0].message == "1 replica fits on no member"
    (three, _) = host_rows([fd_obj(status=placed(("a", 2, 2), unplaced=3))], [])
    assert three.message == "3 replicas fit on no member"


def test_a_workload_never_propagated_or_changed_since_is_pending() -> None:
    (new,) = host_rows([fd_obj()], [])
    assert (new.member, new.state, new.desired) == (None, State.PENDING, None)
    assert "not propagated yet" in new.message
    changed = host_rows([fd_obj(generation=4, status=placed(("a", 1, 1), generation=3))], [])
    assert states(changed) == [(None, "Pending"), ("a", "Ready")]
    assert "generation 4, status of 3" in changed[0].message


def test_an_invalid_placement_keeps_the_last_good_members_and_says_why() -> None:
    status = placed(("a", 2, 2))
    status["conditions"] = [
        {"type": "Planned", "status": "False", "reason": "Invalid", "message": "min 5 > total 3"}
    ]
    rows = host_rows([fd_obj(status=status)], [])
    assert states(rows) == [(None, "Invalid"), ("a", "Ready")]
    assert rows[0].message == "min 5 > total 3"


def test_a_deleted_workload_is_deleting_with_the_members_it_waits_for() -> None:
    waiting = placed(("a", 1, 1))
    waiting["conditions"] = [
        {
            "type": "Deleting",
            "status": "True",
            "reason": "WaitingForMembers",
            "message": "unreachable members may still run it: eu-west-1",
        }
    ]
    rows = host_rows([fd_obj(status=waiting, deleting=True)], [])
    assert states(rows) == [(None, "Deleting"), ("a", "Ready")]
    assert rows[0].message == "unreachable members may still run it: eu-west-1"
    (plain, _) = host_rows([fd_obj(status=placed(("a", 1, 1)), deleting=True)], [])
    assert plain.message == "the next run removes it from its members"
    (kept, _) = host_rows([fd_obj(status=placed(("a", 1, 1)), deleting=True, orphan=True)], [])
    assert "leaves its copies on the members" in kept.message


def test_a_workload_on_no_member_is_one_idle_row() -> None:
    (row,) = host_rows([fd_obj(status=placed())], [])
    assert (row.member, row.state, row.message) == (None, State.IDLE, "placed on no member")


def test_an_object_shows_each_members_state_and_message() -> None:
    clusters = [
        {"name": "us-east-2", "state": "Conflict", "message": "not ours: left alone"},
        {"name": "us-east-1", "state": "Applied"},
        {"name": "eu-west-1", "state": "MissingKind", "message": "no CRD"},
    ]
    rows = host_rows([], [fo_obj(clusters=clusters)])
    assert states(rows) == [
        ("eu-west-1", "MissingKind"),
        ("us-east-1", "Applied"),
        ("us-east-2", "Conflict"),
    ]
    assert [r.message for r in rows] == ["no CRD", "", "not ours: left alone"]
    assert {(r.kind, r.template_kind, r.desired, r.ready) for r in rows} == {
        (OBJECT, "ConfigMap", None, None)
    }


def test_an_object_placed_nowhere_pending_or_deleting_has_a_row_of_its_own() -> None:
    (nowhere,) = host_rows([], [fo_obj()])
    assert (nowhere.member, nowhere.state) == (None, State.IDLE)
    (pending,) = host_rows([], [fo_obj(observed=None)])
    assert pending.state is State.PENDING
    gone = fo_obj(clusters=[{"name": "a", "state": "Unchanged"}])
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert states(host_rows([], [gone])) == [(None, "Deleting"), ("a", "Unchanged")]


def test_an_unreadable_object_is_one_invalid_row_and_the_rest_still_show() -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    no_namespace = fd_obj("lost")
    del no_namespace["metadata"]["namespace"]
    rows = host_rows(
        [fd_obj("bad", replicas=-1), no_namespace, fd_obj("ok", status=placed(("a", 1, 1)))],
        [fo_obj("ns", template=namespace), fo_obj("fine")],
    )
    found = {(r.kind, r.name): r for r in rows}
    bad = found[(WORKLOAD, "bad")]
    assert (bad.state, bad.member) == (State.INVALID, None)
    assert bad.message.startswith("spec.replicas: ")
    lost = found[(WORKLOAD, "lost")]
    assert (lost.state, lost.namespace, lost.message) == (
        State.INVALID,
        "",
        "metadata.namespace is missing",
    )
    ns = found[(OBJECT, "ns")]
    assert (ns.state, ns.template_kind) == (State.INVALID, "Namespace")
    assert ns.message.startswith("spec.template is a Namespace, which is cluster-scoped")
    assert found[(WORKLOAD, "ok")].state is State.READY
    assert found[(OBJECT, "fine")].state is State.IDLE


def test_no_template_content_reaches_any_output() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "stringData": {"password": "hunter2-secret"},
    }
    broken_secret = fo_obj("db", template=secret, adopt="hunter2-secret")
    placed_secret = fo_obj("db2", template=secret, clusters=[{"name": "a", "state": "Applied"}])
    broken_fd = fd_obj("web", replicas="hunter2-secret")
    rows = host_rows([broken_fd], [broken_secret, placed_secret])
    assert {r.state for r in rows} == {State.INVALID, MemberState.APPLIED}
    for out in (text_table(rows), markdown(rows), rows_json(rows)):
        assert "hunter2" not in out


def test_rows_sort_by_namespace_kind_name_then_whole_object_first() -> None:
    workloads = [
        fd_obj("web", status=placed(("b", 1, 1), ("a", 1, 0), unplaced=1)),
        fd_obj("api", namespace="bank", status=placed(("a", 1, 1))),
    ]
    objs = [fo_obj("cfg", clusters=[{"name": "b", "state": "Failed"}]), fo_obj("aaa")]
    expected = host_rows(workloads, objs)
    assert [(r.namespace, r.kind, r.name, r.member) for r in expected] == [
        ("bank", WORKLOAD, "api", "a"),
        ("shop", WORKLOAD, "web", None),
        ("shop", WORKLOAD, "web", "a"),
        ("shop", WORKLOAD, "web", "b"),
        ("shop", OBJECT, "aaa", None),
        ("shop", OBJECT, "cfg", "b"),
    ]
    for seed in range(5):
        random.Random(seed).shuffle(workloads)
        random.Random(seed).shuffle(objs)
        assert host_rows(workloads, objs) == expected
        assert text_table(host_rows(workloads, objs)) == text_table(expected)


def test_a_flows_models_give_the_same_rows_with_the_statuses_it_just_wrote() -> None:
    old = FederatedDeployment.from_object(fd_obj(status=placed(("a", 2, 0))))
    other = FederatedDeployment.from_object(fd_obj("api", status=placed(("a", 1, 1))))
    new = FederatedDeployment.from_object(fd_obj(status=placed(("a", 2, 2))))
    fo = FederatedObject.from_object(fo_obj(clusters=[{"name": "a", "state": "Failed"}]))
    fixed = FederatedObject.from_object(fo_obj(clusters=[{"name": "a", "state": "Applied"}]))
    rows = status_rows([old, other], [fo], updated=[new, fixed, "not a model"])
    assert [(r.name, r.state.value) for r in rows] == [
        ("api", "Ready"),
        ("web", "Ready"),
        ("web-config", "Applied"),
    ]
    assert status_rows([old], [fo]) == host_rows(
        [fd_obj(status=placed(("a", 2, 0)))], [fo_obj(clusters=[{"name": "a", "state": "Failed"}])]
    )


def test_json_is_a_list_of_rows_that_reads_back_as_the_same_rows() -> None:
    rows = host_rows(
        [fd_obj(status=placed(("a", 2, 1), unplaced=1))],
        [fo_obj(clusters=[{"name": "a", "state": "MissingKind", "message": "no CRD"}])],
    )
    data = json.loads(rows_json(rows))
    assert data[0] == {
        "namespace": "shop",
        "kind": "FederatedDeployment",
        "name": "web",
        "template_kind": "Deployment",
        "member": None,
        "state": "Unplaced",
        "desired": None,
        "ready": None,
        "message": "1 replica fits on no member",
    }
    assert [d["state"] for d in data] == ["Unplaced", "Progressing", "MissingKind"]
    assert [StatusRow.model_validate(d) for d in data] == rows


def test_row_states_and_member_states_never_share_a_name() -> None:
    # One string names one state, so a JSON row reads back as the state it was written from.
    assert not {s.value for s in State} & {s.value for s in MemberState}
    assert set(STATE_HELP) == {*State, *MemberState}
    assert objects.KIND == OBJECT


def test_the_text_table_fits_100_columns_and_wraps_long_messages_under_themselves() -> None:
    long = "a ConfigMap web-config that fleetflow does not manage is already there: " * 3
    rows = host_rows(
        [fd_obj(status=placed(("us-east-1", 10, 3)))],
        [fo_obj(clusters=[{"name": "us-east-1", "state": "Conflict", "message": long}])],
    )
    text = text_table(rows)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, text
    assert lines[:3] == [
        "WORKLOADS (FederatedDeployment)",
        "NAMESPACE  NAME  KIND        MEMBER     STATE        READY  MESSAGE",
        "shop       web   Deployment  us-east-1  Progressing   3/10",
    ]
    assert lines[4:6] == [
        "OBJECTS (FederatedObject)",
        "NAMESPACE  NAME        KIND       MEMBER     STATE     MESSAGE",
    ]
    start = lines[5].index("MESSAGE")
    message_lines = lines[6:-1]
    assert len(message_lines) > 1
    assert all(line[:start].strip() == "" for line in message_lines[1:])
    assert " ".join(line[start:] for line in message_lines) == " ".join(long.split())
    assert lines[-1] == "1 workload, 1 object; 2 not settled: shop/web, shop/web-config"


def test_nothing_federated_is_one_line() -> None:
    assert text_table([]) == "0 workloads, 0 objects; all settled"


def test_the_summary_names_what_is_not_settled_up_to_a_limit() -> None:
    ready = host_rows([fd_obj(status=placed(("a", 1, 1)))], [])
    assert summary(ready) == "1 workload, 0 objects; all settled"
    many = host_rows([fd_obj(f"w{i}") for i in range(10)], [])
    assert (
        summary(many, most=3)
        == "10 workloads, 0 objects; 10 not settled: shop/w0, shop/w1, shop/w2 and 7 more"
    )


def test_markdown_has_a_table_per_kind_and_escapes_what_would_break_it() -> None:
    rows = host_rows(
        [fd_obj(status=placed(("a", 1, 1)))],
        [fo_obj(clusters=[{"name": "a", "state": "Failed", "message": "HTTP 422: a|b\nc <x>"}])],
    )
    md = markdown(rows)
    assert md.startswith(
        "## Federation status\n\n1 workload, 1 object; 1 not settled: shop/web-config\n"
    )
    assert "### Workloads (FederatedDeployment)" in md
    assert "| shop | web | Deployment | a | Ready | 1/1 |  |" in md
    assert "| shop | web-config | ConfigMap | a | Failed | HTTP 422: a\\|b c &lt;x> |" in md


def test_help_explains_every_state(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["status", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fleetflow status")
    for state in [*State, *MemberState]:
        assert f"  {state.value} " in out


def test_a_bad_namespace_is_one_line_before_anything_is_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["status", "--federation", "demo", "--namespace", "Not_A_Label"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --namespace: ")
    assert len(err.splitlines()) == 1


def test_a_flows_unreadable_objects_are_invalid_rows_with_their_reason() -> None:
    raw = fo_obj(
        "ns", template={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    )
    read = FederatedObjects.read([raw, fo_obj("fine")])
    rows = status_rows([], read.valid, unreadable=read.invalid)
    assert [(r.name, r.member, r.state.value) for r in rows] == [
        ("fine", None, "Idle"),
        ("ns", None, "Invalid"),
    ]
    assert rows[1].message.startswith("spec.template is a Namespace, which is cluster-scoped")


def test_an_objects_planning_error_is_shown_without_its_own_name_again() -> None:
    raw = fo_obj(clusters=[{"name": "a", "state": "Unchanged"}])
    raw["status"]["conditions"] = [
        {
            "type": "Planned",
            "status": "False",
            "reason": "Invalid",
            "message": "FederatedObject shop/web-config: override for a: path /x does not exist",
        }
    ]
    rows = host_rows([], [raw])
    assert states(rows) == [(None, "Invalid"), ("a", "Unchanged")]
    assert rows[0].message == "override for a: path /x does not exist"


def test_a_stateful_workload_says_so() -> None:
    (row,) = host_rows([fd_obj(kind="StatefulSet", status=placed(("a", 2, 2)))], [])
    assert (row.template_kind, row.state) == ("StatefulSet", State.READY)
    (bad,) = host_rows([fd_obj(kind="StatefulSet", replicas=-1)], [])
    assert (bad.template_kind, bad.state) == ("StatefulSet", State.INVALID)


def test_with_long_names_each_message_goes_below_its_row() -> None:
    namespace = "a-namespace-with-a-rather-long-name-for-a-test-0123456"
    rows = host_rows(
        [fd_obj(namespace=namespace, status=placed(("us-east-1", 1, 1), unplaced=2))], []
    )
    lines = text_table(rows).splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[1].split() == ["NAMESPACE", "NAME", "KIND", "MEMBER", "STATE", "READY"]
    assert lines[2].split() == [namespace, "web", "Deployment", "-", "Unplaced"]
    assert lines[3] == "    2 replicas fit on no member"
    assert lines[4].split() == [namespace, "web", "Deployment", "us-east-1", "Ready", "1/1"]
