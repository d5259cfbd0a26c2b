"""Connection limits in front of aiohttp: a cap, TLS handshake and request-header deadlines, sizes.

Every TCP connection the listener accepts goes through a :class:`ConnectionGate` before TLS:

* beyond ``max_connections`` open connections a new one is closed at once (before any TLS state
  exists: the TLS protocol alone holds a 256 KiB buffer per connection);
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
import logging
import ssl
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass

from adapter import telemetry

log = logging.getLogger(__name__)

#: The TLS protocol's socket read buffer: asyncio preallocates 256 KiB per connection, most of the
#: ~280 KiB an idle TLS connection cost; one TLS record is at most ~16.7 KiB.
TLS_READ_BUFFER_BYTES = 32 * 1024

#: Far enough away to mean "never" where asyncio wants a number.
UNLIMITED_SECONDS = 365 * 24 * 3600.0


@dataclass(frozen=True)
class ConnectionLimits:
    """The listener's limits; ``max_connections`` 0 means no cap."""

    max_connections: int = 500
    tls_handshake_timeout: float = 10.0
    request_header_timeout: float = 10.0
    idle_timeout: float = 90.0
    max_header_bytes: int = 32 * 1024
    max_body_bytes: int = 64 * 1024


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


class _Limited(asyncio.Protocol):
    """The TLS connection's protocol: aiohttp's handler behind the deadline and size checks."""

    def __init__(self, gate: ConnectionGate, inner: asyncio.Protocol) -> None:
        self.gate = gate
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.framing = Framing(gate.limits.max_header_bytes, gate.limits.max_body_bytes)
        self._timer: asyncio.TimerHandle | None = None
        self._released = False
        self._refused = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.gate.active -= 1
            telemetry.OPEN_CONNECTIONS.dec()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

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
    """A fresh TCP connection: refused beyond the cap, else upgraded to TLS by the gate."""

    def __init__(self, gate: ConnectionGate) -> None:
        self.gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        gate = self.gate
        if gate.limits.max_connections and gate.active >= gate.limits.max_connections:
            gate.count_closed("over_limit")
            transport.abort()
            return
        gate.active += 1
        telemetry.OPEN_CONNECTIONS.inc()
        transport.pause_reading()  # nothing is read until the TLS protocol takes over
        task = asyncio.get_running_loop().create_task(gate._upgrade(transport))
        gate._tasks.add(task)
        task.add_done_callback(gate._tasks.discard)


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
        self.active = 0
        self.closed: dict[str, int] = {
            k: 0
            for k in (
                "over_limit",
                "handshake",
                "header_timeout",
                "status_400",
                "status_411",
                "status_413",
                "status_431",
            )
        }
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self) -> asyncio.Protocol:
        return _Accepted(self)

    def count_closed(self, reason: str) -> None:
        self.closed[reason] = self.closed.get(reason, 0) + 1
        telemetry.CONNECTIONS_CLOSED.labels(reason=reason).inc()

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        protocol = _Limited(self, self.handler_factory())
        try:
            tls_transport = await start_tls_server(
                transport, protocol, self.ssl_context, handshake_timeout=self.limits.tls_handshake_timeout
            )
        except (TimeoutError, OSError, ssl.SSLError) as err:
            self.count_closed("handshake")
            log.debug("TLS handshake failed: %s", err)
            transport.abort()
            protocol.release()
            return
        except BaseException:
            transport.abort()
            protocol.release()
            raise
        if tls_transport is None or tls_transport.is_closing():
            protocol.release()
            return
        protocol.connection_made(tls_transport)

    def close_pending(self) -> None:
        for task in list(self._tasks):
            task.cancel()


__all__ = [
    "TLS_READ_BUFFER_BYTES",
    "UNLIMITED_SECONDS",
    "ConnectionGate",
    "ConnectionLimits",
    "Framing",
    "start_tls_server",
]
