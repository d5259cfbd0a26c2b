"""Fairness under a full connection cap: the per-source cap, which connection is evicted, the
connection states the policy reads, the flags and the rate-limited log line (no sockets)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from adapter.apiserver.connections import (
    AnsweredCounter,
    ConnectionGate,
    ConnectionLimits,
    GatedConnection,
    PressureLog,
    SourceSlots,
    default_per_source,
    source_key,
)
from adapter.cli import UsageError, build_parser, validate_serve

GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@dataclass(eq=False)
class Conn:
    source: str
    seq: int
    state: str = "handshake"


def _fill(slots: SourceSlots, spec: list[tuple[str, str]]) -> list[Conn]:
    conns = [Conn(source, i, state) for i, (source, state) in enumerate(spec)]
    for c in conns:
        slots.add(c)
    return conns


def test_accepts_below_both_caps() -> None:
    slots = SourceSlots(max_total=4, max_per_source=2)
    _fill(slots, [("a", "idle"), ("b", "busy")])
    got = slots.admit("a")
    assert (got.action, got.victim) == ("accept", None)
    assert slots.total == 2 and slots.count("a") == 1 and slots.count("c") == 0


def test_per_source_cap_refuses_that_source_only() -> None:
    slots = SourceSlots(max_total=10, max_per_source=2)
    _fill(slots, [("a", "handshake"), ("a", "handshake")])
    got = slots.admit("a")
    assert (got.action, got.reason, got.victim) == ("refuse", "per_source_limit", None)
    assert slots.admit("b").action == "accept"


def test_full_cap_evicts_the_oldest_evictable_of_the_heaviest_source() -> None:
    slots = SourceSlots(max_total=6, max_per_source=0)
    c = _fill(
        slots,
        [("legit", "idle"), ("atk", "busy"), ("atk", "no_request"), ("atk", "handshake"), ("x", "handshake"),
         ("atk", "idle")],
    )  # fmt: skip
    got = slots.admit("new")
    # The legit idle connection and x's handshake are older, but atk holds the most; its oldest
    # connection is busy (a request in flight), so its next oldest goes.
    assert (got.action, got.reason, got.victim) == ("evict", "no_request", c[2])


def test_ties_between_sources_evict_the_oldest() -> None:
    slots = SourceSlots(max_total=4, max_per_source=0)
    c = _fill(slots, [("a", "busy"), ("b", "idle"), ("a", "idle"), ("b", "handshake")])
    got = slots.admit("c")
    assert got.victim is c[1] and got.reason == "idle"


def test_heaviest_source_all_busy_falls_back_to_the_next() -> None:
    slots = SourceSlots(max_total=5, max_per_source=0)
    c = _fill(slots, [("a", "busy"), ("a", "busy"), ("a", "busy"), ("b", "busy"), ("b", "handshake")])
    got = slots.admit("c")
    assert got.victim is c[4] and got.action == "evict"


def test_only_a_bigger_holder_gives_a_slot_up() -> None:
    """A newcomer of the biggest holder does not evict its own (churn); one of a source holding as
    many as every evictable one does not either; a smaller holder's does."""
    slots = SourceSlots(max_total=5, max_per_source=0)
    c = _fill(
        slots, [("atk", "handshake"), ("atk", "handshake"), ("atk", "idle"), ("b", "idle"), ("c", "busy")]
    )
    assert slots.admit("atk") == ("refuse", "over_limit", None)
    assert slots.admit("b").victim is c[0]  # atk holds 3 > 1
    slots = SourceSlots(max_total=4, max_per_source=0)
    _fill(slots, [("a", "idle"), ("a", "idle"), ("b", "handshake"), ("b", "handshake")])
    assert slots.admit("a").action == "refuse" and slots.admit("b").action == "refuse"
    assert slots.admit("new").action == "evict"


def test_everything_busy_refuses() -> None:
    slots = SourceSlots(max_total=2, max_per_source=0)
    _fill(slots, [("a", "busy"), ("b", "busy")])
    got = slots.admit("c")
    assert (got.action, got.reason, got.victim) == ("refuse", "over_limit", None)


def test_remove_frees_the_slot_and_the_source() -> None:
    slots = SourceSlots(max_total=2, max_per_source=1)
    c = _fill(slots, [("a", "busy"), ("b", "busy")])
    slots.remove(c[0])
    slots.remove(c[0])  # twice is harmless
    assert slots.total == 1 and slots.count("a") == 0 and slots.admit("a").action == "accept"
    assert slots.busiest() == [("b", 1)]


def test_no_caps_accepts_everything() -> None:
    slots = SourceSlots(max_total=0, max_per_source=0)
    _fill(slots, [("a", "busy")] * 50)
    assert slots.admit("a").action == "accept"


