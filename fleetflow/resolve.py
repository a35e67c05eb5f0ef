"""Ask a real DNS server what a name resolves to: the proof that traffic switched."""

from __future__ import annotations

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from pydantic import BaseModel

from fleetflow.errors import InvalidRequest


class Answer(BaseModel):
    """The A records a server gave for a name (empty for NXDOMAIN or no answer)."""

    name: str
    targets: list[str]
    rcode: str

    def summary(self) -> str:
        return ", ".join(self.targets) or self.rcode


def server_address(server: str) -> tuple[str, int]:
    """``host:port`` (or ``host``, port 53) of a DNS server."""
    host, sep, port = server.rpartition(":")
    if not sep:
        return server, 53
    if not port.isdigit():
        raise InvalidRequest(f"DNS server {server!r}: expected HOST:PORT, e.g. 127.0.0.1:5353")
    return host, int(port)


def lookup(name: str, server: str, timeout: float = 1.0) -> Answer:
    """One A query over UDP, no cache and no retries: what the server says now. A server that
    does not answer gives rcode ``TIMEOUT``."""
    host, port = server_address(server)
    query = dns.message.make_query(name, dns.rdatatype.A)
    try:
        reply = dns.query.udp(query, host, port=port, timeout=timeout)
    except (dns.exception.Timeout, OSError):
        return Answer(name=name, targets=[], rcode="TIMEOUT")
    targets = sorted(
        item.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for item in rrset
    )
    return Answer(name=name, targets=targets, rcode=dns.rcode.to_text(reply.rcode()))
