"""The test bed is a federation of real kube-apiservers with schedulable kwok nodes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s

from fleetflow import errors
from fleetflow.controlplane import REGION_LABEL, ZONE_LABEL
from fleetflow.errors import ClusterUnreachable
from fleetflow.testbed import bed, memory
from fleetflow.testbed.spec import MemberSpec, TestbedSpec
from tests.integration.conftest import client_for

pytestmark = pytest.mark.integration


def test_every_cluster_is_a_real_kube_apiserver_1_36(testbed: TestbedSpec) -> None:
    for cluster in testbed.cluster_names():
        client = client_for(cluster)
        info = k8s.VersionApi(client).get_code()
        assert info.git_version.startswith("v1.36."), (cluster, info.git_version)
        assert (info.major, info.minor) == ("1", "36")
        # A real apiserver serves discovery for the built-in groups and health endpoints.
        groups = {g.name for g in k8s.ApisApi(client).get_api_versions().groups}
        assert {"apps", "rbac.authorization.k8s.io", "apiextensions.k8s.io"} <= groups
        readyz = client.call_api(
            "/readyz",
            "GET",
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
        assert readyz.data == b"ok"


def test_members_have_labelled_kwok_nodes_with_capacity(testbed: TestbedSpec) -> None:
    for member in testbed.members:
        nodes = k8s.CoreV1Api(client_for(member.name)).list_node().items
        assert len(nodes) == member.nodes
        for node in nodes:
            assert node.metadata.labels[REGION_LABEL] == member.region
            assert node.metadata.labels[ZONE_LABEL].startswith(member.name)
            assert node.status.allocatable["cpu"] == testbed.node.cpu
            assert node.status.allocatable["pods"] == str(testbed.node.pods)
            assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def test_apiservers_listen_on_loopback_only(testbed: TestbedSpec) -> None:
    for cluster in testbed.cluster_names():
        pid = bed.processes()[cluster]["kube-apiserver"]
        cmdline = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
        assert "--bind-address=127.0.0.1" in cmdline


def test_up_on_a_running_test_bed_changes_nothing(testbed: TestbedSpec) -> None:
    bed.up(testbed, progress=lambda m: None)  # whole, whatever the tests before it left
    before = bed.processes()
    messages: list[str] = []
    started = time.monotonic()
    bed.up(testbed, progress=messages.append)
    assert time.monotonic() - started < 10
    assert bed.processes() == before
    assert messages == ["test bed already running; nothing changed"]


def test_up_with_a_taken_port_starts_nothing(
    testbed: TestbedSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETFLOW_HOME", str(tmp_path))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        spec = TestbedSpec(base_port=port, members=[MemberSpec(name="m1", region="r1")])
        taken = rf"API ports already in use: host \({port}\)"
        with pytest.raises(errors.TestbedError, match=taken):
            bed.up(spec, progress=lambda m: None)
    assert bed.load_spec() is None
    assert bed.processes() == {}
    assert not (tmp_path / "testbed" / "kwok" / "clusters").exists()


def test_status_command_prints_the_table(testbed: TestbedSpec) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fleetflow.cli", "testbed", "status"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=True,
        timeout=60,
    ).stdout
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["CLUSTER", "REGION", "API"]
    for member in testbed.members:
        row = next(line for line in lines if line.startswith(member.name + " "))
        assert row.split()[1:] == [
            member.region,
            f"https://127.0.0.1:{testbed.port(member.name)}",
            "v1.36.3",
            f"{member.nodes}/{member.nodes}",
            "yes",
        ]
    dns = f"DNS {testbed.dns_zone} at 127.0.0.1:{testbed.dns_ports().dns}: answering"
    assert lines[-1] == dns


def go_threads(pid: int) -> str | None:
    """The GOMAXPROCS a test-bed process was started with."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(
        (e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"GOMAXPROCS=")), None
    )


def test_every_process_of_the_bed_runs_one_go_scheduler_thread(testbed: TestbedSpec) -> None:
    """An idle bed's Go runtimes, one thread each, cost a fifth less CPU than one per core."""
    running = bed.processes()
    assert set(running) == set(testbed.cluster_names())
    threads = {
        f"{c}/{name}": go_threads(pid) for c, ps in running.items() for name, pid in ps.items()
    }
    assert set(threads.values()) == {"1"}, threads


