"""Connection limits in front of aiohttp: caps, TLS handshake and request-header deadlines, sizes.

Every TCP connection the listener accepts goes through a :class:`ConnectionGate` before TLS:

* one source address (an IPv6 client: its /64) may hold at most ``max_per_source`` connections;
  beyond that its new ones are closed at once, before any TLS state exists (the TLS protocol holds
  a :data:`TLS_READ_BUFFER_BYTES` read buffer per connection). No address is exempt: the
  aggregator and loopback are ordinary sources, and an allow-list by address is one an attacker
  could spoof;
* at ``max_connections`` open connections a newcomer is still let in when some connection can be
  evicted for it: the oldest one of the source holding the most connections that is still in
  its TLS handshake, has not sent a complete request yet, or is idle between keep-alive requests
  (:class:`SourceSlots`). Only a source holding more connections than the newcomer's gives one
  up, and a connection with a request in flight is never evicted; otherwise the newcomer is
  closed at once. So a flood from few sources cannot lock out the
  aggregator's new connections (the HPA's requests); a keep-alive client whose idle connection
  is evicted opens a new one, as it does after ``idle_timeout``. Refusals and evictions are
  counted by reason on /metrics and logged at most once per :data:`PRESSURE_LOG_INTERVAL`;
* the TLS handshake must finish within ``tls_handshake_timeout``;
* the request line and headers of every request must arrive within ``request_header_timeout``
  of the connection being ready (first request) or of their first byte (later ones): a slowloris
  client sending its headers a byte at a time is cut off;
* the request line plus headers may be at most ``max_header_bytes`` (431) and a declared body at
  most ``max_body_bytes`` (413); chunked bodies are refused (411: no endpoint takes a body).

Idle keep-alive connections are closed by aiohttp's own keep-alive timer (``idle_timeout``, passed
to the runner by :class:`adapter.apiserver.server.AdapterServer`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from asyncio import sslproto
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from aiohttp.abc import AbstractAccessLogger

from adapter import telemetry

log = logging.getLogger(__name__)

#: The TLS protocol's socket read buffer: asyncio preallocates 256 KiB per connection, most of the
#: ~280 KiB an idle TLS connection cost; one TLS record is at most ~16.7 KiB.
TLS_READ_BUFFER_BYTES = 32 * 1024

#: Far enough away to mean "never" where asyncio wants a number.
UNLIMITED_SECONDS = 365 * 24 * 3600.0

#: An evicted connection that had answered requests is closed gracefully (its last response may
#: still be in the buffers) and aborted if it is not gone this long after.
EVICT_GRACE_SECONDS = 1.0

#: At most one "connection pressure" log line per this many seconds (counters have every event).
PRESSURE_LOG_INTERVAL = 10.0


def default_per_source(max_connections: int) -> int:
    """``--max-connections-per-source`` when not given: half the cap (0: no cap, none per source).

    One source can then never take more than half the slots, so at least two sources are needed
    to fill the cap; eviction covers that case."""
    return max(1, max_connections // 2) if max_connections else 0


@dataclass(frozen=True)
class ConnectionLimits:
    """The listener's limits; ``max_connections`` / ``max_per_source`` 0 mean no cap."""

    max_connections: int = 500
    max_per_source: int = field(default_factory=lambda: default_per_source(500))
    tls_handshake_timeout: float = 10.0
    request_header_timeout: float = 10.0
    idle_timeout: float = 90.0
    max_header_bytes: int = 32 * 1024
    max_body_bytes: int = 64 * 1024


def source_key(peername: Any) -> str:
    """The source a connection counts against: its IPv4 address, or the /64 of an IPv6 one (one
    site usually gets a whole /64, so per address would be no limit at all)."""
    if not isinstance(peername, tuple) or not peername:
        return "unknown"
    try:
        addr = ipaddress.ip_address(str(peername[0]).split("%", 1)[0])
    except ValueError:
        return "unknown"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class Slot(Protocol):
    """What :class:`SourceSlots` reads of a connection."""

    @property
    def source(self) -> str: ...

    @property
    def seq(self) -> int: ...

    @property
    def state(self) -> str:
        """``handshake``, ``no_request``, ``idle`` (evictable) or ``busy`` (a request in flight)."""
        ...


class Admission(NamedTuple):
    action: str  # accept | evict | refuse
    reason: str = ""  # refuse: over_limit | per_source_limit; evict: the victim's state
    victim: Slot | None = None