def test_source_keys() -> None:
    assert source_key(("127.0.0.2", 4000)) == "127.0.0.2"
    assert source_key(("::ffff:10.0.0.1", 1, 0, 0)) == "10.0.0.1"  # IPv4-mapped is the IPv4 source
    # One IPv6 site gets a /64 and can use all of it: the key is the /64.
    assert source_key(("2001:db8:1:2:aaaa::1", 1, 0, 0)) == source_key(("2001:db8:1:2:bbbb::9", 1, 0, 0))
    assert source_key(("2001:db8:1:2::1", 1, 0, 0)) == "2001:db8:1:2::/64"
    assert source_key(("2001:db8:1:3::1", 1, 0, 0)) != "2001:db8:1:2::/64"
    assert source_key(None) == "unknown" and source_key("/tmp/sock") == "unknown"


# --------------------------------------------------------------------------------------------
# the state a connection reports, from the bytes it received and the answers aiohttp logged
# --------------------------------------------------------------------------------------------


class _Transport(asyncio.Transport):
    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.closed = False

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class _Inner(asyncio.Protocol):
    pass


def _answered(conn: GatedConnection) -> None:
    """What aiohttp does once a response is written: its access logger gets the request."""
    request = SimpleNamespace(transport=conn.transport)
    AnsweredCounter(logging.getLogger("x"), "").log(request, None, 0.0)  # type: ignore[arg-type]


async def test_connection_states_follow_requests_and_answers() -> None:
    gate = ConnectionGate(ConnectionLimits(), ssl.create_default_context(), _Inner)
    conn = GatedConnection(gate, _Inner(), "127.0.0.2", 1)
    assert conn.state == "handshake"
    conn.connection_made(_Transport(conn))
    assert conn.state == "no_request"
    conn.data_received(GET[:10])
    assert conn.state == "no_request"  # a head still arriving is no request yet
    conn.data_received(GET[10:])
    assert conn.state == "busy"  # a complete head, not answered: never evicted
    _answered(conn)
    assert conn.state == "idle"
    conn.data_received(GET + GET)  # two pipelined
    _answered(conn)
    assert conn.state == "busy"
    _answered(conn)
    assert conn.state == "idle"
    conn.data_received(GET[:5])
    assert conn.state == "idle"  # keep-alive, the next head only started
    conn.release()


async def test_access_logger_ignores_other_transports() -> None:
    AnsweredCounter(logging.getLogger("x"), "").log(SimpleNamespace(transport=None), None, 0.0)  # type: ignore[arg-type]
    other = _Transport(_Inner())
    AnsweredCounter(logging.getLogger("x"), "").log(SimpleNamespace(transport=other), None, 0.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# the rate-limited log line
# --------------------------------------------------------------------------------------------


def test_pressure_log_first_event_at_once_then_one_line_per_interval() -> None:
    p = PressureLog(interval=10.0)
    first = p.note("refused per_source_limit", "127.0.0.2", now=100.0)
    assert first is not None and "per_source_limit" in first and "127.0.0.2" in first
    for i in range(500):
        assert p.note("evicted handshake", "127.0.0.2", now=100.0 + i * 0.01) is None
    assert p.note("evicted idle", "127.0.0.3", now=105.0) is None
    line = p.note("refused over_limit", "127.0.0.4", now=110.5)
    assert line is not None
    assert "evicted handshake 500" in line and "evicted idle 1" in line and "refused over_limit 1" in line
    assert "127.0.0.2" in line  # the source with the most events
    assert p.flush(now=111.0) is None  # nothing pending
    assert p.note("evicted idle", "a", now=112.0) is None
    assert p.flush(now=115.0) is None  # not yet due
    assert p.flush(now=120.6) is not None and p.flush(now=200.0) is None


# --------------------------------------------------------------------------------------------
# flags
# --------------------------------------------------------------------------------------------


def _serve_args(tmp_path, extra: list[str]):  # type: ignore[no-untyped-def]
    cert, key = tmp_path / "c", tmp_path / "k"
    cert.write_text("x")
    key.write_text("x")
    tls = ["--tls-cert-file", str(cert), "--tls-private-key-file", str(key)]
    return build_parser().parse_args(["serve", *tls, "--provider", "static", *extra])


def _per_source(tmp_path, extra: list[str]) -> int:  # type: ignore[no-untyped-def]
    return int(validate_serve(_serve_args(tmp_path, extra)).args.max_connections_per_source)


def test_per_source_default_is_half_the_cap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert ConnectionLimits().max_per_source == default_per_source(500) == 250
    assert default_per_source(0) == 0 and default_per_source(1) == 1 and default_per_source(3) == 1
    assert _per_source(tmp_path, []) == 250
    assert _per_source(tmp_path, ["--max-connections", "40"]) == 20
    assert _per_source(tmp_path, ["--max-connections", "0"]) == 0
    assert _per_source(tmp_path, ["--max-connections", "0", "--max-connections-per-source", "7"]) == 7
    assert _per_source(tmp_path, ["--max-connections-per-source", "0"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-connections-per-source", "-1"], r"--max-connections-per-source must be >= 0"),
        (
            ["--max-connections", "40", "--max-connections-per-source", "41"],
            r"--max-connections-per-source 41 is above --max-connections 40",
        ),
    ],
)
def test_bad_per_source_flags(tmp_path, extra: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=message):
        validate_serve(_serve_args(tmp_path, extra))