def test_faults_stop_kwok_then_heal(testbed: TestbedSpec) -> None:
    """Stopping kwok turns the member's nodes NotReady; start-cluster brings it back whole."""
    member = testbed.members[-1].name
    try:
        bed.fault(member, bed.Fault.STOP_KWOK, progress=lambda m: None)
        deadline = time.monotonic() + 40
        while (row := bed.cluster_status(testbed, member)).nodes_ready > 0:
            assert time.monotonic() < deadline, "nodes still Ready 40 s after kwok stopped"
            time.sleep(1)
        assert row.reachable and row.nodes_total == testbed.member(member).nodes
    finally:
        bed.fault(member, bed.Fault.START_CLUSTER, progress=lambda m: None)
    assert bed.cluster_status(testbed, member).ready
    assert {go_threads(pid) for pid in bed.processes()[member].values()} == {"1"}
    # Initialised again after the outage, each node keeps the address metrics-server scrapes
    # (kwok used to erase it, and every HPA of the member stopped for good).
    for node in k8s.CoreV1Api(client_for(member)).list_node().items:
        assert {"InternalIP": "127.0.0.1"}.items() <= {
            a.type: a.address for a in node.status.addresses or []
        }.items(), node.metadata.name


def test_kill_apiserver_makes_the_cluster_unreachable(testbed: TestbedSpec) -> None:
    member = testbed.members[0].name
    try:
        bed.fault(member, bed.Fault.KILL_APISERVER, progress=lambda m: None)
        assert "kube-apiserver" not in bed.processes()[member]
        assert "etcd" in bed.processes()[member]
        with pytest.raises(ClusterUnreachable):
            k8s.CoreV1Api(client_for(member, timeout=2)).list_node()
    finally:
        bed.fault(member, bed.Fault.START_CLUSTER, progress=lambda m: None)
    assert bed.cluster_status(testbed, member).ready


def test_unknown_cluster_fault_is_a_clear_error(testbed: TestbedSpec) -> None:
    unknown = "unknown test-bed cluster 'nope'; clusters: host"
    with pytest.raises(errors.TestbedError, match=unknown):
        bed.fault("nope", bed.Fault.STOP_CLUSTER)


def test_up_of_a_bed_larger_than_the_machine_refuses_before_starting_a_process(
    testbed: TestbedSpec, fleetflow_home: Path, tmp_path: Path
) -> None:
    """Members enough that the bed needs more than the machine's whole memory: one line, exit
    2, nothing started; the line names the session's running bed as one to stop."""
    total_mib = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    nodes, count = 3, 1
    while memory.bed_parts(_members(count, nodes))[-2].mib <= total_mib:
        count, nodes = (count + 1, nodes) if count < 89 else (count, nodes + 10)
        assert nodes <= 100, "this machine holds the largest test bed fleetflow can start"
    home = tmp_path / "home"
    argv = [arg for m in _members(count, nodes).members for arg in ("--member", f"{m.name}:r")]
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetflow.cli",
            "testbed",
            "up",
            "--no-blocks",
            "--base-port",
            "30000",
            "--nodes",
            str(nodes),
            *argv,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, FLEETFLOW_HOME=str(home)),
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: not enough memory: this needs about ")
    assert f" GiB: host host {memory.FOOTPRINT.host / 1024:.1f} GiB, {count} members " in line
    session = fleetflow_home / "testbed"
    assert f"stop the test bed in {session} " in line
    assert f"`FLEETFLOW_HOME={fleetflow_home} fleetflow testbed down`" in line
    assert time.monotonic() - started < 30
    assert not (home / "testbed" / "kwok").exists()
    assert not (home / "testbed" / "state.json").exists()
    assert all(b.directory != home / "testbed" for b in memory.beds_running())


def _members(count: int, nodes: int) -> TestbedSpec:
    return TestbedSpec(
        members=[MemberSpec(name=f"m{i}", region="r", nodes=nodes) for i in range(count)]
    )