class SourceSlots:
    """The open connections by source, and the admission policy for a new one (pure, no I/O).

    ``admit`` decides; the caller adds the newcomer and removes (closes) the victim."""

    def __init__(self, max_total: int, max_per_source: int) -> None:
        self.max_total = max_total
        self.max_per_source = max_per_source
        self.total = 0
        self._by_source: dict[str, dict[Slot, None]] = {}  # insertion order = age

    def count(self, source: str) -> int:
        return len(self._by_source.get(source, ()))

    def add(self, conn: Slot) -> None:
        self._by_source.setdefault(conn.source, {})[conn] = None
        self.total += 1

    def remove(self, conn: Slot) -> None:
        conns = self._by_source.get(conn.source)
        if conns is None or conn not in conns:
            return
        del conns[conn]
        self.total -= 1
        if not conns:
            del self._by_source[conn.source]

    def busiest(self, n: int = 3) -> list[tuple[str, int]]:
        """The ``n`` sources holding the most connections, most first."""
        top = sorted(self._by_source.items(), key=lambda kv: -len(kv[1]))[:n]
        return [(source, len(conns)) for source, conns in top]

    def admit(self, source: str) -> Admission:
        if self.max_per_source and self.count(source) >= self.max_per_source:
            return Admission("refuse", "per_source_limit")
        if not self.max_total or self.total < self.max_total:
            return Admission("accept")
        victim = self._victim(self.count(source))
        if victim is None:
            return Admission("refuse", "over_limit")
        return Admission("evict", victim.state, victim)

    def _victim(self, newcomer_holds: int) -> Slot | None:
        """The oldest evictable connection among the sources holding the most; if none of those
        has one, the same among the sources holding the next most, and so on, down to sources
        holding more than the newcomer's: an eviction only moves a slot from a bigger holder to a
        smaller one (a source's newcomer replacing its own or an equal holder's connection would
        be churn for nothing, each one a new TLS handshake)."""
        by_size: dict[int, list[dict[Slot, None]]] = {}
        for conns in self._by_source.values():
            by_size.setdefault(len(conns), []).append(conns)
        for size in sorted(by_size, reverse=True):
            if size <= newcomer_holds:
                break
            oldest: Slot | None = None
            for conns in by_size[size]:
                for conn in conns:  # oldest first
                    if conn.state != "busy":
                        if oldest is None or conn.seq < oldest.seq:
                            oldest = conn
                        break
            if oldest is not None:
                return oldest
        return None


