"""The test bed's DNS chain: a DNSEndpoint in the host becomes an answer from CoreDNS."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from kubernetes import client as k8s

from fleetflow.kube import apply
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import client_for, made_whole

pytestmark = pytest.mark.integration

DNS_API = "externaldns.k8s.io/v1alpha1"
SWITCH_LIMIT = 10.0  # seconds from a DNSEndpoint change to CoreDNS's new answer
FIRST_SYNC_LIMIT = 30.0


def dns_endpoint(namespace: str, name: str, dns_name: str, targets: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": DNS_API,
        "kind": "DNSEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "endpoints": [
                {"dnsName": dns_name, "recordType": "A", "recordTTL": 5, "targets": targets}
            ]
        },
    }


def ask(name: str, port: int) -> tuple[dns.rcode.Rcode, set[str], int | None]:
    """The rcode, the A addresses and their TTL that CoreDNS gives for ``name``."""
    query = dns.message.make_query(name, dns.rdatatype.A)
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=1)
    rrsets = [r for r in reply.answer if r.rdtype == dns.rdatatype.A]
    addresses = {r.address for rrset in rrsets for r in rrset}
    return reply.rcode(), addresses, rrsets[0].ttl if rrsets else None


def wait_answer(name: str, port: int, want: set[str] | None, timeout: float) -> float:
    """Seconds until CoreDNS answers exactly ``want`` (None: NXDOMAIN); fail at the deadline."""
    started = time.monotonic()
    while True:
        rcode, addresses, _ = ask(name, port)
        if (want is None and rcode == dns.rcode.NXDOMAIN) or (
            want is not None and rcode == dns.rcode.NOERROR and addresses == want
        ):
            return time.monotonic() - started
        elapsed = time.monotonic() - started
        assert elapsed < timeout, (
            f"{name}: still {dns.rcode.to_text(rcode)} {sorted(addresses)} after {elapsed:.1f}s, "
            f"want {sorted(want) if want is not None else 'NXDOMAIN'}"
        )
        time.sleep(0.05)


@pytest.fixture
def dns_port(testbed: TestbedSpec) -> int:
    status = bed.dns_status()
    assert status is not None and status.ready, status
    assert (status.server, status.zone) == ("127.0.0.1", testbed.dns_zone)
    return status.port


def test_dns_endpoint_changes_reach_coredns_in_seconds(
    testbed: TestbedSpec, namespace: str, dns_port: int
) -> None:
    host = client_for(testbed.host)
    name = f"web.{testbed.dns_zone}"
    first = [m.ingress_address for m in testbed.members[:2]]
    apply(host, dns_endpoint(namespace, "web", name, first))
    wait_answer(name, dns_port, set(first), FIRST_SYNC_LIMIT)
    assert ask(name, dns_port)[2] == 5

    second = [m.ingress_address for m in testbed.members[1:]]
    apply(host, dns_endpoint(namespace, "web", name, second))
    switch = wait_answer(name, dns_port, set(second), SWITCH_LIMIT)
    print(f"\nDNSEndpoint targets changed -> new CoreDNS answer in {switch:.2f} s")

    # Background propagation, as kubectl deletes: a foreground delete (fleetflow.kube.delete)
    # leaves the object for the garbage collector, which only notices a new CRD at its next
    # discovery resync (every 30 s), and ExternalDNS keeps the records of an object still there.
    group, version = DNS_API.split("/")
    k8s.CustomObjectsApi(host).delete_namespaced_custom_object(
        group, version, namespace, "dnsendpoints", "web", propagation_policy="Background"
    )
    gone = wait_answer(name, dns_port, None, SWITCH_LIMIT)
    print(f"DNSEndpoint deleted -> NXDOMAIN in {gone:.2f} s")
    assert switch < SWITCH_LIMIT


def _listening(pid: int) -> list[tuple[str, str]]:
    """(protocol, local address) of the sockets ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            # TCP listens in state 0A; an unconnected UDP socket sits in 07.
            if inode in inodes and state == ("0A" if table.startswith("tcp") else "07"):
                found.append((table, local))
    return found


def test_dns_chain_listens_on_loopback_only(testbed: TestbedSpec, dns_port: int) -> None:
    status = bed.dns_status()
    assert status is not None
    assert set(status.processes) == {"dns-etcd", "coredns", "external-dns"}
    loopback = "0100007F"  # 127.0.0.1 as /proc/net writes it
    for name, pid in status.processes.items():
        sockets = _listening(pid)
        assert sockets, name
        for table, local in sockets:
            assert local.split(":")[0] == loopback, (name, table, local)
    assert {
        int(local.split(":")[1], 16) for _, local in _listening(status.processes["coredns"])
    } == {dns_port}


def test_up_restarts_a_dead_coredns(testbed: TestbedSpec, dns_port: int) -> None:
    made_whole(testbed)  # so that what `up` says below is about coredns alone
    status = bed.dns_status()
    assert status is not None
    os.kill(status.processes["coredns"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (after := bed.dns_status()) is not None and not after.missing:
        assert time.monotonic() < deadline, "coredns still running after SIGKILL"
        time.sleep(0.1)
    assert after is not None and after.missing == ["coredns"] and not after.answering
    messages: list[str] = []
    bed.up(testbed, progress=messages.append)
    healed = bed.dns_status()
    assert healed is not None and healed.ready
    assert healed.processes["external-dns"] == status.processes["external-dns"]
    assert messages[0].startswith("starting coredns")
