"""A tiny DNS A-record query over UDP, to prove CoreDNS answers through the Service IP.

A Deployment's ``readyReplicas`` can be stale after a warm restart (the pod was Ready when the node
went down), so the provider asks the real question instead: does ``kubernetes.default.svc`` resolve
via the cluster DNS IP (which also exercises kube-proxy's DNAT)?
"""

from __future__ import annotations

import os
import socket
import struct

__all__ = ["query_a"]


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _skip_name(msg: bytes, pos: int) -> int:
    while True:
        length = msg[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:  # compression pointer
            return pos + 2
        pos += 1 + length


def query_a(server: str, name: str, *, port: int = 53, timeout: float = 2.0) -> list[str]:
    """A records of ``name`` from ``server``; raises OSError/ValueError on failure or NXDOMAIN."""
    qid = int.from_bytes(os.urandom(2), "big")
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, port))
        while True:
            msg, _ = s.recvfrom(4096)
            if len(msg) >= 12 and struct.unpack(">H", msg[:2])[0] == qid:
                break
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    rcode = flags & 0xF
    if rcode != 0:
        raise ValueError(f"DNS rcode {rcode} for {name}")
    pos = 12
    for _ in range(qd):
        pos = _skip_name(msg, pos) + 4
    out = []
    for _ in range(an):
        pos = _skip_name(msg, pos)
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", msg[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(msg[pos : pos + 4]))
        pos += rdlen
    return out