class PressureLog:
    """One warning line at the first refusal or eviction, then at most one per ``interval``
    summing up what happened since (pure: the caller passes the time and logs the line)."""

    def __init__(self, interval: float = PRESSURE_LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: float | None = None
        self._events: Counter[str] = Counter()
        self._sources: Counter[str] = Counter()

    def note(self, event: str, source: str, now: float) -> str | None:
        self._events[event] += 1
        self._sources[source] += 1
        return self.flush(now)

    def flush(self, now: float) -> str | None:
        if not self._events or (self._last is not None and now - self._last < self.interval):
            return None
        since = "" if self._last is None else f" in the last {now - self._last:.0f}s"
        self._last = now
        events = ", ".join(f"{e} {n}" for e, n in sorted(self._events.items()))
        sources = ", ".join(f"{s} ({n})" for s, n in self._sources.most_common(3))
        self._events.clear()
        self._sources.clear()
        return f"connection pressure{since}: {events}; most events from {sources}"


def _response(status: int, reason: str) -> bytes:
    body = f"{status} {reason}\n".encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Framing:
    """Splits a plaintext HTTP/1.1 byte stream into request heads and bodies (pure, no I/O).

    ``feed`` returns an error (status, reason) when a limit is broken, else None. ``in_head`` is
    True while a request head is incomplete; ``heads`` counts complete heads.
    """

    def __init__(self, max_header_bytes: int, max_body_bytes: int) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._head = bytearray()
        self._body_left = 0
        self.heads = 0

    @property
    def in_head(self) -> bool:
        return self._body_left == 0 and bool(self._head)

    def feed(self, data: bytes) -> tuple[int, str] | None:
        view = memoryview(data)
        while view:
            if self._body_left:
                n = min(self._body_left, len(view))
                self._body_left -= n
                view = view[n:]
                continue
            if not self._head:  # blank lines between requests are allowed (RFC 9112 2.2)
                i = 0
                while i < len(view) and view[i] in (0x0D, 0x0A):
                    i += 1
                view = view[i:]
                if not view:
                    break
            room = self.max_header_bytes - len(self._head)
            take = view[: room + 1]
            prev = len(self._head)
            self._head += take
            end = self._head.find(b"\r\n\r\n", max(0, prev - 3))
            if end < 0:
                if len(self._head) > self.max_header_bytes:
                    return 431, "Request Header Fields Too Large"
                view = view[len(take) :]
                continue
            head = bytes(self._head[: end + 4])
            self._head.clear()
            view = view[end + 4 - prev :]
            self.heads += 1
            error = self._body_of(head)
            if error:
                return error
        return None

    def _body_of(self, head: bytes) -> tuple[int, str] | None:
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip().lower()
            if name == b"transfer-encoding":
                return 411, "Length Required"
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    return 400, "Bad Request"
                if length < 0:
                    return 400, "Bad Request"
        if length > self.max_body_bytes:
            return 413, "Request Entity Too Large"
        self._body_left = length
        return None


class GatedConnection(asyncio.Protocol):
    """One accepted connection: its slot in the gate, then (once TLS is up) the protocol of the TLS
    transport, aiohttp's handler behind the deadline and size checks.

    Its :attr:`state` is what the eviction policy reads: complete request heads seen here
    (:class:`Framing`) against responses aiohttp finished (:class:`AnsweredCounter`)."""

    def __init__(self, gate: ConnectionGate, inner: asyncio.Protocol, source: str, seq: int) -> None:
        self.gate = gate
        self.inner = inner
        self.source = source
        self.seq = seq
        self.raw: asyncio.Transport | None = None  # the TCP transport, until TLS is up
        self.transport: asyncio.Transport | None = None  # the TLS transport
        self.framing = Framing(gate.limits.max_header_bytes, gate.limits.max_body_bytes)
        self.answered = 0
        self.evicted = False
        self._timer: asyncio.TimerHandle | None = None
        self._released = False
        self._refused = False

    @property
    def state(self) -> str:
        if self.transport is None:
            return "handshake"
        if self.framing.heads > self.answered:
            return "busy"
        return "idle" if self.framing.heads else "no_request"

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.gate.slots.remove(self)
            telemetry.OPEN_CONNECTIONS.dec()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def evict(self) -> None:
        """Give up the slot now and close: gracefully when a response may still be buffered."""
        self.evicted = True
        self.release()
        if self.transport is not None:
            if self.answered:
                self.transport.close()
                asyncio.get_running_loop().call_later(EVICT_GRACE_SECONDS, self._abort_if_open)
            else:
                self.transport.abort()
        elif self.raw is not None:
            self.raw.abort()

    def _abort_if_open(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _arm(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.gate.limits.request_header_timeout, self._deadline)

    def _deadline(self) -> None:
        self._timer = None
        if self.transport is not None and (self.framing.in_head or self.framing.heads == 0):
            self.gate.count_closed("header_timeout")
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.raw = None
        self._arm()  # the first request's head is due within the deadline
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        error = self.framing.feed(data)
        if error is not None:
            self._refused = True
            self.gate.count_closed(f"status_{error[0]}")
            assert self.transport is not None
            self.transport.write(_response(*error))
            self.transport.close()
            return
        if self.framing.in_head:
            self._arm()
        elif self._timer is not None and self.framing.heads:
            self._timer.cancel()
            self._timer = None
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        self.transport = None
        self.inner.connection_lost(exc)


class AnsweredCounter(AbstractAccessLogger):
    """aiohttp's access-logger hook, called once each response is written (or failed to be):
    counts it on the request's :class:`GatedConnection`. Pass as ``access_log_class`` (with any
    logger as ``access_log``: this one logs nothing; the adapter's access log is a middleware)."""

    def log(self, request: Any, response: Any, time: float) -> None:
        transport = request.transport
        protocol = transport.get_protocol() if transport is not None else None
        if isinstance(protocol, GatedConnection):
            protocol.answered += 1

    @property
    def enabled(self) -> bool:
        return True


class _SmallBufferSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a smaller read buffer (see :data:`TLS_READ_BUFFER_BYTES`)."""

    max_size = TLS_READ_BUFFER_BYTES


async def start_tls_server(
    transport: asyncio.Transport,
    protocol: asyncio.Protocol,
    context: ssl.SSLContext,
    *,
    handshake_timeout: float,
) -> asyncio.Transport:
    """``loop.start_tls(server_side=True)`` with :class:`_SmallBufferSSLProtocol`.

    The same steps as asyncio's ``start_tls``; ``transport`` must have its reading paused.
    ``protocol.connection_made`` is left to the caller.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    ssl_protocol = _SmallBufferSSLProtocol(
        loop,
        protocol,
        context,
        waiter,
        server_side=True,
        call_connection_made=False,
        ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]  # typeshed: int, any number works
    )
    transport.pause_reading()
    transport.set_protocol(ssl_protocol)
    made = loop.call_soon(ssl_protocol.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    app_transport: asyncio.Transport = ssl_protocol._app_transport
    return app_transport


class _Accepted(asyncio.Protocol):
    """A fresh TCP connection: admitted (possibly evicting another) or closed, before any TLS."""

    def __init__(self, gate: ConnectionGate) -> None:
        self.gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.gate.admit(transport)


class ConnectionGate:
    """The protocol factory for ``loop.create_server`` (no ``ssl=``: TLS is started here)."""

    def __init__(
        self,
        limits: ConnectionLimits,
        ssl_context: ssl.SSLContext,
        handler_factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self.limits = limits
        self.ssl_context = ssl_context
        self.handler_factory = handler_factory
        self.slots = SourceSlots(limits.max_connections, limits.max_per_source)
        self.closed: dict[str, int] = {
            k: 0
            for k in (
                "over_limit",
                "per_source_limit",
                "handshake",
                "header_timeout",
                "status_400",
                "status_411",
                "status_413",
                "status_431",
            )
        }
        self.evicted: dict[str, int] = {k: 0 for k in ("handshake", "no_request", "idle")}
        self.pressure = PressureLog()
        self._flush: asyncio.TimerHandle | None = None
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> int:
        return self.slots.total

    def __call__(self) -> asyncio.Protocol:
        return _Accepted(self)

    def count_closed(self, reason: str) -> None:
        self.closed[reason] = self.closed.get(reason, 0) + 1
        telemetry.CONNECTIONS_CLOSED.labels(reason=reason).inc()

    def admit(self, transport: asyncio.Transport) -> None:
        """Admit a new TCP connection (evicting one if the policy says so) or close it."""
        source = source_key(transport.get_extra_info("peername"))
        decision = self.slots.admit(source)
        if decision.action == "refuse":
            self.count_closed(decision.reason)
            self._note(f"refused {decision.reason}", source)
            transport.abort()
            return
        if decision.action == "evict":
            assert isinstance(decision.victim, GatedConnection)
            victim = decision.victim
            self.evicted[decision.reason] = self.evicted.get(decision.reason, 0) + 1
            telemetry.CONNECTIONS_EVICTED.labels(state=decision.reason).inc()
            self._note(f"evicted {decision.reason}", victim.source)
            victim.evict()
        self._seq += 1
        conn = GatedConnection(self, self.handler_factory(), source, self._seq)
        conn.raw = transport
        self.slots.add(conn)
        telemetry.OPEN_CONNECTIONS.inc()
        transport.pause_reading()  # nothing is read until the TLS protocol takes over
        task = asyncio.get_running_loop().create_task(self._upgrade(transport, conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _note(self, event: str, source: str) -> None:
        line = self.pressure.note(event, source, time.monotonic())
        if line is not None:
            self._log(line)
        elif self._flush is None:  # what happens until the interval ends is logged then
            self._flush = asyncio.get_running_loop().call_later(self.pressure.interval, self._flush_log)

    def _flush_log(self) -> None:
        self._flush = None
        line = self.pressure.flush(time.monotonic())
        if line is not None:
            self._log(line)

    def _log(self, line: str) -> None:
        busiest = ", ".join(f"{s} {n}" for s, n in self.slots.busiest())
        cap = self.limits.max_connections or "no cap"
        log.warning(
            "%s; open %d of %s (per source %s), most held by %s",
            line,
            self.slots.total,
            cap,
            self.limits.max_per_source or "no cap",
            busiest or "nobody",
        )

    async def _upgrade(self, transport: asyncio.Transport, protocol: GatedConnection) -> None:
        if protocol.evicted:  # evicted before this task ran; the transport is closed
            return
        try:
            tls_transport = await start_tls_server(
                transport, protocol, self.ssl_context, handshake_timeout=self.limits.tls_handshake_timeout
            )
        except (TimeoutError, OSError, ssl.SSLError) as err:
            if not protocol.evicted:
                self.count_closed("handshake")
                log.debug("TLS handshake failed: %s", err)
            transport.abort()
            protocol.release()
            return
        except BaseException:
            transport.abort()
            protocol.release()
            raise
        if tls_transport is None or tls_transport.is_closing() or protocol.evicted:
            protocol.release()
            if tls_transport is not None:
                tls_transport.abort()
            return
        protocol.connection_made(tls_transport)

    def close_pending(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for task in list(self._tasks):
            task.cancel()


__all__ = [
    "EVICT_GRACE_SECONDS",
    "PRESSURE_LOG_INTERVAL",
    "TLS_READ_BUFFER_BYTES",
    "UNLIMITED_SECONDS",
    "Admission",
    "AnsweredCounter",
    "ConnectionGate",
    "ConnectionLimits",
    "Framing",
    "GatedConnection",
    "PressureLog",
    "Slot",
    "SourceSlots",
    "default_per_source",
    "source_key",
    "start_tls_server",
]
